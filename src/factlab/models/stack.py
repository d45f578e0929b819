"""What every model family shares: a stack of M models as padded tensors, and its masks.

A family describes its weights by named axes: ``AXES = {"W_E": "VD", "W_U": "DV", ...}``,
one letter per dimension, and each model's config says how long each axis is
(``config.axis_sizes()``, e.g. ``{"V": 10, "D": 6}``). The letters are factlab's one name
per dimension, in every family, docstring and doc (the table "Names of dimensions" in
docs/engine.md): M models, B batch, C n_ctx, P n_scored, V d_vocab, O d_vocab_out,
D d_model, L n_layers, H n_heads, K d_head (query-key), Z d_head_vo, F d_mlp. A
:class:`Stack` of M models holds
every weight with a leading model axis, zero-padded to the largest size of each axis, and
a 0/1 *own-entry* mask of the same shape (1 where the model has the entry). A family's
forward pass multiplies its weights by these masks, so a padded entry is 0, gets gradient
0 and stays 0 under any optimizer: padding is inert (each family's tests compare a padded
model with the same model alone).

Training state lives here too, as data: ``frozen`` names weights that never train (Nichani
et al.'s random embeddings), ``train_masks`` freezes single entries of a trained weight (a
freeze-and-swap transfer trains only the subject rows of an embedding). The engine
(:mod:`factlab.training`) reads both through :meth:`Stack.update_masks`; a family's math
never looks at them.

Everything else a stack does, the family inherits: construction from per-model weights
(:meth:`Stack.from_weights`) or a seed (:meth:`Stack.init`, one generator per model, so a
model's initial weights do not depend on its neighbours), :meth:`Stack.model_weights`,
:meth:`Stack.select` (re-padded) and :meth:`Stack.take` (same padding), moves between
devices and dtypes. A stack is immutable: every method returns a new one.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence, TypeVar

import numpy as np
import torch

from factlab.errors import ConfigError

S = TypeVar("S", bound="Stack")


def check_sizes(config, names: Sequence[str], prefix: str = "") -> None:
    """Refuse a config whose size fields ``names`` are not positive integers (a bool is not
    one), naming the field: ``{prefix}{name} must be a positive integer, got ...``."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{prefix}{name} must be a positive integer, got {value!r}")


