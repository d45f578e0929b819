"""argmax, softmax_{>=τ}, τ-accuracy and Propositions 3.6 / 3.7 (Wong 2025, sec. 3.2)."""

import math

import numpy as np
import pytest
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.tensors.thresholds import (
    argmax_accuracy,
    argmax_rank_construction,
    check_tau,
    fact_probabilities,
    memorizes,
    minimal_softmax_scale,
    row_argmax,
    row_softmax,
    softmax_rank_construction,
    softmax_threshold,
    tau_accuracy,
    unit_vectors,
)

SIZES = [(2, 2), (3, 2), (5, 2), (7, 3), (11, 5), (11, 11), (13, 2)]


def test_row_argmax_marks_every_maximum():
    M = torch.tensor([[1.0, 3, 2], [5, 5, 0], [0, 0, 0]])
    expected = torch.tensor([[0.0, 1, 0], [1, 1, 0], [1, 1, 1]])
    assert torch.equal(row_argmax(M), expected)


def test_softmax_threshold_eq13():
    M = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])  # softmax rows (0.75, 0.25), (0.5, 0.5)
    assert torch.equal(softmax_threshold(M, 0.75), torch.tensor([[1.0, 0], [0, 0]]))
    assert torch.equal(softmax_threshold(M, 0.5), torch.tensor([[1.0, 0], [1, 1]]))
    for bad in (0.49, 1.01, -1, "x"):
        with pytest.raises(ConfigError, match="tau"):
            softmax_threshold(M, bad)
    assert check_tau(1) == 1.0


@pytest.fixture
def toy():
    """Three facts; |K|=3, |Q|=2, |V|=2 over a vocabulary of 6 tokens (subjects are not objects)."""
    return Database.from_triples([("a", "p", "x"), ("b", "p", "y"), ("c", "r", "x")])


def fibers_with(db, probs):
    """An L (|K|, |Q|, |V|) whose fact fibers put probability probs[i] on the true object (|V| = 2)."""
    L = torch.zeros(db.shape, dtype=torch.float64)
    for (k, q, v), p in zip(db.tensor_index(), probs):
        L[k, q, v] = math.log(p / (1 - p))  # softmax over 2 objects gives p
    return L


def test_tau_accuracy_eq14(toy):
    L = fibers_with(toy, [0.6, 0.8, 0.97])
    torch.testing.assert_close(fact_probabilities(L, toy), torch.tensor([0.6, 0.8, 0.97], dtype=torch.float64))
    assert tau_accuracy(L, toy, 0.5) == 1.0
    assert tau_accuracy(L, toy, 0.75) == pytest.approx(2 / 3)
    assert tau_accuracy(L, toy, 0.95) == pytest.approx(1 / 3)
    assert tau_accuracy(L, toy, 0.99) == 0.0
    assert memorizes(L, toy, 0.5) and not memorizes(L, toy, 0.75)
    assert argmax_accuracy(L, toy) == 1.0


def test_argmax_accuracy_does_not_count_ties(toy):
    L = fibers_with(toy, [0.6, 0.8, 0.97])
    k, q, v = toy.tensor_index()[1]
    L[k, q, :] = 0.0  # a tie: eq. (11) would mark both objects
    assert row_argmax(L[k, q]).sum() == 2
    assert argmax_accuracy(L, toy) == pytest.approx(2 / 3)
    assert tau_accuracy(L, toy, 0.5) == pytest.approx(1.0)  # p = 0.5 exactly still passes τ = 0.5


def test_token_columns_use_the_whole_vocabulary(toy):
    K, Q, _ = toy.shape
    n_vocab = toy.n_tokens + 1  # a model vocabulary larger than the database's
    L = torch.zeros(K, Q, n_vocab, dtype=torch.float64)
    for (k, q, _), v in zip(toy.tensor_index(), toy.facts[:, 2]):
        L[k, q, v] = math.log(3 * (n_vocab - 1))  # 3(n-1) / (3(n-1) + n-1) = 0.75
    torch.testing.assert_close(fact_probabilities(L, toy, columns="tokens"),
                               torch.full((3,), 0.75, dtype=torch.float64))
    assert tau_accuracy(L, toy, 0.74, columns="tokens") == 1.0
    assert tau_accuracy(L, toy, 0.76, columns="tokens") == 0.0
    with pytest.raises(ConfigError, match=r"\(\|K\|, \|Q\|, \|V\|\) = \(3, 2, 2\)"):
        tau_accuracy(L, toy, 0.5)
    with pytest.raises(ConfigError, match="columns"):
        tau_accuracy(L, toy, 0.5, columns="values")


@pytest.mark.parametrize("n, r", SIZES)
def test_proposition_3_6(n, r):
    X = unit_vectors(n, r, seed=n)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-12)
    M = argmax_rank_construction(n, r, seed=n)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-12)
    assert (M[~np.eye(n, dtype=bool)] < 1 - 1e-9).all()  # distinct points
    assert np.linalg.matrix_rank(M) == r
    A = row_argmax(torch.from_numpy(M)).numpy()
    np.testing.assert_array_equal(A, np.eye(n))
    assert np.linalg.matrix_rank(A) == n


@pytest.mark.parametrize("n, r", SIZES)
def test_proposition_3_7(n, r):
    M, c = softmax_rank_construction(n, r, seed=n)
    assert np.linalg.matrix_rank(M) == r
    assert np.linalg.matrix_rank(c * M) == r
    S = row_softmax(c * M)
    off = S.sum(1) - np.diag(S)
    assert (np.diag(S) > off).all()  # (e^{M_ii})^c > Σ_{j≠i} (e^{M_ij})^c: diagonally dominant
    assert np.linalg.matrix_rank(S) == n


@pytest.mark.parametrize("n, r", [(3, 2), (7, 3), (13, 2)])
def test_minimal_softmax_scale_is_minimal(n, r):
    M = argmax_rank_construction(n, r, seed=1)
    c = minimal_softmax_scale(M)
    E = np.exp(M)

    def dominant(scale):
        P = E ** scale
        return (np.diag(P) > P.sum(1) - np.diag(P)).all()

    assert dominant(1.01 * c) and not dominant(0.99 * c)


def test_minimal_softmax_scale_for_two_points_is_zero():
    assert minimal_softmax_scale(argmax_rank_construction(2, 2)) == 0.0
    M, c = softmax_rank_construction(2, 2, safety=3.0)
    assert c == 3.0


@pytest.mark.parametrize("n, r", [(3, 1), (2, 3), (5, 6)])
def test_construction_sizes_are_checked(n, r):
    with pytest.raises(ConfigError, match=f"n={n}, r={r}"):
        argmax_rank_construction(n, r)


def test_construction_errors():
    with pytest.raises(ConfigError, match="safety"):
        softmax_rank_construction(3, 2, safety=1.0)
    with pytest.raises(ConfigError, match="strictly larger"):
        minimal_softmax_scale(np.ones((3, 3)))
