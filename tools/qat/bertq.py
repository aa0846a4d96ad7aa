"""The sentiment classifier (HF BERT layout) exactly as quantserve runs it (src/model/bert.rs,
encoder.rs, attention.rs), in PyTorch, with quantization in the loop.

Forward with a `quant.Plan`: every weight matrix the plan quantizes (word embeddings, Q/K/V,
attention output, both FFN matrices, pooler, classifier) is replaced by its quantize→dequantize
image (straight-through gradient to the latent fp32 weights), and the input of every Linear is
fake-quantized per token to 8 bits exactly as the int8 / low-bit kernels do. Attention matmuls,
softmax, layer norms, GELU, tanh stay fp32, as in quantserve. Without a plan: the fp32 model.
"""
from __future__ import annotations

import json
import math
import os

import torch
import torch.nn.functional as F

import qatio
import quant


def _p(t, name):
    return "bert." + name if "bert." + name in t else name


class Bert(torch.nn.Module):
    def __init__(self, folder: str, tensors: dict | None = None):
        super().__init__()
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            self.cfg = json.load(f)
        t = tensors if tensors is not None else qatio.read_bert(folder)
        self.names = {}  # parameter key -> stored tensor name
        self.params = torch.nn.ParameterDict()
        for name, v in t.items():
            key = name.replace(".", "__")
            self.params[key] = torch.nn.Parameter(v.float().clone())
            self.names[key] = name
        c = self.cfg
        self.h, self.heads, self.layers = c["hidden_size"], c["num_attention_heads"], c[
            "num_hidden_layers"]
        self.eps = c.get("layer_norm_eps", 1e-12)
        act = c["hidden_act"]
        if act == "gelu":
            self.act = lambda x: F.gelu(x)
        elif act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            self.act = lambda x: F.gelu(x, approximate="tanh")
        else:
            raise qatio.BadInput(f"hidden_act `{act}` is not supported")
        self.t = {n: self.params[k] for k, n in self.names.items()}
        self.plan = None
        self._wq_cache = None

    def freeze_quant(self):
        """Quantize once and reuse (evaluation: the weights do not change)."""
        self._wq_cache = {}

    def unfreeze_quant(self):
        self._wq_cache = None

    def w(self, name):
        return self.t[_p(self.t, name)]

    def state_tensors(self) -> dict:
        return {n: self.params[k].detach().clone() for k, n in self.names.items()}

    def load_tensors(self, tensors: dict):
        with torch.no_grad():
            for k, n in self.names.items():
                self.params[k].copy_(tensors[n])

    # -- quantization ---------------------------------------------------------------------------
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

    def qw(self, name, embedding=False):
        """The weights quantserve runs for `name` (fake-quantized when a plan is set)."""
        full = _p(self.t, name)
        w = self.t[full]
        if self.plan is None:
            return w
        if self._wq_cache is not None and full in self._wq_cache:
            return self._wq_cache[full]
        wq = self._train_quant(full, w, embedding)
        if self._wq_cache is not None:
            self._wq_cache[full] = wq
        return quant.ste(w, wq)

    def linear(self, x, prefix):
        if quant.KERNEL_EXACT and self.plan is not None:
            full = _p(self.t, prefix + ".weight")
            key = ("parts", full)
            if key not in self._wq_cache:
                self._wq_cache[key] = self.plan.kernel_parts(full, self.t[full], False)
            return quant.kernel_apply(x, self._wq_cache[key], self.t[full],
                                      self.w(prefix + ".bias"))
        w = self.qw(prefix + ".weight")
        b = self.w(prefix + ".bias")
        if self.plan is not None:
            x = quant.fake_quant_act(x)
        return F.linear(x, w, b)

    def ln(self, x, prefix):
        g, b = self.w(prefix + ".weight"), self.w(prefix + ".bias")
        if quant.KERNEL_EXACT:
            return quant.layer_norm_exact(x, g, b, self.eps)
        return F.layer_norm(x, (self.h,), g, b, self.eps)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, ids: torch.Tensor, mask: torch.Tensor, want_internals=False):
        """ids, mask: [B, T] (mask 1 = real token). Returns logits [B, labels] and, when asked,
        hidden states (embedding output + every layer) and attention scores (pre-softmax)."""
        B, T = ids.shape
        h, nh = self.h, self.heads
        dh = h // nh
        wemb = self.qw("embeddings.word_embeddings.weight", embedding=True)
        x = F.embedding(ids, wemb)
        x = x + self.w("embeddings.position_embeddings.weight")[:T][None]
        x = x + self.w("embeddings.token_type_embeddings.weight")[0][None, None]
        x = self.ln(x, "embeddings.LayerNorm")
        hiddens, scores_all = [x], []
        key_mask = (mask[:, None, None, :] == 0)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = self.linear(x, f"{p}.attention.self.query").view(B, T, nh, dh).transpose(1, 2)
            k = self.linear(x, f"{p}.attention.self.key").view(B, T, nh, dh).transpose(1, 2)
            v = self.linear(x, f"{p}.attention.self.value").view(B, T, nh, dh).transpose(1, 2)
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
            scores_all.append(s)
            a = torch.softmax(s.masked_fill(key_mask, float("-inf")), -1)
            ctx = (a @ v).transpose(1, 2).reshape(B, T, h)
            x = self.ln(x + self.linear(ctx, f"{p}.attention.output.dense"),
                        f"{p}.attention.output.LayerNorm")
            inter = self.act(self.linear(x, f"{p}.intermediate.dense"))
            x = self.ln(x + self.linear(inter, f"{p}.output.dense"), f"{p}.output.LayerNorm")
            hiddens.append(x)
        pooled = torch.tanh(self.linear(x[:, 0], "pooler.dense"))
        logits = self.linear(pooled, "classifier")
        if want_internals:
            return logits, hiddens, scores_all
        return logits


def batch_ids(tokenizer, texts, max_len=512):
    """Token ids with [CLS]/[SEP] (as quantserve's classify), padded to the longest: ids, mask."""
    encs = [tokenizer.encode(t, add_special_tokens=True).ids[:max_len] for t in texts]
    T = max(len(e) for e in encs)
    ids = torch.zeros(len(encs), T, dtype=torch.long)
    mask = torch.zeros(len(encs), T, dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    return ids, mask
