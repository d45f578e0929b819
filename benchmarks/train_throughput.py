"""Training throughput: factlab's stacked engine against what a PyTorch user would write.

The same 256 random (layer, database) pairs drawn from the ranges of Wong (2025, sec. 4)
(layers of the 364-size grid, databases of the 548 population), 200 full-batch epochs
each, Adam at lr 1e-2, early stopping off everywhere so every side does the same work.
Three ways to train them:

- factlab's engine (chunks of similar sizes, the compiled attention step);
- one padded ``torch.func`` ensemble over all the pairs, the strongest thing a PyTorch
  user would write: a plain ``nn.Module`` per pair at the largest sizes, stacked by
  ``stack_module_state`` and run by ``vmap`` over ``functional_call``, the padding made
  inert by 0/1 masks on the weights, -inf logits beyond each vocabulary and zero weight on
  padded facts, the summed losses trained by one ``torch.optim.Adam`` (Adam is per entry,
  so this is each model's own Adam);
- a per-model loop, one ``torch.optim.Adam`` per pair.

Prints model-epochs per second of each, the projected time of the paper's sweep (3,947
pairs x 2,000 epochs) at each rate, the engine's and the ensemble's largest weight gap to
the loop's after a few epochs (a check that all three train the same models), and the
ratios, the loop's last.

    python benchmarks/train_throughput.py [--pairs 256] [--epochs 200] [--loop-pairs 64] [--device cpu]

The loop's rate is measured on ``--loop-pairs`` of the pairs (it is the slow side); the
engine's and the ensemble's on all of them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from factlab.databases.generators import paper_population
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack, paper_layer_grid
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import Adam
from torch.func import functional_call, stack_module_state

PAPER_MODEL_EPOCHS = 3947 * 2000
CHECK_EPOCHS = 20


def draw_pairs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    dbs = paper_population()
    grid = paper_layer_grid()
    pairs = []
    for _ in range(n):
        db = dbs[rng.integers(len(dbs))]
        shape = grid[rng.integers(len(grid))]
        pairs.append((db, AttentionLayerConfig(n_tokens=db.n_tokens, **shape)))
    return pairs


def per_model_loop(stack: AttentionStack, dbs, epochs: int, lr: float) -> list[dict[str, torch.Tensor]]:
    """The baseline: each model alone, torch.optim.Adam, full-batch epochs; returns the
    trained weights of each."""
    out = []
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([stack.configs[i]], [stack.model_weights(i)])
        W = {n: w.clone().requires_grad_(True) for n, w in alone.params.items()}
        opt = torch.optim.Adam(list(W.values()), lr=lr)
        seq = torch.from_numpy(db.sequences().copy())
        inputs, targets = seq[None, :, :2], seq[:, 1:].reshape(-1)
        for _ in range(epochs):
            opt.zero_grad()
            logits = alone.logits(inputs, W)[0]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
            loss.backward()
            opt.step()
        out.append({n: w.detach() for n, w in W.items()})
    return out


def largest_gap(padded: dict[str, torch.Tensor], alone: list[dict[str, torch.Tensor]]) -> float:
    """The largest entry-wise gap between stacked weights and per-model ones."""
    gap = 0.0
    for i, weights in enumerate(alone):
        for n, w in weights.items():
            own = padded[n][i][tuple(slice(0, s) for s in w.shape[1:])]
            gap = max(gap, float((own - w[0]).abs().max()))
    return gap


class OneLayer(torch.nn.Module):
    """One attention-only layer (Wong 2025, eq. 2) at the padded sizes, written as a
    PyTorch user would: its weights are parameters, the padding masks are arguments."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        for name, w in weights.items():
            self.register_parameter(name, torch.nn.Parameter(w.clone()))

    def forward(self, masks, token_mask, tokens, targets, weight):
        W = {name: getattr(self, name) * masks[name] for name in masks}
        x = W["W_E"][tokens]                                                 # (B, 2, D)
        q = torch.einsum("nd,hda->nha", x[:, 1], W["W_Q"])                   # position 1 queries
        k = torch.einsum("npd,had->npha", x, W["W_K"])
        v = torch.einsum("npd,hdb->nphb", x, W["W_V"])
        pattern = torch.softmax((k * q[:, None]).sum(-1), dim=1)             # (B, 2, H)
        z1 = torch.einsum("nph,nphb->nhb", pattern, v)                      # position 1 reads 0 and 1
        z = torch.stack([v[:, 0], z1], dim=1)                               # position 0 reads itself
        resid = x + torch.einsum("nphb,hbd->npd", z, W["W_O"])
        logits = (resid @ W["W_U"]).masked_fill(~token_mask, float("-inf"))  # (B, 2, V)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                               reduction="none").view(targets.shape)
        return (ce * weight[:, None]).sum() / (2 * weight.sum())


