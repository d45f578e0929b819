"""Optimizers over a stack of models: each model stepped as ``torch.optim`` would step it alone.

The three element-wise optimizers, :class:`Adam`, :class:`AdamW` and :class:`SGD` (plain
gradient descent, optionally with momentum), are independent per entry, so one optimizer
over a tensor holding M models' weights is M independent optimizers, provided each model
keeps its own step count and a model that must not move (finished, diverged, or without
data this step) has neither its weights nor its state touched. :class:`StackedOptimizer`
does exactly that, over the engine's one ``(M, n_params)`` row of trained weights per model,
with an update mask per entry: where it is 0 (padding, a frozen entry) the weight and its
state never change, weight decay included. The test suite checks each optimizer against
its ``torch.optim`` counterpart run on each model alone.

On CPU, with numba importable, a step runs as one compiled pass per model row
(:mod:`factlab._updates`, on the threads given); elsewhere it is a dozen torch
operations. Both compute the same formulas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import ClassVar, Sequence, Union

import numpy as np
import torch

from factlab import _updates
from factlab._numba import njit
from factlab._threads import run_split
from factlab.errors import ConfigError


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and ok):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


@dataclass(frozen=True)
class Adam:
    """``torch.optim.Adam``: weight decay, if any, is an L2 term added to the gradient."""

    kind: ClassVar[str] = "adam"
    lr: float = 1e-2          # Wong (2025) gives none; ours, for 2,000-epoch full-batch runs
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_positive("eps", self.eps)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self), "betas": list(self.betas)}

    def _constants(self) -> list[float]:
        b1, b2 = self.betas
        return [b1, 1 - b1, b2, 1 - b2, self.lr, self.eps, 1.0, self.weight_decay]


@dataclass(frozen=True)
class AdamW(Adam):
    """``torch.optim.AdamW``: decoupled weight decay, ``w <- w·(1 - lr·wd)`` before the Adam
    step (Loshchilov & Hutter); torch's default decay, 0.01."""

    kind: ClassVar[str] = "adamw"
    weight_decay: float = 0.01

    def _constants(self) -> list[float]:
        b1, b2 = self.betas
        return [b1, 1 - b1, b2, 1 - b2, self.lr, self.eps, 1 - self.lr * self.weight_decay, 0.0]


