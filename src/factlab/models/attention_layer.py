"""A stack of single-layer, attention-only transformers (Wong 2025, sec. 3).

Each layer has no layer norm, biases or positional encodings and separate query-key and
value-output head sizes. For a sequence with one-hot rows X its logits are (eq. 2)

    Z(x) = X W_EU + Σ_h Δ(X W_QK^h X^T) X W_VO^h,

with Δ the causally masked row softmax (eq. 3), computed here from the weights:
``W_E (|T|, d_model)``, ``W_U (d_model, |T|)`` and per head ``W_Q (d_model, d_head_qk)``,
``W_K (d_head_qk, d_model)``, ``W_V (d_model, d_head_vo)``, ``W_O (d_head_vo, d_model)``.
Attention scores are *not* scaled by 1/sqrt(d_head): eq. (2) has no such factor.

One implementation, batched: every weight carries a leading model axis M. The M layers
may differ in every size; each weight is zero-padded to the largest size and multiplied
by a fixed 0/1 mask in the forward pass, so a padded entry is zero, receives zero
gradient and stays zero under Adam: padding is inert (``tests/models`` compares each
padded model with the same model alone). Logits of tokens beyond a model's own
vocabulary are ``-inf``, so softmax gives them probability 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models import attention_kernel

WEIGHT_NAMES = ("W_E", "W_U", "W_Q", "W_K", "W_V", "W_O")


@dataclass(frozen=True)
class AttentionLayerConfig:
    """Sizes of one attention layer (Wong 2025, sec. 3).

    The paper requires ``d_head_qk, d_head_vo <= d_model``; it also writes
    ``d_model <= |T|``, which we do not enforce (a tiny database may have fewer tokens
    than the model has dimensions, and the paper pairs layers with databases at random).
    """

    n_tokens: int  # |T|, the vocabulary size
    d_model: int
    n_heads: int = 1
    d_head_qk: int = 1  # query-key head size
    d_head_vo: int = 1  # value-output head size

    def __post_init__(self):
        for field in ("n_tokens", "d_model", "n_heads", "d_head_qk", "d_head_vo"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{field} must be a positive integer, got {value!r}")
        if self.d_head_qk > self.d_model or self.d_head_vo > self.d_model:
            raise ConfigError(
                f"head sizes must not exceed d_model: d_head_qk={self.d_head_qk}, "
                f"d_head_vo={self.d_head_vo}, d_model={self.d_model}"
            )

    @property
    def non_embedding_params(self) -> int:
        """``2 · n_heads · d_model · (d_head_vo + d_head_qk)`` (Wong 2025, sec. 4)."""
        return 2 * self.n_heads * self.d_model * (self.d_head_vo + self.d_head_qk)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The unpadded shape of each weight."""
        T, d, H, a, b = self.n_tokens, self.d_model, self.n_heads, self.d_head_qk, self.d_head_vo
        return {"W_E": (T, d), "W_U": (d, T), "W_Q": (H, d, a), "W_K": (H, a, d),
                "W_V": (H, d, b), "W_O": (H, b, d)}


