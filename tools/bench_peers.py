#!/usr/bin/env python3
"""Peer benchmark: quantserve against the engines people would otherwise run, on the workloads
of issue 15's table, every engine measured by this script in the same run, back to back.

    cargo build --release
    python3 -m venv target/bench-venv && target/bench-venv/bin/pip install -r tools/bench-requirements.txt
    python3.10 -m venv target/bench-venv-bergamot && \
        target/bench-venv-bergamot/bin/pip install -r tools/bench-requirements-bergamot.txt
    python3 tools/bench_peers.py --out target/bench-peers/report.md --json target/bench-peers/report.json

(the venvs are made by the script when missing; `--no-install` reports such peers as
unavailable instead). quantserve's numbers come only from `quantserve bench --json` and the
HTTP row's own load generator; each peer runs in its own process (tools/bench_peer_workers.py
under the venv's interpreter). The report (Markdown, and the whole report as JSON with --json)
has one row per workload with the ratio of quantserve to the best peer, the CPU model and the
load average. See tools/README-bench.md.

    python3 tools/bench_peers.py --self-test BENCH.json...   # no peers; run by cargo test

This file and tools/bench_report.py keep to the standard library.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report as br  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = os.path.join(REPO, "tools", "bench_peer_workers.py")
BERT_BASE = os.path.join(REPO, "config", "bert-base.json")
SENT_CONFIG = os.path.join(REPO, "models", "sentiment", "fp32", "config.json")
BIBLE = os.path.join(REPO, "data", "bible", "sample500.tsv")
OPUS_ROOT = os.path.join(REPO, "target", "opus-mt-shape")
OPUS_DIR = os.path.join(OPUS_ROOT, "fp32")
RACE_LEN = 32
RESULT_MARK = "@@RESULT "

VENVS = {  # name: (folder, base interpreter, requirements)
    "main": ("target/bench-venv", None, "tools/bench-requirements.txt"),
    "bergamot": ("target/bench-venv-bergamot", "python3.10",
                 "tools/bench-requirements-bergamot.txt"),
}
PEER_NAMES = {"ov_int8": ("OpenVINO", "int8 (NNCF)"), "ov_default": ("OpenVINO", "default"),
              "ort_s8": ("ONNX Runtime", "s8 (dynamic quantization)"),
              "torch_onednn": ("torch", "onednn qint8 dynamic"),
              "ct2_int8": ("CTranslate2", "int8"), "bergamot": ("Bergamot", "intgemm8bitalpha")}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Environments and processes


def find_python310():
    for p in sorted(__import__("glob").glob("/root/.pyenv/versions/3.10.*/bin/python"),
                    reverse=True) + ["python3.10"]:
        if subprocess.run(["sh", "-c", f"command -v {shlex.quote(p)}"],
                          stdout=subprocess.DEVNULL).returncode == 0:
            return p
    return None


def ensure_venv(name, install):
    """The venv's python, installing the pinned requirements when they changed; or
    (None, reason) when it cannot be had."""
    folder, base, req = VENVS[name]
    folder, req = os.path.join(REPO, folder), os.path.join(REPO, req)
    py = os.path.join(folder, "bin", "python")
    with open(req, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    marker = os.path.join(folder, f".installed-{digest}")
    if os.path.exists(marker):
        return py, None
    if not install:
        return None, f"{os.path.relpath(folder, REPO)} not installed (--no-install)"
    base = sys.executable if base is None else find_python310()
    if base is None:
        return None, "no Python 3.10 for the cp310 wheel"
    log(f"installing {os.path.relpath(req, REPO)} into {os.path.relpath(folder, REPO)}")
    ok = subprocess.run([base, "-m", "venv", folder]).returncode == 0 and subprocess.run(
        [py, "-m", "pip", "install", "-q", "-r", req]).returncode == 0
    if not ok:
        return None, f"pip install -r {os.path.relpath(req, REPO)} failed"
    open(marker, "w").close()
    return py, None


class Peers:
    """Runs peer workers; remembers which venvs are unavailable and why."""

    def __init__(self, args):
        self.args, self.pythons = args, {}

    def python(self, venv):
        if venv not in self.pythons:
            self.pythons[venv] = ensure_venv(venv, self.args.install)
        return self.pythons[venv]

    def run(self, venv, name, wargs, threads=None):
        """The worker's checked result, or {"unavailable"/"failed": reason}."""
        py, why = self.python(venv)
        if py is None:
            return {"unavailable": why}
        env = dict(os.environ)
        if threads is not None:  # explicit in each engine's API too; these cover its libraries
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                      "RAYON_NUM_THREADS"):
                env[k] = str(threads)
        arg_file = os.path.join(self.args.work_dir, f"args_{name}.json")
        with open(arg_file, "w") as f:
            json.dump(wargs, f)
        p = subprocess.run([py, WORKERS, name, arg_file], stdout=subprocess.PIPE, cwd=REPO,
                           env=env, text=True)
        res = next((json.loads(line[len(RESULT_MARK):]) for line in p.stdout.splitlines()
                    if line.startswith(RESULT_MARK)), None)
        if res is not None and "unavailable" in res:
            return res
        if p.returncode != 0 or res is None:
            return {"failed": f"worker {name} exited {p.returncode} (its log above)"}
        return br.check_peer_result(res, f"worker {name}")


