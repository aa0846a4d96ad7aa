#!/usr/bin/env python3
"""Distillation-aware QAT of the sentiment classifier (TernaryBERT recipe).

    nice -n 10 tools/.venv-qat/bin/python tools/qat/train_classifier.py \
        --variant ternary-kd --scheme ternary-row --steps 2000 --seed 1

Teacher: the fp32 classifier (`--teacher`, default models/sentiment/fp32). Student: initialised
from the teacher; its latent fp32 weights are trained with quantserve's quantizer in the forward
pass (straight-through gradient) and 8-bit per-token activations on every Linear input
(bertq.py). Loss = Σ_layers MSE(hidden states, embedding output included) + Σ_layers MSE(attention
scores before softmax) + soft cross-entropy(student logits, teacher probabilities), over real
(unpadded) tokens. Data: the training split's sentences (data/sentiment/train.tsv; the labels are
not used: the teacher's outputs are the targets), each sampled either as is or augmented (random
word dropout / adjacent swap), plus optional unlabeled English lines (`--extra-text`). The dev
split picks the checkpoint (accuracy of the fake-quantized student every `--eval-every` steps);
the test split is never read.

Resumable: state under `--work` (default target/qat/sentiment-<variant>/), saved at least every
5 minutes; rerun the same command to continue. At the end: the best latent weights are written as
a normal fp32 folder (`<work>/latent/`), `quantserve quantize` turns it into
`models/sentiment/<variant>/` (+ training.json), and the run's metadata is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bertq  # noqa: E402
import common  # noqa: E402
import qatio  # noqa: E402
import quant  # noqa: E402

REPO = common.REPO


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            rows.append((label, text))
    return rows


def augment(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) > 3:
        words = [w for w in words if rng.random() > 0.15] or words
        if len(words) > 2 and rng.random() < 0.5:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def masked_mse(a, b, mask):
    """Mean over real tokens of the squared difference (last dim summed then averaged)."""
    d = ((a - b) ** 2).mean(-1)
    return (d * mask).sum() / mask.sum()


def evaluate(model, tok, rows, labels, batch=64):
    model.eval()
    model.freeze_quant()
    exact, quant.EXACT_ACT = quant.EXACT_ACT, True
    fast, quant.FAST_SUMS = quant.FAST_SUMS, False
    correct = 0
    # Similar lengths together: less padding (padding never changes a real token's result).
    rows = sorted(rows, key=lambda r: len(r[1]))
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            chunk = rows[i:i + batch]
            ids, mask = bertq.batch_ids(tok, [t for _, t in chunk])
            pred = model(ids, mask).argmax(-1)
            correct += sum(int(labels[int(p)] == lab) for p, (lab, _) in zip(pred, chunk))
    model.unfreeze_quant()
    quant.EXACT_ACT = exact
    quant.FAST_SUMS = fast
    model.train()
    return correct / len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--variant", required=True, help="output variant name, e.g. ternary-kd")
    ap.add_argument("--scheme", help="quantserve scheme (ternary-row, int4, bcq2, ...)")
    ap.add_argument("--recipe", help="quantserve recipe TOML instead of --scheme")
    ap.add_argument("--freq-corpus", action="append", default=[],
                    help="token-frequency corpus for a recipe with embedding_tiers")
    ap.add_argument("--teacher", default=os.path.join(REPO, "models/sentiment/fp32"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--aug-prob", type=float, default=0.5,
                    help="share of training sentences seen augmented")
    ap.add_argument("--extra-text", action="append", default=[],
                    help="unlabeled English text, one sentence per line (teacher-labelled)")
    ap.add_argument("--train-embeddings", action="store_true",
                    help="also train the word embeddings (default: frozen, quantized once)")
    ap.add_argument("--max-minutes", type=float, default=55.0,
                    help="stop training (and finish with the best checkpoint) after this wall time")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--requant-every", type=int, default=1,
                    help="re-quantize the weights every N steps (BCQ is slow; 1 = every step)")
    ap.add_argument("--work", help="default target/qat/sentiment-<variant>")
    ap.add_argument("--out", help="default models/sentiment/<variant>")
    args = ap.parse_args()
    if bool(args.scheme) == bool(args.recipe):
        common.fail("give exactly one of --scheme or --recipe")
    try:
        plan = quant.Plan.from_args(args.scheme, args.recipe)
        if qatio.model_kind(args.teacher) != "bert":
            raise qatio.BadInput(f"{args.teacher} is not a BERT classifier folder")
        teacher_file = os.path.join(args.teacher, "model.safetensors")
        tensors = qatio.read_bert(args.teacher)
    except (ValueError, qatio.BadInput, FileNotFoundError, OSError) as e:
        common.fail(str(e))
    work = args.work or os.path.join(REPO, "target/qat", f"sentiment-{args.variant}")
    out = args.out or os.path.join(REPO, "models/sentiment", args.variant)
    logf = os.path.join(work, "train.log")
    os.makedirs(work, exist_ok=True)
    common.setup(args.seed, args.threads)
    quant.EXACT_ACT = False
    quant.FAST_SUMS = True  # training only: exported weights are quantized by quantserve
    tok = Tokenizer.from_file(os.path.join(args.teacher, "tokenizer.json"))
    with open(os.path.join(args.teacher, "config.json"), encoding="utf-8") as f:
        id2label = json.load(f)["id2label"]
    labels = [id2label[str(i)] for i in range(len(id2label))]
    train_file = os.path.join(REPO, "data/sentiment/train.tsv")
    dev_file = os.path.join(REPO, "data/sentiment/dev.tsv")
    train = [t for _, t in read_tsv(train_file)]
    dev = read_tsv(dev_file)
    extra = []
    for p in args.extra_text:
        with open(p, encoding="utf-8") as f:
            extra += [line.strip() for line in f if line.strip()]
    data_files = [train_file, dev_file] + list(args.extra_text) + list(args.freq_corpus)
    if plan.recipe and plan.recipe.tiers:
        if not args.freq_corpus:
            common.fail("the recipe's embedding_tiers need token frequencies: pass --freq-corpus")
        emb = next(n for n in tensors if "word_embeddings" in n)
        counts, total = quant.count_tokens(tok, args.freq_corpus, tensors[emb].shape[0])
        plan.tier_rows = quant.assign_tiers(counts, total, [c for c, _ in plan.recipe.tiers])

    config = {k: v for k, v in vars(args).items()
              if k not in ("max_minutes", "work", "out", "threads")
              and not (k == "requant_every" and v == 1)}
    config["teacher_sha256"] = qatio.sha256_file(teacher_file)
    ckpt = common.Checkpoint(work, config)
    try:
        state = ckpt.load()
    except qatio.BadInput as e:
        common.fail(str(e))

    teacher = bertq.Bert(args.teacher, tensors)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = bertq.Bert(args.teacher, tensors)
    student.plan = plan
    student.requant_every = args.requant_every
    emb_name = next(n for n in tensors if "word_embeddings" in n)
    emb_key = emb_name.replace(".", "__")
    if not args.train_embeddings:
        student.params[emb_key].requires_grad_(False)
        cached = plan.quant_dequant(emb_name, student.t[emb_name], True)
        orig = plan.quant_dequant

        def qd(name, w, embedding, _orig=orig, _cached=cached):
            return _cached if name == emb_name else _orig(name, w, embedding)
        plan.quant_dequant = qd
    decay, no_decay = [], []
    for k, p in student.params.items():
        if not p.requires_grad:
            continue
        (no_decay if (p.dim() == 1) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    total_steps = args.steps
    warm = max(1, total_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / (total_steps - warm))))
    step, best_dev, best, elapsed, curve = 0, -1.0, None, 0.0, []
    rng = random.Random(args.seed)
    queue = []
    if state:
        student.load_tensors(state["student"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best_dev, best, elapsed, curve = (state["step"], state["best_dev"], state["best"],
                                               state["elapsed"], state["curve"])
        rng.setstate(state["rng_local"])
        queue = state.get("queue", [])
        common.set_rng_state(state["rng"])
        common.log(f"resumed at step {step} (best dev {best_dev:.4f}, {elapsed / 60:.1f} min)",
                   logf)
    else:
        common.log(f"start {args.variant}: {plan.scheme.name() if plan.scheme else args.recipe}, "
                   f"{len(train)} train + {len(extra)} extra sentences", logf)
        acc0 = evaluate(student, tok, dev, labels)
        curve.append({"step": 0, "dev": acc0})
        common.log(f"step 0 (post-training quantization): dev {acc0:.4f}", logf)
        best_dev, best = acc0, student.state_tensors()

    def save():
        ckpt.save({"student": student.state_tensors(), "opt": opt.state_dict(),
                   "sched": sched.state_dict(), "step": step, "best_dev": best_dev, "best": best,
                   "elapsed": elapsed, "curve": curve, "rng": common.rng_state(),
                   "rng_local": rng.getstate(), "queue": queue})

    pool = train + extra
    t_start = time.time() - elapsed
    student.train()
    run_loss = 0.0
    while step < total_steps:
        if (time.time() - t_start) / 60 > args.max_minutes:
            common.log(f"time limit reached at step {step}", logf)
            break
        if not queue:
            # 8 batches at a time, sorted by length and shuffled: little padding.
            mega = []
            for _ in range(8 * args.batch):
                t = pool[rng.randrange(len(pool))]
                mega.append(augment(t, rng) if rng.random() < args.aug_prob else t)
            mega.sort(key=len)
            queue = [mega[i:i + args.batch] for i in range(0, len(mega), args.batch)]
            rng.shuffle(queue)
        texts = queue.pop()
        ids, mask = bertq.batch_ids(tok, texts)
        with torch.no_grad():
            t_logits, t_hid, t_sc = teacher(ids, mask, want_internals=True)
        s_logits, s_hid, s_sc = student(ids, mask, want_internals=True)
        m = mask.float()
        l_hid = sum(masked_mse(a, b, m) for a, b in zip(s_hid, t_hid))
        pair = (m[:, :, None] * m[:, None, :])[:, None]  # [B,1,T,T]
        l_att = sum((((a - b) ** 2) * pair).sum() / (pair.sum() * a.shape[1])
                    for a, b in zip(s_sc, t_sc))
        l_pred = -(F.softmax(t_logits, -1) * F.log_softmax(s_logits, -1)).sum(-1).mean()
        loss = l_hid + l_att + l_pred
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        student.tick()
        step += 1
        run_loss += loss.item()
        elapsed = time.time() - t_start
        if step % 50 == 0:
            common.log(f"step {step} loss {run_loss / 50:.4f} (hid {l_hid.item():.3f} att "
                       f"{l_att.item():.3f} pred {l_pred.item():.4f}) {elapsed / step:.2f}s/step",
                       logf)
            run_loss = 0.0
        if step % args.eval_every == 0 or step == total_steps:
            acc = evaluate(student, tok, dev, labels)
            curve.append({"step": step, "dev": acc, "minutes": round(elapsed / 60, 2)})
            if acc > best_dev:
                best_dev, best = acc, student.state_tensors()
            common.log(f"step {step}: dev {acc:.4f} (best {best_dev:.4f})", logf)
            save()
        elif ckpt.due():
            save()
    if curve[-1]["step"] != step:
        # Stopped between evaluations (time limit): the last weights are a candidate too.
        acc = evaluate(student, tok, dev, labels)
        curve.append({"step": step, "dev": acc, "minutes": round(elapsed / 60, 2)})
        if acc > best_dev:
            best_dev, best = acc, student.state_tensors()
        common.log(f"step {step} (final): dev {acc:.4f} (best {best_dev:.4f})", logf)
    save()
    wall = time.time() - t_start

    # Write the best latent weights and quantize them with quantserve.
    latent = os.path.join(work, "latent")
    meta = {
        "method": ("TernaryBERT-style distillation-aware QAT: latent fp32 weights, quantserve's "
                   "quantizer in the forward pass (STE), 8-bit per-token activations; loss = "
                   "hidden-state MSE + attention-score MSE + soft cross-entropy"),
        "model": "sentiment",
        "variant": args.variant,
        "scheme": plan.scheme.name() if plan.scheme else None,
        "recipe": open(args.recipe, encoding="utf-8").read() if args.recipe else None,
        "teacher": common.rel(teacher_file),
        "teacher_sha256": config["teacher_sha256"],
        "data": common.data_record(data_files),
        "augmentation": f"word dropout 15% + adjacent swap on {args.aug_prob:.0%} of samples",
        "freq_corpus": [common.rel(p) for p in args.freq_corpus],
        "steps": step,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "best_dev_accuracy": best_dev,
        "dev_curve": curve,
        "train_embeddings": args.train_embeddings,
        "tool_version": common.TOOL_VERSION,
        "torch_version": torch.__version__,
        "wall_time_s": round(wall, 1),
        "command": " ".join(["tools/qat/train_classifier.py"] + sys.argv[1:]),
    }
    qatio.write_bert(latent, best, args.teacher, {"quantserve.training": meta})
    tj = os.path.join(work, "training.json")
    with open(tj, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    report = common.quantize_folder(latent, out, plan.scheme.name() if plan.scheme else None,
                                    args.recipe, args.freq_corpus, tj)
    common.log(report.strip(), logf)
    common.log(f"done: {out} (best dev {best_dev:.4f}, {step} steps, {wall / 60:.1f} min)", logf)


if __name__ == "__main__":
    main()
