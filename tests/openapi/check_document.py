"""Validates quantserve's /openapi.json with openapi-spec-validator, then checks that bodies the
server refuses are refused by the document's schemas (and bodies it takes are allowed).

Usage: check_document.py URL. Prints a JSON report; exits non-zero on the first failure."""
import json
import sys
import urllib.error
import urllib.request

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

doc = json.load(urllib.request.urlopen(sys.argv[1] + "/openapi.json"))
validate(doc)


def allowed(schema_name, body):
    root = dict(doc)
    root["$ref"] = "#/components/schemas/" + schema_name
    return Draft202012Validator(root).is_valid(body)


# (schema, body, the server takes it)
CASES = [
    ("ClassifyBody", {"inputs": "a fine day"}, True),
    ("ClassifyBody", {"inputs": ["a", "b"], "top_k": 2}, True),
    ("ClassifyBody", {"inputs": ""}, False),
    ("ClassifyBody", {"inputs": "   "}, False),
    ("ClassifyBody", {"inputs": []}, False),
    ("ClassifyBody", {"inputs": "a", "top_k": 0}, False),
    ("ClassifyBody", {}, False),
    ("PredictBody", {"inputs": ""}, False),
    ("PredictBody", {"inputs": ["a", "b"]}, True),
    ("PredictBody", {"inputs": [["a"], ["a", "b"]]}, True),
    ("PredictBody", {"inputs": []}, False),
    ("EmbedBody", {"inputs": ""}, False),
    ("EmbedBody", {"inputs": "x", "truncation_direction": "Left"}, False),
    ("EmbedBody", {"inputs": "x", "prompt_name": "query"}, False),
    ("EmbeddingsBody", {"input": ["x"], "encoding_format": "base64"}, True),
    ("EmbeddingsBody", {"input": "x", "encoding_format": "hex"}, False),
    ("DecodeBody", {"ids": []}, False),
    ("DecodeBody", {"ids": [[1, 2], [3]]}, True),
    ("TranslateBody", {"q": "Hello", "source": "en", "target": "pt"}, True),
    ("TranslateBody", {"q": ""}, False),
    ("TranslateBody", {"q": "Hello"}, False),
    ("TranslateBody", {"q": "", "source": "en", "target": "pt"}, False),
    # (the test's server has LibreTranslate on: a language into itself comes back as it is)
    ("TranslateBody", {"q": "Hello", "source": "en", "target": "en"}, True),
    ("TranslateBody", {"q": "Hello", "source": "pt", "target": "pt"}, True),
    ("TranslateBody", {"q": "Hello", "source": "de", "target": "de"}, False),
    ("TranslateBody", {"q": "Hello", "source": "EN", "target": "pt-BR"}, True),
    ("TranslateBody", {"q": "Hello", "source": "\u00a0en\u3000", "target": "pt_br\n"}, True),
    ("TranslateBody", {"q": "Hello", "source": "en", "target": "de"}, False),
    ("TranslateBody", {"q": "Hello", "source": "en", "target": ""}, False),
    ("TranslateBody", {"q": "Hello", "source": "auto", "target": "PT"}, True),
    ("TranslateBody", {"q": "Hello", "source": "auto", "target": "de"}, False),
    ("TranslateBody", {"q": "Hello", "source": "auto", "target": None}, False),
    ("TranslateBody", {"q": "Hello", "source": None, "target": "pt"}, False),
    ("TranslateBody", {"q": "Hello", "source": "AUTO", "target": "pt"}, False),
    ("TranslateBody", {"q": "Hello", "model": "en-pt"}, True),
    ("TranslateBody", {"q": "Hello", "source": "en", "target": "pt", "beam_size": 99}, False),
    ("DetectBody", {"q": " "}, False),
    ("FeedbackBody", {"request_id": "r", "label": "positive"}, True),
    ("FeedbackBody", {"request_id": "r", "correct": True}, True),
    ("FeedbackBody", {"request_id": "r", "label": "positive", "correct": True}, False),
    ("FeedbackBody", {"request_id": "r"}, False),
    ("FeedbackBody", {"request_id": "r", "correct": True, "extra": 1}, False),
    ("Routing", {}, False),
    ("Routing", {"split": {}}, False),
    ("Routing", {"split": {"fp32": 100}, "shadow": {"reference": "fp32", "sample_rate": 2}}, False),
    ("Routing", {"split": {"int8": 90, "fp32": 10}, "sticky_key": "x-user-id"}, True),
]
# A named model with its own languages (any case, a region, spaces around), `auto` or none: the
# document's patterns and the server's rule (`Runtime::translation_model`) must agree, so each
# of these is also sent to the server.
NAMED = [({}, True), ({"source": "auto"}, True), ({"source": "EN", "target": "pt-BR"}, True),
         ({"source": " en_GB\n", "target": "PT_br"}, True), ({"target": "pt\n"}, True),
         ({"source": None, "target": None}, True), ({"source": "pt"}, False),
         ({"target": "de"}, False), ({"target": ""}, False), ({"source": ""}, False),
         ({"source": "english"}, False), ({"target": "ptx"}, False), ({"target": "-pt"}, False),
         ({"source": "en", "target": "en"}, False)]
for fields, ok in NAMED:
    CASES.append(("TranslateBody", {"q": "Hello", "model": "en-pt", **fields}, ok))
# Another model beside a pair: the pair decides nothing, the model is named.
CASES.append(("TranslateBody", {"q": "Hello", "model": "pt-en", "source": "en", "target": "pt"}, False))


def server_takes(body):
    req = urllib.request.Request(sys.argv[1] + "/translate", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=30).status == 200
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise
        return False


wrong = [(s, b, ok) for s, b, ok in CASES if allowed(s, b) != ok]
wrong += [("server", b, ok) for s, b, ok in CASES
          if s == "TranslateBody" and server_takes(b) != ok]
ops = [op for item in doc["paths"].values() for op in item.values()]
print(json.dumps({
    "openapi": doc["openapi"],
    "paths": len(doc["paths"]),
    "operations": len(ops),
    "cases": len(CASES),
    "wrong": wrong,
}))
sys.exit(1 if wrong else 0)
