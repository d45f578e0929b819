"""Theorem 4.1's construction, the superposition probe, readouts and the selector intervention."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from factlab.databases.bijections import BijectionTask, draw_bijections
from factlab.models.geometry import (answers, codes, construction, intervene, linear_readout, one_hop_inputs,
                                     superposition_fit)


def test_codes_are_distinct_signs_of_log_length():
    c = codes(37)
    assert c.shape == (37, 6) and set(np.unique(c)) == {-1.0, 1.0}
    assert len({tuple(row) for row in c}) == 37
    assert codes(1).shape == (1, 1)


@pytest.mark.parametrize("N, R", [(2, 1), (7, 3), (16, 4), (100, 2), (257, 5)])
def test_the_construction_memorizes_every_fact_at_d_of_order_R_log_N(N, R):
    perms = draw_bijections(BijectionTask(N, R), seed=N)
    built = construction(perms)
    k = math.ceil(math.log2(N)) if N > 1 else 1
    assert built.k == max(1, k) and built.d == R * built.k + R + built.k + 2
    assert built.stack.configs[0].norm == "none"
    inputs, truth = one_hop_inputs(perms)
    logits = built.stack.logits(inputs)[0, :, -1]                       # (N·R, V)
    assert torch.equal(logits.argmax(-1), truth)
    # the right attribute scores k, any other at most k - 2 (distinct sign codes), relations 0
    top2 = logits.topk(2, dim=-1).values
    assert (top2[:, 0] - top2[:, 1] >= min(2, built.k) - 1e-6).all()


def test_the_probe_recovers_a_planted_superposition_exactly_and_finds_none_in_noise():
    rng = np.random.default_rng(0)
    N, R, q, d = 200, 3, 5, 24
    perms = draw_bijections(BijectionTask(N, R), seed=1)
    U = rng.normal(size=(N, q))
    A = rng.normal(size=(R, d, q))
    b = rng.normal(size=d)
    E = b + sum(U[perms[r]] @ A[r].T for r in range(R))
    fit = superposition_fit(E, U, perms, seed=2)
    assert fit.r2_test == pytest.approx(1.0, abs=1e-10) and fit.r2_train == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(fit.A, A, atol=1e-8)
    np.testing.assert_allclose(fit.b, b, atol=1e-8)
    assert (linear_readout(E, U, perms, seed=2) == 1.0).all()
    noise = rng.normal(size=E.shape)
    assert superposition_fit(noise, U, perms, seed=2).r2_test < 0.2
    assert linear_readout(noise, U, perms, seed=2).max() < 0.2              # chance is 1/200


def test_the_intervention_on_the_construction_moves_exactly_the_intended_answers():
    N, R = 64, 4
    perms = draw_bijections(BijectionTask(N, R), seed=5)
    built = construction(perms)
    E = built.stack.params["W_E"][0, :N].numpy()
    U = built.stack.params["W_U"][0, :, :N].T.numpy()                     # each attribute's output vector
    fit = superposition_fit(E, U, perms, seed=0)
    assert fit.r2_test == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(1)
    pairs = []
    for s in rng.choice(N, 20, replace=False):
        r = int(rng.integers(R))
        new = int((perms[r, s] + 1 + rng.integers(N - 1)) % N)            # any other attribute
        pairs.append((int(s), r, new))
    done = intervene(built.stack, 0, perms, fit, U, pairs)
    assert (done.moved, done.kept, done.joint) == (1.0, 1.0, 1.0)


def test_the_joint_rate_counts_interventions_that_move_the_target_and_keep_every_other_answer():
    """A planted leaky fit on the construction: relation 0's map also writes three times its
    code change into relation 1's block. An edit of relation 0 still moves its own answer, but
    relation 1's block then holds entries of size 5 and 7, which open the MLP's +-1 gates
    whatever the query and disturb other answers; edits of relations 1-3 stay clean. Each rate
    is checked against a brute force that rewrites the subject's row of W_E (no hook) and
    compares every answer of the subject before and after."""
    N, R = 64, 4
    perms = draw_bijections(BijectionTask(N, R), seed=5)
    built = construction(perms)
    E = built.stack.params["W_E"][0, :N].numpy()
    U = built.stack.params["W_U"][0, :, :N].T.numpy()
    fit = superposition_fit(E, U, perms, seed=0)
    A = fit.A.copy()
    A[0] = A[0] + 3 * A[1]
    leaky = replace(fit, A=A)
    rng = np.random.default_rng(2)
    pairs = []
    for i in range(24):
        s, r = int(rng.integers(N)), i % R                                 # 6 edits of each relation
        pairs.append((s, r, int((perms[r, s] + 1 + rng.integers(N - 1)) % N)))
    moved, stayed, joint = [], [], []
    for s, r, new in pairs:
        W_E = built.stack.params["W_E"].clone()
        W_E[0, s] += torch.from_numpy(A[r] @ (U[new] - U[perms[r, s]]))
        inputs = torch.tensor([[s, N + q] for q in range(R)])
        before, after = answers(built.stack, inputs), answers(built.stack.with_params({"W_E": W_E}), inputs)
        others = [bool(after[q] == before[q]) for q in range(R) if q != r]
        moved.append(bool(after[r] == new))
        stayed += others
        joint.append(moved[-1] and all(others))
    want = (np.mean(moved), np.mean(stayed), np.mean(joint))
    got = intervene(built.stack, 0, perms, leaky, U, pairs)
    assert got == pytest.approx(want, abs=1e-12)
    # the planted leak separates the rates: every target moves and most other answers stay,
    # but fewer interventions do both; the 18 clean edits (relations 1-3) all do
    assert got.moved == 1.0 and got.joint < got.kept < 1.0
    assert 18 / 24 <= got.joint < 1.0
