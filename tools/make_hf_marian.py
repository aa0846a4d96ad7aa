#!/usr/bin/env python3
"""Random-initialised Hugging Face Marian (Opus-MT layout) test models and their goldens.

    tools/.venv-torch/bin/python tools/make_hf_marian.py            # tiny models + goldens
    tools/.venv-torch/bin/python tools/make_hf_marian.py --large OUT  # opus-mt-en-de shape, bench only

No Opus-MT checkpoint can be downloaded here, so the models are built the way Opus-MT ships them:
`config.json`, `model.safetensors`, `source.spm`, `target.spm` (SentencePiece unigram models, en and
pt, trained in seconds on the committed Bible sample and sentiment sentences, default nmt_nfkc
normalisation) and one shared `vocab.json` (`</s>`=0, `<unk>`=1, the source pieces, the target
pieces not already present, `<pad>` last), exactly as MarianTokenizer reads them.

Tiny models (committed, a few MB together):
  models/tiny-marian/fp32         2+2 layers, d_model 64, swish, scale_embedding, tied lm_head
  models/tiny-marian-untied/fp32  2+2 layers, d_model 64, gelu, no scaling, untied lm_head
Weights are random (seeded); every tensor, layer norms and final_logits_bias included, is drawn
away from its default so a loader that skips one fails the goldens.

Goldens (tests/golden/hf_marian_*.json) come from transformers' MarianTokenizer and `generate`:
  hf_marian_tokenizer.json   MarianTokenizer ids (pieces + </s>) of 200 sentences
  hf_marian_<model>.json     greedy and beam-4 ids, plus logits of decoding step 0 and step 4
                             (after the greedy prefix) for a few sentences

sacremoses is deliberately not installed: with it MarianTokenizer would also apply Moses
punctuation normalisation, which quantserve does not do (see README).
"""

import argparse
import csv
import json
import os
import random
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 1234
SPM_VOCAB = 2000
N_TOKENIZER_CASES = 200
N_GEN_CASES = 40
GEN_MAX_LENGTH = 24  # HF max_length: decoder start token included
N_LOGIT_CASES = 4
PREFIX_STEPS = 4


def corpus():
    """(english, portuguese) sentence lists from the committed data."""
    en, pt = [], []
    with open(os.path.join(REPO, "data/bible/sample500.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            en.append(row["en"])
            pt.append(row["pt"])
    for split in ("train", "dev", "test"):
        with open(os.path.join(REPO, f"data/sentiment/{split}.tsv"), encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 2:
                    en.append(parts[1])
    return en, pt


def train_spm(sentences, prefix, vocab_size):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(sentences))
        path = f.name
    # Marian's SentencePiece settings: </s>=0, <unk>=1, no <s>/<pad> pieces.
    spm.SentencePieceTrainer.train(
        input=path,
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        num_threads=2,
        minloglevel=2,
    )
    os.unlink(path)


def pieces(model_file):
    sp = spm.SentencePieceProcessor(model_file=model_file)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def build_vocab(src_pieces, tgt_pieces, size=None):
    vocab = {"</s>": 0, "<unk>": 1}
    for p in src_pieces + tgt_pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    if size is not None:
        # Pad to the Opus-MT vocabulary size with pieces no text ever produces.
        while len(vocab) < size - 1:
            vocab[f"<dummy{len(vocab)}>"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    return vocab


def make_tokenizer_files(out, en, pt, size=None):
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    train_spm(en, os.path.join(tmp, "src"), SPM_VOCAB)
    train_spm(pt, os.path.join(tmp, "tgt"), SPM_VOCAB)
    shutil.copy(os.path.join(tmp, "src.model"), os.path.join(out, "source.spm"))
    shutil.copy(os.path.join(tmp, "tgt.model"), os.path.join(out, "target.spm"))
    shutil.rmtree(tmp)
    vocab = build_vocab(pieces(os.path.join(out, "source.spm")), pieces(os.path.join(out, "target.spm")), size)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"source_lang": "en", "target_lang": "pt", "model_max_length": 512,
                   "tokenizer_class": "MarianTokenizer"}, f, indent=1)
    return len(vocab)


def make_model(out, vocab_size, *, d_model, layers, heads, ffn, activation, scale_embedding, tied,
               seed, init_std, perturb, eos_bias=0.0):
    pad = vocab_size - 1
    cfg = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        activation_function=activation,
        scale_embedding=scale_embedding,
        max_position_embeddings=512,
        pad_token_id=pad,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        bad_words_ids=[[pad]],
        num_beams=4,
        max_length=512,
        init_std=init_std,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=tied,
        normalize_before=False,
        static_position_embeddings=True,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(cfg).eval()
    if perturb:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "layer_norm" in name and name.endswith("weight"):
                    p.add_(torch.randn_like(p) * 0.2)
                elif name.endswith("bias"):
                    p.copy_(torch.randn_like(p) * 0.1)
            # Random output bias; </s> gets one near the top so some outputs end before the length
            # cap and others do not.
            model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias) * 0.5)
            model.final_logits_bias[0, 0] = eos_bias
    model.save_pretrained(out, safe_serialization=True)
    # Opus-MT's generation settings (transformers 5 keeps them out of config.json).
    GenerationConfig(
        decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=0, forced_eos_token_id=0,
        bad_words_ids=[[pad]], num_beams=4, max_length=512,
    ).save_pretrained(out)
    return model


