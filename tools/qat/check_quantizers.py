#!/usr/bin/env python3
"""Proves that tools/qat/quant.py quantizes exactly as `quantserve quantize`.

For each model folder and each scheme (and recipe), runs

    quantserve quantize --model MODEL --scheme S --out target/qat/check/<model>-<S>

reads the written `variant.safetensors` (int8 codes + `:scale`; bit-packed low-bit rows as in
src/quant/lowbit.rs `pack_rows`, their format from the metadata `quantserve.lowbit.<name>`;
frequency tiers `name#tier<t>` + `:rows`), quantizes the same f32 weights with quant.py and
requires identical codes, bit-identical scales (0 ulp), identical tier rows, and the untouched
tensors bit-identical to the source.

    tools/.venv-qat/bin/python tools/qat/check_quantizers.py [--model DIR ...] [--scheme S ...]
        [--recipe FILE ...] [--freq-corpus FILE ...] [--quantserve PATH]

Exit status 0 only if everything matches. Prints one line per (model, scheme).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qatio  # noqa: E402
import quant  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMES = ["int8", "int4", "int6", "int4-g64", "int4-g128", "int6-g64", "ternary", "ternary-row",
           "bcq1", "bcq2", "bcq3", "bcq4"]


def format_of(desc: str):
    """quantserve.lowbit descriptor `<format>/<cols>` → (Scheme-like, code bits, planes, cols)."""
    fmt, cols = desc.rsplit("/", 1)
    parts = fmt.split(":")
    if parts[0] == "uniform":
        bits, group = int(parts[1]), int(parts[2])
        name = f"int{bits}" + (f"-g{group}" if group else "")
        return quant.Scheme.parse(name), bits, 1, int(cols)
    if parts[0] == "ternary":
        return quant.Scheme("ternary", 2, per_row=True), 2, 1, int(cols)
    planes = int(parts[1])
    return quant.Scheme.parse(f"bcq{planes}"), 1, planes, int(cols)


def unpack_rows(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Codes packed LSB-first, each row starting on a byte → unsigned values [rows, n]."""
    rows = packed.shape[0]
    bitarr = np.unpackbits(packed.reshape(rows, -1), axis=1, bitorder="little")[:, :n * bits]
    weights = (1 << np.arange(bits)).astype(np.int64)
    return (bitarr.reshape(rows, n, bits).astype(np.int64) * weights).sum(-1)


def signed(u: np.ndarray, scheme: quant.Scheme) -> np.ndarray:
    if scheme.kind == "bcq":
        return np.where(u != 0, 1, -1)
    if scheme.kind == "ternary":
        return u - 1
    return u - (1 << (scheme.bits - 1))


class Checker:
    def __init__(self):
        self.failures = []

    def fail(self, msg):
        self.failures.append(msg)

    def compare(self, where, codes_rust, params_rust, codes_py, params_py):
        codes_py = codes_py.numpy().astype(np.int64)
        params_py = params_py.numpy().astype(np.float32)
        if codes_rust.shape != codes_py.shape:
            self.fail(f"{where}: code shape {codes_rust.shape} vs {codes_py.shape}")
            return
        bad = int((codes_rust != codes_py).sum())
        if bad:
            self.fail(f"{where}: {bad} of {codes_py.size} codes differ")
        pr = params_rust.reshape(params_py.shape).astype(np.float32)
        ulp = np.abs(pr.view(np.int32).astype(np.int64) - params_py.view(np.int32).astype(np.int64))
        if ulp.max(initial=0) != 0:
            self.fail(f"{where}: scales differ by up to {ulp.max()} ulp "
                      f"({int((ulp > 0).sum())} of {ulp.size})")


def stored_matrix(f, meta, name, rows, cols):
    """(scheme, signed codes [rows, planes*cols], params) of the stored matrix `name`."""
    codes = f.get_tensor(name)
    scale = f.get_tensor(name + ":scale")
    key = "quantserve.lowbit." + name
    if key in meta:
        scheme, bits, planes, c = format_of(meta[key])
        assert c == cols, (name, c, cols)
        u = unpack_rows(codes, bits, planes * cols)
        return scheme, signed(u, scheme), scale.reshape(rows, -1)
    assert codes.dtype == np.int8, (name, codes.dtype)
    return quant.Scheme.parse("int8"), codes.astype(np.int64), scale.reshape(rows, 1)


