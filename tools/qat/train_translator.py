#!/usr/bin/env python3
"""Distillation-aware QAT of a Bergamot tiny Marian student (en-pt or pt-en).

    nice -n 10 tools/.venv-qat/bin/python tools/qat/train_translator.py \
        --pair en-pt --variant int4-kd --scheme int4-g64 --steps 400 --seed 1

Teacher: the fp32 model (`models/<pair>/fp32`, as quantserve runs it). Student: initialised from
it; latent fp32 weights trained with quantserve's quantizer in the forward pass (STE) and 8-bit
per-token activations on every Linear input, output layer included (marianq.py). Full-vocabulary
softmax (no shortlist in training).

Distillation (Kim & Rush): sequence-level — the targets are the teacher's greedy translations of
monolingual source text (`quantserve translate --variant fp32 --no-shortlist`, re-tokenized);
word-level — at every target position the teacher's top-K logits (K=16, teacher-forced on the same
target) give a soft distribution the student matches (soft cross-entropy over those K ids,
renormalized). loss = CE(teacher greedy ids) + `--kd-weight` · soft CE.

Source text: data/corpus/bible-<src>.txt (2,000 verses) then target/qat/data/bible-<src>-extra.txt
(tools/qat/make_qat_corpus.py: every other Bible verse not in the evaluation sample). The
500-verse sample is never read. The teacher outputs are cached once per pair under
target/qat/teacher-<pair>/ (translations up front; top-K logits as batches first use them) and
shared by every variant. The last `--heldout` cached sentences are never trained on: they pick
the checkpoint (teacher-forced KD loss of the fake-quantized student).

Resumable (state under target/qat/<pair>-<variant>/, saved at least every 5 minutes); rerun the
same command. At the end the best latent weights are written as an fp32 Marian folder
(`<work>/latent/`), quantized with `quantserve quantize` into models/<pair>/<variant>/ (+
training.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import marianq  # noqa: E402
import qatio  # noqa: E402
import quant  # noqa: E402

REPO = common.REPO
TOPK = 16


class TeacherCache:
    """Teacher greedy targets for the first N source lines, and top-K logits filled lazily."""

    def __init__(self, pair, teacher_dir, sources_files, n, models_root):
        self.dir = os.path.join(REPO, "target/qat", f"teacher-{pair}")
        os.makedirs(self.dir, exist_ok=True)
        self.meta_path = os.path.join(self.dir, "targets.pt")
        self.topk_path = os.path.join(self.dir, "topk.pt")
        src, tgt = pair.split("-")
        self.tok = Tokenizer.from_file(os.path.join(teacher_dir, "tokenizer.json"))
        lines = []
        for p in sources_files:
            with open(p, encoding="utf-8") as f:
                lines += [line.strip() for line in f if line.strip()]
        lines = lines[:n]
        if os.path.exists(self.meta_path):
            try:
                m = torch.load(self.meta_path, weights_only=False)
            except Exception as e:  # noqa: BLE001
                raise qatio.BadInput(f"teacher cache {self.meta_path} is corrupt ({e}); "
                                     "delete it") from e
            if m["teacher_sha256"] != qatio.sha256_file(qatio.marian_model_file(teacher_dir)):
                raise qatio.BadInput(f"teacher cache {self.dir} was made by another teacher; "
                                     "delete it")
            if m["sources"][:len(lines)] != lines[:len(m["sources"])] or len(m["sources"]) < n:
                raise qatio.BadInput(f"teacher cache {self.dir} holds other or fewer sentences "
                                     f"({len(m['sources'])}); delete it or use --sentences "
                                     f"{len(m['sources'])}")
            self.sources, self.targets = m["sources"][:n], m["targets"][:n]
        else:
            t0 = time.time()
            r = subprocess.run([common.QUANTSERVE, "translate", "--threads", "1",
                                "--models", models_root,
                                "--variant", "fp32", "--from", src, "--to", tgt,
                                "--no-shortlist", "--beam-size", "1"],
                               input="\n".join(lines) + "\n", capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"teacher translation failed: {r.stderr}")
            outs = r.stdout.rstrip("\n").split("\n")
            assert len(outs) == len(lines), (len(outs), len(lines))
            self.sources = lines
            self.targets = [self.tok.encode(o, add_special_tokens=False).ids + [marianq.EOS]
                            for o in outs]
            torch.save({"sources": lines, "targets": self.targets,
                        "teacher_sha256": qatio.sha256_file(qatio.marian_model_file(teacher_dir)),
                        "source_files": common.data_record(sources_files),
                        "seconds": time.time() - t0}, self.meta_path)
        self.src_ids = [marianq.source_ids(self.tok, s) for s in self.sources]
        self.topk = torch.load(self.topk_path, weights_only=False) if os.path.exists(
            self.topk_path) else {}
        self.dirty = False

    def ensure_topk(self, teacher, idx):
        missing = [i for i in idx if i not in self.topk]
        if not missing:
            return
        src, pad, tin, tout, tmask = make_batch([self.src_ids[i] for i in missing],
                                                [self.targets[i] for i in missing])
        with torch.no_grad():
            lg = teacher.forward_teacher_forced(src, pad, tin)
            v, ids = lg.topk(TOPK, dim=-1)
        for j, i in enumerate(missing):
            n = len(self.targets[i])
            self.topk[i] = (ids[j, :n].to(torch.int32).clone(), v[j, :n].to(torch.float16).clone())
        self.dirty = True

    def save(self):
        if self.dirty:
            tmp = self.topk_path + ".partial"
            torch.save(self.topk, tmp)
            os.replace(tmp, self.topk_path)
            self.dirty = False


def make_batch(sources, targets):
    B = len(sources)
    S = max(len(s) for s in sources)
    T = max(len(t) for t in targets)
    src = torch.zeros(B, S, dtype=torch.long)
    pad = torch.ones(B, S, dtype=torch.bool)
    tin = torch.full((B, T), marianq.EOS, dtype=torch.long)
    tout = torch.zeros(B, T, dtype=torch.long)
    tmask = torch.zeros(B, T)
    for i, (s, t) in enumerate(zip(sources, targets)):
        src[i, :len(s)] = torch.tensor(s)
        pad[i, :len(s)] = False
        tin[i, 0] = -1
        tin[i, 1:len(t)] = torch.tensor(t[:-1])
        tout[i, :len(t)] = torch.tensor(t)
        tmask[i, :len(t)] = 1
    return src, pad, tin, tout, tmask


def losses(model, cache, idx, kd_weight):
    src, pad, tin, tout, tmask = make_batch([cache.src_ids[i] for i in idx],
                                            [cache.targets[i] for i in idx])
    lg = model.forward_teacher_forced(src, pad, tin)
    logp = F.log_softmax(lg, -1)
    ce = -(logp.gather(-1, tout[..., None])[..., 0] * tmask).sum() / tmask.sum()
    B, T = tout.shape
    kid = torch.zeros(B, T, TOPK, dtype=torch.long)
    kv = torch.full((B, T, TOPK), -1e4)
    for j, i in enumerate(idx):
        ids, v = cache.topk[i]
        kid[j, :len(ids)] = ids.long()
        kv[j, :len(ids)] = v.float()
    pt = F.softmax(kv, -1)
    kd = -((pt * logp.gather(-1, kid)).sum(-1) * tmask).sum() / tmask.sum()
    acc = ((lg.argmax(-1) == tout).float() * tmask).sum() / tmask.sum()
    return ce + kd_weight * kd, ce, kd, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--pair", default="en-pt", choices=["en-pt", "pt-en"])
    ap.add_argument("--variant", required=True)
    ap.add_argument("--scheme")
    ap.add_argument("--recipe")
    ap.add_argument("--freq-corpus", action="append", default=[])
    ap.add_argument("--teacher", help="default models/<pair>/fp32")
    ap.add_argument("--init", help="start the student from these latent fp32 weights (a previous "
                    "run's <work>/latent folder) instead of the teacher: a second stage with a "
                    "fresh learning-rate schedule")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--kd-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--requant-every", type=int, default=1,
                    help="re-quantize the weights every N steps (BCQ is slow; 1 = every step)")
    ap.add_argument("--sentences", type=int, default=3000,
                    help="source sentences whose teacher outputs are cached (the training pool)")
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--max-minutes", type=float, default=55.0)
    ap.add_argument("--work")
    ap.add_argument("--out")
    args = ap.parse_args()
    if bool(args.scheme) == bool(args.recipe):
        common.fail("give exactly one of --scheme or --recipe")
    src_lang, tgt_lang = args.pair.split("-")
    teacher_dir = args.teacher or os.path.join(REPO, "models", args.pair, "fp32")
    try:
        plan = quant.Plan.from_args(args.scheme, args.recipe)
        if qatio.model_kind(teacher_dir) != "marian":
            raise qatio.BadInput(f"{teacher_dir} is not a Bergamot Marian folder")
        teacher_file = qatio.marian_model_file(teacher_dir)
        tensors, yml, _ = qatio.read_marian_bin(teacher_file)
        init_file = qatio.marian_model_file(args.init) if args.init else None
        if init_file and os.path.basename(init_file) != os.path.basename(teacher_file):
            # en-pt and pt-en have the same shapes: the file name is what tells them apart.
            raise qatio.BadInput(f"{args.init} holds {os.path.basename(init_file)}, not this "
                                 f"model's {os.path.basename(teacher_file)}")
        init_tensors = qatio.read_marian_bin(init_file)[0] if init_file else tensors
        missing = [k for k in tensors if "QuantMult" not in k and k not in init_tensors]
        if missing:
            raise qatio.BadInput(f"{args.init} lacks {len(missing)} of the teacher's weights "
                                 f"(e.g. {missing[0]}): not a latent folder of this model")
    except (ValueError, qatio.BadInput, FileNotFoundError, OSError) as e:
        common.fail(str(e))
    models_root = os.path.dirname(os.path.dirname(os.path.abspath(teacher_dir)))
    work = args.work or os.path.join(REPO, "target/qat", f"{args.pair}-{args.variant}")
    out = args.out or os.path.join(REPO, "models", args.pair, args.variant)
    logf = os.path.join(work, "train.log")
    os.makedirs(work, exist_ok=True)
    common.setup(args.seed, args.threads)
    quant.EXACT_ACT = False
    quant.FAST_SUMS = True  # training only: exported weights are quantized by quantserve
    source_files = [os.path.join(REPO, f"data/corpus/bible-{src_lang}.txt"),
                    os.path.join(REPO, f"target/qat/data/bible-{src_lang}-extra.txt")]
    for p in source_files:
        if not os.path.exists(p):
            common.fail(f"{p} is missing (tools/qat/make_qat_corpus.py makes the extra text)")
    tok = Tokenizer.from_file(os.path.join(teacher_dir, "tokenizer.json"))
    if plan.recipe and plan.recipe.tiers:
        if not args.freq_corpus:
            common.fail("the recipe's embedding_tiers need token frequencies: pass --freq-corpus")
        counts, total = quant.count_tokens(tok, args.freq_corpus, tensors["Wemb"].shape[0])
        plan.tier_rows = quant.assign_tiers(counts, total, [c for c, _ in plan.recipe.tiers])

    config = {k: v for k, v in vars(args).items()
              if k not in ("max_minutes", "work", "out", "threads")
              and not (k == "requant_every" and v == 1)}
    config["teacher_sha256"] = qatio.sha256_file(teacher_file)
    if init_file:
        config["init_sha256"] = qatio.sha256_file(init_file)
    ckpt = common.Checkpoint(work, config)
    try:
        state = ckpt.load()
        cache = TeacherCache(args.pair, teacher_dir, source_files, args.sentences, models_root)
    except qatio.BadInput as e:
        common.fail(str(e))
    teacher = marianq.Marian(tensors, yml)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = marianq.Marian(init_tensors, yml)
    student.plan = plan
    student.requant_every = args.requant_every
    n = len(cache.sources)
    heldout = list(range(n - args.heldout, n))
    train_idx = [i for i in range(n - args.heldout) if 1 < len(cache.targets[i]) <= 200]

    decay = [p for k, p in student.params.items() if p.dim() == 2]
    no_decay = [p for k, p in student.params.items() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (args.steps - s) / (args.steps - warm))))
    rng = random.Random(args.seed)
    step, best_val, best, elapsed, curve, queue = 0, float("inf"), None, 0.0, [], []

    def validate():
        student.eval()
        student.freeze_quant()
        exact, quant.EXACT_ACT = quant.EXACT_ACT, True
        fast, quant.FAST_SUMS = quant.FAST_SUMS, False
        tot = [0.0, 0.0, 0.0]
        with torch.no_grad():
            for i in range(0, len(heldout), 16):
                idx = heldout[i:i + 16]
                cache.ensure_topk(teacher, idx)
                _, ce, kd, acc = losses(student, cache, idx, args.kd_weight)
                for j, v in enumerate((ce, kd, acc)):
                    tot[j] += v.item() * len(idx)
        quant.EXACT_ACT = exact
        quant.FAST_SUMS = fast
        student.unfreeze_quant()
        student.train()
        return [t / len(heldout) for t in tot]

    if state:
        student.load_tensors(state["student"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best_val, best, elapsed, curve, queue = (
            state["step"], state["best_val"], state["best"], state["elapsed"], state["curve"],
            state["queue"])
        rng.setstate(state["rng_local"])
        common.set_rng_state(state["rng"])
        common.log(f"resumed at step {step} (best held-out KD {best_val:.4f})", logf)
    else:
        common.log(f"start {args.pair} {args.variant}: "
                   f"{plan.scheme.name() if plan.scheme else args.recipe}; {len(train_idx)} "
                   f"training sentences, {len(heldout)} held out", logf)
        ce, kd, acc = validate()
        curve.append({"step": 0, "heldout_ce": ce, "heldout_kd": kd, "heldout_acc": acc})
        common.log(f"step 0 (post-training quantization): held-out ce {ce:.4f} kd {kd:.4f} "
                   f"token acc {acc:.4f}", logf)
        best_val, best = kd, student.state_tensors()

    def save():
        cache.save()
        ckpt.save({"student": student.state_tensors(), "opt": opt.state_dict(),
                   "sched": sched.state_dict(), "step": step, "best_val": best_val,
                   "best": best, "elapsed": elapsed, "curve": curve, "queue": queue,
                   "rng": common.rng_state(), "rng_local": rng.getstate()})

    t_start = time.time() - elapsed
    student.train()
    run = [0.0, 0.0, 0.0]
    while step < args.steps:
        if (time.time() - t_start) / 60 > args.max_minutes:
            common.log(f"time limit reached at step {step}", logf)
            break
        if not queue:
            mega = rng.sample(train_idx, min(len(train_idx), 8 * args.batch))
            mega.sort(key=lambda i: len(cache.src_ids[i]) + len(cache.targets[i]))
            queue = [mega[i:i + args.batch] for i in range(0, len(mega), args.batch)]
            rng.shuffle(queue)
        idx = queue.pop()
        cache.ensure_topk(teacher, idx)
        loss, ce, kd, acc = losses(student, cache, idx, args.kd_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        student.tick()
        step += 1
        elapsed = time.time() - t_start
        for j, v in enumerate((ce, kd, acc)):
            run[j] += v.item()
        if step % 10 == 0:
            common.log(f"step {step} ce {run[0] / 10:.4f} kd {run[1] / 10:.4f} acc "
                       f"{run[2] / 10:.4f} ({elapsed / step:.1f}s/step)", logf)
            run = [0.0, 0.0, 0.0]
        if step % args.eval_every == 0 or step == args.steps:
            ce, kd, acc = validate()
            curve.append({"step": step, "heldout_ce": ce, "heldout_kd": kd, "heldout_acc": acc,
                          "minutes": round(elapsed / 60, 2)})
            if kd < best_val:
                best_val, best = kd, student.state_tensors()
            common.log(f"step {step}: held-out ce {ce:.4f} kd {kd:.4f} token acc {acc:.4f} "
                       f"(best kd {best_val:.4f})", logf)
            save()
        elif ckpt.due():
            save()
    if curve[-1]["step"] != step:
        # Stopped between evaluations (time limit): the last weights are a candidate too.
        ce, kd, acc = validate()
        curve.append({"step": step, "heldout_ce": ce, "heldout_kd": kd, "heldout_acc": acc,
                      "minutes": round(elapsed / 60, 2)})
        if kd < best_val:
            best_val, best = kd, student.state_tensors()
        common.log(f"step {step} (final): held-out ce {ce:.4f} kd {kd:.4f} token acc {acc:.4f} "
                   f"(best kd {best_val:.4f})", logf)
    save()
    wall = time.time() - t_start

    latent = os.path.join(work, "latent")
    meta = {
        "method": ("distillation-aware QAT: latent fp32 weights, quantserve's quantizer in the "
                   "forward pass (STE), 8-bit per-token activations on every Linear input; "
                   "sequence-level KD (teacher greedy targets) + word-level KD (teacher top-16 "
                   "logits), full-vocabulary softmax"),
        "model": args.pair,
        "variant": args.variant,
        "scheme": plan.scheme.name() if plan.scheme else None,
        "recipe": open(args.recipe, encoding="utf-8").read() if args.recipe else None,
        "teacher": common.rel(teacher_file),
        "teacher_sha256": config["teacher_sha256"],
        "init": ({"file": common.rel(init_file), "sha256": config["init_sha256"]}
                 if init_file else None),
        "data": common.data_record(source_files + list(args.freq_corpus)),
        "teacher_cache_sentences": n,
        "freq_corpus": [common.rel(p) for p in args.freq_corpus],
        "steps": step,
        "batch": args.batch,
        "lr": args.lr,
        "kd_weight": args.kd_weight,
        "seed": args.seed,
        "best_heldout_kd": best_val,
        "curve": curve,
        "tool_version": common.TOOL_VERSION,
        "torch_version": torch.__version__,
        "wall_time_s": round(wall, 1),
        "command": " ".join(["tools/qat/train_translator.py"] + sys.argv[1:]),
    }
    qatio.write_marian(latent, best, yml, teacher_dir,
                       {"layout": "matrices [out, in] row-major, header shape [out, in]",
                        "training": meta})
    tj = os.path.join(work, "training.json")
    with open(tj, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    report = common.quantize_folder(latent, out, plan.scheme.name() if plan.scheme else None,
                                    args.recipe, args.freq_corpus, tj)
    common.log(report.strip(), logf)
    common.log(f"done: {out} ({step} steps, {wall / 60:.1f} min)", logf)


if __name__ == "__main__":
    main()