def strip(ids, pad, eos):
    """Generated ids without the decoder start token, the final </s> and padding."""
    ids = [int(i) for i in ids[1:]]
    while ids and ids[-1] == pad:
        ids.pop()
    if ids and ids[-1] == eos:
        ids.pop()
    return ids


def tokenizer_sentences(en):
    rng = random.Random(SEED)
    picked = rng.sample(en, N_TOKENIZER_CASES - 12)
    # Normalisation and whitespace edge cases (NFKC, full-width, ligatures, runs of spaces,
    # characters outside both vocabularies).
    return picked + [
        "  leading and trailing spaces  ",
        "many    spaces   inside",
        "ﬁne ligature and ＦＵＬＬ－ＷＩＤＴＨ ｔｅｘｔ！",
        "Ünïcödé äccents — and “quotes”…",
        "tabs\tand\tnewlines",
        "emoji 🙂 and 漢字 are unknown",
        "½ ² ™ ① ㎏",
        "e\u0301 combining accent",
        "a",
        "",
        "!!!???...",
        "The LORD said unto Moses, 'Go.'",
    ]


def generate_goldens(model_dir, name, en):
    tok = MarianTokenizer.from_pretrained(model_dir)
    model = MarianMTModel.from_pretrained(model_dir).eval()
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    rng = random.Random(SEED + 1)
    texts = rng.sample(en, N_GEN_CASES)
    cases = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            ids = tok(text).input_ids
            inp = torch.tensor([ids])
            greedy = model.generate(inp, num_beams=1, do_sample=False, max_length=GEN_MAX_LENGTH)[0].tolist()
            beam = model.generate(inp, num_beams=4, do_sample=False, max_length=GEN_MAX_LENGTH)[0].tolist()
            case = {"source": text, "source_ids": ids, "greedy_ids": strip(greedy, pad, eos),
                    "greedy_ended_with_eos": eos in greedy[1:-1] or len(greedy) < GEN_MAX_LENGTH,
                    "beam4_ids": strip(beam, pad, eos)}
            if i < N_LOGIT_CASES:
                # Logits at step 0 and at step PREFIX_STEPS after the greedy prefix: the later step
                # exercises causal self-attention over the cached keys/values.
                for key, prefix in (("step0", []), ("step4", greedy[1:1 + PREFIX_STEPS])):
                    dec = torch.tensor([[model.config.decoder_start_token_id] + prefix])
                    logits = model(input_ids=inp, decoder_input_ids=dec).logits[0, -1].numpy()
                    top = np.argsort(-logits)[:10].tolist()
                    some = sorted(rng.sample(range(len(logits)), 10))
                    case[f"{key}_prefix"] = [int(t) for t in prefix]
                    case[f"{key}_logits"] = [[int(j), float(logits[j])] for j in top + some]
            cases.append(case)
    doc = {
        "about": (f"transformers {__import__('transformers').__version__} MarianMTModel.generate on "
                  f"{model_dir}: max_length={GEN_MAX_LENGTH} (decoder start included, forced </s> at the "
                  "last position), bad_words_ids=[[pad]], length_penalty 1.0, early_stopping False. "
                  "greedy_ids / beam4_ids exclude the start token, the final </s> and padding. "
                  "stepN_logits: [id, raw logit (lm_head + final_logits_bias)] at decoding step N, the "
                  "decoder having been fed the start token then stepN_prefix; 10 largest then 10 random ids."),
        "max_length": GEN_MAX_LENGTH,
        "cases": cases,
    }
    write_json(os.path.join(REPO, f"tests/golden/hf_marian_{name}.json"), doc)
    n_eos = sum(c["greedy_ended_with_eos"] for c in cases)
    same = sum(c["greedy_ids"] == c["beam4_ids"] for c in cases)
    print(f"{name}: {n_eos}/{len(cases)} greedy outputs end with </s>; beam4 == greedy on {same}")


