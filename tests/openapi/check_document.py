"""Validates quantserve's /openapi.json with openapi-spec-validator, then checks that bodies the
server refuses are refused by the document's schemas (and bodies it takes are allowed).

Usage: check_document.py URL. Prints a JSON report; exits non-zero on the first failure."""
import json
import sys
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
    ("TranslateBody", {"q": "Hello", "source": "en", "target": "en"}, False),
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
wrong = [(s, b, ok) for s, b, ok in CASES if allowed(s, b) != ok]
ops = [op for item in doc["paths"].values() for op in item.values()]
print(json.dumps({
    "openapi": doc["openapi"],
    "paths": len(doc["paths"]),
    "operations": len(ops),
    "cases": len(CASES),
    "wrong": wrong,
}))
sys.exit(1 if wrong else 0)