def model_seed(seed: int, index: int) -> int:
    """The seed of model ``index``'s own generator in a stack made with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class Stack:
    """M models of one family, padded along every named axis and masked (see the module doc).

    Subclasses set :attr:`AXES`, :attr:`OUTPUT_AXIS`, :attr:`CHUNK_AXES` and
    :meth:`init_weights`, and add their forward pass.
    """

    #: weight name -> its axes, one letter per dimension (after the model axis)
    AXES: ClassVar[dict[str, str]] = {}
    #: the axis the logits run over (the output vocabulary: all tokens, or an answer set)
    OUTPUT_AXIS: ClassVar[str] = ""
    #: the axes whose padding costs the most work; the engine groups models by them
    CHUNK_AXES: ClassVar[str] = ""
    #: weights frozen unless the caller says otherwise (a family's fixed random embeddings)
    DEFAULT_FROZEN: ClassVar[tuple[str, ...]] = ()

    def __init__(self, configs: Sequence, params: Mapping[str, torch.Tensor], *,
                 frozen: Sequence[str] | None = None, train_masks: Mapping[str, torch.Tensor] | None = None):
        self.configs = tuple(configs)
        if not self.configs:
            raise ConfigError("a stack needs at least one model")
        missing = set(self.AXES) - set(params)
        if missing:
            raise ConfigError(f"missing weights {sorted(missing)}")
        first = params[next(iter(self.AXES))]
        self.masks = own_masks(self.AXES, self.configs, dtype=first.dtype, device=first.device)
        for name in self.AXES:
            if tuple(params[name].shape) != tuple(self.masks[name].shape):
                raise ConfigError(f"{name} has shape {tuple(params[name].shape)}, "
                                  f"expected {tuple(self.masks[name].shape)} for these configs")
        self.params = {name: params[name] * self.masks[name] for name in self.AXES}
        self.frozen = frozenset(self.DEFAULT_FROZEN if frozen is None else frozen)
        unknown = self.frozen - set(self.AXES)
        if unknown:
            raise ConfigError(f"cannot freeze {sorted(unknown)}: the weights are {list(self.AXES)}")
        self.train_masks = {}
        for name, m in (train_masks or {}).items():
            if name not in self.AXES:
                raise ConfigError(f"train mask for unknown weight {name!r}; the weights are {list(self.AXES)}")
            if tuple(m.shape) != tuple(self.masks[name].shape):
                raise ConfigError(f"the train mask of {name} has shape {tuple(m.shape)}, "
                                  f"expected {tuple(self.masks[name].shape)}")
            self.train_masks[name] = m.to(device=first.device, dtype=torch.bool)

    # ------------------------------------------------------------------ family hooks
    @classmethod
    def init_weights(cls, config, generator: torch.Generator, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """One model's random weights at its own sizes (the family's initialisation)."""
        raise NotImplementedError

    @classmethod
    def shapes(cls, config) -> dict[str, tuple[int, ...]]:
        """The unpadded shape of each weight of a model with ``config``."""
        sizes = config.axis_sizes()
        return {name: tuple(sizes[a] for a in axes) for name, axes in cls.AXES.items()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(cls: type[S], configs: Sequence, *, seed: int = 0, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu", **options) -> S:
        """A stack of freshly initialised models. Model i is drawn from its own generator,
        seeded with :func:`model_seed` ``(seed, i)``, at its own sizes, then padded: the same
        seed gives the same stack, and a model's weights do not depend on the others."""
        configs = tuple(configs)
        per_model = [cls.init_weights(c, torch.Generator().manual_seed(model_seed(seed, i)), dtype)
                     for i, c in enumerate(configs)]
        return cls.from_weights(configs, per_model, device=device, **options)

    @classmethod
    def from_weights(cls: type[S], configs: Sequence, per_model: Sequence[Mapping[str, torch.Tensor]], *,
                     device: str | torch.device = "cpu", train_masks: Sequence[Mapping] | None = None,
                     **options) -> S:
        """A stack from each model's own unpadded weights (shapes of :meth:`shapes`).
        ``train_masks``, if given, holds each model's unpadded train masks (bool)."""
        configs = tuple(configs)
        if len(per_model) != len(configs):
            raise ConfigError(f"{len(per_model)} weight sets for {len(configs)} configs")
        dtype = next(iter(per_model[0].values())).dtype
        padded = padded_shapes(cls.AXES, configs)
        params = {name: torch.zeros(shape, dtype=dtype, device=device) for name, shape in padded.items()}
        for i, (c, w) in enumerate(zip(configs, per_model)):
            for name, shape in cls.shapes(c).items():
                if name not in w:
                    raise ConfigError(f"model {i}: missing weight {name}")
                if tuple(w[name].shape) != shape:
                    raise ConfigError(f"model {i}: {name} has shape {tuple(w[name].shape)}, expected {shape}")
                params[name][(i,) + tuple(slice(0, s) for s in shape)] = w[name].to(device=device, dtype=dtype)
        masks = None
        if train_masks is not None:
            names = set().union(*(m.keys() for m in train_masks))
            masks = {name: torch.zeros(padded[name], dtype=torch.bool, device=device) for name in names}
            for i, (c, per) in enumerate(zip(configs, train_masks)):
                shapes = cls.shapes(c)
                for name in names:
                    own = per.get(name)
                    block = (i,) + tuple(slice(0, s) for s in shapes[name])
                    masks[name][block] = True if own is None else torch.as_tensor(own, dtype=torch.bool)
        return cls(configs, params, train_masks=masks, **options)

    def model_weights(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's weights at its own sizes (the padding cut away)."""
        return {name: self.params[name][self._block(i, name)] for name in self.AXES}

    def model_train_masks(self, i: int) -> dict[str, torch.Tensor]:
        """Model i's train masks at its own sizes."""
        return {name: m[self._block(i, name)] for name, m in self.train_masks.items()}

    def _block(self, i: int, name: str) -> tuple:
        sizes = self.configs[i].axis_sizes()
        return (i,) + tuple(slice(0, sizes[a]) for a in self.AXES[name])

    def _options(self) -> dict:
        """Constructor keywords a derived stack keeps (subclasses add their own)."""
        return {"frozen": tuple(sorted(self.frozen))}

    def _derive(self: S, configs, params, masks, train_masks) -> S:
        """A stack of this class from ready-padded tensors (no checks, no re-masking)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.configs, out.params, out.masks, out.train_masks = tuple(configs), params, masks, train_masks
        return out

    def select(self: S, index: Sequence[int] | torch.Tensor) -> S:
        """The sub-stack of the models at ``index``, re-padded to their own largest sizes."""
        idx = [int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index)]
        configs = [self.configs[i] for i in idx]
        if idx and _pads(self.AXES, configs) == _pads(self.AXES, self.configs):
            return self.take(torch.tensor(idx, dtype=torch.long))  # the same padding: nothing to re-pad
        masks = [self.model_train_masks(i) for i in idx] if self.train_masks else None
        return type(self).from_weights(configs, [self.model_weights(i) for i in idx], device=self.device,
                                       train_masks=masks, **self._options())

    def take(self: S, index: torch.Tensor | Sequence[int]) -> S:
        """The models at ``index`` keeping this stack's padded shapes (cheap; no re-padding)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        rows = index.tolist()
        return self._derive([self.configs[i] for i in rows],
                            {n: w.index_select(0, index) for n, w in self.params.items()},
                            {n: m.index_select(0, index) for n, m in self.masks.items()},
                            {n: m.index_select(0, index) for n, m in self.train_masks.items()})

    def with_params(self: S, params: Mapping[str, torch.Tensor]) -> S:
        """The same models with other weights of the same padded shapes (masked on the way in;
        weights not given keep their values)."""
        new = {n: (params[n].detach() * self.masks[n] if n in params else w) for n, w in self.params.items()}
        return self._derive(self.configs, new, self.masks, self.train_masks)

    def freeze(self: S, names: Sequence[str] = (), train_masks: Mapping[str, torch.Tensor] | None = None) -> S:
        """The same models with ``names`` frozen and, for the weights in ``train_masks``
        (bool, padded shapes), only the masked entries trained."""
        options = {**self._options(), "frozen": tuple(names)}
        return type(self)(self.configs, self.params, train_masks=train_masks, **options)

    def to(self: S, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> S:
        """A copy on another device or in another dtype."""
        return self._derive(self.configs,
                            {n: w.to(device=device, dtype=dtype) for n, w in self.params.items()},
                            {n: m.to(device=device, dtype=dtype) for n, m in self.masks.items()},
                            {n: m.to(device=device) for n, m in self.train_masks.items()})

    # ------------------------------------------------------------------ what the engine reads
    def __len__(self) -> int:
        return len(self.configs)

    @property
    def n_models(self) -> int:
        return len(self.configs)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.params.values())).dtype

    def sizes(self, axis: str) -> torch.Tensor:
        """``(M,)``: each model's own length of ``axis`` (for per-model scale factors)."""
        return torch.tensor([c.axis_sizes()[axis] for c in self.configs], device=self.device)

    def axis_table(self, axes: str) -> np.ndarray:
        """``(M, len(axes))`` int64: each model's own sizes along ``axes``."""
        return np.array([[c.axis_sizes()[a] for a in axes] for c in self.configs], dtype=np.int64).reshape(
            len(self.configs), len(axes))

    def chunk_sizes(self) -> np.ndarray:
        """``(M, k)``: the sizes the engine groups models by (:attr:`CHUNK_AXES`)."""
        return self.axis_table(self.CHUNK_AXES)

    #: seconds of one training step per unit of :meth:`chunk_cost`'s default (the product of
    #: the chunk sizes), fitted on 2 CPU cores for the attention layers (per logit)
    SECONDS_PER_UNIT: ClassVar[float] = 1.5e-8

    @classmethod
    def chunk_cost(cls, sizes: np.ndarray) -> np.ndarray:
        """Estimated seconds of one training step of one sequence for models padded to
        ``sizes (n, k)`` (rows of the largest :attr:`CHUNK_AXES` sizes): the engine's chunk
        planner weighs padding against per-step overhead with it. By default
        :attr:`SECONDS_PER_UNIT` times the product of the sizes; a family whose work is a
        sum of terms says so."""
        return cls.SECONDS_PER_UNIT * np.prod(sizes, axis=1)

    def own(self, axis: str, size: int | None = None) -> torch.Tensor:
        """``(M, size)`` bool: the entries of ``axis`` each model has (index < its own size);
        ``size`` defaults to the stack's largest."""
        if size is None:
            size = max(c.axis_sizes()[axis] for c in self.configs)
        return torch.arange(size, device=self.device)[None, :] < self.sizes(axis)[:, None]

    def output_mask(self) -> torch.Tensor:
        """``(M, O)`` bool: the outputs each model has (its own vocabulary or answer set)."""
        return self.own(self.OUTPUT_AXIS)

    def trained_names(self) -> list[str]:
        """The weights that train, in :attr:`AXES` order."""
        return [n for n in self.AXES if n not in self.frozen]

    def update_masks(self) -> dict[str, torch.Tensor]:
        """For each trained weight, a bool mask ``(M, ...)``: true on the entries that train
        (the model's own entries, and its train mask where it has one)."""
        out = {}
        for n in self.trained_names():
            m = self.masks[n] != 0
            out[n] = m & self.train_masks[n] if n in self.train_masks else m
        return out

    @property
    def partially_frozen(self) -> bool:
        """Whether some trained weight has frozen entries beyond padding (a train mask)."""
        return any(n not in self.frozen for n in self.train_masks)

    def masked(self, params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weights to compute with: ``params`` (e.g. tensors being trained, any subset of
        the weights) times the own-entry masks, the stored weights for the rest."""
        if params is None:
            return self.params
        return {n: (params[n] * self.masks[n] if n in params else w) for n, w in self.params.items()}


def padded_shapes(axes: Mapping[str, str], configs: Sequence) -> dict[str, tuple[int, ...]]:
    """The padded shape ``(M, ...)`` of each weight of a stack of ``configs``."""
    sizes = [c.axis_sizes() for c in configs]
    longest = {a: max(s[a] for s in sizes) for a in set("".join(axes.values()))}
    return {name: (len(configs),) + tuple(longest[a] for a in ax) for name, ax in axes.items()}


def _pads(axes: Mapping[str, str], configs: Sequence) -> list[tuple[int, ...]]:
    """The padded shapes without the model axis: what a stack of ``configs`` pads to."""
    return [shape[1:] for shape in padded_shapes(axes, configs).values()]


def own_masks(axes: Mapping[str, str], configs: Sequence, dtype: torch.dtype,
              device: str | torch.device) -> dict[str, torch.Tensor]:
    """1 where a model has the entry, 0 in its padding: per weight, the product over its
    axes of ``index < the model's own size``."""
    letters = sorted(set("".join(axes.values())))
    own = torch.tensor([[c.axis_sizes()[a] for a in letters] for c in configs], device=device)  # (M, n_axes)
    masks = {}
    for name, shape in padded_shapes(axes, configs).items():
        m = torch.ones(shape, dtype=torch.bool, device=device)
        for k, axis in enumerate(axes[name]):
            view = [len(configs)] + [1] * len(axes[name])
            view[k + 1] = shape[k + 1]
            size = own[:, letters.index(axis)]
            m = m & (torch.arange(shape[k + 1], device=device)[None, :] < size[:, None]).reshape(view)
        masks[name] = m.to(dtype)
    return masks