def write_json(path, doc):
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "cases": [\n'
    lines += ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in doc["cases"])
    with open(path, "w", encoding="utf-8") as f:
        f.write(lines + "\n ]\n}\n")


def tiny(args):
    en, pt = corpus()
    base = os.path.join(REPO, "models/tiny-marian/fp32")
    vocab_size = make_tokenizer_files(base, en, pt)
    specs = {
        "tiny-marian": dict(activation="swish", scale_embedding=True, tied=True, seed=SEED, eos_bias=1.5),
        "tiny-marian-untied": dict(activation="gelu", scale_embedding=False, tied=False, seed=SEED + 7, eos_bias=2.35),
    }
    for name, spec in specs.items():
        out = os.path.join(REPO, f"models/{name}/fp32")
        if out != base:
            os.makedirs(out, exist_ok=True)
            for f in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(base, f), os.path.join(out, f))
        make_model(out, vocab_size, d_model=64, layers=2, heads=4, ffn=128, init_std=0.08,
                   perturb=True, **spec)
        generate_goldens(out, name.replace("-", "_"), en)
    tok = MarianTokenizer.from_pretrained(base)
    texts = tokenizer_sentences(en)
    cases = [{"text": t, "ids": tok(t).input_ids} for t in texts]
    write_json(os.path.join(REPO, "tests/golden/hf_marian_tokenizer.json"), {
        "about": ("MarianTokenizer (transformers, sentencepiece, no sacremoses) on models/tiny-marian/fp32: "
                  "source.spm pieces mapped through vocab.json (<unk> for pieces not in it), then </s>."),
        "cases": cases,
    })
    n_unk = sum(1 in c["ids"] for c in cases)
    print(f"tokenizer: {len(cases)} sentences, {n_unk} with <unk>")


def large(out):
    """The opus-mt-en-de shape (d_model 512, 6+6 layers, 8 heads, FFN 2048, vocab 58101)."""
    en, pt = corpus()
    vocab_size = make_tokenizer_files(out, en, pt, size=58101)
    make_model(out, vocab_size, d_model=512, layers=6, heads=8, ffn=2048, activation="swish",
               scale_embedding=True, tied=True, seed=SEED, init_std=0.02, perturb=False)
    print(f"wrote {out} (vocab {vocab_size})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", metavar="OUT", help="write the opus-mt-en-de-shaped model to OUT instead")
    args = ap.parse_args()
    if args.large:
        large(args.large)
    else:
        tiny(args)


if __name__ == "__main__":
    main()
