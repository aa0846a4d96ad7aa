#!/usr/bin/env python3
"""Out-of-domain check of translator variants: translate the 1,000 sentiment test sentences
(movie reviews, data/sentiment/test.tsv) en→pt with fp32 and each variant (`quantserve
translate`, the model's default search: greedy, lexical shortlist on), and report the mean
sentence chrF (sacrebleu CHRF(): char order 6, β 2 — the semantics of src/eval/chrf.rs) of each
variant's output against fp32's output.

    tools/.venv-qat/bin/python tools/qat/ood_chrf.py --variants int8,int4-g64,int4-kd,ternary-kd

Post-training int8 gives the scale (how close a near-lossless variant gets). Translations are
cached under target/qat/ood/.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys

from sacrebleu.metrics import CHRF

# Only sacrebleu is needed (no torch): `pip install sacrebleu==2.6.0` in any venv will do.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUANTSERVE = os.path.join(REPO, "target/release/quantserve")


def folder_digest(models, pair, variant):
    """What the cached translations were made from: the variant folder's SHA256SUMS (or its
    files), for a variant derived at load (no folder) the fp32 folder's. Keyed by name alone,
    a retrained folder under the same name was answered from the old folder's cache."""
    folder = os.path.join(models, pair, variant)
    if not os.path.isdir(folder):
        folder = os.path.join(models, pair, "fp32")
    h = hashlib.sha256()
    sums = os.path.join(folder, "SHA256SUMS")
    # A folder without SHA256SUMS (the fetched fp32 ones): every file's bytes, in name order.
    for name in ["SHA256SUMS"] if os.path.exists(sums) else sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:12]


def translate(models, pair, variant, texts, cache):
    path = os.path.join(cache, f"{pair}-{variant}-{folder_digest(models, pair, variant)}.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            out = f.read().split("\n")[:len(texts)]
        if len(out) == len(texts):
            return out
    src, tgt = pair.split("-")
    r = subprocess.run([QUANTSERVE, "translate", "--models", models, "--variant", variant,
                        "--from", src, "--to", tgt, "--truncate"],
                       input="\n".join(texts) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quantserve translate {variant} failed: {r.stderr}")
    out = r.stdout.rstrip("\n").split("\n")
    assert len(out) == len(texts), (len(out), len(texts))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="en-pt")
    ap.add_argument("--variants", required=True)
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    args = ap.parse_args()
    cache = os.path.join(REPO, "target/qat/ood")
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(REPO, "data/sentiment/test.tsv"), encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f]
    ref = translate(args.models, args.pair, "fp32", texts, cache)
    chrf = CHRF()
    print(f"{args.pair}, {len(texts)} sentiment test sentences, mean sentence chrF vs fp32:")
    for v in args.variants.split(","):
        hyp = translate(args.models, args.pair, v, texts, cache)
        scores = [chrf.sentence_score(h, [r]).score for h, r in zip(hyp, ref)]
        same = sum(h == r for h, r in zip(hyp, ref))
        print(f"  {v:14s} {sum(scores) / len(scores):6.2f}   identical to fp32: {same}/{len(texts)}")


if __name__ == "__main__":
    main()
