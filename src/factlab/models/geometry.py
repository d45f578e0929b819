"""Geometric factual recall (Ravfogel, Yehudai, Bruna, Bietti 2026): Theorem 4.1's construction,
the superposition probe, linear readouts and the selector intervention.

**Theorem 4.1, by hand** (:func:`construction`). A one-layer transformer without
normalisation stores the one-hop facts of R bijections of N subjects at ``d = R·k + R + k + 2``
with ``k = ceil(log2 N)``, i.e. d = O(R log N):

- attribute a has the code ``c(a) in {-1, +1}^k`` (its bits), an embedding-free lookup;
- subject s is embedded as the stacked codes of its R attributes ``[c(pi_1(s)); ...;
  c(pi_R(s))]`` plus a "key" coordinate; relation r as its one-hot plus a "query" coordinate;
- the head at the relation's position attends (with a large score) to the subject and copies
  its code blocks;
- the MLP is a relation-conditioned selector: for each relation r', code entry j and sign,
  the unit ``ReLU(±x[block r', j] + 2·x[relation r'] - 2)`` is active only for the queried
  relation, and writes ``±`` its input into an answer block: the answer block holds
  ``c(pi_r(s))`` and nothing else;
- the unembedding reads the answer block against every attribute's code: the logit of a is
  ``<c(pi_r(s)), c(a)>``, k for the right attribute and at most k - 2 for any other.

**Superposition probe** (:func:`superposition_fit`). With bijections, a vector per
(relation, attribute) would fit any embedding exactly (each appears in one subject only), so
the probe ties them through shared attribute vectors, as the construction does: ``e_s ≈ b +
Σ_r A_r u_{pi_r(s)}``, ``u_a`` the attribute's output vector (its column of ``W_U``) and
``A_r`` one linear map per relation, fitted by least squares on a random part of the
subjects and scored (R²) on the others (our protocol). A linear readout of ``pi_r(s)`` from
``e_s`` (:func:`linear_readout`) maps e_s to ``u`` by least squares on the same subjects and
decodes held-out subjects by the nearest ``u_a``.

**Selector intervention** (:func:`swap_component`, :func:`intervene`): replace the r-component
``A_r u_{pi_r(s)}`` of e_s by ``A_r u_{a'}``; a selector then answers a' to (s, r) and keeps
its other answers. The paper's statement is about both at once, so :func:`intervene` counts
the interventions that do both (``joint``) beside the two rates apart: an edit that moves the
target answer but also moves another relation's can score high on each rate and low jointly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models.transformer import TransformerConfig, TransformerStack


def codes(n: int, k: int | None = None) -> np.ndarray:
    """``(n, k)`` in {-1, +1}: the binary digits of 0..n-1 as signs (k = ceil(log2 n), >= 1)."""
    k = k or max(1, math.ceil(math.log2(n)))
    bits = (np.arange(n)[:, None] >> np.arange(k)[None, :]) & 1
    return (2 * bits - 1).astype(np.float64)


@dataclass(frozen=True)
class Construction:
    """The hand-built model and its layout: ``k`` code entries, ``d`` its dimension, and the
    slices of the residual stream that hold each relation's code block."""

    stack: TransformerStack
    k: int
    d: int
    blocks: tuple[slice, ...]


