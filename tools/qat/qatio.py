"""Model folders in and out: HF BERT (`model.safetensors`) and Bergamot Marian (`*.bin`), read
exactly as quantserve reads them (src/model/weights.rs, src/model/marian_bin.rs), and the latent
fp32 folders that `quantserve quantize` turns into variants."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

TYPE_F32 = 0x404
TYPE_INT8 = 0x4101
TYPE_BYTES = 0x101
QAT_ITEM = "special:quantserve-qat.json"


class BadInput(Exception):
    """Input the tool refuses, with a message for the user."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_kind(folder: str) -> str:
    if not os.path.isdir(folder):
        raise BadInput(f"model folder {folder} does not exist")
    if os.path.exists(os.path.join(folder, "config.json")) and os.path.exists(
            os.path.join(folder, "model.safetensors")):
        return "bert"
    if marian_model_file(folder, must=False):
        return "marian"
    raise BadInput(f"{folder} is neither an HF BERT folder (config.json + model.safetensors) "
                   "nor a Bergamot Marian folder (*.bin)")


# ---------------------------------------------------------------------------------------------
# BERT

def read_bert(folder: str) -> dict:
    path = os.path.join(folder, "model.safetensors")
    try:
        arrays = load_file(path)
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{path} is not a valid safetensors file: {e}") from e
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}


def bert_is_quantized_matrix(name: str, shape) -> bool:
    """src/quant/convert.rs: every 2-D `.weight` except position/token-type tables."""
    return (len(shape) == 2 and name.endswith(".weight")
            and "position_embeddings" not in name and "token_type_embeddings" not in name)


def write_bert(out: str, tensors: dict, src: str, metadata: dict | None = None):
    """A latent fp32 BERT folder: model.safetensors (f32) + the source's other files."""
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(src):
        p = os.path.join(src, f)
        # Not SHA256SUMS: it records the source's weights, not the latent ones written here
        # (quantserve refuses a folder whose files differ from their recorded sums).
        if os.path.isfile(p) and f not in ("model.safetensors", "README.md", "SHA256SUMS"):
            shutil.copy(p, os.path.join(out, f))
    arrays = {k: v.detach().float().contiguous().numpy() for k, v in tensors.items()}
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    tmp = os.path.join(out, "model.safetensors.partial")
    save_file(arrays, tmp, metadata=meta or None)
    os.replace(tmp, os.path.join(out, "model.safetensors"))


# ---------------------------------------------------------------------------------------------
# Marian

def marian_model_file(folder: str, must: bool = True):
    for f in sorted(os.listdir(folder)):
        if f.endswith(".bin") and not f.endswith(".s2t.bin"):
            return os.path.join(folder, f)
    if must:
        raise BadInput(f"no Marian model (*.bin) in {folder}")
    return None


def read_marian_bin(path: str):
    """Returns ({name: f32 tensor as quantserve holds it}, model_yml, raw items).

    As src/model/marian_bin.rs: int8 items are `q / multiplier` and `*_W*` int8 matrices come out
    as [out, in] (their bytes are the transpose of the [in, out] header shape); f32 items keep
    their stored shape and layout."""
    with open(path, "rb") as f:
        buf = f.read()
    try:
        version, n = struct.unpack_from("<QQ", buf, 0)
        if version != 1 or n > 1_000_000:
            raise ValueError(f"unsupported binary version {version} / count {n}")
        off = 16
        headers = [struct.unpack_from("<4Q", buf, off + 32 * i) for i in range(n)]
        off += 32 * n
        names = []
        for name_len, _, _, _ in headers:
            raw = buf[off:off + name_len]
            if len(raw) != name_len:
                raise ValueError("truncated names")
            names.append(raw.split(b"\0")[0].decode("utf-8"))
            off += name_len
        shapes = []
        for _, _, shape_len, _ in headers:
            shapes.append(list(struct.unpack_from(f"<{shape_len}i", buf, off)))
            off += 4 * shape_len
        (pad,) = struct.unpack_from("<Q", buf, off)
        off += 8 + pad
        tensors, raw_items, yml = {}, {}, None
        for name, (_, typ, _, data_len), shape in zip(names, headers, shapes):
            blob = buf[off:off + data_len]
            if len(blob) != data_len:
                raise ValueError(f"`{name}`: file is truncated")
            off += data_len
            count = int(np.prod(shape)) if shape else 1
            if typ == TYPE_F32:
                a = np.frombuffer(blob, "<f4", count).reshape(shape).copy()
                tensors[name] = torch.from_numpy(a)
            elif typ == TYPE_INT8:
                q = np.frombuffer(blob, np.int8, count)
                (mult,) = struct.unpack_from("<f", blob, count)
                out_shape = [shape[1], shape[0]] if ("_W" in name and len(shape) == 2) else shape
                a = q.astype(np.float32).reshape(out_shape) / np.float32(mult)
                tensors[name] = torch.from_numpy(a)
            elif typ == TYPE_BYTES:
                raw_items[name] = blob
                if name == "special:model.yml":
                    yml = blob.split(b"\0")[0].decode("utf-8", "replace")
            else:
                raise ValueError(f"`{name}`: unsupported tensor type {typ:#x}")
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not a valid Marian model: {e}") from e
    if yml is None:
        raise BadInput(f"{path}: no special:model.yml in the model")
    return tensors, yml, raw_items


