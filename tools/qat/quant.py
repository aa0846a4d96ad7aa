"""quantserve's weight and activation quantizers, ported to PyTorch bit for bit.

Every function here mirrors one Rust function (file and name in its docstring) and is meant to give
*identical* codes and scales on the same f32 weights: `tools/qat/check_quantizers.py` proves it
against `quantserve quantize`.  Where Rust sums in f64 left to right, we do the same with
`torch.cumsum` in float64 (sequential on CPU), never `torch.sum` (pairwise).  Rounding is Rust's
`f32::round` (half away from zero), never `torch.round` (half to even).

The same functions are the forward pass of quantization-aware training: `fake_quant_weight` returns
the dequantized weights with a straight-through gradient.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from typing import Optional

import torch

ALS_ROUNDS = 8  # src/quant/bcq.rs ALS_ROUNDS


# ---------------------------------------------------------------------------------------------
# Elementary operations with Rust semantics

def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """`f32::round`: half away from zero, exact (trunc, then ±1 where the dropped part is ≥ 0.5,
    as src/kernels/int8/activations.rs does it with vector instructions)."""
    t = torch.trunc(x)
    away = (x - t).abs() >= 0.5
    return torch.where(away, t + torch.sign(x), t)


FAST_SUMS = False  # True (training only): pairwise f64 sums, equal up to f64 rounding


def seq_sum_f64(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Left-to-right f64 sum along `dim` (Rust `iter().map(f64::from).sum::<f64>()`).

    With FAST_SUMS (training), a pairwise f64 sum: it can differ from Rust's in the last f64
    bits, which moves a Δ or α cast to f32 by at most one f32 ulp in rare cases; the exported
    model is always quantized by quantserve itself and the goldens use the exact sums."""
    if FAST_SUMS:
        return x.to(torch.float64).sum(dim)
    x = x.to(torch.float64)
    if x.shape[dim] == 0:
        return x.sum(dim)
    return torch.cumsum(x, dim=dim).select(dim, -1)


# ---------------------------------------------------------------------------------------------
# Schemes (src/model/variant.rs Scheme::parse)

