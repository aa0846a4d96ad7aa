#!/usr/bin/env python3
"""Write the classifier goldens used by quantserve's Rust tests (offline tool).

Outputs
-------
tests/golden/classifier_sentiment.json
    reference outputs of the fine-tuned sentiment model ``models/sentiment/fp32``
    (fp16 weights upcast to fp32, fp32 compute) for the first 50 sentences of
    ``data/sentiment/test.tsv``.
tests/fixtures/bert-random/{config.json,model.safetensors,tokenizer.json}
    a small randomly initialised ``BertForSequenceClassification`` whose config
    differs from the classifier's in every dimension (hidden 64, 3 layers,
    4 heads, intermediate 160, hidden_act gelu_new (tanh approximation),
    max_position_embeddings 64, layer_norm_eps 1e-7, 3 labels a/b/c), fp32
    weights, same vocabulary/tokenizer.json as the classifier.  Weights are
    N(0, 0.2); LayerNorm gains 1 + N(0, 0.1), all biases and LayerNorm shifts
    N(0, 0.1), so that every parameter matters.  torch.manual_seed(20201116).
tests/golden/classifier_random.json
    its reference outputs for the same 50 sentences (token ids truncated to
    max_position_embeddings = 64, keeping the final [SEP], if longer).

Golden JSON schema::

    {"description": str, "model": str (dir relative to the repo),
     "transformers": str, "torch": str, "labels": [str] (index = class id),
     "cases": [{"text": str, "input_ids": [int], "logits": [float], "label": str}]}

``input_ids`` come from the ``tokenizers`` package loading the committed
``tokenizer.json`` (which has padding and truncation switched off): [CLS] ... [SEP],
no padding.  They are cross-checked against transformers' pure-Python
``BertTokenizer`` (vocab from the same file, do_lower_case=True).  The model
is run one sentence at a time (batch 1, no padding) with attention_mask all 1
and token_type_ids all 0, ``model.eval()``, eager attention, fp32.

It also runs the whole test split through the shipped sentiment model (sentences
grouped by length, so there is no padding) and prints the accuracy, which should
equal the one in models/sentiment/fp32/README.md.

Usage (venv as documented in tools/finetune_sentiment.py)::

    tools/.venv-torch/bin/python tools/goldens_classifier.py
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared 2-core machine

import torch
import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENT_DIR = "models/sentiment/fp32"
RAND_DIR = "tests/fixtures/bert-random"
TEST_TSV = "data/sentiment/test.tsv"
N_CASES = 50
SEED = 20201116

RANDOM_CONFIG = dict(
    vocab_size=30522,
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=160,
    hidden_act="gelu_new",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=64,
    type_vocab_size=2,
    initializer_range=0.2,
    layer_norm_eps=1e-7,
    pad_token_id=0,
    num_labels=3,
    id2label={0: "a", 1: "b", 2: "c"},
    label2id={"a": 0, "b": 1, "c": 2},
    architectures=["BertForSequenceClassification"],
)


def p(*parts: str) -> str:
    return os.path.join(REPO, *parts)


def read_test() -> list[tuple[str, str]]:
    with open(p(TEST_TSV), encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t")) for line in f]


def load_tokenizer(path: str) -> Tokenizer:
    tok = Tokenizer.from_file(path)
    if tok.padding is not None or tok.truncation is not None:
        raise SystemExit(f"{path}: padding/truncation must be off")
    return tok


def cross_check_tokenizer(tok_path: str, texts: list[str], ids: list[list[int]]) -> None:
    with open(tok_path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with tempfile.TemporaryDirectory() as d:
        vf = os.path.join(d, "vocab.txt")
        with open(vf, "w", encoding="utf-8") as f:
            for tokstr, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
                f.write(tokstr + "\n")
        slow = BertTokenizer(vf, do_lower_case=True)
        for t, want in zip(texts, ids):
            got = slow(t)["input_ids"]
            if got != want:
                raise SystemExit(f"tokenizer mismatch for {t!r}:\n{got}\n{want}")


@torch.no_grad()
def logits_for(model, ids: list[int]) -> list[float]:
    x = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=x, attention_mask=torch.ones_like(x), token_type_ids=torch.zeros_like(x))
    return [float(v) for v in out.logits[0].tolist()]


def truncate(ids: list[int], max_len: int) -> list[int]:
    return ids if len(ids) <= max_len else ids[:max_len - 1] + [ids[-1]]


def write_golden(path: str, description: str, model_dir: str, labels: list[str], cases) -> None:
    doc = {
        "description": description,
        "model": model_dir,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "labels": labels,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path} ({len(cases)} cases)")


def make_random_model() -> BertForSequenceClassification:
    torch.manual_seed(SEED)
    cfg = BertConfig(**RANDOM_CONFIG)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                prm.copy_(1.0 + 0.1 * torch.randn_like(prm))
            elif name.endswith("bias"):
                prm.copy_(0.1 * torch.randn_like(prm))
    std = model.bert.encoder.layer[0].attention.self.query.weight.std().item()
    assert 0.15 < std < 0.25, f"unexpected init std {std}"
    return model.eval()


def main() -> None:
    torch.set_num_threads(2)
    rows = read_test()
    texts = [t for _, t in rows[:N_CASES]]
    common = (
        f"Reference outputs for quantserve's BERT sequence classifier, made by "
        f"tools/goldens_classifier.py (tokenizers {tokenizers.__version__}). "
        f"cases: the first {N_CASES} sentences of {TEST_TSV}. "
        "text: the input string. input_ids: token ids from tokenizer.json in the model dir "
        "([CLS] ... [SEP], no padding), as fed to the model; token_type_ids are all 0 and the "
        "attention mask all 1 (batch of one). logits: the classifier's raw outputs "
        "(before softmax), one per label, computed by HF transformers "
        "BertForSequenceClassification in eval mode with fp32 weights and fp32 compute. "
        "label: labels[argmax(logits)], the model's prediction (not the gold label). "
        "labels: index = class id (config.json id2label). "
    )

    # ---------------------------------------------------------------- sentiment model
    tok_path = p(SENT_DIR, "tokenizer.json")
    tok = load_tokenizer(tok_path)
    model = BertForSequenceClassification.from_pretrained(
        p(SENT_DIR), dtype=torch.float32, attn_implementation="eager").eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    ids = [e.ids for e in tok.encode_batch(texts)]
    cross_check_tokenizer(tok_path, texts, ids)
    cases = []
    for t, i in zip(texts, ids):
        lg = logits_for(model, i)
        cases.append({"text": t, "input_ids": i, "logits": lg,
                      "label": labels[max(range(len(lg)), key=lg.__getitem__)]})
    gold_ok = sum(c["label"] == g for c, (g, _) in zip(cases, rows))
    print(f"sentiment goldens: {gold_ok}/{N_CASES} predictions match the gold labels")
    write_golden(
        p("tests/golden/classifier_sentiment.json"),
        common + "Weights: the committed fp16 model.safetensors upcast to fp32. "
        "No input is truncated (max_position_embeddings 512).",
        SENT_DIR, labels, cases)

    # whole test split, unpadded (sentences batched only with others of the same
    # length, so no padding/mask is involved): must match the model card
    all_ids = [e.ids for e in tok.encode_batch([t for _, t in rows])]
    by_len: dict[int, list[int]] = {}
    for k, i in enumerate(all_ids):
        by_len.setdefault(len(i), []).append(k)
    correct = 0
    with torch.no_grad():
        for ks in by_len.values():
            x = torch.tensor([all_ids[k] for k in ks], dtype=torch.long)
            pred = model(input_ids=x, attention_mask=torch.ones_like(x),
                         token_type_ids=torch.zeros_like(x)).logits.argmax(-1).tolist()
            correct += sum(labels[pk] == rows[k][0] for k, pk in zip(ks, pred))
    print(f"sentiment test accuracy (fp16->fp32 weights, fp32 compute, no padding): "
          f"{correct}/{len(rows)} = {correct / len(rows):.4f}")

    # ---------------------------------------------------------------- random model
    rmodel = make_random_model()
    out_dir = p(RAND_DIR)
    os.makedirs(out_dir, exist_ok=True)
    rmodel.save_pretrained(out_dir, safe_serialization=True)
    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))
    for name in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, name), 0o644)
    # reload what was written, so the goldens describe the committed files
    rmodel = BertForSequenceClassification.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    rlabels = [rmodel.config.id2label[i] for i in range(rmodel.config.num_labels)]
    max_len = rmodel.config.max_position_embeddings
    rcases, n_trunc = [], 0
    for t, i in zip(texts, ids):
        ti = truncate(i, max_len)
        n_trunc += len(ti) != len(i)
        lg = logits_for(rmodel, ti)
        rcases.append({"text": t, "input_ids": ti, "logits": lg,
                       "label": rlabels[max(range(len(lg)), key=lg.__getitem__)]})
    dist = {l: sum(c["label"] == l for c in rcases) for l in rlabels}
    print(f"random model: {n_trunc} inputs truncated to {max_len}; predicted label counts {dist}")
    write_golden(
        p("tests/golden/classifier_random.json"),
        common + f"Model: a randomly initialised BERT (config in {RAND_DIR}/config.json: hidden 64, "
        "3 layers, 4 heads, intermediate 160, hidden_act gelu_new, max_position_embeddings 64, "
        "layer_norm_eps 1e-7, 3 labels) stored in fp32, used to check that the engine follows the "
        f"config. Inputs longer than {max_len} tokens are truncated to {max_len} "
        "(first 63 ids + the final [SEP]); input_ids are given after truncation "
        f"({n_trunc} of the {N_CASES} cases were truncated).",
        RAND_DIR, rlabels, rcases)


if __name__ == "__main__":
    sys.exit(main())
