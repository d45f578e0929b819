"""Training throughput: factlab's stacked engine against a plain per-model PyTorch loop.

The same 256 random (layer, database) pairs drawn from the ranges of Wong (2025, sec. 4)
(layers of the 364-size grid, databases of the 548 population), 200 full-batch epochs
each, early stopping off on both sides so both do the same work. Prints model-epochs per
second of each, the projected time of the paper's sweep (3,947 pairs x 2,000 epochs) at
each rate, and the ratio last.

    python benchmarks/train_throughput.py [--pairs 256] [--epochs 200] [--loop-pairs 64] [--device cpu]

The loop's rate is measured on ``--loop-pairs`` of the pairs (it is the slow side) and
the engine's on all of them.
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

PAPER_MODEL_EPOCHS = 3947 * 2000


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


def per_model_loop(stack: AttentionStack, dbs, epochs: int, lr: float) -> None:
    """The baseline: each model alone, torch.optim.Adam, full-batch epochs."""
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

    engine_times, loop_times = [], []
    n_loop = min(args.loop_pairs, args.pairs)
    loop_stack = stack.select(range(n_loop))
    for _ in range(args.repeats):
        t = time.perf_counter()
        train(stack, data, cfg, run)
        if args.device != "cpu":
            torch.cuda.synchronize()
        engine_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        per_model_loop(loop_stack, dbs[:n_loop], args.epochs, lr)
        loop_times.append(time.perf_counter() - t)
    engine_rate = args.pairs * args.epochs / np.median(engine_times)
    loop_rate = n_loop * args.epochs / np.median(loop_times)
    print(f"pairs: {args.pairs} (loop timed on {n_loop}), epochs: {args.epochs}, device: {args.device}, "
          f"threads: {args.threads}, repeats: {args.repeats} (medians)")
    print(f"per-model loop : {loop_rate:10.0f} model-epochs/s   paper sweep projected {PAPER_MODEL_EPOCHS / loop_rate / 60:8.1f} min")
    print(f"factlab engine : {engine_rate:10.0f} model-epochs/s   paper sweep projected {PAPER_MODEL_EPOCHS / engine_rate / 60:8.1f} min")
    print(f"ratio (engine / loop): {engine_rate / loop_rate:.1f}x")


if __name__ == "__main__":
    main()
