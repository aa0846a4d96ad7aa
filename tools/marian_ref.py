#!/usr/bin/env python3
"""Independent float32 numpy reference of the Bergamot "tiny" Marian students.

Reads a Marian binary model (`model.*.intgemm.alphas.bin`), its embedded
`special:model.yml`, the HF `tokenizer.json` (same ids as `vocab.*.spm`) and,
optionally, the binary lexical shortlist (`lex.*.s2t.bin`), and greedy-decodes.

    tools/.venv-ref/bin/python tools/marian_ref.py MODEL_DIR ["text" ...] [--shortlist] [--int8]

Needs numpy and tokenizers (tools/.venv-ref).  By default everything runs in
float32 with de-quantised weights (q / multiplier) and the static activation
scales (`*_QuantMultA`) are ignored: the "ideal" fp32 model.  --int8 instead
emulates Marian's intgemm matmuls (see MarianModel); the two modes give visibly
different greedy outputs on ~1/3 of the sentences of these tiny models.

Format facts (all verified against the files):
  .bin:  u64 version(=1), u64 n; n x {u64 nameLen, u64 type, u64 shapeLen,
         u64 dataLen}; NUL-terminated names; i32 shapes; u64 pad + pad bytes;
         data blobs (each 256-byte aligned).  Types: 0x404 f32, 0x4101
         intgemm8, 0x101 raw bytes.  An intgemm8 blob is rows*cols int8,
         then one f32 multiplier, zero/garbage padded to 256 bytes.
         Every `*_W*` int8 matrix with header shape [in, out] holds the
         row-major bytes of its transpose [out, in]; `Wemb` [32000, 256]
         is stored as-is (row = token).
  .s2t.bin (Marian "binary shortlist"): 6 x u64 header
         {magic = 0xF11A48D5013417F5, checksum, firstNum, bestNum,
          wordToOffsetSize (= srcVocab + 1), shortListsSize},
         then u64 wordToOffset[wordToOffsetSize], u32 shortLists[shortListsSize].
         checksum = boost-style hash_combine over all u64 words after the
         checksum field (firstNum .. end of file, file viewed as u64[]).

Decoding rules (as Marian's BeamSearch with beam 1):
  * source ids = SentencePiece ids + EOS.  </s> = 0, <unk> = 1, no <pad>/<s>
    (Marian pads batches with id 0 and masks them).
  * step 0 feeds a zero embedding (+ position 0); step t feeds
    Wemb[y_{t-1}] * sqrt(dim_emb) + position t.
  * <unk> is suppressed (Marian's default: no --allow-unk).
  * max generated tokens (EOS included) = ceil(max_length_factor * len(src_ids
    incl. EOS)); Marian stops once history size >= factor * batchWidth.
  * with a shortlist, the argmax is taken over the shortlist ids only:
    ids 0..firstNum-1, plus the lists of every distinct source id (EOS too),
    plus (like Marian/bergamot, for intgemm) the smallest ids >= firstNum not
    yet selected until the count is a multiple of 8.
"""

import argparse
import math
import os
import struct
import sys
import time

# One BLAS thread: the matrices are tiny and threading only adds overhead here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

TYPE_F32 = 0x404
TYPE_INT8 = 0x4101
TYPE_RAW = 0x101
SHORTLIST_MAGIC = 0xF11A48D5013417F5
EOS_ID = 0
UNK_ID = 1


# ----------------------------------------------------------------------------
# Model file