@dataclass(frozen=True)
class SGD:
    """``torch.optim.SGD``: plain gradient descent, optionally with (Nesterov) momentum
    and an L2 weight decay added to the gradient."""

    kind: ClassVar[str] = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_positive("momentum", self.momentum, allow_zero=True)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not 0 <= self.dampening <= 1:
            raise ConfigError(f"dampening must be in [0, 1], got {self.dampening!r}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("Nesterov momentum requires momentum > 0 and zero dampening (as torch.optim.SGD)")

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def _constants(self) -> list[float]:
        return [self.lr, self.momentum, 1 - self.dampening, self.weight_decay, float(self.nesterov), 0.0, 0.0, 0.0]


OptimizerConfig = Union[Adam, AdamW, SGD]
OPTIMIZERS = {cls.kind: cls for cls in (Adam, AdamW, SGD)}


def optimizer_from_dict(d: dict) -> OptimizerConfig:
    """The optimizer config written by ``to_dict`` (``{"kind": "adam", "lr": ...}``); a
    missing kind means Adam. Unknown kinds and keys raise :class:`ConfigError`."""
    d = dict(d)
    kind = d.pop("kind", "adam")
    if kind not in OPTIMIZERS:
        raise ConfigError(f"optimizer kind must be one of {sorted(OPTIMIZERS)}, got {kind!r}")
    cls = OPTIMIZERS[kind]
    known = set(cls.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown key(s) for the {kind} optimizer: {sorted(unknown)}; known: {sorted(known)}")
    if "betas" in d:
        d["betas"] = tuple(d["betas"])
    return cls(**d)


class StackedOptimizer:
    """The state of one optimizer over the rows ``(M, n_params)`` of a stack's trained weights.

    ``mask (M, n_params)`` bool: true where an entry trains, 0 where it must never change
    (padding, frozen entries); None when every entry that does not train is padding, whose
    weight, gradient and state are all 0 and stay 0 under every rule (the fast path).
    ``lr``: each model's learning rate, in place of the config's (a learning-rate ladder
    trained as one stack); AdamW's decoupled decay ``1 - lr·wd`` follows each model's own."""

    def __init__(self, config: OptimizerConfig, params: torch.Tensor, mask: torch.Tensor | None = None,
                 lr: Sequence[float] | None = None):
        self.config = config
        M = params.shape[0]
        if lr is not None:
            lr = [float(x) for x in lr]
            if len(lr) != M:
                raise ConfigError(f"{len(lr)} learning rates for {M} models")
            for x in lr:
                _check_positive("lr", x, allow_zero=True)
        # each model's hyper-parameters as the rule takes them, (M, 8) in float64
        rows = [config._constants()] * M if lr is None else [replace(config, lr=x)._constants() for x in lr]
        self._k64 = np.array(rows, dtype=np.float64).reshape(M, 8)
        self.rule = _updates.SGD if isinstance(config, SGD) else _updates.ADAM
        self.s1 = torch.zeros_like(params)
        self.s2 = torch.zeros_like(params) if self.rule == _updates.ADAM else params.new_zeros(params.shape[0], 0)
        self.steps = torch.zeros(params.shape[0], dtype=torch.long, device=params.device)  # (M,)
        self.mask = mask.bool().contiguous() if mask is not None else None
        self._tables: dict = {}      # dtype -> (2, n) CPU table of step-dependent numbers, t = 0, 1, ...
        self._k: dict = {}           # dtype -> the hyper-parameters as the compiled rule takes them
        self._k_on: dict = {}        # (dtype, device) -> the same as a tensor there, for the torch rule

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, params: torch.Tensor, grad: torch.Tensor, active: torch.Tensor, *,
             compiled: bool | None = None, threads: int | None = None) -> None:
        """Update ``params (M, n_params)`` in place for the models where ``active (M,)`` is true;
        leave the others (weights and state) as they are.

        ``compiled``: the compiled CPU pass (None: wherever it can run, see :meth:`can_compile`),
        on ``threads`` threads (None: torch's setting)."""
        self.steps += active.long()
        if compiled is None:
            compiled = self.can_compile(params, grad)
        if compiled:
            c = self._step_numbers(self.steps.numpy(), params.dtype)
            rows = torch.nonzero(active).flatten().numpy()
            arrays = [x.detach().numpy() for x in (params, grad, self.s1, self.s2)]
            cost = np.ones(params.shape[0])
            k = self._constants(params.dtype)
            if self.mask is None:
                run_split(_updates.whole_rows, rows, cost, threads or torch.get_num_threads(),
                          *arrays, self.rule, c, k)
            else:
                run_split(_updates.masked_rows, rows, cost, threads or torch.get_num_threads(),
                          *arrays, self.mask.numpy(), self.rule, c, k)
            return
        on = active[:, None] if self.mask is None else active[:, None] & self.mask
        new_p, new_1, new_2 = self._torch_update(params, torch.where(on, grad, torch.zeros((), dtype=grad.dtype,
                                                                                          device=grad.device)))
        params.copy_(torch.where(on, new_p, params))
        self.s1.copy_(torch.where(on, new_1, self.s1))
        if self.rule == _updates.ADAM:
            self.s2.copy_(torch.where(on, new_2, self.s2))

    def _torch_update(self, p: torch.Tensor, g: torch.Tensor):
        """The rule in torch, for every entry (the caller keeps the ones that step).
        Same formulas as :func:`factlab._updates.span`."""
        cfg = self.config
        k = self._k_on.get((p.dtype, p.device))                           # (M, 8), copied there once
        if k is None:
            k = self._k_on[(p.dtype, p.device)] = torch.from_numpy(self._constants(p.dtype)).to(p.device)
        col = [k[:, i:i + 1] for i in range(8)]                           # each (M, 1)
        if self.rule == _updates.ADAM:
            b1, nb1, b2, nb2, lr, eps, decay, l2 = col
            if cfg.weight_decay and cfg.kind == "adam":
                g = g + l2 * p
            m = self.s1 * b1 + g * nb1
            v = self.s2 * b2 + g * g * nb2
            c1, c2 = self._step_numbers_torch(p)
            new = (p * decay if cfg.weight_decay and cfg.kind == "adamw" else p) - lr * (m / c1) / ((v / c2).sqrt() + eps)
            return new, m, v
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        buf = self.s1
        if cfg.momentum:
            first = (self.steps == 1)[:, None]
            buf = torch.where(first, g, self.s1 * cfg.momentum + g * (1 - cfg.dampening))
            g = g + buf * cfg.momentum if cfg.nesterov else buf
        return p - col[0] * g, buf, None

    def can_compile(self, params: torch.Tensor, grad: torch.Tensor) -> bool:
        """Whether :meth:`step` can take the compiled path: numba importable, every tensor
        a contiguous float32/float64 CPU tensor of one dtype."""
        if njit is None:
            return False
        tensors = [params, grad, self.s1, self.s2] + ([self.mask] if self.mask is not None else [])
        return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors) and all(
            t.dtype == params.dtype and t.dtype in (torch.float32, torch.float64) for t in tensors[:3])

    # ------------------------------------------------------------------ step-dependent numbers
    def _constants(self, dtype: torch.dtype) -> np.ndarray:
        """``(M, 8)``: each model's hyper-parameters in ``dtype`` (cast as torch casts Python
        floats), as the rules of :mod:`factlab._updates` take them."""
        k = self._k.get(dtype)
        if k is None:
            k = self._k[dtype] = np.ascontiguousarray(torch.from_numpy(self._k64).to(dtype).numpy())
        return k

    def _table(self, dtype: torch.dtype, t_max: int) -> np.ndarray:
        """``(2, n)`` for t = 0, 1, ..., n - 1 >= t_max: Adam's bias corrections ``1 - b^t``,
        computed as torch.optim computes them (Python floats) and cast to ``dtype``; for SGD,
        ``(t == 1, 0)``. Kept per dtype and doubled when a step count outgrows it."""
        table = self._tables.get(dtype)
        if table is None or table.shape[1] <= t_max:
            size = max(t_max + 1, 2 * table.shape[1] if table is not None else 1024)
            if self.rule == _updates.ADAM:
                b1, b2 = self.config.betas
                rows = [[1 - b1 ** k for k in range(size)], [1 - b2 ** k for k in range(size)]]
            else:
                rows = [[1.0 if k == 1 else 0.0 for k in range(size)], [0.0] * size]
            table = self._tables[dtype] = torch.tensor(rows, dtype=torch.float64).to(dtype).numpy()
        return table

    def _step_numbers(self, steps: np.ndarray, dtype: torch.dtype) -> np.ndarray:
        """``(M, 2)``: each model's step-dependent numbers at step count ``steps`` (t >= 1)."""
        t = np.maximum(steps, 1)
        table = self._table(dtype, int(t.max()) if len(t) else 1)
        return np.ascontiguousarray(table[:, t].T)

    def _step_numbers_torch(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adam's bias corrections ``(M, 1)`` at the current step counts. On CPU from the
        table the compiled rule reads; on another device computed there (sizing the table
        would read the step counts back and make every step wait for the device)."""
        t = self.steps.clamp(min=1)
        if t.device.type == "cpu":
            c = torch.from_numpy(self._step_numbers(t.numpy(), p.dtype))
            return c[:, :1], c[:, 1:]
        b1, b2 = self.config.betas
        return ((1 - b1 ** t.double()).to(p.dtype)[:, None], (1 - b2 ** t.double()).to(p.dtype)[:, None])

    # ------------------------------------------------------------------ for compiled steps
    def kernel_state(self) -> _updates.KernelUpdate:
        """The state as a compiled step takes it to update a model's own weights in its own
        pass (:class:`factlab._updates.KernelUpdate`): numpy views of this object's tensors,
        and each model's numbers for its next step. Only for stacks whose untrained entries
        are all padding (``mask`` None). Built with numpy: the engine asks for it every step."""
        if self.mask is not None:
            raise ConfigError("a compiled step cannot apply a masked update; step with the optimizer instead")
        steps = self.steps.numpy()
        dtype = self.s1.dtype
        return _updates.KernelUpdate(self.rule, self.s1.numpy(), self.s2.numpy(), steps,
                                     self._step_numbers(steps + 1, dtype), self._constants(dtype))

    def take(self, index: torch.Tensor) -> "StackedOptimizer":
        """The state of the models at ``index``."""
        out = StackedOptimizer.__new__(StackedOptimizer)
        out.config, out.rule = self.config, self.rule
        out.s1, out.s2 = self.s1.index_select(0, index), self.s2.index_select(0, index)
        out.steps = self.steps.index_select(0, index)
        out.mask = self.mask.index_select(0, index) if self.mask is not None else None
        rows = index.cpu().numpy()
        out._k64 = self._k64[rows]
        out._tables, out._k = self._tables, {dt: np.ascontiguousarray(k[rows]) for dt, k in self._k.items()}
        out._k_on = {}
        return out
