"""The learned-embedding transformer of Ravfogel, Yehudai, Bruna and Bietti (2026), as a stack.

"Geometric Factual Recall in Transformers" trains causal transformers whose token
embeddings are learned. For tokens x_1..x_n (n <= C, the longest sequence) one model computes

    x_0 = W_E[x_t] + W_pos[t],
    each layer l:  x += Attn_l(LN1_l(x)),   x += MLP_l(LN2_l(x)),
    Attn(y)_t = Σ_h [Σ_{s<=t} softmax_s((y_t W_Q^h)·(y_s W_K^h) / sqrt(d_head)) y_s W_V^h] W_O^h,
    MLP(y) = W2 ReLU(W1 y + b1) + b2,
    logits_t = LN_f(x_t) W_U.

Where the paper gives no choice, ours (each a config field or documented here):

- ``norm="pre"`` (default): LayerNorm ``LN(y) = g ⊙ (y - mean) / sqrt(var + 1e-5) + b``
  (biased variance, torch's eps) before attention and MLP, and a final one. ``norm="none"``:
  no normalisation at all, as in the paper's theory (the hand-built construction of its
  Theorem 4.1); such a model has no LayerNorm weights: :class:`TransformerStack` masks
  them as padding (zero, never trained) and the forward pass skips its LayerNorms.
- A learned positional embedding, a bias in the MLP, an untied unembedding ``W_U``.
- Initialisation: embeddings N(0, 1), every matrix N(0, 1/fan_in) (LeCun normal: fan_in is
  d for W_Q, W_K, W_V, W1 and W_U, H·d_head for W_O, the width for W2), LayerNorm gains 1,
  biases 0. Unlike GPT-2's fixed N(0, 0.02), tuned for d ~ 768, this keeps every stage O(1)
  at the small and very different sizes our threshold searches sweep (d from 2 to 256); an
  embedded token has norm about sqrt(d), the scale LayerNorm produces.

Padding is inert (:mod:`factlab.models.stack`): every weight is multiplied by its own-entry
mask, so a model's padded dimensions, heads, head entries, MLP units, positions and tokens
are zero and stay zero, a padded layer is exactly the identity (its weights are zero), and
LayerNorm takes mean and variance over each model's own d (``Stack.sizes("D")``), writing 0
in the padding; scores are scaled by each model's own 1/sqrt(d_head).

The forward pass runs in named stages (:func:`stage_names`); ``hooks`` maps a stage to a
callable that reads the tensor there and may return a replacement (probes, interventions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models.stack import Stack, check_sizes

NORMS = ("pre", "none")
#: LayerNorm's epsilon (torch's default)
EPS = 1e-5
#: the LayerNorm weights: padding in a model without normalisation
NORM_WEIGHTS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b", "lnf_g", "lnf_b")

Hooks = Mapping[str, Callable[[torch.Tensor], "torch.Tensor | None"]]


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of one transformer (factlab's names of dimensions, docs/engine.md): vocabulary
    ``n_tokens`` (d_vocab, V), longest sequence ``seq_len`` (n_ctx, C), ``d`` (d_model, D),
    ``n_layers`` (L), ``n_heads`` (H), ``d_head`` (K), MLP ``width`` (d_mlp, F);
    ``norm``: "pre" (pre-LN and a final LN, ours) or "none" (the paper's theory)."""

    n_tokens: int
    seq_len: int
    d: int
    n_layers: int = 1
    n_heads: int = 1
    d_head: int = 1
    width: int = 1
    norm: str = "pre"

    def __post_init__(self):
        check_sizes(self, ("n_tokens", "seq_len", "d", "n_layers", "n_heads", "d_head", "width"), "TransformerConfig.")
        if self.norm not in NORMS:
            raise ConfigError(f"TransformerConfig.norm must be one of {list(NORMS)}, got {self.norm!r}")

    def axis_sizes(self) -> dict[str, int]:
        return {"V": self.n_tokens, "C": self.seq_len, "D": self.d, "L": self.n_layers, "H": self.n_heads,
                "K": self.d_head, "F": self.width}

    @property
    def params(self) -> int:
        """Every trained number: ``2·V·d + C·d + L·(4·H·d_head·d + 2·F·d + F + d)`` (embedding,
        unembedding, positions; attention, MLP matrices and biases), plus ``4·L·d + 2·d``
        LayerNorm gains and biases under pre-LN."""
        V, C, d, L, H, K, F = self.axis_sizes().values()
        norm = 4 * L * d + 2 * d if self.norm == "pre" else 0
        return 2 * V * d + C * d + L * (4 * H * K * d + 2 * F * d + F + d) + norm

    @property
    def non_embedding_params(self) -> int:
        """:attr:`params` without ``W_E``, ``W_pos`` and ``W_U``."""
        return self.params - (2 * self.n_tokens + self.seq_len) * self.d