def read_marian_bin(path):
    """Return (tensors, info, int8).

    tensors: {name: float32 array (int8 items de-quantised) or bytes for raw items}
    info:    {name: (type, header shape)}
    int8:    {name: (int8 array in the same [in, out] orientation, f32 multiplier)}
    """
    buf = open(path, "rb").read()
    version, n = struct.unpack_from("<QQ", buf, 0)
    assert version == 1, version
    off = 16
    headers = [struct.unpack_from("<4Q", buf, off + 32 * i) for i in range(n)]
    off += 32 * n
    names = []
    for name_len, _, _, _ in headers:
        raw = buf[off:off + name_len]
        assert raw[-1:] == b"\0"
        names.append(raw[:-1].decode("utf-8"))
        off += name_len
    shapes = []
    for _, _, shape_len, _ in headers:
        shapes.append(tuple(struct.unpack_from(f"<{shape_len}i", buf, off)))
        off += 4 * shape_len
    (pad,) = struct.unpack_from("<Q", buf, off)
    off += 8 + pad
    tensors, info, int8 = {}, {}, {}
    for name, (_, typ, _, data_len), shape in zip(names, headers, shapes):
        blob = buf[off:off + data_len]
        off += data_len
        info[name] = (typ, shape)
        if typ == TYPE_RAW:
            tensors[name] = blob
        elif typ == TYPE_F32:
            count = int(np.prod(shape))
            tensors[name] = np.frombuffer(blob, "<f4", count).reshape(shape).copy()
        elif typ == TYPE_INT8:
            count = int(np.prod(shape))
            q = np.frombuffer(blob, np.int8, count)
            (mult,) = struct.unpack_from("<f", blob, count)
            if name == "Wemb" or len(shape) != 2 or shape[0] == 1 == shape[1]:
                q = q.reshape(shape)
            else:
                # stored as the transpose: bytes are [out, in] for shape [in, out]
                q = np.ascontiguousarray(q.reshape(shape[1], shape[0]).T)
            tensors[name] = q.astype(np.float32) / np.float32(mult)
            int8[name] = (q, np.float32(mult))
        else:
            raise ValueError(f"{name}: unknown type {typ:#x}")
    assert off == len(buf), (off, len(buf))
    return tensors, info, int8


def parse_model_yml(text):
    """Tiny YAML subset: `key: scalar` and `key:` followed by `  - item` lines."""
    cfg, last = {}, None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("- ") and last is not None:
            cfg.setdefault(last, [])
            cfg[last].append(_scalar(line.strip()[2:]))
            continue
        key, _, val = line.partition(":")
        last = key.strip()
        cfg[last] = _scalar(val.strip()) if val.strip() else []
    return cfg


def _scalar(s):
    if s in ("true", "false"):
        return s == "true"
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


# ----------------------------------------------------------------------------
# Shortlist

