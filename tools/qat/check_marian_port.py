#!/usr/bin/env python3
"""Checks the PyTorch Marian port (marianq.py, fp32, no quantization) against quantserve's fp32
and the independent numpy reference, BEFORE any training.

    tools/.venv-qat/bin/python tools/qat/check_marian_port.py [--pair en-pt] [--n 50]

On the first N verses of data/bible/sample500.tsv (full vocabulary, greedy):
  * greedy ids vs tools/marian_ref.py (numpy fp32): identical on >= N-1 sentences;
  * first-step logits (all 32000) vs marian_ref: max |diff| <= 1e-3;
  * output text vs `quantserve translate --no-shortlist --variant fp32`: identical on >= N-1.
Exit status 0 when all three hold.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402
import marianq  # noqa: E402

REPO = common.REPO


def bible(n, col):
    rows = []
    with open(os.path.join(REPO, "data/bible/sample500.tsv"), encoding="utf-8") as f:
        head = next(f).rstrip("\n").split("\t")
        i = head.index(col)
        for line in f:
            rows.append(line.rstrip("\n").split("\t")[i])
    return rows[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="en-pt", choices=["en-pt", "pt-en"])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--model", help="default models/<pair>/fp32")
    args = ap.parse_args()
    torch.set_num_threads(2)
    folder = args.model or os.path.join(REPO, "models", args.pair, "fp32")
    src_lang, tgt_lang = args.pair.split("-")
    texts = bible(args.n, src_lang)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    model = marianq.load(folder)
    model.eval()
    t0 = time.time()
    sources = [marianq.source_ids(tok, t) for t in texts]
    ours, first = [], []
    for i in range(0, len(sources), 10):
        o, f = model.greedy(sources[i:i + 10], want_first_logits=True)
        ours += o
        first.append(f)
    first = torch.cat(first).numpy()
    t1 = time.time()

    import marian_ref
    ref = marian_ref.MarianModel(folder)
    ref_ids, ref_first = [], []
    for s in sources:
        enc = ref.encode(np.array(s))
        cache = ref.decoder_cache(enc)
        cells = [np.zeros((1, ref.dim), np.float32) for _ in range(ref.dec_depth)]
        logits = ref.decode_step(None, 0, cells, cache)
        ref_first.append(np.asarray(logits, np.float32).reshape(-1))
        ref_ids.append(list(ref.greedy(s)["output_ids"]))
    ref_first = np.stack(ref_first)
    t2 = time.time()
    same_ref = sum(a == b for a, b in zip(ours, ref_ids))
    dlog = float(np.abs(first - ref_first).max())

    r = subprocess.run([common.QUANTSERVE, "translate", "--models", os.path.dirname(
        os.path.dirname(folder)) if args.model else os.path.join(REPO, "models"),
        "--variant", "fp32", "--from", src_lang, "--to", tgt_lang, "--no-shortlist",
        "--beam-size", "1"], input="\n".join(texts) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quantserve translate failed: {r.stderr}")
    qs = r.stdout.rstrip("\n").split("\n")
    ours_text = [tok.decode(o, skip_special_tokens=True) for o in ours]
    same_qs = sum(a.strip() == b.strip() for a, b in zip(ours_text, qs))
    print(f"{args.pair}: greedy ids identical to marian_ref on {same_ref}/{len(texts)}; "
          f"first-step logits max |diff| {dlog:.2e}; text identical to quantserve fp32 "
          f"(--no-shortlist) on {same_qs}/{len(texts)}  (torch {t1 - t0:.0f}s, numpy "
          f"{t2 - t1:.0f}s)")
    for i, (a, b) in enumerate(zip(ours_text, qs)):
        if a.strip() != b.strip():
            print(f"  #{i}: ours {a!r}\n       qs   {b!r}")
    ok = same_ref >= len(texts) - 1 and dlog <= 1e-3 and same_qs >= len(texts) - 1
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