def marian_is_quantized_matrix(name: str, shape) -> bool:
    """src/quant/convert.rs (Marian branch)."""
    matrix = name == "Wemb" or ("_W" in name and "_ln_" not in name
                                and not name.endswith("_QuantMultA"))
    return len(shape) == 2 and shape[0] >= 2 and matrix


def write_marian_bin(path: str, tensors: dict, model_yml: str, qat_json: dict | None = None):
    """A Marian `.bin` with every tensor f32 (type 0x404) and `special:model.yml`.

    Layout: matrices are written as quantserve holds them, `[out, in]` row-major with header
    shape `[out, in]` (src/model/marian_bin.rs keeps f32 items as stored, it transposes only
    int8 items). Real Marian keeps f32 `_W` matrices as `[in, out]`; see tools/qat/NEEDS.md.
    `*_QuantMultA` (intgemm activation scales of the shipped int8 model) are dropped."""
    items = []
    for name in sorted(tensors):
        if name.endswith("_QuantMultA"):
            continue
        a = tensors[name].detach().float().contiguous().numpy()
        items.append((name, TYPE_F32, list(a.shape), a.astype("<f4").tobytes()))
    yml = model_yml.encode("utf-8") + b"\0"
    items.append(("special:model.yml", TYPE_BYTES, [len(yml)], yml))
    if qat_json is not None:
        j = json.dumps(qat_json, sort_keys=True).encode("utf-8") + b"\0"
        items.append((QAT_ITEM, TYPE_BYTES, [len(j)], j))
    # blobs padded to 256 bytes, as Marian does
    blobs = []
    for _, _, _, data in items:
        padded = data + b"\0" * ((-len(data)) % 256)
        blobs.append(padded)
    names = [n.encode("utf-8") + b"\0" for n, *_ in items]
    head = struct.pack("<QQ", 1, len(items))
    for (n, typ, shape, _), nb, blob in zip(items, names, blobs):
        head += struct.pack("<4Q", len(nb), typ, len(shape), len(blob))
    head += b"".join(names)
    for _, _, shape, _ in items:
        head += struct.pack(f"<{len(shape)}i", *shape)
    pad = (-(len(head) + 8)) % 256
    head += struct.pack("<Q", pad) + b"\0" * pad
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def write_marian(out: str, tensors: dict, model_yml: str, src: str, qat_json: dict | None = None):
    """A latent fp32 Marian folder: the f32 `.bin` under the source's model file name, plus the
    source's tokenizer.json, vocab, shortlist and config yml."""
    os.makedirs(out, exist_ok=True)
    model = marian_model_file(src)
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if os.path.isfile(p) and p != model and f != "SHA256SUMS":
            shutil.copy(p, os.path.join(out, f))
    write_marian_bin(os.path.join(out, os.path.basename(model)), tensors, model_yml, qat_json)


def read_model(folder: str):
    """(kind, {name: f32 tensor}, marian model_yml or None)."""
    kind = model_kind(folder)
    if kind == "bert":
        return kind, read_bert(folder), None
    t, yml, _ = read_marian_bin(marian_model_file(folder))
    return kind, t, yml


def is_quantized_matrix(kind: str, name: str, shape) -> bool:
    return (bert_is_quantized_matrix if kind == "bert" else marian_is_quantized_matrix)(name, shape)


def is_embedding(kind: str, name: str) -> bool:
    return name == "Wemb" if kind == "marian" else "word_embeddings" in name
