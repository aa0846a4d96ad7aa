#!/usr/bin/env python3
"""Drives quantserve with the real client libraries users run (tests/python_clients.rs starts the
server and runs this; the venv comes from tests/clients/requirements.txt, made by .ci/run).

Usage: check_clients.py BASE_URL API_KEY
Prints one JSON object with what each client got; exits non-zero on the first failure.
"""
import json
import sys
from importlib.metadata import version


def main() -> int:
    base, key = sys.argv[1].rstrip("/"), sys.argv[2]
    out = {"versions": {p: version(p) for p in ("libretranslatepy", "openai")}}
    assert out["versions"] == {"libretranslatepy": "2.1.4", "openai": "3.63.0"}, out

    # libretranslatepy: urllib, form-encoded POSTs, GET /languages with a form body.
    from libretranslatepy import LibreTranslateAPI

    lt = LibreTranslateAPI(base + "/", api_key=key)
    out["translate"] = lt.translate("How are you today?", "en", "pt")
    assert out["translate"] == "Como você está hoje?", out
    out["translate_auto"] = lt.translate("Obrigado pela ajuda.", "auto", "en")
    assert "thank" in out["translate_auto"].lower(), out
    out["languages"] = lt.languages()
    assert [l["code"] for l in out["languages"]] == ["en", "pt"], out
    assert all("targets" in l and "name" in l for l in out["languages"]), out
    out["detect"] = lt.detect("Eu gosto muito de ler livros pela manhã.")
    assert out["detect"][0]["language"] == "pt", out
    assert 0 < out["detect"][0]["confidence"] <= 100, out

    # openai: embeddings.create with the client's default encoding (base64) and with floats.
    from openai import OpenAI

    client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)
    r = client.embeddings.create(model="text-embedding-3-small", input=["Hello world", "Olá mundo"])
    default = [d.embedding for d in r.data]
    assert len(default) == 2 and all(len(v) == 384 for v in default), r
    assert r.model == "minilm" and r.usage.prompt_tokens == r.usage.total_tokens > 0, r
    f = client.embeddings.create(model="minilm", input="Hello world", encoding_format="float")
    floats = f.data[0].embedding
    assert max(abs(a - b) for a, b in zip(floats, default[0])) < 1e-6, "base64 == float"
    norm = sum(x * x for x in floats) ** 0.5
    assert abs(norm - 1.0) < 1e-4, norm
    out["openai"] = {"model": r.model, "usage": r.usage.prompt_tokens, "dims": len(floats), "norm": norm}
    try:
        client.embeddings.create(model="minilm", input="")
        raise AssertionError("an empty input must be refused")
    except Exception as e:  # openai.BadRequestError, with the server's message
        assert type(e).__name__ == "BadRequestError" and "empty" in str(e), repr(e)
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
