#!/usr/bin/env python3
"""Build the sacreBLEU parity fixture used by `tests/sacrebleu_parity.rs`.

The WMT17 en-de newstest2017 reference and 16 system outputs ship inside the
sacrebleu 2.6.0 sdist (`test/wmt17_en_de_systems.pkl.bz2`), so we take them from
there instead of fetching WMT data: one pinned, hash-verified download gives us
both the test corpus and the implementation we compare against.

Outputs (under tests/fixtures/sacrebleu/):
  wmt17_en_de.json.gz  {"ref": [...], "systems": {name: [...]}}  (gzip, mtime 0)
  expected.json        sacrebleu corpus/sentence scores + signatures

Usage:
  python3 tools/make_sacrebleu_fixture.py [--cache-dir models/_downloads]

The script creates tools/.venv-bleu (git-ignored) with sacrebleu==2.6.0 and
re-executes itself inside it, so the host Python only needs `venv` and `pip`.
"""

import argparse
import bz2
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

SACREBLEU_VERSION = "2.6.0"
SDIST_NAME = f"sacrebleu-{SACREBLEU_VERSION}.tar.gz"
SDIST_SHA256 = "91499b6cd46138d95154fff1e863c2f9be57e82f0c719d8dd718d0006cf6c566"
PICKLE_MEMBER = f"sacrebleu-{SACREBLEU_VERSION}/test/wmt17_en_de_systems.pkl.bz2"

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_ROOT / "tools" / ".venv-bleu"
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "sacrebleu"

# Sentence-level expectations are kept for every SENTENCE_STRIDE-th segment only:
# enough to exercise effective-order BLEU and per-sentence chrF on real data
# without bloating expected.json.
SENTENCE_STRIDE = 50

# Second reference stream for the multi-reference check. The corpus has only one
# human reference, so a system output stands in as a pseudo-reference; that is
# enough to exercise max-count merging and closest-reference-length selection.
PSEUDO_REF_SYSTEM = "newstest2017.online-B.0.en-de"
# Systems scored against the two streams: a spread from strongest to weakest,
# kept short so the parity test stays quick.
MULTI_REF_SYSTEMS = [
    "newstest2017.uedin-nmt.4722.en-de",
    "newstest2017.C-3MA.4959.en-de",
    "newstest2017.online-A.0.en-de",
    "newstest2017.online-F.0.en-de",
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_sdist(cache_dir: Path) -> Path:
    sdist = cache_dir / SDIST_NAME
    if not sdist.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"sacrebleu=={SACREBLEU_VERSION}", "-d", str(cache_dir)],
            check=True,
        )
    actual = sha256_of(sdist)
    if actual != SDIST_SHA256:
        sys.exit(f"sha256 mismatch for {sdist}: got {actual}, want {SDIST_SHA256}")
    return sdist


def running_in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV_DIR.resolve()


def ensure_venv_and_reexec(sdist: Path) -> None:
    """Re-run this script under the venv's python with sacrebleu pinned."""
    python = VENV_DIR / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import sacrebleu; print(sacrebleu.__version__)"],
        capture_output=True, text=True,
    )
    if probe.stdout.strip() != SACREBLEU_VERSION:
        # Installing from the verified sdist pins the exact code we compare against.
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(sdist)], check=True)
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