def construction(perms: np.ndarray, *, score: float = 30.0, dtype: torch.dtype = torch.float64) -> Construction:
    """Theorem 4.1's one-layer transformer for the bijections ``perms (R, N)`` (row r is pi_r),
    over the one-hop vocabulary (subjects/attributes 0..N-1, relations N..N+R-1), sequences
    (s, r) of length 2. ``score``: the attention score of the subject (its softmax weight is
    about ``1 - e^-score``). See the module docstring."""
    perms = np.asarray(perms)
    R, N = perms.shape
    if sorted(perms[0].tolist()) != list(range(N)):
        raise ConfigError("perms must be permutations of 0..N-1, one row per relation")
    c = codes(N)
    k = c.shape[1]
    d = R * k + R + k + 2
    blocks = tuple(slice(r * k, (r + 1) * k) for r in range(R))
    rel, ans, key, query = R * k, R * k + R, R * k + R + k, R * k + R + k + 1
    cfg = TransformerConfig(n_tokens=N + R, seq_len=2, d=d, n_layers=1, n_heads=1, d_head=R * k, width=2 * R * k,
                            norm="none")
    w = {n: torch.zeros(s, dtype=torch.float64) for n, s in TransformerStack.shapes(cfg).items()}
    for s in range(N):
        for r in range(R):
            w["W_E"][s, blocks[r]] = torch.from_numpy(c[perms[r, s]])
        w["W_E"][s, key] = 1.0
    for r in range(R):
        w["W_E"][N + r, rel + r] = 1.0
        w["W_E"][N + r, query] = 1.0
    w["W_Q"][0, 0, query, 0] = score * math.sqrt(R * k)          # the head's own 1/sqrt(d_head) undone
    w["W_K"][0, 0, key, 0] = 1.0
    for i in range(R * k):                                        # copy the code blocks through the head
        w["W_V"][0, 0, i, i] = 1.0
        w["W_O"][0, 0, i, i] = 1.0
    for r in range(R):
        for j in range(k):
            for sign, unit in ((1.0, 2 * (r * k + j)), (-1.0, 2 * (r * k + j) + 1)):
                w["W1"][0, unit, blocks[r].start + j] = sign
                w["W1"][0, unit, rel + r] = 2.0
                w["b1"][0, unit] = -2.0
                w["W2"][0, ans + j, unit] = sign
    w["W_U"][ans:ans + k, :N] = torch.from_numpy(c.T)
    stack = TransformerStack.from_weights([cfg], [{n: t.to(dtype) for n, t in w.items()}])
    return Construction(stack, k, d, blocks)


