#!/usr/bin/env python3
"""Goldens of a trained variant for the Rust parity test, and a check against quantserve.

    tools/.venv-qat/bin/python tools/qat/make_goldens.py --model sentiment --variant ternary-kd
    tools/.venv-qat/bin/python tools/qat/make_goldens.py --model en-pt --variant int4-kd

Reads the run's latent folder (target/qat/<model>-<variant>/latent) and training.json (scheme or
recipe), runs the tool's fake-quantized forward pass (quant.py / bertq.py / marianq.py, exact
activation rounding) on 20 fixed sentences and writes tests/golden/qat/<model>-<variant>.json:

  classifier: the first 20 lines of data/sentiment/dev.tsv → token ids, logits, label;
  translators: the first 20 verses of data/bible/sample500.tsv (source column) → source ids,
      greedy output ids (full vocabulary, no shortlist, beam 1, <unk> banned, max
      ceil(2.5·len(source ids)) tokens), and the first decoder step's top-10 logits (id, value).

It also checks that the variant folder quantserve wrote holds exactly the quantized weights the
forward pass used (every stored matrix dequantized == the tool's quantize→dequantize), and
compares with quantserve's own output (`quantserve classify` probabilities / `quantserve
translate --no-shortlist` text) on the same sentences. See tests/golden/qat/README.md for the
comparison the parity test makes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors import safe_open
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bertq  # noqa: E402
import check_quantizers  # noqa: E402
import common  # noqa: E402
import marianq  # noqa: E402
import qatio  # noqa: E402
import quant  # noqa: E402

REPO = common.REPO
N = 20


def plan_from(training: dict, folder: str, kind: str, tensors: dict):
    if training.get("recipe"):
        plan = quant.Plan(recipe=quant.Recipe.parse(training["recipe"]))
        if plan.recipe.tiers:
            files = [os.path.join(REPO, p) for p in training["freq_corpus"]]
            tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            emb = "Wemb" if kind == "marian" else next(n for n in tensors if "word_emb" in n)
            counts, total = quant.count_tokens(tok, files, tensors[emb].shape[0])
            plan.tier_rows = quant.assign_tiers(counts, total, [c for c, _ in plan.recipe.tiers])
        return plan
    return quant.Plan(scheme=quant.Scheme.parse(training["scheme"]))


def to_double(model):
    """The same model, every weight (already quantized → dequantized in f32) in float64: the
    f32-vs-f64 difference of the forward pass measures how much float summation order alone
    (what differs between PyTorch and quantserve's integer kernels) moves the outputs."""
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.double()
        model._wq_cache = {k: v.detach().double() for k, v in model._wq_cache.items()
                           if isinstance(v, torch.Tensor) and isinstance(k, str)}
    quant.KERNEL_EXACT = False
    torch.set_default_dtype(torch.float64)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", required=True, choices=["sentiment", "en-pt", "pt-en"])
    ap.add_argument("--variant", required=True)
    ap.add_argument("--work", help="default target/qat/<model>-<variant>")
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--out", help="default tests/golden/qat/<model>-<variant>.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    quant.EXACT_ACT = True
    quant.KERNEL_EXACT = True  # quantized Linears and layer norms as quantserve's kernels
    work = args.work or os.path.join(REPO, "target/qat", f"{args.model}-{args.variant}")
    latent = os.path.join(work, "latent")
    variant_dir = os.path.join(args.models, args.model, args.variant)
    try:
        with open(os.path.join(work, "training.json"), encoding="utf-8") as f:
            training = json.load(f)
        kind, tensors, yml = qatio.read_model(latent)
    except (OSError, json.JSONDecodeError, qatio.BadInput) as e:
        common.fail(f"no finished run in {work}: {e}")
    plan = plan_from(training, latent, kind, tensors)

    # 1. The variant folder holds exactly what the forward pass quantizes.
    checker = check_quantizers.Checker()
    n_mat = check_quantizers.check_variant(variant_dir, latent, plan, checker,
                                           f"{args.model}/{args.variant}")
    if checker.failures:
        for m in checker.failures[:10]:
            print("  ", m)
        common.fail("the variant folder does not hold the tool's quantized weights")
    print(f"variant weights: {n_mat} matrices identical to the tool's quantizer")

    out_path = args.out or os.path.join(REPO, "tests/golden/qat", f"{args.model}-{args.variant}.json")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    vsha = qatio.sha256_file(os.path.join(variant_dir, "variant.safetensors"))
    doc = {
        "model": args.model,
        "variant": args.variant,
        "variant_sha256": vsha,
        "latent_sha256": qatio.sha256_file(
            os.path.join(latent, "model.safetensors") if kind == "bert"
            else qatio.marian_model_file(latent)),
        "scheme": training.get("scheme"),
        "recipe": training.get("recipe"),
        "generator": ("tools/qat/make_goldens.py: the tool's quantized forward with every quantized "
                      "Linear computed as quantserve's kernels (exact integer sums, same scaling "
                      "order) and sequential-sum layer norms"),
    }
    tok = Tokenizer.from_file(os.path.join(latent, "tokenizer.json"))
    if kind == "bert":
        rows = [line.rstrip("\n").split("\t", 1) for line in open(
            os.path.join(REPO, "data/sentiment/dev.tsv"), encoding="utf-8")][:N]
        model = bertq.Bert(latent, tensors)
        model.plan = plan
        model.eval()
        model.freeze_quant()
        labels = [model.cfg["id2label"][str(i)] for i in range(len(model.cfg["id2label"]))]
        cases = []
        with torch.no_grad():
            for gold, text in rows:
                ids, mask = bertq.batch_ids(tok, [text])
                lg = model(ids, mask)[0]
                cases.append({"text": text, "token_ids": ids[0].tolist(),
                              "logits": [float(v) for v in lg],
                              "label": labels[int(lg.argmax())]})
        doc["cases"] = cases
        to_double(model)
        d64 = 0.0
        with torch.no_grad():
            for c in cases:
                ids = torch.tensor([c["token_ids"]])
                lg = model(ids, torch.ones_like(ids))[0]
                d64 = max(d64, float((lg - torch.tensor(c["logits"], dtype=torch.float64))
                                     .abs().max()))
        torch.set_default_dtype(torch.float32)
        quant.KERNEL_EXACT = True
        print(f"float32 vs float64 forward: max |Δ logit| {d64:.2e}")
        doc["measured_f32_vs_f64_max_abs_logit_diff"] = d64
        # quantserve's view
        r = subprocess.run([common.QUANTSERVE, "classify", "--models", args.models,
                            "--model", args.model, "--variant", args.variant],
                           input="\n".join(t for _, t in rows) + "\n", capture_output=True,
                           text=True)
        if r.returncode != 0:
            common.fail(f"quantserve classify failed: {r.stderr}")
        same, dmax, gmax = 0, 0.0, 0.0
        for c, line in zip(cases, r.stdout.strip().split("\n")):
            label, prob, _ = line.split("\t", 2)
            same += label == c["label"]
            lg = torch.tensor(c["logits"], dtype=torch.float64)
            p = float(torch.softmax(lg, -1).max())
            dmax = max(dmax, abs(p - float(prob)))
            # Two classes: the printed top probability gives quantserve's logit gap.
            q = min(max(float(prob), 1e-4), 1 - 1e-4)
            if len(lg) == 2 and q < 0.999:
                gap_qs = math.log(q / (1 - q))
                gap = float(lg.max() - lg.min())
                gmax = max(gmax, abs(gap - gap_qs))
        print(f"quantserve classify: labels identical {same}/{N}; max |Δ top probability| "
              f"{dmax:.2e}; max |Δ logit gap| {gmax:.3f} (from its 4-decimal probabilities)")
        doc["measured_vs_quantserve"] = {"labels_identical": same, "max_abs_prob_diff": dmax,
                                         "max_abs_logit_gap_diff": gmax}
    else:
        src_lang = args.model.split("-")[0]
        texts = []
        with open(os.path.join(REPO, "data/bible/sample500.tsv"), encoding="utf-8") as f:
            head = next(f).rstrip("\n").split("\t")
            col = head.index(src_lang)
            for line in f:
                texts.append(line.rstrip("\n").split("\t")[col])
        texts = texts[:N]
        model = marianq.Marian(tensors, yml)
        model.plan = plan
        model.eval()
        model.freeze_quant()
        srcs = [marianq.source_ids(tok, t) for t in texts]
        cases = []
        for i in range(0, N, 5):
            outs, first = model.greedy(srcs[i:i + 5], want_first_logits=True)
            for j, o in enumerate(outs):
                v, ids = first[j].topk(10)
                s = srcs[i + j]
                cases.append({"source": texts[i + j], "source_ids": s, "output_ids": o,
                              "ended_with_eos": len(o) < math.ceil(2.5 * len(s)),
                              "output": tok.decode(o, skip_special_tokens=True),
                              "first_step_top10": [[int(a), float(b)] for a, b in zip(ids, v)]})
        doc["cases"] = cases
        doc["max_length_factor"] = 2.5
        to_double(model)
        d64, same64 = 0.0, 0
        for i in range(0, N, 5):
            outs, first = model.greedy(srcs[i:i + 5], want_first_logits=True)
            for j, o in enumerate(outs):
                c = cases[i + j]
                same64 += o == c["output_ids"]
                for tid, v in c["first_step_top10"]:
                    d64 = max(d64, abs(float(first[j, tid]) - v))
        torch.set_default_dtype(torch.float32)
        quant.KERNEL_EXACT = True
        print(f"float32 vs float64 forward: first-step top-10 max |Δ logit| {d64:.2e}, greedy "
              f"ids identical {same64}/{N}")
        doc["measured_f32_vs_f64"] = {"max_abs_first_step_logit_diff": d64,
                                      "greedy_identical": same64}
        r = subprocess.run([common.QUANTSERVE, "translate", "--models", args.models,
                            "--variant", args.variant, "--from", src_lang,
                            "--to", args.model.split("-")[1], "--no-shortlist",
                            "--beam-size", "1"],
                           input="\n".join(texts) + "\n", capture_output=True, text=True)
        if r.returncode != 0:
            common.fail(f"quantserve translate failed: {r.stderr}")
        qs = r.stdout.rstrip("\n").split("\n")
        same = sum(a.strip() == c["output"].strip() for a, c in zip(qs, cases))
        print(f"quantserve translate --no-shortlist: text identical {same}/{N}")
        for a, c in zip(qs, cases):
            if a.strip() != c["output"].strip():
                print(f"   ours {c['output']!r}\n   qs   {a!r}")
        doc["measured_vs_quantserve"] = {"outputs_identical": same}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