def status_of(res):
    if "unavailable" in res:
        return f"unavailable: {res['unavailable']}"
    return f"failed: {res['failed']}" if "failed" in res else "ok"


def quantserve_bench(args, report, name, *bench_args):
    """Runs `quantserve bench ... --json FILE` and returns the checked document."""
    path = os.path.join(args.work_dir, f"qs_{name}.json")
    cmd = [args.quantserve_bin, "bench"] + [str(a) for a in bench_args] + [
        "--seconds", str(args.seconds), "--json", path]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    doc = br.read_quantserve_json(path)
    report["machine"]["quantserve_isa"] = doc["isa"]
    return doc, "quantserve bench " + " ".join(str(a) for a in bench_args)


def metric_value(per_s, metric):
    return 1000.0 / per_s if metric == "ms" else per_s


def quantserve_entry(doc, command, row, variant="int8", field="items_per_s"):
    v = br.quantserve_value(doc, variant, row["threads"], row["batch"], field)
    return {"status": "ok", "variant": variant, "value": metric_value(v, row["metric"]),
            "command": command}


def add_peer(row, key, res, batch=None, **details):
    """Adds peer `key`'s value at the row's threads and batch (or `batch`) to the row."""
    engine, config = PEER_NAMES[key]
    if status_of(res) != "ok":
        row["peers"].append(br.peer_entry(engine, config, status=status_of(res), **details))
        return
    v = br.peer_value(res, key, row["threads"], batch or row["batch"])
    info = {k: v2 for k, v2 in res["info"].items() if k != "ref_logits"}
    info = {k: v2 for k, v2 in info.items()  # OpenVINO: only this row's batch
            if not k.startswith("matmul_precisions_batch_") or k.endswith(f"_{row['batch']}")}
    row["peers"].append(br.peer_entry(
        engine + (f" {info['version']}" if "version" in info else ""), config,
        None if v is None else metric_value(v, row["metric"]), **dict(info, **details)))


# ---------------------------------------------------------------------------------------------
# Rows


