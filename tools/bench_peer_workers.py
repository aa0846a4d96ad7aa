"""Peer workers of tools/bench_peers.py. Each runs in its own process under a venv's interpreter
(`python tools/bench_peer_workers.py NAME ARGS.json`), measures one engine and prints one line
`@@RESULT {json}`: `{"rows": [{"engine", "threads", "batch", "per_s", ...}], "info": {...}}`
(checked by `bench_report.check_peer_result`). A missing package prints `{"unavailable": why}`.

Every engine gets its thread count explicitly (its own API, plus OMP/MKL variables from the
driver). Measuring follows quantserve's `bench::measure`: one warm-up call on the first batch,
then the batches in order, cycling, until `seconds` have passed.
"""
from __future__ import annotations

import csv
import glob
import itertools
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENT_DIR = os.path.join(REPO, "models", "sentiment", "fp32")
SENT_TEST = os.path.join(REPO, "data", "sentiment", "test.tsv")
ENPT_DIR = os.path.join(REPO, "models", "en-pt", "fp32")
BIBLE = os.path.join(REPO, "data", "bible", "sample500.tsv")
RESULT_MARK = "@@RESULT "
RACE_LEN = 32
CALIBRATION_SAMPLES = 64


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(result):
    print(RESULT_MARK + json.dumps(result), flush=True)


def measure(batches, min_time, f, size=len):
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


def read_bible():
    with open(BIBLE, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["en"] for r in rows], [r["pt"] for r in rows]


def classifier_inputs(seq_len, count):
    """quantserve's `bench::classifier_inputs`: [CLS] + the sentiment test sentences' word
    pieces run together (cycling) + [SEP], exactly `seq_len` tokens each."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(SENT_DIR, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    with open(SENT_TEST, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f if line.strip()]
    ids = [e.ids for e in tok.encode_batch(texts)]
    cls, sep = ids[0][0], ids[0][-1]
    words = itertools.cycle([w for s in ids for w in s[1:-1]])
    return [[cls] + list(itertools.islice(words, seq_len - 2)) + [sep] for _ in range(count)]


def torch_bert(model):
    """The torch fp32 model: the sentiment folder, or BERT-base shapes with random weights
    (`model` = a config.json path; seeded)."""
    import torch
    import transformers

    if model == "sentiment":
        return transformers.BertForSequenceClassification.from_pretrained(
            SENT_DIR, dtype=torch.float32, attn_implementation="eager").eval()
    torch.manual_seed(0)
    cfg = transformers.BertConfig.from_json_file(model)
    cfg._attn_implementation = "eager"
    return transformers.BertForSequenceClassification(cfg).eval()


def feeds_np(seqs):
    import numpy as np

    ids = np.asarray(seqs, dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}


# ---------------------------------------------------------------------------------------------
# Preparation (cached by the driver in the work dir)


def w_export(a):
    """torch fp32 -> ONNX (TorchScript exporter: the graph ORT's BERT fusions know), plus the
    fp32 reference logits on 4 bench inputs."""
    import torch

    model = torch_bert(a["model"])
    ids = torch.tensor(classifier_inputs(a["seq_len"], 4), dtype=torch.long)
    mask, tt = torch.ones_like(ids), torch.zeros_like(ids)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "seq"} for n in names}
    dyn["logits"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, tt), a["out"], dynamo=False, input_names=names,
                          output_names=["logits"], dynamic_axes=dyn, opset_version=17)
    emit({"rows": [], "info": {"ref_logits": ref.tolist(), "torch": torch.__version__}})


def w_ort_prepare(a):
    """ORT's offline BERT fusions, then dynamic quantization (QInt8 per-channel weights)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(a["raw"], model_type="bert", opt_level=0,
                                   num_heads=a["heads"], hidden_size=a["hidden"])
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(a["fused"])
    quantize_dynamic(a["fused"], a["int8"], weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    emit({"rows": [], "info": {"fused": fused}})


def w_ov_quantize(a):
    """NNCF post-training int8 quantization of the ONNX model for OpenVINO, calibrated on 64
    samples of random tokens of the row's length."""
    import nncf
    import numpy as np
    import openvino as ov

    model = ov.Core().read_model(a["raw"])
    rng = np.random.default_rng(0)
    samples = [feeds_np(rng.integers(1000, a["vocab"], size=(1, a["seq_len"])).tolist())
               for _ in range(CALIBRATION_SAMPLES)]
    q = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=CALIBRATION_SAMPLES)
    ov.save_model(q, a["out"])
    emit({"rows": [], "info": {"nncf": nncf.__version__}})