class DataOnlyUnpickler(pickle.Unpickler):
    """The pickle holds only tuples/lists/strings; refuse anything that would
    import code, so a tampered archive cannot execute on load."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_systems(sdist: Path):
    with tarfile.open(sdist, "r:gz") as tar:
        raw = tar.extractfile(PICKLE_MEMBER).read()
    data = DataOnlyUnpickler(io.BytesIO(bz2.decompress(raw))).load()
    # Layout: list of (name, lines) tuples for the systems, then a final
    # ("reference", [ref_stream]) entry whose value is a list of reference streams.
    ref_name, ref_streams = data[-1]
    assert ref_name == "reference", ref_name
    assert len(ref_streams) == 1, "expected a single reference stream"
    reference = ref_streams[0]
    systems = {name: lines for name, lines in data[:-1]}
    assert len(systems) == 16, len(systems)
    for name, lines in systems.items():
        assert len(lines) == len(reference), name
    return reference, systems


def bleu_record(score):
    return {
        "score": score.score,
        "counts": list(score.counts),
        "totals": list(score.totals),
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }


def compute_expected(reference, systems):
    from sacrebleu.metrics import BLEU, CHRF

    bleu = BLEU()
    chrf = CHRF()
    chrf_pp = CHRF(word_order=2)
    sentence_bleu = BLEU(effective_order=True)

    corpus = {}
    sentence = {}
    for name, hyps in systems.items():
        corpus[name] = {
            "bleu": bleu_record(bleu.corpus_score(hyps, [reference])),
            "chrf": chrf.corpus_score(hyps, [reference]).score,
            "chrf_pp": chrf_pp.corpus_score(hyps, [reference]).score,
        }
        # Column layout (one list per metric, segment i*SENTENCE_STRIDE at
        # position i) keeps expected.json small.
        picked = range(0, len(hyps), SENTENCE_STRIDE)
        sentence[name] = {
            "bleu": [sentence_bleu.sentence_score(hyps[i], [reference[i]]).score for i in picked],
            "chrf": [chrf.sentence_score(hyps[i], [reference[i]]).score for i in picked],
            "chrf_pp": [chrf_pp.sentence_score(hyps[i], [reference[i]]).score for i in picked],
        }
        print(f"{name}: BLEU {corpus[name]['bleu']['score']:.4f} "
              f"chrF {corpus[name]['chrf']:.4f} chrF++ {corpus[name]['chrf_pp']:.4f}",
              file=sys.stderr)

    # Signatures are only complete after a corpus_score call (nrefs is resolved then).
    signatures = {
        "bleu": bleu.get_signature().format(),
        "sentence_bleu": sentence_bleu.get_signature().format(),
        "chrf": chrf.get_signature().format(),
        "chrf_pp": chrf_pp.get_signature().format(),
    }

    multi_refs = [reference, systems[PSEUDO_REF_SYSTEM]]
    multi = {}
    for name in MULTI_REF_SYSTEMS:
        hyps = systems[name]
        multi[name] = {
            "bleu": bleu_record(bleu.corpus_score(hyps, multi_refs)),
            "chrf": chrf.corpus_score(hyps, multi_refs).score,
            "chrf_pp": chrf_pp.corpus_score(hyps, multi_refs).score,
        }
    signatures["bleu_multi_ref"] = bleu.get_signature().format()

    return {
        "sacrebleu_version": SACREBLEU_VERSION,
        "signatures": signatures,
        "corpus": corpus,
        "sentence_stride": SENTENCE_STRIDE,
        "sentence": sentence,
        "multi_ref": {"pseudo_ref_system": PSEUDO_REF_SYSTEM, "corpus": multi},
    }


def write_fixture(reference, systems, expected):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    corpus_json = json.dumps({"ref": reference, "systems": systems}, ensure_ascii=False)
    # mtime=0 and no embedded filename keep the gzip byte-identical across runs.
    with open(OUT_DIR / "wmt17_en_de.json.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(corpus_json.encode("utf-8"))
    with open(OUT_DIR / "expected.json", "w", encoding="utf-8") as f:
        # json floats are written with repr(), i.e. shortest round-trip form.
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "models" / "_downloads"),
                        help="where the sacrebleu sdist is downloaded (default: models/_downloads)")
    args = parser.parse_args()

    sdist = fetch_sdist(Path(args.cache_dir))
    if not running_in_venv():
        ensure_venv_and_reexec(sdist)

    import sacrebleu
    assert sacrebleu.__version__ == SACREBLEU_VERSION, sacrebleu.__version__

    reference, systems = load_systems(sdist)
    expected = compute_expected(reference, systems)
    write_fixture(reference, systems, expected)
    for path in sorted(OUT_DIR.iterdir()):
        print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