def classification_rows(args, report, peers, model, rows, engines):
    """`rows`: report rows of one model with the same threads and seq_len; quantserve first,
    then each peer engine in turn."""
    t, seq_len = rows[0]["threads"], rows[0]["seq_len"]
    batches = [r["batch"] for r in rows]
    is_base = model != "sentiment"
    name = f"{'bert-base' if is_base else 'sentiment'}-{seq_len}"
    doc, cmd = quantserve_bench(
        args, report, name, "--model", "sentiment", "--variants", "int8", "--threads", t,
        "--batch", ",".join(map(str, batches)), "--seq-len", seq_len,
        *(["--random-init", os.path.relpath(model, REPO)] if is_base else []))
    for r in rows:
        r["quantserve"] = quantserve_entry(doc, cmd, r)
    with open(model if is_base else SENT_CONFIG) as f:
        cfg = json.load(f)
    work = os.path.join(args.work_dir, "bert-base" if is_base else "sentiment")
    os.makedirs(work, exist_ok=True)
    raw, fused, int8 = (os.path.join(work, n) for n in ("model.onnx", "fused.onnx",
                                                        "fused.int8.onnx"))
    meta_path = os.path.join(work, f"ref_{seq_len}.json")
    res = {"info": json.load(open(meta_path))} if os.path.exists(meta_path) else \
        peers.run("main", "export", {"model": "sentiment" if not is_base else model,
                                     "seq_len": seq_len, "out": raw})
    if status_of(res) != "ok":
        for r in rows:
            for e in engines:
                add_peer(r, e, res)
        return
    with open(meta_path, "w") as f:
        json.dump(res["info"], f)
    prep = {"info": {}}
    if "ort_s8" in engines and not os.path.exists(int8):
        prep = peers.run("main", "ort_prepare", {"raw": raw, "fused": fused, "int8": int8,
                                                 "heads": cfg["num_attention_heads"],
                                                 "hidden": cfg["hidden_size"]})
    ov_int8 = os.path.join(work, f"ov_int8_{seq_len}.xml")
    qprep = {"info": {}}
    if "ov_int8" in engines and not os.path.exists(ov_int8):
        qprep = peers.run("main", "ov_quantize", {"raw": raw, "out": ov_int8,
                                                  "seq_len": seq_len, "vocab": cfg["vocab_size"]})
    paths = {"ort_s8": (int8, prep), "ov_int8": (ov_int8, qprep), "ov_default": (raw, None),
             "torch_onednn": (None, None)}
    for e in engines:
        path, p = paths[e]
        if p is not None and status_of(p) != "ok":
            res_e = p
        else:
            log(f"{e}, {t} thread(s), seq_len {seq_len}, batch {batches}")
            res_e = peers.run("main", "cls", {
                "engine": e, "path": path, "model": "sentiment" if not is_base else model,
                "threads": t, "seq_len": seq_len, "batch": batches, "seconds": args.seconds,
                "ref_logits": res["info"]["ref_logits"], "ort_spin": args.ort_spin}, threads=t)
        for r in rows:
            add_peer(r, e, res_e)
    if is_base and not any(n.startswith("BERT-base rows") for n in report["notes"]):
        report["notes"].append("BERT-base rows: random weights (quantserve `--random-init "
                               "config/bert-base.json`, seed 42; peers: transformers "
                               "BertForSequenceClassification from the same config, seed 0), "
                               "the sentiment model's tokenizer. CTranslate2 is not a peer "
                               "here (the script has no BERT-encoder path for it).")


def opus_mt_rows(args, report, peers, rows):
    """quantserve vs CTranslate2 int8 on an Opus-MT-shaped model (random weights), RACE_LEN
    source tokens -> exactly RACE_LEN generated tokens, greedy; generated tokens/s."""
    t, batches = rows[0]["threads"], [r["batch"] for r in rows]
    py, why = peers.python("main")
    if py is not None and not os.path.exists(os.path.join(OPUS_DIR, "model.safetensors")):
        log(f"making the opus-mt-en-de-shaped model in {OPUS_DIR}")
        subprocess.run([py, os.path.join(REPO, "tools", "make_hf_marian.py"), "--large",
                        OPUS_DIR], check=True, cwd=REPO)
    if py is None:
        for r in rows:
            r["quantserve"]["status"] = f"not run: the Opus-MT-shaped model needs {why}"
            add_peer(r, "ct2_int8", {"unavailable": why})
        return
    doc, cmd = quantserve_bench(
        args, report, "opus-mt", "--models", os.path.relpath(os.path.dirname(OPUS_ROOT), REPO),
        "--model", os.path.basename(OPUS_ROOT), "--variants", "int8", "--threads", t,
        "--batch", ",".join(map(str, batches)), "--beam-size", 1, "--src-len", RACE_LEN,
        "--force-len", RACE_LEN)
    for r in rows:
        r["quantserve"] = quantserve_entry(doc, cmd, r, field="tokens_per_s")
    ct2 = os.path.join(args.work_dir, "ct2-opus-mt-shape-int8")
    if not os.path.exists(os.path.join(ct2, "model.bin")):
        log("converting the Opus-MT-shaped model with CTranslate2 (int8)")
        subprocess.run([py, "-m", "ctranslate2.converters.transformers", "--model", OPUS_DIR,
                        "--output_dir", ct2, "--quantization", "int8", "--force"], check=True,
                       cwd=REPO)
    res = peers.run("main", "ct2", {"path": ct2, "model_dir": OPUS_DIR, "threads": t,
                                    "batch": batches, "seconds": args.seconds}, threads=t)
    for r in rows:
        add_peer(r, "ct2_int8", res)