class Shortlist:
    def __init__(self, path, verify_checksum=True):
        buf = open(path, "rb").read()
        magic, checksum, self.first_num, self.best_num, w2o_size, sl_size = \
            struct.unpack_from("<6Q", buf, 0)
        assert magic == SHORTLIST_MAGIC, hex(magic)
        expect = 48 + 8 * w2o_size + 4 * sl_size
        assert expect == len(buf), (expect, len(buf))
        self.checksum = checksum
        self.word_to_offset = np.frombuffer(buf, "<u8", w2o_size, 48)
        self.lists = np.frombuffer(buf, "<u4", sl_size, 48 + 8 * w2o_size)
        assert self.word_to_offset[-1] == sl_size
        assert np.all(np.diff(self.word_to_offset.astype(np.int64)) >= 0)
        if verify_checksum:
            words = np.frombuffer(buf, "<u8", (len(buf) - 16) // 8, 16)
            got = hash_combine_u64(words)
            assert got == checksum, f"shortlist checksum {got:#x} != {checksum:#x}"

    def per_source(self, src_id):
        a, b = int(self.word_to_offset[src_id]), int(self.word_to_offset[src_id + 1])
        return self.lists[a:b]

    def indices(self, src_ids, vocab_size, pad_to=8):
        sel = np.zeros(vocab_size, bool)
        sel[:min(self.first_num, vocab_size)] = True
        for s in set(src_ids):
            sel[self.per_source(s)] = True
        sel[EOS_ID] = True
        if pad_to:
            i = self.first_num
            while sel.sum() % pad_to and i < vocab_size:
                sel[i] = True
                i += 1
        return np.flatnonzero(sel)


def hash_combine_u64(words):
    """seed ^= v + 0x9e3779b9 + (seed << 6) + (seed >> 2), u64 wrap-around.

    Sequential by nature; done in pure Python ints (~1 s for 1.1M words)."""
    mask = (1 << 64) - 1
    seed = 0
    for v in words.tolist():
        seed ^= (v + 0x9E3779B9 + ((seed << 6) & mask) + (seed >> 2)) & mask
    return seed


# ----------------------------------------------------------------------------
# Model

def layer_norm(x, scale, bias, eps=1e-9):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def sinusoid(positions, dim):
    half = dim // 2
    inc = math.log(10000.0) / (half - 1)
    freq = np.exp(-inc * np.arange(half, dtype=np.float32)).astype(np.float32)
    ang = np.asarray(positions, np.float32)[:, None] * freq[None, :]
    return np.concatenate([np.sin(ang), np.cos(ang)], -1).astype(np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class MarianModel:
    """fp32 model; with int8=True every weight matmul is emulated as intgemm does it.

    int8 emulation: activation x is quantised with the item's static multiplier
    qa = `<W>_QuantMultA` (for the output layer: `none_QuantMultA`) as
    clip(rint(x * qa), -127, 127) (round half to even), multiplied exactly with the
    stored int8 weights (int32-exact sums), then scaled by 1 / (qa * qb) (float32)
    and the bias added.  Embedding lookups, attention scores/softmax, LayerNorm and
    the SSRU gates stay float32.  Marian's x86 "shift" variant (uint8 A = int8 + 127,
    bias pre-corrected by the weight column sums) is the same integer arithmetic
    up to the saturation boundary and the float rounding of the bias correction.
    """

    def __init__(self, model_dir, int8=False):
        self.dir = model_dir
        self.int8 = int8
        files = os.listdir(model_dir)
        (bin_name,) = [f for f in files if f.startswith("model.") and f.endswith(".bin")]
        self.w, self.info, self.q = read_marian_bin(os.path.join(model_dir, bin_name))
        # Float copies of the int8 matrices for BLAS.  Integer dot products are exact
        # in float32 while in_dim * 127 * 127 < 2**24 (in_dim <= 1040), else use float64.
        self.qf = {}
        if int8:
            for k, (q, _) in self.q.items():
                in_dim = q.shape[1] if k == "Wemb" else q.shape[0]
                self.qf[k] = q.astype(np.float32 if in_dim * 127 * 127 < 2**24 else np.float64)
        self.cfg = parse_model_yml(self.w["special:model.yml"].decode("utf-8"))
        c = self.cfg
        assert c["type"] == "transformer" and c["dec-cell"] == "ssru"
        assert c["transformer-decoder-autoreg"] == "rnn"
        assert c["transformer-postprocess"] == "dan" and c["transformer-preprocess"] == ""
        assert c["transformer-postprocess-emb"] == "d" and c["tied-embeddings-all"]
        assert c["transformer-ffn-activation"] == "relu" and c["transformer-ffn-depth"] == 2
        self.dim = c["dim-emb"]
        self.heads = c["transformer-heads"]
        self.enc_depth = c["enc-depth"]
        self.dec_depth = c["dec-depth"]
        self.vocab_size = c["dim-vocabs"][1]
        self.emb = self.w["Wemb"]
        assert self.emb.shape == (c["dim-vocabs"][0], self.dim)
        self.out_b = self.w["decoder_ff_logit_out_b"].reshape(-1)
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        assert self.tok.id_to_token(EOS_ID) == "</s>" and self.tok.id_to_token(UNK_ID) == "<unk>"
        sl = [f for f in files if f.startswith("lex.") and f.endswith(".s2t.bin")]
        self.shortlist_path = os.path.join(model_dir, sl[0]) if sl else None
        self._shortlist = None

    @property
    def shortlist(self):
        if self._shortlist is None:
            self._shortlist = Shortlist(self.shortlist_path)
        return self._shortlist

    # -- pieces --------------------------------------------------------------
    def p(self, name):
        return self.w[name]

    def matmul(self, x, wname, qa_name=None, transpose=False):
        """x @ W (or x @ W^T), in float32 or emulated int8."""
        if not self.int8:
            w = self.p(wname)
            return x @ (w.T if transpose else w)
        qb = self.q[wname][1]
        qa = np.float32(self.p(qa_name or wname + "_QuantMultA").reshape(-1)[0])
        w = self.qf[wname]
        xq = np.clip(np.rint(x * qa), -127, 127).astype(w.dtype)
        acc = xq @ (w.T if transpose else w)  # integer-valued and exact (see __init__)
        return acc.astype(np.float32) * (np.float32(1) / (qa * qb))

    def affine(self, x, prefix, wname, bname):
        return self.matmul(x, prefix + wname) + self.p(prefix + bname).reshape(-1)

    def split(self, x):  # [T, D] -> [H, T, dk]
        t = x.shape[0]
        return x.reshape(t, self.heads, -1).transpose(1, 0, 2)

    def attention(self, q_in, k_heads, v_heads, prefix):
        """Multi-head attention + output projection (no residual/LN)."""
        q = self.split(self.affine(q_in, prefix, "Wq", "bq"))
        dk = q.shape[-1]
        scores = q @ k_heads.transpose(0, 2, 1) * np.float32(1.0 / math.sqrt(dk))
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v_heads).transpose(1, 0, 2).reshape(q_in.shape[0], -1)
        return self.affine(ctx, prefix, "Wo", "bo")

    def ffn(self, x, prefix):
        h = np.maximum(self.affine(x, prefix, "W1", "b1"), 0)
        return self.affine(h, prefix, "W2", "b2")

    def ln(self, x, prefix):
        return layer_norm(x, self.p(prefix + "_ln_scale").reshape(-1),
                          self.p(prefix + "_ln_bias").reshape(-1))

    # -- encoder / decoder ---------------------------------------------------
    def encode(self, src_ids):
        x = self.emb[src_ids] * np.float32(math.sqrt(self.dim))
        x = (x + sinusoid(range(len(src_ids)), self.dim)).astype(np.float32)
        for i in range(1, self.enc_depth + 1):
            pre = f"encoder_l{i}_self_"
            k = self.split(self.affine(x, pre, "Wk", "bk"))
            v = self.split(self.affine(x, pre, "Wv", "bv"))
            x = self.ln(x + self.attention(x, k, v, pre), pre + "Wo")
            pre = f"encoder_l{i}_ffn_"
            x = self.ln(x + self.ffn(x, pre), pre + "ffn")
        return x

    def decoder_cache(self, enc_out):
        """Cross-attention K/V per decoder layer, computed once per sentence."""
        cache = []
        for i in range(1, self.dec_depth + 1):
            pre = f"decoder_l{i}_context_"
            cache.append((self.split(self.affine(enc_out, pre, "Wk", "bk")),
                          self.split(self.affine(enc_out, pre, "Wv", "bv"))))
        return cache

    def decode_step(self, prev_id, pos, cells, cache):
        """One decoder step; `cells` (SSRU states) are updated in place. Returns logits."""
        if prev_id is None:
            x = np.zeros((1, self.dim), np.float32)
        else:
            x = self.emb[[prev_id]] * np.float32(math.sqrt(self.dim))
        x = (x + sinusoid([pos], self.dim)).astype(np.float32)
        for i in range(1, self.dec_depth + 1):
            pre = f"decoder_l{i}_rnn_"
            f = sigmoid(self.affine(x, pre, "Wf", "bf"))
            cells[i - 1] = f * cells[i - 1] + (1 - f) * self.matmul(x, pre + "W")
            x = self.ln(x + np.maximum(cells[i - 1], 0), pre + "ffn")
            pre = f"decoder_l{i}_context_"
            k, v = cache[i - 1]
            x = self.ln(x + self.attention(x, k, v, pre), pre + "Wo")
            pre = f"decoder_l{i}_ffn_"
            x = self.ln(x + self.ffn(x, pre), pre + "ffn")
        logits = self.matmul(x, "Wemb", "none_QuantMultA", transpose=True) + self.out_b
        return logits[0].astype(np.float32)

    # -- text ----------------------------------------------------------------
    def tokenize(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids + [EOS_ID]

    def detokenize(self, ids):
        return self.tok.decode([i for i in ids if i != EOS_ID], skip_special_tokens=False)

    def greedy(self, src_ids, max_length_factor=2.5, use_shortlist=False, topk_first=0):
        """Greedy decode. Returns dict(output_ids (no EOS), ended_with_eos, first_step_topk)."""
        enc = self.encode(np.asarray(src_ids))
        cache = self.decoder_cache(enc)
        cells = [np.zeros((1, self.dim), np.float32) for _ in range(self.dec_depth)]
        cand = self.shortlist.indices(src_ids, self.vocab_size) if use_shortlist else None
        max_len = math.ceil(max_length_factor * len(src_ids))
        out, prev, first_topk, ended = [], None, None, False
        for t in range(max_len):
            logits = self.decode_step(prev, t, cells, cache)
            if t == 0 and topk_first:
                order = np.argsort(-logits, kind="stable")[:topk_first]
                first_topk = [[int(i), float(logits[i])] for i in order]
            logits = logits.copy()
            logits[UNK_ID] = -np.inf
            if cand is not None:
                y = int(cand[np.argmax(logits[cand])])
            else:
                y = int(np.argmax(logits))
            if y == EOS_ID:
                ended = True
                break
            out.append(y)
            prev = y
        return {"output_ids": out, "ended_with_eos": ended,
                "first_step_topk": first_topk, "shortlist_size": None if cand is None else len(cand)}

    def translate(self, text, **kw):
        src = self.tokenize(text)
        res = self.greedy(src, **kw)
        res["source_ids"] = src
        res["output"] = self.detokenize(res["output_ids"])
        return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("text", nargs="*", default=["How are you today?"])
    ap.add_argument("--shortlist", action="store_true", help="also decode with the lexical shortlist")
    ap.add_argument("--int8", action="store_true", help="emulate intgemm int8 matmuls")
    args = ap.parse_args()
    t0 = time.time()
    m = MarianModel(args.model_dir, int8=args.int8)
    print(f"loaded in {time.time() - t0:.2f}s: dim={m.dim} heads={m.heads} enc={m.enc_depth} "
          f"dec={m.dec_depth} vocab={m.vocab_size}")
    if args.shortlist:
        t0 = time.time()
        sl = m.shortlist
        print(f"shortlist firstNum={sl.first_num} bestNum={sl.best_num} "
              f"wordToOffset={len(sl.word_to_offset)} lists={len(sl.lists)} "
              f"checksum {sl.checksum:#x} ok ({time.time() - t0:.2f}s)")
    for text in args.text:
        t0 = time.time()
        r = m.translate(text, topk_first=5)
        print(f"src: {text!r}\n  src_ids: {r['source_ids']}\n  pieces: "
              f"{[m.tok.id_to_token(i) for i in r['source_ids']]}\n  out_ids: {r['output_ids']} "
              f"(eos={r['ended_with_eos']})\n  out: {r['output']!r}\n  first-step top5: "
              f"{r['first_step_topk']}  [{time.time() - t0:.2f}s]")
        if args.shortlist:
            rs = m.translate(text, use_shortlist=True)
            print(f"  shortlist({rs['shortlist_size']} ids): {rs['output_ids']} {rs['output']!r}")


if __name__ == "__main__":
    sys.exit(main())
