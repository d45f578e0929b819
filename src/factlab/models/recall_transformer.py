"""The one-layer recall transformer of Nichani, Lee and Bietti (2024), and Figure 5's linear attention.

**Recall transformer** (their Section 4 and Figure 4). Frozen random embeddings ``E (V, D)``
over the V tokens and unembedding ``U (O, D)`` over the O answers, both N(0, 1/d); H heads
with ``Q_h, K_h, V_h (D, K)`` (K = d_h, the head size); only the last position queries.
For a sequence x_1..x_C whose last token is the query token (EOS in the recall task),

    a_h = softmax_t( (x_t K_h) · (x_C Q_h) / sqrt(d_h) ),   z = O [Σ_t a_{h,t} x_t V_h]_h,
    h = z + W2 ReLU(W1 z + b1),   logits = U h   (over the answers only).

There are no positions, no residual from the raw embeddings and no layer norm.
Parameters are counted as ``4·H·d_h·d + 2·m·d`` (Q, K, V, O and the MLP's two matrices).

The structure this module exploits (exactly): the embeddings are frozen, there are no
positions and the query is always the same token, so a head's score and value depend only
on the token at a position. With per-token tables ``s_h(v) = (E_v K_h)·(E_q Q_h)/sqrt(d_h)``
and ``val_h(v) = E_v V_h`` and a sample's token counts ``c_v``,

    Σ_t a_{h,t} x_t V_h = Σ_v c_v exp(s_h(v)) val_h(v) / Σ_v c_v exp(s_h(v)),

two batched matmuls of the count matrix ``(B, V)`` with the tables: no per-position
projection at all. The tests check it against the direct per-position computation.
The softmax is shifted by each head's largest score over the vocabulary (exact); where a
sample's denominator would fall below 1e-30 in float32 (every token it holds scoring far
below the vocabulary's best), the attention is recomputed in float64.

**Linear attention** (their Figure 5): one-hot embeddings (d = V), one matrix ``A (V, V)``
and a value map ``W_V (V, O)`` onto the O answers, no softmax: ``z = Σ_t A[x_t, x_C] e_{x_t}``,
logits ``z W_V``. Both start with every entry at 1e-5 and are trained by plain gradient
descent. Whether the sum is divided by the length C is not said in the paper's text; ours sums (with the
average, ``average=True``, the logits stay 32 times smaller and in 8,192 steps the loss
barely leaves log 32, while the sum gives the three stages of their Figure 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models.stack import Stack, check_sizes

#: below this a float32 softmax denominator is recomputed in float64 (see the module docstring)
TINY = 1e-30


@dataclass(frozen=True)
class RecallTransformerConfig:
    """Sizes of one recall transformer: vocabulary ``n_tokens`` (d_vocab, axis V),
    ``n_answers`` (the output vocabulary d_vocab_out, axis O; D·R in the recall task),
    ``d`` (d_model, D), ``n_heads`` (H), ``d_head`` (d_h, K), MLP ``width`` (m, d_mlp, F);
    ``query_token``: the token every sequence ends with (default the last one, the recall
    task's EOS)."""

    n_tokens: int
    n_answers: int
    d: int
    n_heads: int = 1
    d_head: int = 1
    width: int = 1
    query_token: int | None = None

    def __post_init__(self):
        check_sizes(self, ("n_tokens", "n_answers", "d", "n_heads", "d_head", "width"), "RecallTransformerConfig.")
        if self.query_token is not None and not 0 <= self.query_token < self.n_tokens:
            raise ConfigError(f"query_token {self.query_token} is outside the vocabulary of {self.n_tokens}")

    @property
    def query(self) -> int:
        return self.n_tokens - 1 if self.query_token is None else self.query_token

    def axis_sizes(self) -> dict[str, int]:
        return {"V": self.n_tokens, "O": self.n_answers, "D": self.d, "H": self.n_heads, "K": self.d_head,
                "F": self.width}

    @property
    def params(self) -> int:
        """``4·H·d_h·d + 2·m·d`` (Nichani et al.'s count: attention and MLP matrices, no bias)."""
        return 4 * self.n_heads * self.d_head * self.d + 2 * self.width * self.d


class RecallTransformerStack(Stack):
    """M recall transformers of possibly different sizes (see the module docstring).

    Weights: ``E (V, D)`` and ``U (O, D)`` frozen; per head ``W_Q, W_K, W_V (H, D, K)`` and
    ``W_O (H, K, D)`` (the rows of O that read head h); the MLP ``W1 (F, D)``, ``b1 (F,)``,
    ``W2 (D, F)``."""

    AXES = {"E": "VD", "U": "OD", "W_Q": "HDK", "W_K": "HDK", "W_V": "HDK", "W_O": "HKD",
            "W1": "FD", "b1": "F", "W2": "DF"}
    OUTPUT_AXIS = "O"
    CHUNK_AXES = "VODHKF"
    DEFAULT_FROZEN = ("E", "U")

    @classmethod
    def chunk_cost(cls, sizes: np.ndarray) -> np.ndarray:
        """Seconds per sequence at padded sizes (V, O, D, H, K, F): the forward pass's
        multiply-adds (the count matrix times the tables V·H·K, W_O H·K·D, the MLP 2·F·D, the
        unembedding O·D) times 1.5e-10 s, the factor that trained Figure 4 (right)'s grid
        fastest on 2 cores (docs/performance.md)."""
        V, O, D, H, K, F = (sizes[:, i].astype(np.float64) for i in range(6))
        return 1.5e-10 * (V * H * K + H * K * D + 2 * F * D + O * D)

    @classmethod
    def init_weights(cls, config: RecallTransformerConfig, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """E, U ~ N(0, 1/d) and Q, K, V ~ N(0, 1/d_h), O ~ N(0, 1/d) (the authors'); W1 ~
        N(0, 1/d), b1 = 0, W2 ~ N(0, 1/m) (ours: the MLP's initialisation is not given)."""
        c = config
        var = {"E": c.d, "U": c.d, "W_Q": c.d_head, "W_K": c.d_head, "W_V": c.d_head, "W_O": c.d,
               "W1": c.d, "b1": None, "W2": c.width}
        out = {}
        for name, shape in cls.shapes(c).items():
            w = torch.randn(shape, generator=generator, dtype=torch.float64)
            out[name] = (w / var[name] ** 0.5 if var[name] else torch.zeros(shape, dtype=torch.float64)).to(dtype)
        return out

    def readout(self, params: dict[str, torch.Tensor] | None, inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h (M, B, 1, D), U^T (M, D, O))`` at the last position of ``inputs (M, B, C)``,
        the only one that queries (P = 1)."""
        if tuple(positions) != (inputs.shape[-1] - 1,):
            raise ConfigError(f"the recall transformer computes its last position only; asked for {tuple(positions)}")
        w = self.masked(params)
        h = self.forward(w, inputs)                                              # (M, B, D)
        return h[:, :, None, :], w["U"].transpose(1, 2)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(M, B, O)`` logits of sequences ``inputs (M, B, C)`` at their last position,
        -inf beyond each model's own answers."""
        h = self.forward(self.params, inputs)
        out = torch.bmm(h, self.params["U"].transpose(1, 2))
        return out.masked_fill(~self.output_mask()[:, None, :], float("-inf"))

    def forward(self, w: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The residual stream ``h (M, B, D)`` at the last position, from masked weights ``w``."""
        if not bool((inputs[:, :, -1] == self.query_tokens().to(inputs.device)[:, None]).all()):
            raise ConfigError("every sequence must end with its model's query token (the recall task's EOS)")
        z = self.attention(w, token_counts(inputs, w["E"].shape[1]))           # (M, B, D)
        hidden = torch.relu(torch.baddbmm(w["b1"][:, None, :], z, w["W1"].transpose(1, 2)))  # (M, B, F)
        return z + torch.bmm(hidden, w["W2"].transpose(1, 2))

    def attention(self, w: dict[str, torch.Tensor], counts: torch.Tensor) -> torch.Tensor:
        """``z (M, B, D)``: the heads' outputs mapped by O, from token counts ``(M, B, V)``
        and per-token tables (see the module docstring)."""
        scores, values = self.tables(w)                                          # (M, V, H), (M, V, H, K)
        z = _mix(counts, scores, values, self.token_mask())
        if z is None:                                                            # a float32 denominator underflowed
            z = _mix(counts.double(), scores.double(), values.double(), self.token_mask()).to(scores.dtype)
        M, B = counts.shape[:2]
        H, K, D = w["W_O"].shape[1:]
        return torch.bmm(z.reshape(M, B, H * K), w["W_O"].reshape(M, H * K, D))  # (M, B, D)

    def tables(self, w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token tables: scores ``s_h(v) (M, V, H)``, scaled by each model's own
        1/sqrt(d_h), and values ``E_v V_h (M, V, H, K)``."""
        E = w["E"]                                                               # (M, V, D)
        M, V, D = E.shape
        H, _, K = w["W_Q"].shape[1:]
        e_q = E[torch.arange(M, device=E.device), self.query_tokens().to(E.device)]  # (M, D)
        q = torch.einsum("md,mhdk->mhk", e_q, w["W_Q"])                          # (M, H, K)
        keys = torch.bmm(E, w["W_K"].permute(0, 2, 1, 3).reshape(M, D, H * K)).view(M, V, H, K)
        scale = self.sizes("K").to(E.dtype).rsqrt()[:, None, None]               # (M, 1, 1): own 1/sqrt(d_h)
        scores = (keys * q[:, None]).sum(-1) * scale                             # (M, V, H)
        values = torch.bmm(E, w["W_V"].permute(0, 2, 1, 3).reshape(M, D, H * K)).view(M, V, H, K)
        return scores, values

    def query_tokens(self) -> torch.Tensor:
        """``(M,)``: the token each model's sequences end with."""
        return torch.tensor([c.query for c in self.configs], device=self.device)

    def token_mask(self) -> torch.Tensor:
        """``(M, V)`` bool: each model's own tokens."""
        return self.own("V", self.params["E"].shape[1])


def token_counts(inputs: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """``(M, B, V)``: how often each token occurs in each sequence ``inputs (M, B, C)``."""
    M, B, C = inputs.shape
    counts = torch.zeros(M, B, n_tokens, device=inputs.device)
    return counts.scatter_add_(2, inputs, torch.ones(M, B, C, device=inputs.device))


def _mix(counts: torch.Tensor, scores: torch.Tensor, values: torch.Tensor, token_mask: torch.Tensor
         ) -> torch.Tensor | None:
    """``(M, B, H, K)``: each head's softmax-weighted value, ``Σ_v c_v e^{s(v)} val(v) / Σ_v c_v
    e^{s(v)}``, the softmax shifted by each head's largest score over the model's own
    vocabulary; None where, in float32, some denominator falls below :data:`TINY`."""
    M, V, H, K = values.shape
    B = counts.shape[1]
    masked = scores.masked_fill(~token_mask[:, :, None], float("-inf"))
    top = masked.detach().amax(dim=1, keepdim=True)                              # (M, 1, H)
    weights = torch.exp(masked - top)                                            # (M, V, H); 0 on padding
    counts = counts.to(scores.dtype)
    den = torch.bmm(counts, weights)                                             # (M, B, H)
    if scores.dtype == torch.float32 and bool((den.detach() < TINY).any()):
        return None
    num = torch.bmm(counts, (weights[..., None] * values).reshape(M, V, H * K))  # (M, B, H·K)
    return num.view(M, B, H, K) / den[..., None]


@dataclass(frozen=True)
class LinearAttentionConfig:
    """Figure 5's model: one-hot embeddings of ``n_tokens`` (d_vocab, axis V; d = V),
    ``n_answers`` outputs (d_vocab_out, axis O), sequences of ``seq_len`` (n_ctx) ending with
    ``query_token`` (default the last token)."""

    n_tokens: int
    n_answers: int
    seq_len: int = 32
    query_token: int | None = None
    init: float = 1e-5            # every entry of A and W_V at the start (the authors')
    average: bool = False         # divide the attention's sum by the length C (ours: no; see the module docstring)

    def __post_init__(self):
        check_sizes(self, ("n_tokens", "n_answers", "seq_len"), "LinearAttentionConfig.")

    @property
    def query(self) -> int:
        return self.n_tokens - 1 if self.query_token is None else self.query_token

    def axis_sizes(self) -> dict[str, int]:
        return {"V": self.n_tokens, "O": self.n_answers}


class LinearAttentionStack(Stack):
    """M linear-attention models of Figure 5 (see the module docstring): weights ``A (V, V)``,
    ``W_V (V, O)``; features ``z (V)``, logits ``z W_V`` over the O answers."""

    AXES = {"A": "VV", "W_V": "VO"}
    OUTPUT_AXIS = "O"
    CHUNK_AXES = "VO"

    @classmethod
    def init_weights(cls, config: LinearAttentionConfig, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        return {name: torch.full(shape, config.init, dtype=dtype) for name, shape in cls.shapes(config).items()}

    def readout(self, params: dict[str, torch.Tensor] | None, inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(positions) != (inputs.shape[-1] - 1,):
            raise ConfigError(f"the linear attention computes its last position only; asked for {tuple(positions)}")
        w = self.masked(params)
        M, B, C = inputs.shape
        V = w["A"].shape[1]
        query = inputs[:, :, -1]                                                 # (M, B)
        # score of position t: A[x_t, x_C]; z = Σ_t score_t e_{x_t} = counts ⊙ A[:, x_C] (/ C with average)
        column = w["A"].gather(2, query[:, None, :].expand(M, V, B)).transpose(1, 2)   # (M, B, V): A[v, x_C]
        z = token_counts(inputs, V).to(column.dtype) * column                    # (M, B, V)
        per = torch.tensor([float(C) if c.average else 1.0 for c in self.configs], dtype=z.dtype, device=z.device)
        z = z / per[:, None, None]
        return z[:, :, None, :], w["W_V"]

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        z, W = self.readout(None, inputs, (inputs.shape[-1] - 1,))
        return torch.bmm(z[:, :, 0], W).masked_fill(~self.output_mask()[:, None, :], float("-inf"))


def count_params(configs: Sequence[RecallTransformerConfig]) -> np.ndarray:
    """``(M,)``: each model's parameter count ``4·H·d_h·d + 2·m·d``."""
    return np.array([c.params for c in configs], dtype=np.int64)


def attention_params(config: RecallTransformerConfig) -> int:
    """``d·d_h·H``: the attention parameters on Figure 4 (right)'s x axis."""
    return config.d * config.d_head * config.n_heads


def mlp_params(config: RecallTransformerConfig) -> int:
    """``d·m``: the MLP parameters on Figure 4 (right)'s y axis."""
    return config.d * config.width