# ---------------------------------------------------------------------------------------------
# Classification engines


def ov_runtime_precisions(compiled):
    """What the compiled graph actually runs its matmuls in: counts of `layer precision
    kernel`, e.g. {"FullyConnected u8 jit_gemm_I8": 33, "MatMul f32 brgemm_avx2_f32": 6}."""
    counts = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str)
        if layer in ("FullyConnected", "MatMul"):
            k = f"{layer} {rt['runtimePrecision'].astype(str)} {rt['primitiveType'].astype(str)}"
            counts[k] = counts.get(k, 0) + 1
    return counts


def w_cls(a):
    """One engine on classification shapes: `ort_s8`, `ov_int8`, `ov_default` or
    `torch_onednn`, `threads` threads, every batch size of `batch`; sequences/s."""
    import numpy as np

    engine, t, seq_len = a["engine"], a["threads"], a["seq_len"]
    inputs = classifier_inputs(seq_len, max([256] + a["batch"]))
    ref = np.asarray(a["ref_logits"], dtype=np.float32)
    info = {}

    if engine == "ort_s8":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = t
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", a["ort_spin"])
        sess = ort.InferenceSession(a["path"], so, providers=["CPUExecutionProvider"])
        info["version"] = ort.__version__
        info["intra_op_spinning"] = "on" if a["ort_spin"] == "1" else "off"

        def make(b):
            return lambda fd: sess.run(None, fd)[0]
    elif engine in ("ov_int8", "ov_default"):
        import openvino as ov

        core = ov.Core()
        info["version"] = ov.get_version().split("-")[0]
        compiled_by_batch = {}

        def compile_for(b):
            m = core.read_model(a["path"])
            m.reshape({i.get_any_name(): [b, seq_len] for i in m.inputs})
            c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": t, "NUM_STREAMS": 1,
                                              "PERFORMANCE_HINT": "LATENCY"})
            hint = c.get_property("INFERENCE_PRECISION_HINT")
            info["inference_precision_hint"] = hint.get_type_name()
            info[f"matmul_precisions_batch_{b}"] = ov_runtime_precisions(c)
            return c

        def make(b):
            c = compiled_by_batch.setdefault(b, compile_for(b))
            req = c.create_infer_request()
            return lambda fd: next(iter(req.infer(fd).values()))
    elif engine == "torch_onednn":
        import torch

        torch.set_num_threads(t)
        torch.backends.quantized.engine = "onednn"
        qmodel = torch.ao.quantization.quantize_dynamic(
            torch_bert(a["model"]), {torch.nn.Linear}, dtype=torch.qint8)
        info["version"] = torch.__version__
        info["quantized_engine"] = torch.backends.quantized.engine

        def make(b):
            def run(fd):
                with torch.inference_mode():
                    return qmodel(**{k: torch.from_numpy(v) for k, v in fd.items()}).logits.numpy()
            return run
    else:
        raise ValueError(f"unknown engine {engine}")

    got = make(len(ref))(feeds_np(classifier_inputs(seq_len, len(ref))))
    info["max_abs_diff_vs_torch_fp32"] = round(float(np.abs(got - ref).max()), 4)
    info["argmax_agree"] = f"{int((got.argmax(1) == ref.argmax(1)).sum())}/{len(ref)}"
    rows = []
    for b in a["batch"]:
        run = make(b)
        feeds = [feeds_np(c) for c in full_chunks(inputs, b)]
        sps = measure(feeds, a["seconds"], run, size=lambda fd: fd["input_ids"].shape[0])
        rows.append({"engine": engine, "threads": t, "batch": b, "per_s": sps})
        log(f"{engine} threads {t} batch {b}: {sps:.1f} seq/s")
    emit({"rows": rows, "info": info})


