"""The Bergamot "tiny" Marian student exactly as quantserve runs it (src/model/marian.rs,
encoder.rs, attention.rs), in PyTorch, with quantization in the loop.

* source ids = SentencePiece ids + EOS (</s> = 0); embeddings `Wemb[id] · √dim` + Marian
  sinusoid (sin | cos, frequency 10000^(−i/(half−1))); no embedding layer norm.
* encoder: post-norm layers (fused QKV, fp32 attention, Wo, +residual, LN eps 1e-9; ReLU FFN,
  +residual, LN).
* decoder (SSRU): step input = zero vector (step 0) or `Wemb[y_{t−1}] · √dim`, + position t;
  per layer `f = σ(x·Wfᵀ + bf)`, `c = f⊙c + (1−f)⊙(x·Wᵀ)`, `x = LN(x + relu(c))`; cross-attention
  (Wq on x, Wk/Wv on the encoder output), +residual, LN; FFN, +residual, LN.
* output: `x · Wembᵀ + b` (tied embeddings); <unk> (id 1) never chosen; greedy ties → lowest id;
  at most ceil(2.5 · len(source ids)) output tokens (EOS included).

With a `quant.Plan` every matrix quantserve quantizes (Wemb for lookups and output alike, all
`*_W*`) is replaced by its quantize→dequantize image (straight-through gradient), and the input of
every Linear (output layer included) is fake-quantized per token to 8 bits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import qatio
import quant

EOS, UNK = 0, 1
EPS = 1e-9


def _yml_int(yml: str, key: str) -> int:
    for line in yml.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key and v.strip():
            return int(v.strip())
    raise qatio.BadInput(f"model.yml has no integer `{key}`")


def positions(n: int, dim: int, start: int = 0) -> torch.Tensor:
    """src/model/marian.rs add_position (Positions::Marian), rows start..start+n, in f32."""
    half = dim // 2
    step = torch.log(torch.tensor(10000.0)) / max(half - 1.0, 1.0)
    freq = torch.exp(-torch.arange(half, dtype=torch.float32) * step)
    ang = torch.arange(start, start + n, dtype=torch.float32)[:, None] * freq[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1)


class Marian(torch.nn.Module):
    def __init__(self, tensors: dict, yml: str):
        super().__init__()
        self.yml = yml
        for key, want in (("type", "transformer"), ("dec-cell", "ssru"),
                          ("transformer-decoder-autoreg", "rnn"),
                          ("transformer-postprocess", "dan")):
            if f"{key}: {want}" not in yml:
                raise qatio.BadInput(f"model.yml `{key}` is not `{want}`")
        if "tied-embeddings-all: true" not in yml:
            raise qatio.BadInput("only models with tied-embeddings-all are supported")
        self.dim = _yml_int(yml, "dim-emb")
        self.heads = _yml_int(yml, "transformer-heads")
        self.enc_depth = _yml_int(yml, "enc-depth")
        self.dec_depth = _yml_int(yml, "dec-depth")
        self.params = torch.nn.ParameterDict()
        self.names = {}
        for name, v in tensors.items():
            if name.endswith("_QuantMultA"):
                continue
            v = v.float().clone()
            if v.dim() == 2 and v.shape[0] == 1 and not marian_matrix(name):
                v = v.reshape(-1)  # biases / LN vectors stored [1, n]
            self.params[name] = torch.nn.Parameter(v)
            self.names[name] = name
        self.shapes = {n: tuple(tensors[n].shape) for n in self.names}
        self.plan = None
        self._wq_cache = None
        self.emb_scale = math.sqrt(self.dim)

    # -- weights --------------------------------------------------------------------------------
    def state_tensors(self) -> dict:
        """Tensors in their stored shapes (for write_marian)."""
        return {n: self.params[n].detach().clone().reshape(self.shapes[n]) for n in self.names}

    def load_tensors(self, tensors: dict):
        with torch.no_grad():
            for n in self.names:
                self.params[n].copy_(tensors[n].reshape(self.params[n].shape))

    def freeze_quant(self):
        self._wq_cache = {}

    def unfreeze_quant(self):
        self._wq_cache = None

    # Training: re-quantize every `requant_every` steps (BCQ's 8 least-squares rounds over every
    # matrix take tens of seconds on one core); in between the forward pass uses the last
    # quantized weights and the straight-through gradient still reaches the latent weights.
    requant_every = 1
    _steps = 0
    _train_cache = None

    def tick(self):
        self._steps += 1

    def _train_quant(self, name, w, embedding):
        if self._wq_cache is not None or self.requant_every <= 1:
            return self.plan.quant_dequant(name, w, embedding)
        if self._train_cache is None or self._steps % self.requant_every == 0 and \
                self._train_cache.get("_at") != self._steps:
            self._train_cache = {"_at": self._steps}
        if name not in self._train_cache:
            self._train_cache[name] = self.plan.quant_dequant(name, w, embedding)
        return self._train_cache[name]

    def qw(self, name):
        w = self.params[name]
        if self.plan is None:
            return w
        if self._wq_cache is not None and name in self._wq_cache:
            return self._wq_cache[name]
        wq = quant.ste(w, self._train_quant(name, w, name == "Wemb"))
        if self._wq_cache is not None:
            self._wq_cache[name] = wq
        return wq

    def _parts(self, name):
        key = ("parts", name)
        if key not in self._wq_cache:
            self._wq_cache[key] = self.plan.kernel_parts(name, self.params[name], name == "Wemb")
        return self._wq_cache[key]

    def linear(self, x, w, b=None):
        if quant.KERNEL_EXACT and self.plan is not None:
            return quant.kernel_apply(x, self._parts(w), self.params[w],
                                      self.params[b] if b else None)
        wq = self.qw(w)
        if self.plan is not None:
            x = quant.fake_quant_act(x)
        return F.linear(x, wq, self.params[b] if b else None)

    def ln(self, x, prefix):
        if quant.KERNEL_EXACT:
            return quant.layer_norm_exact(x, self.params[prefix + "_ln_scale"],
                                          self.params[prefix + "_ln_bias"], EPS)
        return F.layer_norm(x, (self.dim,), self.params[prefix + "_ln_scale"],
                            self.params[prefix + "_ln_bias"], EPS)

    # -- blocks ---------------------------------------------------------------------------------
    def mha(self, q, k, v, key_pad):
        """q [B,Tq,d], k/v [B,Tk,d]; key_pad [B,Tk] True = padding."""
        B, Tq, d = q.shape
        Tk = k.shape[1]
        h, dh = self.heads, d // self.heads
        q = q.view(B, Tq, h, dh).transpose(1, 2)
        k = k.view(B, Tk, h, dh).transpose(1, 2)
        v = v.view(B, Tk, h, dh).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        if key_pad is not None:
            s = s.masked_fill(key_pad[:, None, None, :], float("-inf"))
        a = torch.softmax(s, -1)
        return (a @ v).transpose(1, 2).reshape(B, Tq, d)

    def embed(self, ids):
        if quant.KERNEL_EXACT and self.plan is not None:
            key = ("table", "Wemb")
            if key not in self._wq_cache:
                self._wq_cache[key] = quant.kernel_embedding_table(
                    self._parts("Wemb"), self.params["Wemb"], self.emb_scale)
            return F.embedding(ids, self._wq_cache[key])
        return F.embedding(ids, self.qw("Wemb")) * self.emb_scale

    def encode(self, src, src_pad):
        """src [B,S] (padding anywhere after EOS, masked); returns [B,S,d]."""
        B, S = src.shape
        x = self.embed(src) + positions(S, self.dim)[None]
        for l in range(1, self.enc_depth + 1):
            p = f"encoder_l{l}"
            q = self.linear(x, f"{p}_self_Wq", f"{p}_self_bq")
            k = self.linear(x, f"{p}_self_Wk", f"{p}_self_bk")
            v = self.linear(x, f"{p}_self_Wv", f"{p}_self_bv")
            ctx = self.mha(q, k, v, src_pad)
            x = self.ln(x + self.linear(ctx, f"{p}_self_Wo", f"{p}_self_bo"), f"{p}_self_Wo")
            hid = torch.relu(self.linear(x, f"{p}_ffn_W1", f"{p}_ffn_b1"))
            x = self.ln(x + self.linear(hid, f"{p}_ffn_W2", f"{p}_ffn_b2"), f"{p}_ffn_ffn")
        return x

    def cross_kv(self, enc):
        out = []
        for l in range(1, self.dec_depth + 1):
            p = f"decoder_l{l}"
            out.append((self.linear(enc, f"{p}_context_Wk", f"{p}_context_bk"),
                        self.linear(enc, f"{p}_context_Wv", f"{p}_context_bv")))
        return out

    def decoder_inputs(self, prev, start):
        """prev [B,T] previous tokens (-1 = the start: zero embedding); positions from start."""
        B, T = prev.shape
        e = self.embed(prev.clamp(min=0))
        e = torch.where((prev < 0)[..., None], torch.zeros_like(e), e)
        return e + positions(T, self.dim, start)[None]

    def decode(self, x, kv, src_pad, states=None):
        """x [B,T,d] decoder inputs; runs every layer over T steps (SSRU recurrence in time);
        states: per-layer SSRU cells [B,d] (zeros when None). Returns (logits-input [B,T,d],
        new states)."""
        B, T, d = x.shape
        new_states = []
        for l in range(1, self.dec_depth + 1):
            p = f"decoder_l{l}"
            gf = self.linear(x, f"{p}_rnn_Wf", f"{p}_rnn_bf")
            gw = self.linear(x, f"{p}_rnn_W")
            f = torch.sigmoid(gf)
            c = states[l - 1] if states is not None else torch.zeros(B, d)
            outs = []
            for t in range(T):
                c = f[:, t] * c + (1.0 - f[:, t]) * gw[:, t]
                outs.append(torch.relu(c))
            new_states.append(c)
            x = self.ln(x + torch.stack(outs, 1), f"{p}_rnn_ffn")
            q = self.linear(x, f"{p}_context_Wq", f"{p}_context_bq")
            k, v = kv[l - 1]
            ctx = self.mha(q, k, v, src_pad)
            x = self.ln(x + self.linear(ctx, f"{p}_context_Wo", f"{p}_context_bo"),
                        f"{p}_context_Wo")
            hid = torch.relu(self.linear(x, f"{p}_ffn_W1", f"{p}_ffn_b1"))
            x = self.ln(x + self.linear(hid, f"{p}_ffn_W2", f"{p}_ffn_b2"), f"{p}_ffn_ffn")
        return x, new_states

    def logits(self, x, columns=None):
        """Output layer (tied): x · Wembᵀ + b, optionally only `columns`."""
        if quant.KERNEL_EXACT and self.plan is not None and columns is None:
            return quant.kernel_apply(x, self._parts("Wemb"), self.params["Wemb"],
                                      self.params["decoder_ff_logit_out_b"])
        w = self.qw("Wemb")
        b = self.params["decoder_ff_logit_out_b"]
        if columns is not None:
            w, b = w[columns], b[columns]
        if self.plan is not None:
            x = quant.fake_quant_act(x)
        return F.linear(x, w, b)

    def forward_teacher_forced(self, src, src_pad, tgt_in):
        """Logits [B,T,V] for every target position, given decoder inputs `tgt_in` (previous
        tokens, -1 at t=0)."""
        enc = self.encode(src, src_pad)
        kv = self.cross_kv(enc)
        x, _ = self.decode(self.decoder_inputs(tgt_in, 0), kv, src_pad)
        return self.logits(x)

    @torch.no_grad()
    def greedy(self, sources, max_length_factor=2.5, want_first_logits=False):
        """Greedy decoding of source id lists (each ending in EOS), full vocabulary; returns
        target id lists without EOS (and the first step's logits [B, V])."""
        B = len(sources)
        S = max(len(s) for s in sources)
        src = torch.zeros(B, S, dtype=torch.long)
        pad = torch.ones(B, S, dtype=torch.bool)
        for i, s in enumerate(sources):
            src[i, :len(s)] = torch.tensor(s)
            pad[i, :len(s)] = False
        enc = self.encode(src, pad)
        kv = self.cross_kv(enc)
        max_len = [max(1, math.ceil(max_length_factor * len(s))) for s in sources]
        out = [[] for _ in range(B)]
        done = [False] * B
        prev = torch.full((B, 1), -1, dtype=torch.long)
        states = None
        first = None
        for step in range(max(max_len)):
            x, states = self.decode(self.decoder_inputs(prev, step), kv, pad, states)
            lg = self.logits(x[:, 0])
            if step == 0:
                first = lg.clone()
            lg[:, UNK] = float("-inf")
            nxt = lg.argmax(-1)
            for i in range(B):
                if done[i]:
                    continue
                tok = int(nxt[i])
                if tok == EOS:
                    done[i] = True
                else:
                    out[i].append(tok)
                    if len(out[i]) >= max_len[i]:
                        done[i] = True
            if all(done):
                break
            prev = nxt[:, None]
        return (out, first) if want_first_logits else out


def marian_matrix(name: str) -> bool:
    return name == "Wemb" or ("_W" in name and "_ln_" not in name)


def load(folder: str) -> Marian:
    tensors, yml, _ = qatio.read_marian_bin(qatio.marian_model_file(folder))
    return Marian(tensors, yml)


def source_ids(tokenizer, text: str):
    """quantserve's MarianTranslator::tokenize: pieces (no specials) + EOS."""
    return tokenizer.encode(text, add_special_tokens=False).ids + [EOS]