def check_variant(variant_dir, src_dir, plan: quant.Plan, checker: Checker, label: str):
    kind, tensors, _ = qatio.read_model(src_dir)
    path = os.path.join(variant_dir, "variant.safetensors")
    n_checked = 0
    with safe_open(path, "np") as f:
        meta = f.metadata()
        keys = set(f.keys())
        for name, w in tensors.items():
            shape = list(w.shape)
            if kind == "marian" and name.endswith("_QuantMultA") and name not in keys:
                continue
            if not qatio.is_quantized_matrix(kind, name, shape):
                if name not in keys:
                    checker.fail(f"{label}: {name} missing")
                    continue
                got = f.get_tensor(name)
                if got.dtype != np.float32 or not np.array_equal(
                        got.reshape(-1).view(np.int32), w.numpy().reshape(-1).view(np.int32)):
                    checker.fail(f"{label}: fp32 tensor {name} differs from the source")
                continue
            rows, cols = shape
            emb = qatio.is_embedding(kind, name)
            tkey = "quantserve.tiers." + name
            if plan.tiered(name):
                if tkey not in meta:
                    checker.fail(f"{label}: {name} is not tiered in the variant")
                    continue
                schemes = plan.tier_schemes(name)
                nonempty = [(ids, s) for ids, s in zip(plan.tier_rows, schemes) if ids]
                for t, (ids, s) in enumerate(nonempty):
                    tname = f"{name}#tier{t}"
                    got_ids = f.get_tensor(tname + ":rows").astype(np.int64)
                    if not np.array_equal(got_ids, np.array(ids, dtype=np.int64)):
                        checker.fail(f"{label}: {tname} rows differ")
                        continue
                    st, cr, pr = stored_matrix(f, meta, tname, len(ids), cols)
                    if st.name().replace("ternary-row", "ternary") != s.name().replace(
                            "ternary-row", "ternary"):
                        checker.fail(f"{label}: {tname} stored as {st.name()}, expected {s.name()}")
                    cp, pp = quant.quantize(w[torch.tensor(ids)], s, True)
                    checker.compare(f"{label}: {tname}", cr, pr, cp, pp)
                    n_checked += 1
                continue
            scheme = plan.scheme_for(name)
            if scheme.kind == "fp32":
                continue
            st, cr, pr = stored_matrix(f, meta, name, rows, cols)
            cp, pp = quant.quantize(w, scheme, emb)
            checker.compare(f"{label}: {name}", cr, pr, cp, pp)
            n_checked += 1
    return n_checked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", action="append",
                    help="model folders (default: models/sentiment/fp32, models/en-pt/fp32)")
    ap.add_argument("--scheme", action="append", help=f"schemes (default: {' '.join(SCHEMES)})")
    ap.add_argument("--recipe", action="append",
                    help="recipes (default: every config/recipes/*.toml)")
    ap.add_argument("--freq-corpus", action="append",
                    help="frequency corpus for tiered recipes (default: the model's own data)")
    ap.add_argument("--quantserve", default=os.path.join(REPO, "target/release/quantserve"))
    ap.add_argument("--work", default=os.path.join(REPO, "target/qat/check"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    models = args.model or [os.path.join(REPO, "models/sentiment/fp32"),
                            os.path.join(REPO, "models/en-pt/fp32")]
    schemes = args.scheme or SCHEMES
    recipes = args.recipe if args.recipe is not None else sorted(
        os.path.join(REPO, "config/recipes", f) for f in os.listdir(
            os.path.join(REPO, "config/recipes")) if f.endswith(".toml"))
    if not os.path.exists(args.quantserve):
        sys.exit(f"{args.quantserve} not found: cargo build --release first")
    checker = Checker()
    for model in models:
        kind = qatio.model_kind(model)
        freq = args.freq_corpus or (
            [os.path.join(REPO, "data/corpus/sentiment-train.txt")] if kind == "bert" else
            [os.path.join(REPO, "data/corpus/bible-en.txt"),
             os.path.join(REPO, "data/corpus/bible-pt.txt")])
        tag = os.path.basename(os.path.dirname(os.path.abspath(model))) + "-" + os.path.basename(
            os.path.abspath(model))
        jobs = [(s, quant.Plan.from_args(s, None), ["--scheme", s]) for s in schemes]
        for r in recipes:
            plan = quant.Plan.from_args(None, r)
            extra = ["--recipe", r]
            if plan.recipe.tiers:
                for fc in freq:
                    extra += ["--freq-corpus", fc]
            jobs.append((os.path.basename(r)[:-5], plan, extra))
        for label, plan, extra in jobs:
            out = os.path.join(args.work, f"{tag}-{label}")
            t0 = time.time()
            r = subprocess.run([args.quantserve, "quantize", "--model", model, "--out", out,
                                *extra], capture_output=True, text=True)
            if r.returncode != 0:
                checker.fail(f"{tag} {label}: quantserve quantize failed: {r.stderr.strip()}")
                print(f"FAIL {tag} {label}: quantize failed", flush=True)
                continue
            t1 = time.time()
            if plan.recipe and plan.recipe.tiers:
                _, tensors, _ = qatio.read_model(model)
                emb = "Wemb" if kind == "marian" else next(
                    n for n in tensors if "word_embeddings" in n)
                tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
                counts, total = quant.count_tokens(tok, freq, tensors[emb].shape[0])
                plan.tier_rows = quant.assign_tiers(counts, total, [c for c, _ in plan.recipe.tiers])
            before = len(checker.failures)
            n = check_variant(out, model, plan, checker, f"{tag} {label}")
            status = "ok  " if len(checker.failures) == before else "FAIL"
            print(f"{status} {tag:22s} {label:10s} {n:3d} matrices identical "
                  f"(quantize {t1 - t0:.1f}s, python {time.time() - t1:.1f}s)"
                  if status == "ok  " else f"{status} {tag} {label}", flush=True)
            for msg in checker.failures[before:before + 10]:
                print("   ", msg)
    if checker.failures:
        print(f"{len(checker.failures)} mismatches")
        sys.exit(1)
    print("all codes identical, all scales 0 ulp")


if __name__ == "__main__":
    main()