def ensemble(stack: AttentionStack, dbs, epochs: int, lr: float) -> dict[str, torch.Tensor]:
    """The torch.func ensemble (see the module docstring); returns the trained weights."""
    M = stack.n_models
    models = [OneLayer({n: w[i] for n, w in stack.params.items()}) for i in range(M)]
    params, _ = stack_module_state(models)
    base = OneLayer({n: w[0] for n, w in stack.params.items()}).to("meta")
    n_max = max(len(db.sequences()) for db in dbs)
    tokens = torch.zeros(M, n_max, 2, dtype=torch.long)
    targets = torch.zeros(M, n_max, 2, dtype=torch.long)
    weight = torch.zeros(M, n_max)
    for i, db in enumerate(dbs):
        seq = torch.from_numpy(db.sequences().astype(np.int64))
        tokens[i, :len(seq)], targets[i, :len(seq)], weight[i, :len(seq)] = seq[:, :2], seq[:, 1:], 1.0
    token_mask = stack.token_mask[:, None, None, :]

    def loss(p, masks, tm, x, y, w):
        return functional_call(base, p, (masks, tm, x, y, w))

    losses = torch.vmap(loss)
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        losses(params, stack.masks, token_mask, tokens, targets, weight).sum().backward()
        opt.step()
    return {n: (p.detach() * stack.masks[n]) for n, p in params.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--loop-pairs", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = draw_pairs(args.pairs)
    dbs = [db for db, _ in pairs]
    stack = AttentionStack.init([c for _, c in pairs], seed=0)
    data = FixedData.from_databases(dbs)
    lr = 1e-2
    cfg = TrainConfig(max_epochs=args.epochs, stop_tau=None, optimizer=Adam(lr=lr))
    run = RunConfig(device=args.device)

    engine_times, ensemble_times, loop_times = [], [], []
    n_loop = min(args.loop_pairs, args.pairs)
    loop_stack = stack.select(range(n_loop))
    # the check: all three train the same models (over a few epochs: Adam's steps on
    # near-zero gradients turn float rounding into O(lr) differences over many)
    short = TrainConfig(max_epochs=CHECK_EPOCHS, stop_tau=None, optimizer=Adam(lr=lr))
    looped = per_model_loop(loop_stack, dbs[:n_loop], CHECK_EPOCHS, lr)
    trained = train(loop_stack, FixedData.from_databases(dbs[:n_loop]), short, run).model
    gaps = (largest_gap(trained.params, looped), largest_gap(ensemble(loop_stack, dbs[:n_loop], CHECK_EPOCHS, lr), looped))
    for _ in range(args.repeats):
        t = time.perf_counter()
        train(stack, data, cfg, run)
        if args.device != "cpu":
            torch.cuda.synchronize()
        engine_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        ensemble(stack, dbs, args.epochs, lr)
        ensemble_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        per_model_loop(loop_stack, dbs[:n_loop], args.epochs, lr)
        loop_times.append(time.perf_counter() - t)
    rate = {name: n * args.epochs / np.median(times) for name, n, times in
            (("engine", args.pairs, engine_times), ("ensemble", args.pairs, ensemble_times), ("loop", n_loop, loop_times))}
    print(f"pairs: {args.pairs} (loop timed on {n_loop}), epochs: {args.epochs}, device: {args.device}, "
          f"threads: {args.threads}, repeats: {args.repeats} (medians)")
    for name, label in (("loop", "per-model loop   "), ("ensemble", "torch.func vmap  "), ("engine", "factlab engine   ")):
        print(f"{label}: {rate[name]:10.0f} model-epochs/s   paper sweep projected "
              f"{PAPER_MODEL_EPOCHS / rate[name] / 60:8.1f} min")
    print(f"largest weight gap to the loop after {CHECK_EPOCHS} epochs: engine {gaps[0]:.1e}, ensemble {gaps[1]:.1e}")
    print(f"ratio (engine / torch.func ensemble): {rate['engine'] / rate['ensemble']:.1f}x")
    print(f"ratio (engine / loop): {rate['engine'] / rate['loop']:.1f}x")


if __name__ == "__main__":
    main()
