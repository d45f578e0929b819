"""The training loop of one chunk: its models, data, optimizer, checks and bookkeeping.

:func:`factlab.training.engine.train` cuts a stack into chunks and runs a :class:`Chunk`
on each; everything here is per chunk and private to the engine.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from factlab.training.config import ModelResult, RunConfig, TrainConfig
from factlab.training.interfaces import Batch
from factlab.training.loss import unembed_cross_entropy, vocab_bias
from factlab.training.optim import StackedOptimizer


def last_position_metrics(nll: torch.Tensor, argmax: torch.Tensor, batch: Batch, taus: Sequence[float],
                          every: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy of each evaluated sequence, per model: on its last scored position, or with
    ``every`` on all of them (a sequence counts as right when every scored position is).

    ``nll``/``argmax`` ``(M, B, P)``: negative log-likelihoods and argmax predictions at the
    scored positions. Returns ``(argmax_acc (M,), tau_acc (M, len(taus)))``: argmax accuracy
    and the softmax >= tau accuracy of eq. (14) of Wong (2025)."""
    cols = slice(None) if every else slice(-1, None)
    target = batch.targets[:, :, cols]                           # (M, B, P') with P' = P or 1
    ev = batch.evaluated.to(nll.dtype)                           # (M, B)
    n = ev.sum(1).clamp(min=1)
    hit = (argmax[:, :, cols] == target).all(dim=2).to(nll.dtype)                      # (M, B)
    p = torch.exp(-nll[:, :, cols]).amin(dim=2)                  # the target's smallest softmax probability
    tau = torch.tensor(list(taus), dtype=nll.dtype, device=nll.device)
    tau_hit = (p[..., None] >= tau).to(nll.dtype)                # (M, B, n_tau)
    return (hit * ev).sum(1) / n, (tau_hit * ev[..., None]).sum(1) / n[:, None]


def forward_loss(model, params: dict[str, torch.Tensor], batch: Batch, bias: torch.Tensor, metrics: bool = True):
    """Per-model loss ``(M,)`` with gradient, and ``nll``, ``argmax`` ``(M, B, P)`` for metrics
    (``argmax`` only when ``metrics``): the family's readout, then the fused unembedding
    cross-entropy (:mod:`factlab.training.loss`)."""
    features, W_out = model.readout(params, batch.inputs, batch.positions)     # (M, B, P, D), (M, D, O)
    M, B, P, D = features.shape
    loss, nll, argmax = unembed_cross_entropy(
        features.reshape(M, B * P, D), W_out, bias, batch.targets.reshape(M, B * P),
        batch.weight.reshape(M, B * P).to(features.dtype), metrics)
    return loss, nll.view(M, B, P), (argmax.view(M, B, P) if metrics else None)


class FlatParams:
    """The trained weights of a chunk as one leaf tensor ``(M, n_params)``, with a view per weight."""

    def __init__(self, weights: dict[str, torch.Tensor], flat: torch.Tensor | None = None):
        self.shapes = {n: tuple(w.shape[1:]) for n, w in weights.items()}
        M = next(iter(weights.values())).shape[0]
        if flat is None:
            flat = torch.cat([w.detach().reshape(M, -1) for w in weights.values()], dim=1)
        self.flat = flat.detach().clone().requires_grad_(True)  # (M, n_params)

    def views(self) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        M = self.flat.shape[0]
        for n, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[n] = self.flat[:, start:start + size].view(M, *shape)
            start += size
        return out

    def take(self, index: torch.Tensor) -> "FlatParams":
        out = FlatParams.__new__(FlatParams)
        out.shapes = self.shapes
        out.flat = self.flat.detach().index_select(0, index).requires_grad_(True)
        return out