def bergamot_result(args, peers, cache, threads=2):
    if threads not in cache:
        log(f"Bergamot, {threads} worker(s), all 500 verses in one call")
        cache[threads] = peers.run("bergamot", "bergamot", {
            "threads": threads, "batch": [500], "seconds": args.seconds, "ssplit": args.ssplit},
            threads=1)
    return cache[threads]


def bergamot_row(args, report, peers, row, cache):
    doc, cmd = quantserve_bench(args, report, "en-pt-500", "--model", "en-pt", "--variants",
                                "int8", "--threads", row["threads"], "--batch", row["batch"])
    row["quantserve"] = quantserve_entry(doc, cmd, row)
    add_peer(row, "bergamot", bergamot_result(args, peers, cache, row["threads"]),
             workers=row["threads"], ssplit=args.ssplit)


# ---------------------------------------------------------------------------------------------
# The HTTP row: a real server, a stdlib load generator


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_verses(n):
    import csv

    with open(BIBLE, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["en"] for r in rows][:n]


def load_generate(port, texts, connections):
    """Sends each text as one POST /translate over `connections` keep-alive connections (one
    thread each); returns (sentences/s, sorted latencies in ms, the set of variants that
    answered). Any non-200 answer or empty translation raises."""
    lock, nxt, lat, errors, variants = threading.Lock(), [0], [], [], set()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not errors:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(texts):
                    return
                body = json.dumps({"q": texts[i], "source": "en", "target": "pt"})
                t0 = time.perf_counter()
                conn.request("POST", "/translate", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ms = (time.perf_counter() - t0) * 1000
                answer = json.loads(data) if resp.status == 200 else {}
                if not answer.get("translatedText"):
                    raise RuntimeError(f"POST /translate: {resp.status} {data[:200]!r}")
                with lock:
                    lat.append(ms)
                    variants.add(answer.get("variant"))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(texts) / elapsed, sorted(lat), variants


def http_row(args, report, peers, row, cache):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTSERVE_")}
    # The README's first command: the shipped configuration (int8 serving, fp32 loaded as the
    # self-check and shadow reference). A bare `serve` runs the same file, compiled in; an
    # earlier version of this script relied on that while the built-in one served fp32.
    cmd = [args.quantserve_bin, "serve", "--config", "config/quantserve.toml",
           "--http-addr", f"127.0.0.1:{port}"]
    log("$ " + " ".join(cmd) + "   (default config)")
    server_log = open(os.path.join(args.work_dir, "http-server.log"), "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"quantserve serve exited {proc.returncode} (see "
                                   f"{server_log.name})")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("quantserve serve not ready after 600 s")
            time.sleep(0.5)
        verses = read_verses(args.http_requests)
        row["workload"] = (f"HTTP server, {len(verses)} verses one per request, "
                           f"{args.http_connections} connections")
        load_generate(port, verses[:args.http_connections], args.http_connections)  # warm-up
        sps, lat, variants = load_generate(port, verses, args.http_connections)
        log(f"HTTP: {sps:.1f} sentences/s over {args.http_connections} connections, "
            f"answered by {sorted(map(str, variants))}")
        if variants != {"int8"}:
            # The row compares int8 engines: a server answering from another variant (as the
            # built-in configuration once did, fp32) must not be reported as quantserve's speed.
            raise RuntimeError(f"the default config served {sorted(map(str, variants))}, not int8")
        row["quantserve"] = {
            "status": "ok", "variant": "int8 (server default)", "value": sps,
            "command": "quantserve " + " ".join(cmd[1:]) + f" + {len(verses)} POST /translate over "
                                           f"{args.http_connections} keep-alive connections",
            "requests": len(verses), "p50_ms": round(lat[len(lat) // 2], 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server_log.close()
    add_peer(row, "bergamot", bergamot_result(args, peers, cache, row["threads"]), batch=500,
             workers=row["threads"], call="all 500 verses in one call, no HTTP")


ROW_GROUPS = ("bert-base", "minilm", "opus-mt", "bergamot", "http")


def plan_rows():
    """Issue 15's table: (group, report row) in the order they are measured."""
    rows = [("bert-base", dict(br.new_row("bert-base-8x128", "BERT-base shapes, 8 × 128 tokens",
                                          "seq/s", 2, 8, "≥ 1.2× the best", 1.2), seq_len=128)),
            ("bert-base", dict(br.new_row("bert-base-1x16", "BERT-base shapes, 1 × 16 tokens",
                                          "ms", 2, 1, "latency ≤ 0.8× the best", 1.25),
                               seq_len=16))]
    for b in (1, 8, 32):
        rows.append(("minilm", dict(br.new_row(
            f"minilm-64-b{b}", f"MiniLM (sentiment), 64 tokens, batch {b}", "seq/s", 2, b,
            "≥ 1.2× the best", 1.2), seq_len=64)))
    for b in (16, 32):
        rows.append(("opus-mt", br.new_row(
            f"opus-mt-greedy-b{b}", f"Opus-MT shape, greedy, batch {b}", "tok/s", 1, b,
            "≥ 2× the best", 2.0)))
    rows.append(("bergamot", br.new_row("bergamot-enpt-500", "Bergamot tiny en→pt, 500 verses "
                                        "in one call", "sent/s", 2, 500, "≥ 1.5× the best", 1.5)))
    rows.append(("http", br.new_row("http-500", "HTTP server, 500 verses one per request, "
                                    "16 connections", "sent/s", 2, 1,
                                    "≥ 1.2× the best (default config)", 1.2)))
    return rows


def run_all(args):
    t0 = time.time()
    report = br.new_report(args.seconds, "python3 tools/bench_peers.py " +
                           " ".join(shlex.quote(a) for a in sys.argv[1:]), args.quantserve_bin)
    peers, berg = Peers(args), {}
    plan = [(g, r) for g, r in plan_rows() if g in args.rows]
    for g, r in plan:
        report["rows"].append(r)
    cls_engines = {"bert-base": ["ov_int8", "ov_default", "ort_s8", "torch_onednn"],
                   "minilm": ["ov_int8", "ov_default", "ort_s8"]}
    for g in args.rows:
        rows = [r for gg, r in plan if gg == g]
        if g in cls_engines:
            model = BERT_BASE if g == "bert-base" else "sentiment"
            for seq_len in sorted({r["seq_len"] for r in rows}, reverse=True):
                classification_rows(args, report, peers, model,
                                    [r for r in rows if r["seq_len"] == seq_len], cls_engines[g])
        elif g == "opus-mt":
            opus_mt_rows(args, report, peers, rows)
        elif g == "bergamot":
            bergamot_row(args, report, peers, rows[0], berg)
        elif g == "http":
            http_row(args, report, peers, rows[0], berg)
    for r in report["rows"]:
        br.finish_row(r)
    if {"bert-base", "minilm"} & set(args.rows):
        report["notes"].append(
            "OpenVINO: ONNX export of the same model, static shapes per batch, "
            "INFERENCE_NUM_THREADS = threads, NUM_STREAMS 1, LATENCY hint; int8 = NNCF quantize "
            "(TRANSFORMER, 64 random-token samples); `default` = no precision hint (what it ran "
            "is in its details: inference_precision_hint, matmul kernels).")
        report["notes"].append(
            "ONNX Runtime: offline BERT fusions, quantize_dynamic QInt8 per-channel, "
            "intra_op_num_threads = threads, inter-op 1, intra-op spinning "
            f"{'on' if args.ort_spin == '1' else 'off (on: --ort-spin)'}.")
    if "http" in args.rows:
        report["notes"].append(
            "HTTP row: the Bergamot value is its all-in-one call of the Bergamot row's "
            "measurement in this run (no HTTP at all), as in issue 15's table.")
    return br.close_report(report, t0)


# ---------------------------------------------------------------------------------------------
# Self-test (no peers): the parsing and report code on a real `quantserve bench --json`


def self_test(paths):
    checks = []

    def check(cond, what):
        if not cond:
            raise AssertionError(what)
        checks.append(what)

    report = br.new_report(1.0, "self-test", "quantserve")
    for path in paths:
        doc = br.read_quantserve_json(path)
        check(doc["rows"], f"{path}: rows read")
        q = doc["rows"][0]
        for metric, field in (("seq/s", "items_per_s"), ("ms", "items_per_s"),
                              ("tok/s", "tokens_per_s")):
            if q[field] is None:
                check(doc["unit"] == "sequences", f"{path}: tokens_per_s null only for "
                                                  "classifiers")
                continue
            row = br.new_row(f"self-test-{doc['model']}-{metric}", f"{doc['model']} ({metric})",
                             metric, q["threads"], q["batch"], "≥ 1.2× the best", 1.2)
            row["quantserve"] = quantserve_entry(doc, "quantserve bench --json", row,
                                                 variant=q["variant"], field=field)
            qv = row["quantserve"]["value"]
            check(qv > 0, f"{path}: {metric} value positive")
            fast = 2.0  # the peer twice as fast (per_s), so ratio 0.5 for every metric
            for key, factor in (("ort_s8", fast), ("ov_int8", 1 / fast)):
                res = br.check_peer_result({"rows": [{
                    "engine": key, "threads": q["threads"], "batch": q["batch"],
                    "per_s": q[field] * factor}], "info": {"version": "x"}})
                add_peer(row, key, res)
            add_peer(row, "torch_onednn", {"unavailable": "no wheel (self-test)"})
            br.finish_row(row)
            check(abs(row["ratio_to_best"] - 0.5) < 1e-3, f"{path}: {metric} ratio to best 0.5")
            check(row["best_peer"].startswith("ONNX Runtime"), f"{path}: {metric} best peer")
            check(row["meets_target"] is False, f"{path}: {metric} target missed")
            report["rows"].append(row)
        for key in list(br.QS_ROW_FIELDS) + list(br.QS_FIELDS):  # a renamed field must fail
            broken = json.loads(json.dumps(doc))
            target = broken["rows"][0] if key in br.QS_ROW_FIELDS else broken
            target[key + "_renamed"] = target.pop(key)
            try:
                br.parse_quantserve_json(broken)
                check(False, f"renamed `{key}` accepted")
            except br.BenchFormatError:
                checks.append(f"renamed `{key}` rejected")
    for bad in ({"rows": [{"engine": "x", "threads": 1, "batch": 1}], "info": {}},
                {"rows": []}):
        try:
            br.check_peer_result(bad)
            check(False, f"bad peer result accepted: {bad}")
        except br.BenchFormatError:
            checks.append("bad peer result rejected")
    report = br.close_report(report, time.time())
    md = br.markdown(report)
    for needle in ("Load average", report["machine"]["cpu_model"], "unavailable: no wheel",
                   "0.50×", "ONNX Runtime x"):
        check(needle in md, f"markdown has `{needle}`")
    check(json.loads(json.dumps(report)) == report, "report JSON round-trips")
    svg = br.svg_chart(report)
    check(svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), "chart is one SVG")
    check(svg.count("<rect") == 1 + sum(1 + 2 for _ in report["rows"]),
          "chart: one bar per engine that ran (quantserve + two peers per row)")
    for key in ("schema", "started", "wall_seconds", "machine", "rows", "notes"):
        check(key in report, f"report has `{key}`")
    # Three runs of the same rows, quantserve at 0.5×, 1.5× and 0.9× its value: per-run ratios
    # 0.25 / 0.75 / 0.45 of the best peer, median 0.45; a row missing from one run stays out.
    runs = []
    for factor in (0.5, 1.5, 0.9):
        run = json.loads(json.dumps(report))
        for row in run["rows"]:
            if row["higher_is_better"]:
                row["quantserve"]["value"] *= factor
            else:
                row["quantserve"]["value"] /= factor
            br.finish_row(row)
        runs.append(run)
    runs[2]["rows"] = runs[2]["rows"][1:]
    combined = br.combine_markdown(runs)
    first = combined.splitlines()[7]
    check(first.count("|") == 9 and "0.25× / 0.75× / -" in first and "**0.50×**" in first,
          f"combine: per-run ratios and the median of the runs that have the row: {first}")
    second = combined.splitlines()[8]
    check("0.25× / 0.75× / 0.45×" in second and "**0.45×**" in second and "**no**" in second,
          f"combine: median of three, target judged on it: {second}")
    print(f"bench_peers self-test: {len(checks)} passed, 0 failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", nargs="+", metavar="BENCH_JSON",
                    help="check the parsing and report code on `quantserve bench --json` files")
    ap.add_argument("--quantserve-bin", default=os.path.join(REPO, "target/release/quantserve"))
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time/config")
    ap.add_argument("--rows", default=",".join(ROW_GROUPS),
                    help=f"row groups to run, comma-separated: {','.join(ROW_GROUPS)}")
    ap.add_argument("--http-requests", type=int, default=500)
    ap.add_argument("--http-connections", type=int, default=16)
    ap.add_argument("--ssplit", default="sentence", choices=["sentence", "paragraph"],
                    help="Bergamot sentence splitting (sentence: one verse = one sentence)")
    ap.add_argument("--ort-spin", action="store_const", const="1", default="0",
                    help="keep ORT's spin-waiting intra-op threads (its default)")
    ap.add_argument("--no-install", dest="install", action="store_false",
                    help="do not make missing venvs: report those peers unavailable")
    ap.add_argument("--work-dir", default=os.path.join(REPO, "target", "bench-peers"))
    ap.add_argument("--out", help="write the Markdown report to this file")
    ap.add_argument("--json", help="write the whole report as JSON to this file")
    ap.add_argument("--svg", help="write the report as a bar chart (SVG) to this file")
    ap.add_argument("--chart-from", metavar="REPORT_JSON",
                    help="measure nothing: draw --svg from a report written by --json")
    ap.add_argument("--combine", nargs="+", metavar="REPORT_JSON",
                    help="measure nothing: one table of several runs' reports (written by "
                         "--json), each run's ratio and the median, to --out or stdout")
    args = ap.parse_args()
    if args.combine:
        try:
            reports = []
            for path in args.combine:
                with open(path, encoding="utf-8") as f:
                    reports.append(json.load(f))
            md = br.combine_markdown(reports)
        except (OSError, ValueError, KeyError, br.BenchFormatError) as e:
            sys.exit(f"bench_peers --combine: {e}")
        print(md, end="")
        write_outputs([(args.out, md)])
        return
    if args.chart_from:
        if not args.svg:
            ap.error("--chart-from needs --svg")
        with open(args.chart_from, encoding="utf-8") as f:
            write_outputs([(args.svg, br.svg_chart(json.load(f)))])
        return
    if args.self_test:
        try:
            self_test(args.self_test)
        except (AssertionError, br.BenchFormatError) as e:
            sys.exit(f"bench_peers self-test FAILED: {e}")
        return
    args.rows = [g for g in args.rows.split(",") if g]
    unknown = set(args.rows) - set(ROW_GROUPS)
    if unknown:
        ap.error(f"unknown row groups {sorted(unknown)}")
    args.quantserve_bin = os.path.abspath(args.quantserve_bin)
    if not os.path.exists(args.quantserve_bin):
        sys.exit(f"bench_peers: {args.quantserve_bin} missing: cargo build --release")
    args.work_dir = os.path.abspath(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    report = run_all(args)
    md = br.markdown(report)
    print(md)
    write_outputs([(args.out, md), (args.json, json.dumps(report, indent=2) + "\n"),
                   (args.svg, br.svg_chart(report))])


def write_outputs(files):
    """Writes each (path, text); a `None` path (option not given) is skipped."""
    for path, text in files:
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)


if __name__ == "__main__":
    main()
