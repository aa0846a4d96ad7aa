"""What every QAT run shares: seeds, resumable checkpoints, training metadata, running
`quantserve quantize` on the latent folder."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

import qatio

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL_VERSION = "qat-0.1.0"
QUANTSERVE = os.path.join(REPO, "target/release/quantserve")


def setup(seed: int, threads: int = 1):
    """One intra-op thread by default: on this shared 2-core machine two OpenMP threads spin
    against the other engineers' compilers, and we measured small-tensor ops (the quantizers)
    100x slower with 2 threads than with 1 (35 s vs 0.36 s for every classifier matrix)."""
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rel(path: str) -> str:
    p = os.path.abspath(path)
    return os.path.relpath(p, REPO) if p.startswith(REPO) else p


def data_record(paths) -> list:
    return [{"path": rel(p), "sha256": qatio.sha256_file(p)} for p in paths]


class Checkpoint:
    """A resumable run: `state.pt` under `work`, written atomically at least every `every`
    seconds (and on demand). `config` must match on resume, or the run refuses to continue."""

    def __init__(self, work: str, config: dict, every: float = 300.0):
        self.work, self.config, self.every = work, config, every
        os.makedirs(work, exist_ok=True)
        self.path = os.path.join(work, "state.pt")
        self.last = time.time()

    def load(self):
        if not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise qatio.BadInput(
                f"checkpoint {self.path} is corrupt ({type(e).__name__}: {e}); delete it to "
                "start over") from e
        if not isinstance(state, dict) or "config" not in state or "step" not in state:
            raise qatio.BadInput(f"checkpoint {self.path} is not a QAT checkpoint; delete it")
        if state["config"] != self.config:
            diff = {k: (state["config"].get(k), v) for k, v in self.config.items()
                    if state["config"].get(k) != v}
            raise qatio.BadInput(
                f"checkpoint {self.path} belongs to another configuration {diff}; use another "
                "--work folder or delete it")
        return state

    def due(self) -> bool:
        return time.time() - self.last >= self.every

    def save(self, state: dict):
        state = dict(state, config=self.config)
        tmp = self.path + ".partial"
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        self.last = time.time()


def rng_state():
    return {"py": random.getstate(), "np": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(s):
    random.setstate(s["py"])
    np.random.set_state(s["np"])
    torch.set_rng_state(s["torch"])


def quantize_folder(latent: str, out: str, scheme: str | None, recipe: str | None,
                    freq_corpus=(), training_json: str | None = None):
    """Runs `quantserve quantize` on the latent folder. Uses `--training-metadata` when this
    quantserve has it (NEEDS.md (a)); otherwise the JSON goes beside as `training.json`."""
    if not os.path.exists(QUANTSERVE):
        raise qatio.BadInput(f"{QUANTSERVE} not found: run `cargo build --release` first")
    cmd = [QUANTSERVE, "quantize", "--model", latent, "--out", out]
    cmd += ["--recipe", recipe] if recipe else ["--scheme", scheme]
    for f in freq_corpus:
        cmd += ["--freq-corpus", f]
    help_text = subprocess.run([QUANTSERVE, "quantize", "--help"], capture_output=True,
                               text=True).stdout
    if training_json and "--training-metadata" in help_text:
        cmd += ["--training-metadata", training_json]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"quantserve quantize failed: {r.stderr}")
    if training_json:
        import shutil
        shutil.copy(training_json, os.path.join(out, "training.json"))
    return r.stdout + r.stderr


def log(msg: str, file=None):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if file:
        with open(file, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def fail(msg: str):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)
