"""Recall-transformer throughput: factlab's engine against a per-configuration PyTorch loop.

Figure 4 (right) of Nichani, Lee and Bietti (2024): S = R = 32, D = 8, 64 noise tokens,
d = 32, d_h = 8, lr 1e-2, one run per (H, m) of a 13 x 13 grid. The two sides train
different sets of these configurations for different numbers of steps (both on fresh batches
of 1,024 samples, early stopping off, on ``--device``) and are compared by samples per
second:

- the engine trains the whole 169-run grid, as stacks, for ``--engine-steps`` steps, the
  attention from token counts and per-token tables;
- the loop, the slow side, trains only the 13 diagonal configurations (H_i, m_i), one at a
  time, for ``--loop-steps`` steps, computing attention position by position as the
  authors' code does (every position's key and value projected, softmax over the
  positions), with torch.optim.AdamW. The cost of a run is a sum of a term in H and a term
  in m, so the diagonal's mean cost per sample is the grid's.

The engine's timing includes what a real run pays per chunk: building the chunk, and an
evaluation on 1,024 held-out samples at its first and last step (a 16,384-step run pays
them once); 16 steps amortize them as far as a benchmark of a minute can. Prints samples
per second of each, the projected time of the 169-run grid at 16,384 steps at each rate,
and the ratio last. On CUDA the clock is read after synchronizing.

    python benchmarks/recall_throughput.py [--engine-steps 16] [--loop-steps 16] [--repeats 3] [--threads 2]
                                           [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from factlab.databases.recall_task import RecallTaskConfig, RecallTasks, answer_table
from factlab.keyed_random import model_keys
from factlab.models.recall_transformer import RecallTransformerConfig, RecallTransformerStack
from factlab.training.data import LastTokenSampler, StreamData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import AdamW

HEADS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
WIDTHS = (1, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)
GRID_STEPS = 2 ** 14
BATCH = 1024


def setup(cells, seed: int = 0):
    task = RecallTaskConfig(32, 32, 8, 64, 32)
    configs = [RecallTransformerConfig(task.vocab_size, task.n_outputs, 32, h, 8, m) for h, m in cells]
    stack = RecallTransformerStack.init(configs, seed=seed)
    tables = [answer_table(task, seed=i) for i in range(len(configs))]
    return task, stack, tables


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so the clock reads its end."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def loop(stack, task, tables, steps: int, device: str = "cpu", lr: float = 1e-2) -> None:
    """One configuration at a time, attention position by position (the authors' way), with
    its weights and each batch on ``device``."""
    keys = model_keys(0, range(stack.n_models))
    for i, c in enumerate(stack.configs):
        w = {n: t.detach().clone().to(device) for n, t in stack.model_weights(i).items()}
        trained = {n: w[n].requires_grad_(True) for n in ("W_Q", "W_K", "W_V", "W_O", "W1", "b1", "W2")}
        opt = torch.optim.AdamW(list(trained.values()), lr=lr, weight_decay=0.0)
        tasks = RecallTasks([task], [tables[i]])
        for step in range(steps):
            tokens, answers = tasks.draw(keys[i:i + 1], step, BATCH)
            x = w["E"][torch.from_numpy(tokens[0]).to(device)]                        # (B, C, D)
            q = torch.einsum("bd,hdk->bhk", x[:, -1], w["W_Q"])                         # (B, H, K)
            k = torch.einsum("btd,hdk->bthk", x, w["W_K"])                              # (B, C, H, K)
            v = torch.einsum("btd,hdk->bthk", x, w["W_V"])
            a = torch.softmax((k * q[:, None]).sum(-1) / c.d_head ** 0.5, dim=1)        # (B, C, H)
            heads = (a[..., None] * v).sum(1)                                           # (B, H, K)
            z = torch.einsum("bhk,hkd->bd", heads, w["W_O"])
            h = z + torch.relu(z @ w["W1"].T + w["b1"]) @ w["W2"].T
            loss = torch.nn.functional.cross_entropy(h @ w["U"].T, torch.from_numpy(answers[0]).to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()


def engine(stack, task, tables, steps: int, device: str, lr: float = 1e-2) -> None:
    data = StreamData(LastTokenSampler(RecallTasks([task] * stack.n_models, tables)), batch_size=BATCH,
                      eval_size=BATCH, keys=model_keys(0, range(stack.n_models)))
    train(stack, data, TrainConfig(max_steps=steps, eval_every=steps, stop_tau=None, taus=(0.5,),
                                   optimizer=AdamW(lr=lr, weight_decay=0.0)), RunConfig(device=device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine-steps", type=int, default=16)
    ap.add_argument("--loop-steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, grid_stack, grid_tables = setup([(h, m) for h in HEADS for m in WIDTHS])
    _, diag_stack, diag_tables = setup(list(zip(HEADS, WIDTHS)))
    engine(grid_stack, task, grid_tables, 1, args.device)       # warm-up (compiles the sampler)
    e_times, l_times = [], []
    for _ in range(args.repeats):
        sync(args.device)
        t = time.perf_counter()
        engine(grid_stack, task, grid_tables, args.engine_steps, args.device)
        sync(args.device)
        e_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        loop(diag_stack, task, diag_tables, args.loop_steps, args.device)
        sync(args.device)
        l_times.append(time.perf_counter() - t)
    e_rate = grid_stack.n_models * args.engine_steps * BATCH / np.median(e_times)
    l_rate = diag_stack.n_models * args.loop_steps * BATCH / np.median(l_times)
    grid = len(HEADS) * len(WIDTHS) * GRID_STEPS * BATCH
    print(f"engine: the 169-run grid of Figure 4 (right), {args.engine_steps} steps; loop: its 13 diagonal "
          f"(H, m), {args.loop_steps} steps; {BATCH} samples a step; device {args.device}, threads {args.threads}, "
          f"repeats {args.repeats} (medians)")
    print(f"per-config loop : {l_rate:10.0f} samples/s   169-run grid at {GRID_STEPS} steps projected "
          f"{grid / l_rate / 3600:6.2f} h")
    print(f"factlab engine  : {e_rate:10.0f} samples/s   169-run grid at {GRID_STEPS} steps projected "
          f"{grid / e_rate / 3600:6.2f} h")
    print(f"ratio (engine / loop): {e_rate / l_rate:.1f}x")


if __name__ == "__main__":
    main()