@dataclasses.dataclass(frozen=True)
class Scheme:
    kind: str  # fp32 | int8 | uniform | ternary | bcq
    bits: int = 0
    group: Optional[int] = None
    per_row: bool = False
    planes: int = 0

    @staticmethod
    def parse(name: str) -> "Scheme":
        err = ValueError(
            f"unknown scheme `{name}` (available: fp32, int8, int4, int6[-g<G>], ternary, "
            "ternary-row, bcq<1-4>; uniform bits must be 4 or 6, groups a multiple of 64)")
        if name == "fp32":
            return Scheme("fp32", 32)
        if name == "int8":
            return Scheme("int8", 8)
        if name == "ternary":
            return Scheme("ternary", 2, per_row=False)
        if name == "ternary-row":
            return Scheme("ternary", 2, per_row=True)
        m = re.fullmatch(r"bcq([1-4])", name)
        if m:
            return Scheme("bcq", int(m.group(1)), planes=int(m.group(1)))
        m = re.fullmatch(r"int([46])(?:-g([0-9]+))?", name)
        if m:
            group = int(m.group(2)) if m.group(2) else None
            if group is not None and (group <= 0 or group % 64):
                raise err
            return Scheme("uniform", int(m.group(1)), group=group)
        raise err

    def name(self) -> str:
        if self.kind in ("fp32", "int8"):
            return self.kind
        if self.kind == "ternary":
            return "ternary-row" if self.per_row else "ternary"
        if self.kind == "bcq":
            return f"bcq{self.planes}"
        return f"int{self.bits}" + (f"-g{self.group}" if self.group else "")

    def bits_per_weight(self, cols: int) -> float:
        """src/quant/lowbit.rs LowBitFormat::bits_per_weight (+ int8: 8 + 32/cols)."""
        if self.kind == "fp32":
            return 32.0
        if self.kind == "int8":
            return 8.0 + 32.0 / cols
        if self.kind == "uniform":
            pp = -(-cols // self.group) if self.group else 1
            return self.bits + 32.0 * pp / cols
        if self.kind == "ternary":
            return 2.0 + 32.0 / cols
        return self.planes * 1.0 + 32.0 * self.planes / cols


# ---------------------------------------------------------------------------------------------
# Quantizers: each returns (codes int8 [rows, planes*cols], params f32 [rows, params_per_row])

def quantize_int8(w: torch.Tensor):
    """src/kernels/int8/quantize.rs quantize_per_output_channel."""
    w = w.float()
    amax = w.abs().amax(dim=1)
    scale = amax / torch.tensor(127.0)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = round_half_away(w / safe[:, None]).clamp(-127, 127)
    q = torch.where((amax > 0)[:, None], q, torch.zeros_like(q))
    scale = torch.where(amax > 0, scale, torch.zeros_like(scale))
    return q.to(torch.int8), scale[:, None].contiguous()


def quantize_uniform(w: torch.Tensor, bits: int, group: Optional[int]):
    """src/quant/uniform.rs quantize."""
    w = w.float()
    rows, cols = w.shape
    qmax = float((1 << (bits - 1)) - 1)
    g = group or cols
    codes, params = [], []
    for start in range(0, cols, g):
        chunk = w[:, start:start + g]
        amax = chunk.abs().amax(dim=1)
        scale = amax / torch.tensor(qmax)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = round_half_away(chunk / safe[:, None]).clamp(-qmax, qmax)
        q = torch.where((scale > 0)[:, None], q, torch.zeros_like(q))
        codes.append(q)
        params.append(scale)
    return torch.cat(codes, 1).to(torch.int8), torch.stack(params, 1).contiguous()


def twn(w: torch.Tensor):
    """src/quant/ternary.rs twn over the last dim: (Δ, α) as f32 tensors."""
    n = w.shape[-1]
    a = w.float().abs()
    mean_abs = seq_sum_f64(a) / n
    delta = (0.7 * mean_abs).to(torch.float32)
    keep = a > delta[..., None]
    s = seq_sum_f64(torch.where(keep, a, torch.zeros_like(a)))
    cnt = keep.sum(-1)
    alpha = torch.where(cnt > 0, s / cnt.clamp(min=1).to(torch.float64),
                        torch.zeros_like(s)).to(torch.float32)
    return delta, alpha


def quantize_ternary(w: torch.Tensor, per_row: bool):
    """src/quant/ternary.rs quantize."""
    w = w.float()
    rows, cols = w.shape
    if per_row:
        delta, alpha = twn(w)
    else:
        d, a = twn(w.reshape(1, -1))
        delta, alpha = d.expand(rows), a.expand(rows)
    keep = w.abs() > delta[:, None]
    q = torch.where(keep, torch.where(w > 0, 1, -1), 0).to(torch.int8)
    return q, alpha[:, None].contiguous()


def _bcq_greedy(w, planes):
    """src/quant/bcq.rs greedy, all rows at once. codes [rows, planes, cols] (f32 ±1)."""
    rows, n = w.shape
    r = w.clone()
    codes = torch.empty(rows, planes, n)
    alpha = torch.empty(rows, planes)
    for p in range(planes):
        a = (seq_sum_f64(r.abs()) / max(n, 1)).to(torch.float32)
        b = torch.where(r >= 0, 1.0, -1.0)
        r = r - a[:, None] * b
        codes[:, p] = b
        alpha[:, p] = a
    return codes, alpha


def _bcq_refine_alpha(w, codes, alpha):
    """src/quant/bcq.rs refine_alpha + solve (Gaussian elimination, partial pivoting, f64)."""
    rows, q, n = codes.shape
    m = torch.zeros(rows, q, q + 1, dtype=torch.float64)
    ci = codes.to(torch.int32) if q > 1 else None
    for i in range(q):
        for j in range(i, q):
            if i == j:
                dot = torch.full((rows,), float(n), dtype=torch.float64)
            else:
                dot = (ci[:, i] * ci[:, j]).sum(-1).to(torch.float64)
            m[:, i, j] = dot
            m[:, j, i] = dot
        m[:, i, q] = seq_sum_f64(codes[:, i].to(torch.float64) * w.to(torch.float64))
    ok = torch.ones(rows, dtype=torch.bool)
    idx = torch.arange(rows)
    for col in range(q):
        cand = m[:, col:, col].abs()
        # Rust max_by keeps the LAST of equal maxima: argmax over the reversed candidates.
        rev = torch.flip(cand, [1])
        pivot = col + (cand.shape[1] - 1 - rev.argmax(1))
        ok &= m[idx, pivot, col].abs() >= 1e-9
        # swap rows col and pivot
        prow = m[idx, pivot].clone()
        crow = m[:, col].clone()
        m[:, col] = prow
        m[idx, pivot] = crow
        for r in range(q):
            if r != col:
                f = m[:, r, col] / m[:, col, col]
                for c in range(col, q + 1):
                    m[:, r, c] = m[:, r, c] - f * m[:, col, c]
    x = torch.stack([m[:, i, q] / m[:, i, i] for i in range(q)], 1).to(torch.float32)
    return torch.where(ok[:, None], x, alpha)


def _bcq_refine_codes(w, codes, alpha):
    """src/quant/bcq.rs refine_codes: nearest of the 2^q pattern values (ties: lower)."""
    rows, q, n = codes.shape
    npat = 1 << q
    vals = torch.zeros(rows, npat)
    for bits in range(npat):
        v = None
        for p in range(q):
            term = alpha[:, p] if (bits >> p) & 1 else -alpha[:, p]
            v = term if v is None else v + term
        vals[:, bits] = v
    sv, order = torch.sort(vals, dim=1, stable=True)
    hi = torch.searchsorted(sv.contiguous(), w.contiguous(), right=False).clamp(max=npat - 1)
    lo = (hi - 1).clamp(min=0)
    vlo = torch.gather(sv, 1, lo)
    vhi = torch.gather(sv, 1, hi)
    pick_lo = (w - vlo).abs() <= (w - vhi).abs()
    best = torch.where(pick_lo, torch.gather(order, 1, lo), torch.gather(order, 1, hi))
    out = torch.empty_like(codes)
    for p in range(q):
        out[:, p] = torch.where((best >> p) & 1 == 1, 1.0, -1.0)
    return out


def quantize_bcq(w: torch.Tensor, planes: int, rounds: int = ALS_ROUNDS):
    """src/quant/bcq.rs quantize. codes [rows, planes*cols] ±1; params α [rows, planes]."""
    w = w.float().contiguous()
    rows, n = w.shape
    codes, alpha = _bcq_greedy(w, planes)
    for _ in range(rounds):
        alpha = _bcq_refine_alpha(w, codes, alpha)
        codes = _bcq_refine_codes(w, codes, alpha)
    return codes.reshape(rows, planes * n).to(torch.int8), alpha.contiguous()


def quantize(w: torch.Tensor, scheme: Scheme, embedding: bool):
    """Scheme::quantize_matrix: (codes, params). `embedding` forces per-row α for ternary."""
    if scheme.kind == "int8":
        return quantize_int8(w)
    if scheme.kind == "uniform":
        return quantize_uniform(w, scheme.bits, scheme.group)
    if scheme.kind == "ternary":
        return quantize_ternary(w, scheme.per_row or embedding)
    if scheme.kind == "bcq":
        return quantize_bcq(w, scheme.planes)
    raise ValueError(f"{scheme.name()} is not a quantization scheme")


def dequantize(codes: torch.Tensor, params: torch.Tensor, scheme: Scheme, cols: int) -> torch.Tensor:
    """src/quant/lowbit.rs dequantize_codes (and int8 codes · scale)."""
    rows = codes.shape[0]
    c = codes.float()
    if scheme.kind in ("int8", "ternary"):
        return c * params[:, :1]
    if scheme.kind == "uniform":
        g = scheme.group or cols
        idx = torch.arange(cols) // g
        return c * params[:, idx]
    c = c.reshape(rows, scheme.planes, cols)
    out = c[:, 0] * params[:, :1]
    for p in range(1, scheme.planes):
        out = out + c[:, p] * params[:, p:p + 1]
    return out


def quant_dequant(w: torch.Tensor, scheme: Scheme, embedding: bool = False) -> torch.Tensor:
    if scheme.kind == "fp32":
        return w.detach()
    codes, params = quantize(w.detach(), scheme, embedding)
    return dequantize(codes, params, scheme, w.shape[1]).to(w.dtype)


# ---------------------------------------------------------------------------------------------
# Frequency tiers (src/quant/tiers.rs)

def count_tokens(tokenizer, files, rows):
    """count_tokens: ids of every non-empty line (special tokens included)."""
    counts = torch.zeros(rows, dtype=torch.int64)
    total = 0
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            if not line.strip():
                continue
            ids = tokenizer.encode(line, add_special_tokens=True).ids
            for i in ids:
                if i >= rows:
                    raise ValueError(f"token id {i} is outside the embedding table ({rows} rows)")
            counts += torch.bincount(torch.tensor(ids, dtype=torch.int64), minlength=rows)
            total += len(ids)
    if total == 0:
        raise ValueError(f"the frequency corpus ({', '.join(map(str, files))}) has no text")
    return counts, total


def assign_tiers(counts: torch.Tensor, total: int, coverages):
    """assign: rows per tier (ascending ids), last entry the remaining rows."""
    n = counts.shape[0]
    # rank by count desc, ties lower id first
    ranked = sorted(range(n), key=lambda i: (-int(counts[i]), i))
    rows = [[] for _ in range(len(coverages) + 1)]
    tier, so_far = 0, 0
    cl = counts.tolist()
    for i in ranked:
        c = cl[i]
        while tier < len(coverages) and (c == 0 or so_far >= coverages[tier] * total):
            tier += 1
        rows[tier].append(i)
        so_far += c
    return [sorted(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Recipes (src/quant/recipe.rs)

BLOCKS = ("embeddings", "encoder_self_attention", "decoder_self_attention",
          "decoder_cross_attention", "ffn")


def block_of(name: str) -> str:
    """Block::of."""
    if name == "Wemb" or "word_embeddings" in name:
        return "embeddings"
    if "_ffn_" in name or ".intermediate." in name or (
            ".output.dense" in name and ".attention." not in name):
        return "ffn"
    if ".attention." in name or (name.startswith("encoder_") and "_self_" in name):
        return "encoder_self_attention"
    if name.startswith("decoder_") and "_rnn_" in name:
        return "decoder_self_attention"
    if "_context_" in name:
        return "decoder_cross_attention"
    return "other"


@dataclasses.dataclass
class Recipe:
    text: str
    default: Scheme
    blocks: dict
    tiers: list  # [(coverage, Scheme)]

    @staticmethod
    def parse(text: str) -> "Recipe":
        d = tomllib.loads(text)
        allowed = {"default", "embedding_tiers", *BLOCKS}
        extra = set(d) - allowed
        if extra:
            raise ValueError(f"bad recipe: unknown field(s) {sorted(extra)}")
        if "default" not in d:
            raise ValueError("bad recipe: missing field `default`")
        blocks = {b: Scheme.parse(d[b]) for b in BLOCKS if b in d}
        tiers, prev = [], 0.0
        for t in d.get("embedding_tiers", []):
            s = Scheme.parse(t["scheme"])
            if s.kind == "fp32":
                raise ValueError("an embedding tier must be a quantized scheme, not fp32")
            if not (t["coverage"] > prev and t["coverage"] <= 1.0):
                raise ValueError("embedding tier coverages must increase within (0, 1]")
            prev = t["coverage"]
            tiers.append((float(t["coverage"]), s))
        return Recipe(text, Scheme.parse(d["default"]), blocks, tiers)

    def scheme_for(self, name: str) -> Scheme:
        return self.blocks.get(block_of(name), self.default)


class Plan:
    """Which scheme each weight tensor gets: one scheme, or a recipe (with optional embedding
    tiers). `tier_rows` (list of row-id lists, last = the rest) must be set for tiered recipes."""

    def __init__(self, scheme: Optional[Scheme] = None, recipe: Optional[Recipe] = None):
        assert (scheme is None) != (recipe is None)
        self.scheme, self.recipe = scheme, recipe
        self.tier_rows = None

    @staticmethod
    def from_args(scheme: Optional[str], recipe_path: Optional[str]) -> "Plan":
        if recipe_path:
            with open(recipe_path, encoding="utf-8") as f:
                return Plan(recipe=Recipe.parse(f.read()))
        s = Scheme.parse(scheme)
        if s.kind == "fp32":
            raise ValueError("fp32 is the source, not a quantization scheme")
        return Plan(scheme=s)

    def scheme_for(self, name: str) -> Scheme:
        return self.recipe.scheme_for(name) if self.recipe else self.scheme

    def tiered(self, name: str) -> bool:
        return bool(self.recipe and self.recipe.tiers and block_of(name) == "embeddings")

    def tier_schemes(self, name: str):
        return [s for _, s in self.recipe.tiers] + [self.recipe.scheme_for(name)]

    def quant_dequant(self, name: str, w: torch.Tensor, embedding: bool) -> torch.Tensor:
        """The weights quantserve will run for tensor `name`, dequantized to f32."""
        if self.tiered(name):
            assert self.tier_rows is not None, "embedding tiers need token counts"
            out = torch.empty_like(w)
            for ids, s in zip(self.tier_rows, self.tier_schemes(name)):
                if ids:
                    t = torch.tensor(ids)
                    out[t] = quant_dequant(w.detach()[t], s, True)
            return out
        return quant_dequant(w, self.scheme_for(name), embedding)

    def kernel_parts(self, name: str, w: torch.Tensor, embedding: bool):
        """[(row ids or None, scheme, codes, params)] as quantserve stores the matrix."""
        w = w.detach().float()
        if self.tiered(name):
            out = []
            for ids, s in zip(self.tier_rows, self.tier_schemes(name)):
                if ids:
                    c, p = quantize(w[torch.tensor(ids)], s, True)
                    out.append((torch.tensor(ids), s, c, p))
            return out
        s = self.scheme_for(name)
        if s.kind == "fp32":
            return [(None, s, None, None)]
        c, p = quantize(w, s, embedding)
        return [(None, s, c, p)]

    def bits(self, name: str, rows: int, cols: int) -> float:
        """Total stored bits of the matrix (codes + f32 params (+ 32-bit row ids for tiers))."""
        if self.tiered(name):
            total = 0.0
            for ids, s in zip(self.tier_rows, self.tier_schemes(name)):
                if ids:
                    total += len(ids) * cols * s.bits_per_weight(cols) + 32 * len(ids)
            return total
        return rows * cols * self.scheme_for(name).bits_per_weight(cols)


# ---------------------------------------------------------------------------------------------
# Training-time fake quantization

class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, wq):
        return wq

    @staticmethod
    def backward(ctx, g):
        return g, None


def ste(w: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """Forward: the quantized weights; backward: the gradient goes to the latent weights."""
    return _STE.apply(w, wq)


EXACT_ACT = True  # False: a faster rounding for training (differs only on exact ±.5 ties)


def fake_quant_act(x: torch.Tensor) -> torch.Tensor:
    """src/kernels/int8/activations.rs quantize_row_portable, dequantized: per row (token)
    `inv = 127/max|x|`, `q = round_half_away(x·inv)` clamped to ±127, `x̂ = q · (max|x|/127)`;
    an all-zero row stays zero. Straight-through gradient.

    With EXACT_ACT = False (training), rounding is `trunc(v ± 0.5)`, which can differ from
    round-half-away only for |v| within one ulp below a .5 tie; goldens use the exact form."""
    with torch.no_grad():
        xd = x.detach()
        amax = xd.abs().amax(dim=-1, keepdim=True)
        inv = torch.tensor(127.0) / amax
        good = (amax > 0) & torch.isfinite(inv)
        inv = torch.where(good, inv, torch.zeros_like(inv))
        scale = torch.where(good, amax / torch.tensor(127.0), torch.zeros_like(amax))
        v = xd * inv
        if EXACT_ACT:
            q = round_half_away(v).clamp(-127, 127)
        else:
            q = torch.trunc(v + torch.copysign(torch.tensor(0.5), v))
        xq = q * scale
    return ste(x, xq)


# ---------------------------------------------------------------------------------------------
# Kernel-exact evaluation (goldens): a quantized Linear computed as quantserve's kernels do

KERNEL_EXACT = False  # make_goldens sets it; training never does


def act_codes(x: torch.Tensor):
    """Per-token activation codes and scales exactly as quantize_row_portable."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    inv = torch.tensor(127.0) / amax
    good = (amax > 0) & torch.isfinite(inv)
    inv = torch.where(good, inv, torch.zeros_like(inv))
    scale = torch.where(good, amax / torch.tensor(127.0), torch.zeros_like(amax))
    return round_half_away(x * inv).clamp(-127, 127), scale


def _groups(scheme: Scheme, cols: int):
    """(column slice of the codes, parameter index) per kernel group, in kernel order."""
    if scheme.kind == "uniform" and scheme.group:
        g = scheme.group
        return [(slice(s, min(s + g, cols)), i) for i, s in enumerate(range(0, cols, g))]
    if scheme.kind == "bcq":
        return [(slice(p * cols, (p + 1) * cols), p) for p in range(scheme.planes)]
    return [(slice(0, cols), 0)]


def kernel_linear(x: torch.Tensor, codes: torch.Tensor, params: torch.Tensor, scheme: Scheme,
                  bias):
    """y = Linear(x) as src/kernels/int8 (int8) or src/kernels/lowbit (sub-8-bit) compute it:
    exact integer sums; int8: float(sum)·(xs·ws) + b; low-bit: facc = fma(float(Σ_g), s_g, facc)
    over the groups in order, y = facc·xs + b. (The FMA is emulated in f64, exact except for a
    double rounding in rare ties.)"""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]).float()
    q, xs = act_codes(x2)
    qd = q.double()
    cols = shape[-1]
    if scheme.kind == "int8":
        acc = (qd @ codes.double().T).float()
        y = acc * (xs * params[:, 0][None, :])
    else:
        facc = torch.zeros(x2.shape[0], codes.shape[0], dtype=torch.float32)
        xcols = qd if scheme.kind != "bcq" else qd.repeat(1, scheme.planes)
        for sl, pi in _groups(scheme, cols):
            v = (xcols[:, sl] @ codes[:, sl].double().T).float()
            facc = (v.double() * params[:, pi].double()[None, :] + facc.double()).float()
        y = facc * xs
    if bias is not None:
        y = y + bias.float()
    return y.reshape(*shape[:-1], codes.shape[0])


def layer_norm_exact(x: torch.Tensor, gamma, beta, eps: float) -> torch.Tensor:
    """src/kernels/ops.rs layer_norm with its sequential f32 sums."""
    d = x.shape[-1]
    mean = torch.cumsum(x, -1)[..., -1:] / d
    c = x - mean
    var = torch.cumsum(c * c, -1)[..., -1:] / d
    inv = 1.0 / torch.sqrt(var + torch.tensor(eps, dtype=torch.float32))
    return c * inv * gamma + beta


def kernel_apply(x, parts, w, bias):
    """A Linear over `parts` (Plan.kernel_parts) as quantserve runs it (tiers: each part
    computes its own output columns)."""
    if len(parts) == 1 and parts[0][0] is None:
        _, s, c, p = parts[0]
        if s.kind == "fp32":
            return torch.nn.functional.linear(x, w.float(), bias)
        return kernel_linear(x, c, p, s, bias)
    n = sum(len(ids) for ids, *_ in parts)
    y = torch.empty(*x.shape[:-1], n)
    for ids, s, c, p in parts:
        y[..., ids] = kernel_linear(x, c, p, s, None if bias is None else bias[ids])
    return y


def kernel_embedding_table(parts, w, scale: float):
    """The rows quantserve's Embedding::lookup(id, scale) returns (int8: q·(s·scale); low-bit:
    (q·p)·scale; bcq: (Σ_p b_p·α_p)·scale)."""
    cols = w.shape[1]
    sc = torch.tensor(scale, dtype=torch.float32)
    out = torch.empty_like(w.detach().float())
    for ids, s, c, p in parts:
        if s.kind == "fp32":
            rows = w.detach().float() * sc
        elif s.kind == "int8":
            rows = c.float() * (p[:, :1] * sc)
        else:
            rows = dequantize(c, p, s, cols) * sc
        if ids is None:
            out = rows
        else:
            out[ids] = rows
    return out