class Chunk:
    """The training of one chunk: its models, data, optimizer and bookkeeping."""

    def __init__(self, model, data, cfg: TrainConfig, run: RunConfig, fused: bool, threads: int, ids: torch.Tensor,
                 monitor, lr: Sequence[float] | None = None):
        self.model, self.data, self.cfg, self.run_cfg = model, data, cfg, run
        self.threads, self.monitor = threads, monitor
        M = model.n_models
        device = model.device
        names = model.trained_names()
        self.params = FlatParams({n: model.params[n] for n in names})
        mask = None
        if model.partially_frozen:
            masks = model.update_masks()
            mask = torch.cat([masks[n].reshape(M, -1) for n in names], dim=1)
        self.opt = StackedOptimizer(cfg.optimizer, self.params.flat, mask, lr)
        self.step_fn = model.compiled_step(device) if fused else None
        self.bias = vocab_bias(model.output_mask(), model.dtype)       # (M, 1, O)
        self.rows = torch.arange(M, device=device)   # chunk positions of the rows still in the stack
        self.input_ids = ids                         # input-stack index of each chunk position
        self.active = torch.ones(M, dtype=torch.bool, device=device)
        self.out_weights = {n: w.detach().clone() for n, w in self.params.views().items()}
        self.results: list[ModelResult | None] = [None] * M
        self.best_loss = torch.full((M,), math.inf, dtype=torch.float64, device=device)
        self.since_best = torch.zeros(M, dtype=torch.long, device=device)
        self.best_acc = torch.full((M,), -math.inf, dtype=torch.float64, device=device)
        self.curves = ({i: {"round": [], "loss": [], "accuracy": [], **{f"tau_{t:g}": [] for t in cfg.taus}}
                        for i in range(M)} if cfg.curve_every else None)
        # the taus evaluated at each check: the reported ones, and stop_tau if it is not among them
        hidden = cfg.stop_tau is not None and cfg.stop_tau not in cfg.taus
        self.eval_taus = cfg.taus + ((cfg.stop_tau,) if hidden else ())
        # a compiled step may take the optimizer step itself, in the same pass, where no
        # decision comes between gradient and step and every untrained entry is padding
        self.fused_update = fused and mask is None and self.opt.can_compile(self.params.flat, self.params.flat)

    # ------------------------------------------------------------------ one step's numbers
    def objective(self, batch: Batch, want_grad: bool, metrics: bool, step: bool = False):
        """At the current weights: ``(loss (M,), nll, argmax, grad (M, n_params) or None)``. A model
        whose loss is not finite gets no usable gradient (the optimizer skips it). With
        ``step`` the compiled step applies the optimizer itself and grad is None."""
        if self.step_fn is not None:
            update = (self.active & batch.has_data, self.opt.kernel_state()) if step else None
            return self.step_fn(self.params.flat, batch, grad=want_grad and not step, metrics=metrics,
                                models=self.active, threads=self.threads, update=update)
        with torch.set_grad_enabled(want_grad):
            loss, nll, argmax = forward_loss(self.model, self.model.masked(self.params.views()), batch, self.bias,
                                             metrics)
        grad = None
        if want_grad:
            finite = torch.isfinite(loss.detach())
            (grad,) = torch.autograd.grad(loss.where(finite, 0).sum(), [self.params.flat])
        return loss.detach(), nll, argmax, grad

    def retire(self, rows: torch.Tensor, status: str, at: int, loss, acc, tau_acc) -> None:
        if not len(rows):
            return
        chunk_rows = self.rows[rows]
        for n, w in self.params.views().items():
            self.out_weights[n][chunk_rows] = w[rows].detach()
        per_epoch = self.cfg.max_epochs is not None
        for i, lo, ac, ta, best in zip(chunk_rows.tolist(), loss[rows].tolist(), acc[rows].tolist(),
                                       tau_acc[rows].tolist(), self.best_acc[rows].tolist()):
            self.results[i] = ModelResult(
                status=status, epochs=at if per_epoch else None, steps=None if per_epoch else at, loss=lo,
                accuracy=ac, tau_accuracy=dict(zip(self.cfg.taus, ta)), best_accuracy=max(best, ac),
                curve=self.curves[i] if self.curves else None)

    # ------------------------------------------------------------------ the loop
    def run(self):
        """Train to the end; returns (results in chunk order, final weights, model-rounds run)."""
        cfg = self.cfg
        last_round = cfg.budget
        budget_status = "max_epochs" if cfg.max_epochs is not None else "max_steps"
        model_rounds = 0
        n_active = self.model.n_models
        for r in range(last_round + 1):
            last = r == last_round
            check = r % cfg.eval_every == 0 or last
            if cfg.max_epochs is not None:
                batches = self.data.epoch(r, cfg.batch_size)
            else:
                batches = [self.data.step(r, cfg.batch_size)]
            full = len(batches) == 1 and batches[0] is self.data.eval_batch()
            for b_i, batch in enumerate(batches):
                stepped = self.fused_update and not check    # at a check, models may retire before the step
                if full:
                    loss, nll, argmax, grad = self.objective(batch, want_grad=not last, metrics=check, step=stepped)
                if check and b_i == 0:
                    # every decision is taken on the weights as they are before this round's updates
                    if full:
                        eval_loss, nll_e, argmax_e, ev = loss, nll, argmax, batch
                    else:
                        ev = self.data.eval_batch()
                        eval_loss, nll_e, argmax_e, _ = self.objective(ev, want_grad=False, metrics=True)
                    n_active = self.check(r, last, ev, eval_loss, nll_e, argmax_e, budget_status)
                if not n_active:
                    break
                if not full:
                    stepped = self.fused_update                  # the check, if any, was taken on its own batch
                    loss, _, _, grad = self.objective(batch, want_grad=True, metrics=False, step=stepped)
                if not stepped:
                    self.opt.step(self.params.flat, grad, self.active & torch.isfinite(loss) & batch.has_data,
                                  threads=self.threads)
            if not n_active:
                break
            model_rounds += n_active
            if check and n_active < self.run_cfg.compact_below * len(self.active):
                self.compact()
        return self.results, self.out_weights, model_rounds

    def check(self, r: int, last: bool, ev: Batch, eval_loss, nll, argmax, budget_status: str) -> int:
        """Evaluate, record, retire the models whose rule fired; returns the models left."""
        cfg = self.cfg
        acc, all_tau = last_position_metrics(nll, argmax, ev, self.eval_taus, cfg.accuracy_on == "every")
        tau_acc = all_tau[:, :len(cfg.taus)]
        active = self.active
        self.best_acc = torch.where(active, torch.maximum(self.best_acc, acc.double()), self.best_acc)
        stop = ~torch.isfinite(eval_loss) & active
        self.retire(torch.nonzero(stop).flatten(), "diverged", r, eval_loss, acc, tau_acc)
        if self.curves is not None and r % cfg.curve_every == 0:
            self.record(r, active & ~stop, eval_loss, acc, tau_acc)
        rules = []
        if cfg.stop_tau is not None:
            rules.append(("memorized", all_tau[:, self.eval_taus.index(cfg.stop_tau)] >= 1.0))
        if cfg.stop_accuracy is not None:
            rules.append(("accurate", acc >= cfg.stop_accuracy))
        if cfg.plateau_patience is not None:
            improved = eval_loss.double() < self.best_loss * (1 - cfg.plateau_tol)
            self.best_loss = torch.where(improved, eval_loss.double(), self.best_loss)
            self.since_best = torch.where(improved, 0, self.since_best + cfg.eval_every)
            rules.append(("plateau", self.since_best >= cfg.plateau_patience))
        for status, fired in rules:
            now = active & ~stop & fired
            self.retire(torch.nonzero(now).flatten(), status, r, eval_loss, acc, tau_acc)
            stop |= now
        active &= ~stop
        if last:
            self.retire(torch.nonzero(active).flatten(), budget_status, r, eval_loss, acc, tau_acc)
            active[:] = False
        return int(active.sum())

    def record(self, r: int, rows: torch.Tensor, loss, acc, tau_acc) -> None:
        extra = {}
        if self.monitor is not None:
            now = self.model.with_params(self.params.views())
            extra = {k: torch.as_tensor(v) for k, v in self.monitor(now, self.input_ids[self.rows.cpu()]).items()}
        for j in torch.nonzero(rows).flatten().tolist():
            cv = self.curves[int(self.rows[j])]
            cv["round"].append(r)
            cv["loss"].append(float(loss[j]))
            cv["accuracy"].append(float(acc[j]))
            for k, t in enumerate(self.cfg.taus):
                cv[f"tau_{t:g}"].append(float(tau_acc[j, k]))
            for name, values in extra.items():
                cv.setdefault(name, []).append(float(values[j]))

    def compact(self) -> None:
        """Drop the finished models from every per-model tensor."""
        keep = torch.nonzero(self.active).flatten()
        self.model, self.data, self.opt = self.model.take(keep), self.data.take(keep.cpu()), self.opt.take(keep)
        self.params = self.params.take(keep)
        if self.step_fn is not None:
            self.step_fn = self.model.compiled_step(self.model.device)
        self.rows, self.active, self.bias = self.rows[keep], self.active[keep], self.bias[keep]
        self.best_loss, self.since_best = self.best_loss[keep], self.since_best[keep]
        self.best_acc = self.best_acc[keep]
