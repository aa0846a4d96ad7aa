#!/usr/bin/env python3
"""Build the binary sentiment train/dev/test split used by quantserve's classifier.

Source
------
The sdist of ``vaderSentiment==3.3.2`` (PyPI) ships
``additional_resources/hutto_ICWSM_2014.tar.gz``, which contains
``hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt``: 10,605 Rotten-Tomatoes
review snippets (Pang & Lee sentence polarity data) with the mean of ~20 human
sentiment ratings on a -4..+4 scale (Hutto & Gilbert, ICWSM 2014).

File format (checked): UTF-8, CRLF line endings, one record per line,
``id<TAB>mean_score<TAB>text``, ids 1..10605, no header.  The decoder tries
UTF-8 first and falls back to cp1252 only if that fails (it does not for 3.3.2).

Labelling
---------
``positive`` if mean_score > 0, ``negative`` if mean_score < 0; the 37 snippets
with a score of exactly 0 are dropped -> 10,568 sentences (5,242 positive,
5,326 negative).

Text normalisation
------------------
Unicode NFC, then every run of whitespace (spaces, tabs, CR/LF, NBSP, ...) is
collapsed to one ASCII space and the ends are stripped (``" ".join(t.split())``).
Nothing else is changed (case, punctuation and accents are kept).  So the texts
in the output contain no tab or newline.  Two texts occur twice in the source;
they are kept (the counts below depend on it).

Split
-----
Records are sorted by source id, then shuffled with
``random.Random(20201116).shuffle`` (Python 3 Mersenne Twister; the result is
stable across CPython 3.x versions), and cut into
test = first 1,000, dev = next 1,000, train = remaining 8,568.

Output
------
``data/sentiment/{train,dev,test}.tsv`` (UTF-8, LF, no header), each line
``label<TAB>text`` with label ``negative`` or ``positive``.

Usage
-----
    python3 tools/make_sentiment_split.py [SDIST] [--out data/sentiment]

Without SDIST the sdist is looked for in ``models/_downloads/`` and, if
missing, fetched there with
``python3 -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2``.
Its sha256 is verified either way.  Stdlib only (python >= 3.8).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import unicodedata

SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_TAR = "additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SEED = 20201116
N_DEV = 1000
N_TEST = 1000
EXPECTED = {"train": 8568, "dev": 1000, "test": 1000}

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(cache: str) -> str:
    path = os.path.join(cache, SDIST_NAME)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--no-binary", ":all:", "vaderSentiment==3.3.2", "-d", cache]
        print("+", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    return path


def read_member(tf: tarfile.TarFile, suffix: str) -> bytes:
    for m in tf.getmembers():
        if m.isfile() and m.name.endswith(suffix):
            f = tf.extractfile(m)
            assert f is not None
            return f.read()
    raise SystemExit(f"member *{suffix} not found")


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        print("warning: not UTF-8, decoding as cp1252", file=sys.stderr)
        return raw.decode("cp1252")


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def load_records(sdist: str) -> list[tuple[int, float, str]]:
    with tarfile.open(sdist, "r:gz") as outer:
        inner_bytes = read_member(outer, INNER_TAR)
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        raw = read_member(inner, INNER_FILE)
    text = decode(raw)
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise SystemExit(f"line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
        rid, score, sent = parts
        records.append((int(rid), float(score), normalise(sent)))
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sdist", nargs="?", help=f"path to {SDIST_NAME} (default: models/_downloads/)")
    ap.add_argument("--out", default=os.path.join(REPO, "data", "sentiment"))
    args = ap.parse_args()

    sdist = args.sdist or fetch_sdist(os.path.join(REPO, "models", "_downloads"))
    digest = sha256_file(sdist)
    if digest != SDIST_SHA256:
        raise SystemExit(f"sha256 mismatch for {sdist}: {digest} != {SDIST_SHA256}")

    records = load_records(sdist)
    print(f"source records: {len(records)}")
    records.sort(key=lambda r: r[0])
    zeros = sum(1 for r in records if r[1] == 0)
    labelled = [("positive" if s > 0 else "negative", t) for _, s, t in records if s != 0]
    print(f"dropped score==0: {zeros}; kept {len(labelled)}")
    for _, t in labelled:
        assert t and "\t" not in t and "\n" not in t and "\r" not in t

    random.Random(SEED).shuffle(labelled)
    splits = {
        "test": labelled[:N_TEST],
        "dev": labelled[N_TEST:N_TEST + N_DEV],
        "train": labelled[N_TEST + N_DEV:],
    }
    os.makedirs(args.out, exist_ok=True)
    for name in ("train", "dev", "test"):
        rows = splits[name]
        if len(rows) != EXPECTED[name]:
            raise SystemExit(f"{name}: {len(rows)} rows, expected {EXPECTED[name]}")
        path = os.path.join(args.out, f"{name}.tsv")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for label, text in rows:
                f.write(f"{label}\t{text}\n")
        pos = sum(1 for l, _ in rows if l == "positive")
        print(f"{name:5s}: {len(rows):5d} rows ({pos} positive, {len(rows) - pos} negative) -> {path}")


if __name__ == "__main__":
    main()