def init_weights(config: AttentionLayerConfig, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights of one layer, at its own sizes.

    The paper leaves the initialisation open. Ours: ``W_E`` has N(0, 1) entries, so an
    embedded token has norm about sqrt(d_model); every other weight is N(0, 1/fan_in) with
    fan_in its input size (d_model for W_Q, W_K, W_V, W_U; d_head_vo for W_O), so that
    logits at initialisation are O(1) whatever the sizes.
    """
    c = config
    fan_in = {"W_E": 1, "W_U": c.d_model, "W_Q": c.d_model, "W_K": c.d_model,
              "W_V": c.d_model, "W_O": c.d_head_vo}
    return {
        name: torch.randn(shape, generator=generator, dtype=torch.float64).div_(fan_in[name] ** 0.5).to(dtype)
        for name, shape in c.shapes().items()
    }


class AttentionStack:
    """M attention layers of possibly different sizes, padded and masked into one set of tensors.

    ``weights`` maps each name of :data:`WEIGHT_NAMES` to a tensor with a leading model
    axis: ``W_E (M, T, D)``, ``W_U (M, D, T)``, ``W_Q (M, H, D, A)``, ``W_K (M, H, A, D)``,
    ``W_V (M, H, D, B)``, ``W_O (M, H, B, D)`` where T, D, H, A, B are the largest
    vocabulary, d_model, n_heads, d_head_qk and d_head_vo of the stack. ``masks`` has the
    same shapes with 1 where a model has the entry and 0 in its padding.
    """

    def __init__(self, configs: Sequence[AttentionLayerConfig], weights: dict[str, torch.Tensor]):
        self.configs = tuple(configs)
        if not self.configs:
            raise ConfigError("a stack needs at least one layer")
        self.masks = _masks(self.configs, dtype=weights["W_E"].dtype, device=weights["W_E"].device)
        missing = set(WEIGHT_NAMES) - set(weights)
        if missing:
            raise ConfigError(f"missing weights {sorted(missing)}")
        for name in WEIGHT_NAMES:
            if weights[name].shape != self.masks[name].shape:
                raise ConfigError(f"{name} has shape {tuple(weights[name].shape)}, "
                                  f"expected {tuple(self.masks[name].shape)} for these configs")
        self.weights = {name: weights[name] * self.masks[name] for name in WEIGHT_NAMES}
        self.token_mask = _token_mask(self.configs, weights["W_E"].device)

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(cls, configs: Sequence[AttentionLayerConfig], *, seed: int = 0,
             dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "AttentionStack":
        """A stack of freshly initialised layers (see :func:`init_weights`).

        Model i is drawn from its own generator seeded with ``(seed, i)``, at its own sizes,
        then padded: the same seed gives the same stack, and a model's weights do not depend
        on the other models in the stack.
        """
        configs = tuple(configs)
        per_model = []
        for i, c in enumerate(configs):
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
            per_model.append(init_weights(c, g, dtype))
        return cls.from_weights(configs, per_model, device=device)

    @classmethod
    def from_weights(cls, configs: Sequence[AttentionLayerConfig], per_model: Sequence[dict[str, torch.Tensor]],
                     *, device: str | torch.device = "cpu") -> "AttentionStack":
        """A stack from each model's own unpadded weights (shapes of ``config.shapes()``)."""
        configs = tuple(configs)
        if len(per_model) != len(configs):
            raise ConfigError(f"{len(per_model)} weight sets for {len(configs)} configs")
        dtype = per_model[0]["W_E"].dtype
        shapes = _padded_shapes(configs)
        weights = {name: torch.zeros(shape, dtype=dtype, device=device) for name, shape in shapes.items()}
        for i, (c, w) in enumerate(zip(configs, per_model)):
            for name, shape in c.shapes().items():
                if tuple(w[name].shape) != shape:
                    raise ConfigError(f"model {i}: {name} has shape {tuple(w[name].shape)}, expected {shape}")
                weights[name][(i,) + tuple(slice(0, s) for s in shape)] = w[name].to(device=device, dtype=dtype)
        return cls(configs, weights)

    def model_weights(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's weights at its own sizes (the padding cut away)."""
        return {name: self.weights[name][(i,) + tuple(slice(0, s) for s in shape)]
                for name, shape in self.configs[i].shapes().items()}

    def select(self, index: Sequence[int] | torch.Tensor) -> "AttentionStack":
        """The sub-stack of the models at ``index``, re-padded to their own largest sizes."""
        idx = [int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index)]
        if idx and _pads([self.configs[i] for i in idx]) == _pads(self.configs):
            return self.take(torch.tensor(idx, dtype=torch.long))  # the same padding: nothing to re-pad
        return AttentionStack.from_weights([self.configs[i] for i in idx],
                                           [self.model_weights(i) for i in idx], device=self.device)

    def take(self, index: torch.Tensor) -> "AttentionStack":
        """The models at ``index`` keeping this stack's padded shapes (cheap; no re-padding).

        Used by the training engine to drop finished models; :meth:`select` re-pads.
        """
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        out = AttentionStack.__new__(AttentionStack)
        out.configs = tuple(self.configs[i] for i in index.tolist())
        out.masks = {n: m.index_select(0, index) for n, m in self.masks.items()}
        out.weights = {n: w.index_select(0, index) for n, w in self.weights.items()}
        out.token_mask = self.token_mask.index_select(0, index)
        return out

    def with_weights(self, weights: dict[str, torch.Tensor]) -> "AttentionStack":
        """The same layers with other weights of the same padded shapes (masked on the way in)."""
        out = AttentionStack.__new__(AttentionStack)
        out.configs, out.masks, out.token_mask = self.configs, self.masks, self.token_mask
        out.weights = {n: weights[n].detach() * self.masks[n] for n in WEIGHT_NAMES}
        return out

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self.configs)

    @property
    def n_models(self) -> int:
        return len(self.configs)

    @property
    def device(self) -> torch.device:
        return self.weights["W_E"].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights["W_E"].dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "AttentionStack":
        """A copy on another device or in another dtype."""
        out = AttentionStack.__new__(AttentionStack)
        out.configs = self.configs
        out.masks = {n: m.to(device=device, dtype=dtype) for n, m in self.masks.items()}
        out.weights = {n: w.to(device=device, dtype=dtype) for n, w in self.weights.items()}
        out.token_mask = self.token_mask.to(device=device)
        return out

    # ------------------------------------------------------------------ forward
    def logits(self, tokens: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Z(x) of eq. (2) at every position: ``(M, N, n, T)`` for tokens ``(M, N, n)``.

        ``tokens`` of shape ``(N, n)`` feeds the same sequences to every model. ``weights``
        (same shapes as :attr:`weights`) replaces the stored ones, e.g. by tensors being
        trained; they are masked here, so padding stays inert under any update.
        """
        w = self._masked(weights)
        if tokens.dim() == 2:
            tokens = tokens.expand(self.n_models, *tokens.shape)
        return attention_logits(w, self.token_mask, tokens.to(self.device))

    def residual(self, tokens: torch.Tensor, weights: dict[str, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(resid (M, N, n, D), W_U (M, D, T))``: the logits of :meth:`logits` are
        ``resid @ W_U`` with tokens beyond each vocabulary (:attr:`token_mask`) set to -inf.
        The training engine takes this split to fuse the unembedding with the loss."""
        w = self._masked(weights)
        if tokens.dim() == 2:
            tokens = tokens.expand(self.n_models, *tokens.shape)
        return attention_residual(w, tokens.to(self.device)), w["W_U"]

    def _masked(self, weights):
        return self.weights if weights is None else {n: weights[n] * self.masks[n] for n in WEIGHT_NAMES}

    # ------------------------------------------------------------------ compiled training step
    def has_fused_step(self, device: str | torch.device) -> bool:
        """Whether :meth:`fused_loss_and_grad` can run on ``device`` (CPU, numba importable)."""
        return torch.device(device).type == "cpu" and attention_kernel.available()

    def fused_loss_and_grad(self, flat: torch.Tensor, batch, *, grad: bool = True, metrics: bool = True,
                            models: torch.Tensor | None = None, threads: int | None = None,
                            step: tuple | None = None):
        """Each model's loss, metrics and gradient in one compiled pass (CPU; see
        :mod:`factlab.models.attention_kernel`), the same quantities as the autograd path
        (:meth:`residual` with :func:`~factlab.training.loss.unembed_cross_entropy`).

        ``flat (M, P)`` holds each model's weights in one row, the padded shapes of
        :attr:`weights` flattened and concatenated in their order; ``batch`` is a
        :class:`~factlab.training.data.Batch`. ``models`` (bool ``(M,)``) limits the work
        to some models; the others get loss 0 and gradient 0. Returns ``(loss (M,), nll
        (M, B, n), argmax (M, B, n) or None, grad (M, P) or None)``; ``loss`` is float64.
        The gradient lives in a buffer of this stack that the next call overwrites.

        ``step = (stepping, adam_state)``, with ``stepping`` a bool ``(M,)`` tensor and
        ``adam_state`` the :meth:`~factlab.training.adam.StackedAdam.kernel_state` of the
        parameter ``flat``: apply that Adam step in place to ``flat`` for the models where
        ``stepping`` is true and the loss is finite, in the same pass, instead of returning
        the gradient (``grad`` is then ignored and None returned). Only the models' own
        weights are visited; the result is that of :meth:`StackedAdam.step` with this
        gradient and ``stepping & isfinite(loss)``.
        """
        if flat.device.type != "cpu":
            raise ConfigError("the fused step runs on CPU only")
        if not attention_kernel.available():
            raise ConfigError("the fused step needs numba (pip install numba)")
        flat_np = flat.detach().contiguous().numpy()
        inputs, targets, weight, rows = self._kernel_batch(batch, flat.dtype)
        chosen = np.arange(self.n_models) if models is None else np.flatnonzero(models.cpu().numpy())
        out = None
        if step is not None:
            if not flat.is_contiguous():
                raise ValueError("a fused step updates flat in place: it must be contiguous")
            stepping, adam_state = step
            step = (stepping.cpu().numpy(), *adam_state)
            grad = False
        if grad:
            out = getattr(self, "_grad_buffer", None)
            if out is None or out.shape != flat_np.shape or out.dtype != flat_np.dtype:
                out = self._grad_buffer = np.empty_like(flat_np)
        T, D = self.weights["W_E"].shape[1:]
        H, _, A = self.weights["W_Q"].shape[1:]
        pad = np.array([T, D, H, A, self.weights["W_V"].shape[-1]], dtype=np.int64)  # padded T, D, H, A, B
        loss, nll, argmax, g = attention_kernel.loss_and_grad(
            flat_np, self._kernel_dims(), pad, inputs, targets, weight, rows, chosen, grad_out=out,
            want_argmax=metrics, threads=threads or torch.get_num_threads(), step=step)
        return (torch.from_numpy(loss), torch.from_numpy(nll), torch.from_numpy(argmax) if metrics else None,
                torch.from_numpy(g) if grad else None)

    def _kernel_dims(self) -> np.ndarray:
        """``(M, 5)``: each model's own T, D, H, A, B."""
        dims = getattr(self, "_dims", None)
        if dims is None:
            dims = self._dims = np.array([(c.n_tokens, c.d_model, c.n_heads, c.d_head_qk, c.d_head_vo)
                                          for c in self.configs], dtype=np.int64)
        return dims

    def _kernel_batch(self, batch, dtype: torch.dtype):
        """The batch as the kernel's numpy arrays; kept for the next call with the same batch
        object (the engine passes the same full batch every epoch)."""
        cached = getattr(self, "_batch_arrays", None)
        if cached is not None and cached[0] is batch and cached[1] == dtype:
            return cached[2]
        weight = batch.weight.to(dtype)
        arrays = (batch.inputs.contiguous().numpy(), batch.targets.contiguous().numpy(),
                  weight.contiguous().numpy(), (batch.evaluated | (weight > 0).any(dim=2)).numpy())
        self._batch_arrays = (batch, dtype, arrays)
        return arrays

    def circuits(self) -> dict[str, torch.Tensor]:
        """The circuits of each layer (Wong 2025, sec. 3), padded to T:

        ``W_EU = W_E W_U`` ``(M, T, T)``; ``W_QK^h = W_E W_Q^h W_K^h W_E^T`` and
        ``W_VO^h = W_E W_V^h W_O^h W_U``, each ``(M, H, T, T)`` (zero for padded heads).
        """
        W = self.weights
        E = W["W_E"][:, None]  # (M, 1, T, D)
        return {
            "W_EU": W["W_E"] @ W["W_U"],                                            # (M, T, T)
            "W_QK": E @ W["W_Q"] @ W["W_K"] @ E.transpose(-1, -2),                   # (M, H, T, T)
            "W_VO": E @ W["W_V"] @ W["W_O"] @ W["W_U"][:, None],                     # (M, H, T, T)
        }


def attention_logits(W: dict[str, torch.Tensor], token_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Eq. (2) from masked weights: logits ``(M, N, n, T)`` for tokens ``(M, N, n)``."""
    M, N, n = tokens.shape
    resid = attention_residual(W, tokens).reshape(M, N * n, -1)                 # (M, L, D)
    logits = torch.bmm(resid, W["W_U"]).view(M, N, n, -1)                       # (M, N, n, T)
    return logits.masked_fill(~token_mask[:, None, None, :], float("-inf"))


def attention_residual(W: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream before unembedding, ``X W_E + Σ_h Δ(·) X W_E W_V^h W_O^h``:
    ``(M, N, n, D)`` for tokens ``(M, N, n)``; logits are this times ``W_U``.

    Every product is a batched matmul over the model axis with the heads folded into the
    inner dimension, so no weight is ever broadcast (copied) along the sequence axis.
    """
    M, N, n = tokens.shape
    H, D, A = W["W_Q"].shape[1:]
    B = W["W_V"].shape[-1]
    x = W["W_E"][torch.arange(M, device=tokens.device)[:, None, None], tokens]  # (M, N, n, D)
    xf = x.reshape(M, N * n, D)                                                 # (M, L, D)
    q = torch.bmm(xf, W["W_Q"].permute(0, 2, 1, 3).reshape(M, D, H * A)).view(M, N, n, H, A)
    k = torch.bmm(xf, W["W_K"].permute(0, 3, 1, 2).reshape(M, D, H * A)).view(M, N, n, H, A)
    v = torch.bmm(xf, W["W_V"].permute(0, 2, 1, 3).reshape(M, D, H * B)).view(M, N, n, H, B)
    # Sequences are short (n <= 3 for facts): broadcast products beat millions of tiny
    # matmuls. Row 0 of the causal softmax Δ is always [1], so position 0 reads its own
    # value and only positions 1..n-1 need scores.
    z = v                                                                       # (M, N, n, H, B)
    if n > 1:
        scores = (q[:, :, 1:, None] * k[:, :, None]).sum(-1)                    # (M, N, n-1, n, H)
        causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()[1:, :, None]
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=3)     # Δ, eq. (3)
        z = torch.cat([v[:, :, :1], (pattern[..., None] * v[:, :, None]).sum(3)], dim=2)
    z = z.reshape(M, N * n, H * B)                                              # (M, L, H·B)
    heads = torch.bmm(z, W["W_O"].reshape(M, H * B, D))                         # (M, L, D)
    return (xf + heads).view(M, N, n, D)


def _padded_shapes(configs: Sequence[AttentionLayerConfig]) -> dict[str, tuple[int, ...]]:
    M = len(configs)
    T = max(c.n_tokens for c in configs)
    D = max(c.d_model for c in configs)
    H = max(c.n_heads for c in configs)
    A = max(c.d_head_qk for c in configs)
    B = max(c.d_head_vo for c in configs)
    return {"W_E": (M, T, D), "W_U": (M, D, T), "W_Q": (M, H, D, A), "W_K": (M, H, A, D),
            "W_V": (M, H, D, B), "W_O": (M, H, B, D)}


def _pads(configs: Sequence[AttentionLayerConfig]) -> list[tuple[int, ...]]:
    """The padded shapes without the model axis: what a stack of ``configs`` pads to."""
    return [shape[1:] for shape in _padded_shapes(configs).values()]


_AXES = {"W_E": "TD", "W_U": "DT", "W_Q": "HDA", "W_K": "HAD", "W_V": "HDB", "W_O": "HBD"}  # padded axes


def _masks(configs, dtype, device) -> dict[str, torch.Tensor]:
    """1 where a model has the entry, 0 in its padding: per weight, the product over its
    axes of ``index < the model's own size``."""
    own = torch.tensor([(c.n_tokens, c.d_model, c.n_heads, c.d_head_qk, c.d_head_vo) for c in configs],
                       device=device)  # (M, 5)
    masks = {}
    for name, shape in _padded_shapes(configs).items():
        m = torch.ones(shape, dtype=torch.bool, device=device)
        for k, axis in enumerate(_AXES[name]):
            view = [len(configs)] + [1] * len(_AXES[name])
            view[k + 1] = shape[k + 1]
            size = own[:, "TDHAB".index(axis)]
            m = m & (torch.arange(shape[k + 1], device=device)[None, :] < size[:, None]).reshape(view)
        masks[name] = m.to(dtype)
    return masks


def _token_mask(configs, device) -> torch.Tensor:
    T = max(c.n_tokens for c in configs)
    sizes = torch.tensor([c.n_tokens for c in configs], device=device)
    return torch.arange(T, device=device)[None, :] < sizes[:, None]  # (M, T)


def paper_layer_grid(max_d_model: int = 6, max_heads: int = 4) -> list[dict[str, int]]:
    """The 364 layer sizes of Wong (2025, sec. 4): ``1 <= d_head_vo, d_head_qk <= d_model <= 6``
    and ``1 <= n_heads <= 4``, as dicts of AttentionLayerConfig fields (without n_tokens,
    which comes from the database a layer is paired with)."""
    return [
        {"d_model": d, "n_heads": h, "d_head_qk": a, "d_head_vo": b}
        for d in range(1, max_d_model + 1)
        for h in range(1, max_heads + 1)
        for a in range(1, d + 1)
        for b in range(1, d + 1)
    ]
