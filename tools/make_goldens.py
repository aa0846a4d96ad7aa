#!/usr/bin/env python3
"""Regenerate every golden file in tests/golden/ from the reference implementations.

- classifier: HF transformers (tools/goldens_classifier.py, run in tools/.venv-torch)
- embedder: sentence-transformers (tools/goldens_embedder.py, run in tools/.venv-torch)
- translator: the independent numpy forward pass (tools/goldens_translator.py, run in tools/.venv-ref)

Usage: python3 tools/make_goldens.py [classifier|embedder|translator|all]
Each part documents how to create its venv. Offline tools only: never part of set-up or CI.
"""
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
PARTS = {
    "classifier": (TOOLS / ".venv-torch/bin/python", TOOLS / "goldens_classifier.py"),
    "embedder": (TOOLS / ".venv-torch/bin/python", TOOLS / "goldens_embedder.py"),
    "translator": (TOOLS / ".venv-ref/bin/python", TOOLS / "goldens_translator.py"),
}


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    names = list(PARTS) if which == "all" else [which]
    for name in names:
        python, script = PARTS[name]
        if not python.exists():
            print(f"{name}: {python} is missing; see the docstring of {script.name}", file=sys.stderr)
            return 1
        print(f"== {name}: {script.name}", flush=True)
        subprocess.run([str(python), str(script)], check=True, cwd=TOOLS.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