# ---------------------------------------------------------------------------------------------
# Translation engines


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
    """Bergamot 0.4.5 (`bergamot._bergamot` loaded directly: the package __init__ goes to the
    network), numWorkers = threads, cache off; sentences/s for calls of `batch` verses."""
    b = _load_bergamot()
    sources, _ = read_bible()
    opts = b.ResponseOptions(qualityScores=False, alignment=False, HTML=False,
                             sentenceMappings=False)
    t = a["threads"]
    svc = b.Service(b.ServiceConfig(numWorkers=t, cacheSize=0, logLevel="off"))
    model = svc.modelFromConfig(bergamot_config(a["ssplit"]))

    def run(batch):
        out = svc.translate(model, b.VectorString(batch), opts)
        assert all(r.target.text for r in out), "Bergamot gave an empty translation"
        return out

    rows = []
    for n in a["batch"]:
        sps = measure(full_chunks(sources, n), a["seconds"], run)
        rows.append({"engine": "bergamot", "threads": t, "batch": n, "per_s": sps})
        log(f"bergamot threads {t} batch {n}: {sps:.1f} sentences/s")
    emit({"rows": rows, "info": {"version": "0.4.5", "ssplit": a["ssplit"]}})


def race_sources(model_dir, count):
    """The Opus-MT race's sources as SentencePiece pieces, exactly as `quantserve bench
    --src-len 32` builds them: the Bible verses through source.spm (pieces missing from
    vocab.json become <unk>), run together, cut into RACE_LEN - 1 pieces, then </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "source.spm"))
    with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    verses, _ = read_bible()
    pieces = itertools.cycle([p if p in vocab else "<unk>"
                              for v in verses for p in sp.encode(v, out_type=str)])
    return [[next(pieces) for _ in range(RACE_LEN - 1)] + ["</s>"] for _ in range(count)]


def w_ct2(a):
    """CTranslate2 int8 on the converted Opus-MT-shaped model: exactly RACE_LEN generated tokens
    per sentence (min = max decoding length), greedy, intra_threads = threads; tokens/s."""
    import ctranslate2

    tr = ctranslate2.Translator(a["path"], device="cpu", compute_type="int8",
                                intra_threads=a["threads"], inter_threads=1)
    rows = []
    for b in a["batch"]:
        srcs = race_sources(a["model_dir"], max(512, b))
        lens = []

        def run(batch):
            res = tr.translate_batch(batch, beam_size=1, max_batch_size=len(batch),
                                     min_decoding_length=RACE_LEN,
                                     max_decoding_length=RACE_LEN)
            lens.extend(len(r.hypotheses[0]) for r in res)

        sps = measure(full_chunks(srcs, b), a["seconds"], run)
        assert set(lens) == {RACE_LEN}, f"CTranslate2 output lengths {set(lens)}"
        rows.append({"engine": "ct2_int8", "threads": a["threads"], "batch": b,
                     "per_s": sps * RACE_LEN})
        log(f"CTranslate2 int8 threads {a['threads']} batch {b}: {sps * RACE_LEN:.0f} tok/s")
    emit({"rows": rows, "info": {"version": ctranslate2.__version__}})


WORKERS = {"export": w_export, "ort_prepare": w_ort_prepare, "ov_quantize": w_ov_quantize,
           "cls": w_cls, "bergamot": w_bergamot, "ct2": w_ct2}

if __name__ == "__main__":
    with open(sys.argv[2]) as f:
        args = json.load(f)
    try:
        WORKERS[sys.argv[1]](args)
    except ImportError as e:
        emit({"unavailable": f"{type(e).__name__}: {e}"})
    except AttributeError as e:  # e.g. an API a newer release removed
        emit({"unavailable": f"{type(e).__name__}: {e}"})