def one_hop_inputs(perms: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs (N·R, 2), answers (N·R,))``: every query (s, r) of the one-hop vocabulary."""
    R, N = np.asarray(perms).shape
    s, r = np.divmod(np.arange(N * R), R)
    inputs = np.stack([s, N + r], axis=1)
    return torch.from_numpy(inputs), torch.from_numpy(np.asarray(perms)[r, s])


def answers(stack: TransformerStack, inputs: torch.Tensor, model: int = 0, hooks=None) -> torch.Tensor:
    """The argmax answer at the last position of each sequence ``inputs (B, C)`` for one model."""
    one = stack.select([model])
    return one.logits(inputs, hooks=hooks)[0, :, -1].argmax(-1)


# ============================================================================ probes
@dataclass(frozen=True)
class Superposition:
    """A fit ``e_s ≈ b + Σ_r A_r u_{pi_r(s)}``: ``A (R, d, q)``, ``b (d,)``; R² on the fitted
    subjects and on the held-out ones; which subjects were held out."""

    A: np.ndarray
    b: np.ndarray
    r2_train: float
    r2_test: float
    test: np.ndarray


def _split(N: int, test_fraction: float, seed: int) -> np.ndarray:
    n_test = max(1, int(round(test_fraction * N)))
    test = np.zeros(N, dtype=bool)
    test[np.random.default_rng(seed).choice(N, n_test, replace=False)] = True
    return test


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan")


def superposition_fit(E: np.ndarray, U: np.ndarray, perms: np.ndarray, *, test_fraction: float = 0.25,
                      seed: int = 0) -> Superposition:
    """Fit the subject embeddings ``E (N, d)`` as ``b + Σ_r A_r U[pi_r(s)]`` (``U (N, q)``: each
    attribute's vector) by least squares on a random ``1 - test_fraction`` of the subjects;
    R² on them and on the held-out rest (see the module docstring)."""
    E, U, perms = np.asarray(E, dtype=np.float64), np.asarray(U, dtype=np.float64), np.asarray(perms)
    R, N = perms.shape
    test = _split(N, test_fraction, seed)
    X = np.concatenate([U[perms[r]] for r in range(R)] + [np.ones((N, 1))], axis=1)   # (N, R·q + 1)
    coef, *_ = np.linalg.lstsq(X[~test], E[~test], rcond=None)                       # (R·q + 1, d)
    q = U.shape[1]
    A = np.stack([coef[r * q:(r + 1) * q].T for r in range(R)])                       # (R, d, q)
    return Superposition(A, coef[-1], _r2(E[~test], X[~test] @ coef), _r2(E[test], X[test] @ coef), test)


def linear_readout(E: np.ndarray, U: np.ndarray, perms: np.ndarray, *, test_fraction: float = 0.25,
                   seed: int = 0) -> np.ndarray:
    """``(R,)``: per relation, the accuracy on held-out subjects of a linear readout of
    ``pi_r(s)`` from ``e_s``: an affine map ``e_s -> U[pi_r(s)]`` fitted by least squares on the
    other subjects, decoded as the attribute whose ``u_a`` is nearest."""
    E, U, perms = np.asarray(E, dtype=np.float64), np.asarray(U, dtype=np.float64), np.asarray(perms)
    R, N = perms.shape
    test = _split(N, test_fraction, seed)
    X = np.concatenate([E, np.ones((N, 1))], axis=1)
    out = np.zeros(R)
    for r in range(R):
        coef, *_ = np.linalg.lstsq(X[~test], U[perms[r][~test]], rcond=None)
        pred = X[test] @ coef                                                         # (n_test, q)
        dist = ((pred[:, None, :] - U[None, :, :]) ** 2).sum(-1)                       # (n_test, N)
        out[r] = float((dist.argmin(1) == perms[r][test]).mean())
    return out


def swap_component(e_s: np.ndarray, fit: Superposition, U: np.ndarray, r: int, old: int, new: int) -> np.ndarray:
    """``e_s`` with its relation-r component ``A_r u_old`` replaced by ``A_r u_new``."""
    return np.asarray(e_s) + fit.A[r] @ (np.asarray(U[new]) - np.asarray(U[old]))


class Intervention(NamedTuple):
    """The rates of a set of selector interventions: ``moved``, the share of interventions
    whose answer to (s, r) became a'; ``kept``, the share of the other relations' answers
    (R - 1 per intervention) that did not change; ``joint``, the share of interventions that
    did both at once (the answer to (s, r) became a' and every other answer of s stayed)."""

    moved: float
    kept: float
    joint: float


def intervene(stack: TransformerStack, model: int, perms: np.ndarray, fit: Superposition, U: np.ndarray,
              pairs: list[tuple[int, int, int]]) -> Intervention:
    """For each ``(s, r, a')``: swap the relation-r component of subject s's token embedding
    to attribute a' (a hook on the "embed" stage, position 0) and ask every relation of s.
    Returns the :class:`Intervention` rates (moved, kept, and both in the same intervention)."""
    one = stack.select([model])
    R, N = np.asarray(perms).shape
    E = one.params["W_E"][0].detach().double().numpy()
    moved = kept = other = joint = 0
    for s, r, new in pairs:
        e = swap_component(E[s], fit, U, r, int(perms[r, s]), new)
        delta = torch.as_tensor(e - E[s], dtype=one.dtype)
        D = one.params["W_E"].shape[2]

        def hook(x, delta=delta):
            y = x.clone()
            y[:, :, 0, :delta.shape[0]] += delta[:D]
            return y

        inputs = torch.stack([torch.tensor([s, N + q]) for q in range(R)])           # (R, 2): every relation of s
        before = one.logits(inputs)[0, :, -1].argmax(-1)
        after = one.logits(inputs, hooks={"embed": hook})[0, :, -1].argmax(-1)
        hit = bool(after[r] == new)
        stayed = [bool(after[q] == before[q]) for q in range(R) if q != r]
        moved += hit
        kept += sum(stayed)
        other += len(stayed)
        joint += hit and all(stayed)
    n = max(len(pairs), 1)
    return Intervention(moved / n, kept / max(other, 1), joint / n)