def stage_names(n_layers: int) -> list[str]:
    """The hookable stages, in order: "embed" ``(M, B, C, D)``; per layer l "resid_pre.l",
    "attn_pattern.l" ``(M, B, H, C, C)`` (the causal softmax), "attn_out.l", "resid_mid.l",
    "mlp_hidden.l" ``(M, B, C, F)`` (after the ReLU), "mlp_out.l", "resid_post.l"; and
    "final" (after the final LN; the input of W_U)."""
    per = ("resid_pre", "attn_pattern", "attn_out", "resid_mid", "mlp_hidden", "mlp_out", "resid_post")
    return ["embed"] + [f"{s}.{l}" for l in range(n_layers) for s in per] + ["final"]


class TransformerStack(Stack):
    """M transformers of possibly different sizes and norms (see the module docstring).

    Weights: ``W_E (V, D)``, ``W_pos (C, D)``; per layer ``ln1_g, ln1_b, ln2_g, ln2_b (L,
    D)``, ``W_Q, W_K, W_V (L, H, D, K)``, ``W_O (L, H, K, D)``, ``W1 (L, F, D)``, ``b1 (L,
    F)``, ``W2 (L, D, F)``, ``b2 (L, D)`` (W1, W2 as ``nn.Linear`` stores them); ``lnf_g,
    lnf_b (D,)``; ``W_U (D, V)``."""

    AXES = {"W_E": "VD", "W_pos": "CD", "ln1_g": "LD", "ln1_b": "LD", "W_Q": "LHDK", "W_K": "LHDK",
            "W_V": "LHDK", "W_O": "LHKD", "ln2_g": "LD", "ln2_b": "LD", "W1": "LFD", "b1": "LF", "W2": "LDF",
            "b2": "LD", "lnf_g": "D", "lnf_b": "D", "W_U": "DV"}
    OUTPUT_AXIS = "V"
    CHUNK_AXES = "VCDLHKF"

    def __init__(self, configs, params, **options):
        super().__init__(configs, params, **options)
        normed = torch.tensor([c.norm == "pre" for c in self.configs], device=self.device)
        for name in NORM_WEIGHTS:                    # a model without normalisation has no LN weights
            m = self.masks[name]
            self.masks[name] = m * normed.view(-1, *[1] * (m.dim() - 1)).to(m.dtype)
            self.params[name] = self.params[name] * self.masks[name]

    @classmethod
    def chunk_cost(cls, sizes: np.ndarray) -> np.ndarray:
        """Seconds per sequence at padded sizes (V, C, D, L, H, K, F): the forward pass's
        multiply-adds per position, ``L·(4·D·H·K + 2·C·H·K + 2·D·F) + D·V`` (Q, K, V and O;
        scores and mixing over C keys; the MLP; the unembedding), times C positions, times
        1.5e-10 s (the recall transformer's factor)."""
        V, C, D, L, H, K, F = (sizes[:, i].astype(np.float64) for i in range(7))
        return 1.5e-10 * C * (L * (4 * D * H * K + 2 * C * H * K + 2 * D * F) + D * V)

    @classmethod
    def init_weights(cls, config: TransformerConfig, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Embeddings N(0, 1), matrices N(0, 1/fan_in), gains 1, biases 0 (ours: see the
        module docstring); drawn in :attr:`AXES` order in float64, then cast."""
        c = config
        fan_in = {"W_E": 1, "W_pos": 1, "W_Q": c.d, "W_K": c.d, "W_V": c.d, "W_O": c.n_heads * c.d_head,
                  "W1": c.d, "W2": c.width, "W_U": c.d}
        out = {}
        for name, shape in cls.shapes(c).items():
            if name in fan_in:
                w = torch.randn(shape, generator=generator, dtype=torch.float64) / fan_in[name] ** 0.5
            else:
                w = torch.full(shape, 1.0 if name.endswith("_g") else 0.0, dtype=torch.float64)
            out[name] = w.to(dtype)
        return out

    # ------------------------------------------------------------------ what the engine reads
    def readout(self, params: dict[str, torch.Tensor] | None, inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (M, B, P, D), W_U (M, D, V))``: the final-LN residual at ``positions``
        (the whole causal pass runs; only the scored positions are returned) and the
        unembedding. ``params`` (any subset of the weights) are masked here."""
        resid = self.residual(inputs, params)                                    # (M, B, C, D)
        if tuple(positions) != tuple(range(resid.shape[2])):
            resid = resid[:, :, list(positions)]
        return resid, self.masked(params)["W_U"]

    def logits(self, inputs: torch.Tensor, params: dict[str, torch.Tensor] | None = None,
               hooks: Hooks | None = None) -> torch.Tensor:
        """``(M, B, C, V)``: the logits at every position of ``inputs (M, B, C)`` (``(B, C)``:
        the same sequences for every model), -inf beyond each model's own vocabulary."""
        resid = self.residual(inputs, params, hooks)
        M, B, C, D = resid.shape
        out = torch.bmm(resid.reshape(M, B * C, D), self.masked(params)["W_U"]).view(M, B, C, -1)
        return out.masked_fill(~self.output_mask()[:, None, None, :], float("-inf"))

    def stages(self, inputs: torch.Tensor, names: Sequence[str], params: dict[str, torch.Tensor] | None = None
               ) -> dict[str, torch.Tensor]:
        """The tensors at the stages ``names`` (padded; a model's own block is its own)."""
        seen: dict[str, torch.Tensor] = {}
        self.residual(inputs, params, {n: (lambda x, n=n: seen.__setitem__(n, x)) for n in names})
        return seen

    # ------------------------------------------------------------------ the forward pass
    def residual(self, inputs: torch.Tensor, params: dict[str, torch.Tensor] | None = None,
                 hooks: Hooks | None = None) -> torch.Tensor:
        """The final-LN residual stream ``(M, B, C, D)`` of ``inputs (M, B, C)``, from the
        stored weights or ``params`` (masked here), through ``hooks`` (stage -> callable that
        may return a replacement of the same shape; a replaced residual is masked to each
        model's own d, so padding stays inert)."""
        w = self.masked(params)
        tokens = self._tokens(inputs)
        M, B, C = tokens.shape
        L = w["W_Q"].shape[1]
        at = self._hooks(hooks, L)
        own_d = self.own("D", w["W_E"].shape[2]).to(w["W_E"].dtype)              # (M, D)
        norm = _Norm(own_d, self.sizes("D").to(own_d.dtype), [c.norm == "pre" for c in self.configs])
        D_mask = own_d[:, None, None, :]
        x = w["W_E"][torch.arange(M, device=self.device)[:, None, None], tokens] + w["W_pos"][:, None, :C]
        x = at("embed", x, D_mask)                                               # (M, B, C, D)
        scale = self.sizes("K").to(x.dtype).rsqrt().view(M, 1, 1, 1, 1)         # own 1/sqrt(d_head)
        causal = torch.ones(C, C, dtype=torch.bool, device=self.device).tril()
        for l in range(L):
            x = at(f"resid_pre.{l}", x, D_mask)
            a = self._attention(w, l, norm(x, w["ln1_g"][:, l], w["ln1_b"][:, l]), scale, causal, at)
            x = at(f"resid_mid.{l}", x + at(f"attn_out.{l}", a, D_mask), D_mask)
            y = norm(x, w["ln2_g"][:, l], w["ln2_b"][:, l]).reshape(M, B * C, -1)
            h = torch.relu(torch.baddbmm(w["b1"][:, l, None, :], y, w["W1"][:, l].transpose(1, 2)))  # (M, B·C, F)
            h = at(f"mlp_hidden.{l}", h.view(M, B, C, -1)).reshape(M, B * C, -1)
            o = torch.baddbmm(w["b2"][:, l, None, :], h, w["W2"][:, l].transpose(1, 2)).view(M, B, C, -1)
            x = at(f"resid_post.{l}", x + at(f"mlp_out.{l}", o, D_mask), D_mask)
        return at("final", norm(x, w["lnf_g"], w["lnf_b"]), D_mask)

    def _attention(self, w, l: int, y: torch.Tensor, scale, causal, at) -> torch.Tensor:
        """Layer l's multi-head causal attention of ``y (M, B, C, D)``: ``(M, B, C, D)``."""
        M, B, C, D = y.shape
        H, K = w["W_Q"].shape[2], w["W_Q"].shape[4]
        proj = torch.cat([w[k][:, l].permute(0, 2, 1, 3).reshape(M, D, H * K) for k in ("W_Q", "W_K", "W_V")], 2)
        qkv = torch.bmm(y.reshape(M, B * C, D), proj).view(M, B, C, 3, H, K).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]                                          # (M, B, H, C, K)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale                     # (M, B, H, C, C)
        pattern = at(f"attn_pattern.{l}", scores.masked_fill(~causal, float("-inf")).softmax(-1))
        z = torch.matmul(pattern, v).transpose(2, 3).reshape(M, B * C, H * K)     # (M, B·C, H·K)
        return torch.bmm(z, w["W_O"][:, l].reshape(M, H * K, D)).view(M, B, C, D)

    def _tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` as ``(M, B, C)`` on the stack's device, checked against each model's own
        vocabulary and sequence length."""
        if inputs.dim() == 2:
            inputs = inputs.expand(self.n_models, *inputs.shape)
        tokens = inputs.to(self.device).long()
        if tokens.dim() != 3 or tokens.shape[0] != self.n_models:
            raise ConfigError(f"inputs must be (M={self.n_models}, B, C) or (B, C), got {tuple(inputs.shape)}")
        C = tokens.shape[2]
        shortest = min(c.seq_len for c in self.configs)
        if C > shortest:
            raise ConfigError(f"sequences of length {C} exceed seq_len {shortest} of some model")
        vocab = self.sizes("V")[:, None, None]
        if bool(((tokens < 0) | (tokens >= vocab)).any()):
            bad = int(torch.nonzero(((tokens < 0) | (tokens >= vocab)).flatten(1).any(1))[0])
            raise ConfigError(f"model {bad}: token ids outside its vocabulary of {self.configs[bad].n_tokens}")
        return tokens

    @staticmethod
    def _hooks(hooks: Hooks | None, n_layers: int):
        """``at(name, x, mask=None)``: x, or the hook's replacement (times ``mask``)."""
        if not hooks:
            return lambda name, x, mask=None: x
        unknown = set(hooks) - set(stage_names(n_layers))
        if unknown:
            raise ConfigError(f"unknown stages {sorted(unknown)}; the stages are {stage_names(n_layers)}")

        def at(name: str, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            fn = hooks.get(name)
            y = fn(x) if fn is not None else None
            if y is None:
                return x
            if tuple(y.shape) != tuple(x.shape):
                raise ConfigError(f"hook {name!r} returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
            return y if mask is None else y * mask
        return at


class _Norm:
    """LayerNorm over each model's own d: ``g ⊙ (x - mean) / sqrt(var + EPS) + b`` with mean
    and (biased) variance over the model's own entries, 0 in the padding (g, b are zero
    there); the identity for models without normalisation."""

    def __init__(self, own: torch.Tensor, d: torch.Tensor, normed: list[bool]):
        self.own, self.d = own[:, None, None, :], d.view(-1, 1, 1, 1)            # (M, 1, 1, D), (M, 1, 1, 1)
        self.normed = torch.tensor(normed, device=own.device).view(-1, 1, 1, 1)
        self.any, self.all = any(normed), all(normed)

    def __call__(self, x: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.any:
            return x
        centred = (x - (x * self.own).sum(-1, keepdim=True) / self.d) * self.own          # (M, B, C, D)
        var = (centred * centred).sum(-1, keepdim=True) / self.d
        y = centred * torch.rsqrt(var + EPS) * g[:, None, None, :] + b[:, None, None, :]
        return y if self.all else torch.where(self.normed, y, x)


def count_params(configs: Sequence[TransformerConfig]) -> np.ndarray:
    """``(M,)``: each model's :attr:`TransformerConfig.params`."""
    return np.array([c.params for c in configs], dtype=np.int64)
