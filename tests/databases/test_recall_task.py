"""The recall task of Nichani et al. (2024): token layout, well-formed samples, their
distributions, keyed draws that do not depend on the stack, and config errors."""

import numpy as np
import pytest
from scipy.stats import chi2

from factlab import keyed_random as kr
from factlab._numba import njit
from factlab.databases import recall_task as rt
from factlab.databases.recall_task import RecallTaskConfig, RecallTasks, answer_table, facts
from factlab.training.data import LastTokenSampler
from factlab.errors import ConfigError
from factlab.training.data import StreamData


def _chi2_ok(counts, probs, p_fail=1e-4):
    """Pearson's chi-square of ``counts`` against ``probs`` is below its 1 - p_fail quantile."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() * np.asarray(probs, dtype=np.float64)
    stat = ((counts - expected) ** 2 / expected).sum()
    return stat < chi2.ppf(1 - p_fail, len(counts) - 1), stat


def _check_samples(cfg, table, inputs, targets):
    """Every sample of one model: one subject and one relation among positions 0..T-2, at
    different positions, noise elsewhere, EOS last, target the answer of (s, r)."""
    S, R, V, T = cfg.n_subjects, cfg.n_relations, cfg.n_noise, cfg.seq_len
    body = inputs[:, :T - 1]
    subj, rel = body < S, (body >= S) & (body < S + R)
    noise = (body >= S + R) & (body < S + R + V)
    assert (subj.sum(1) == 1).all() and (rel.sum(1) == 1).all() and (noise.sum(1) == T - 3).all()
    assert (subj.argmax(1) != rel.argmax(1)).all()
    assert (inputs[:, T - 1] == S + R + V).all() and inputs.max() < cfg.vocab_size
    s, r = body[subj], body[rel] - S
    assert np.array_equal(targets, table[s, r])
    assert ((targets // cfg.n_answers) == r).all() and targets.max() < cfg.n_outputs


def test_token_layout_answer_blocks_and_facts():
    cfg = RecallTaskConfig(n_subjects=5, n_relations=3, n_answers=4)
    assert (cfg.n_noise, cfg.first_relation, cfg.first_noise, cfg.eos, cfg.vocab_size, cfg.n_outputs) == \
        (8, 5, 8, 16, 17, 12)
    assert RecallTaskConfig(5, 3, n_noise=2).vocab_size == 11
    table = answer_table(cfg, seed=3)
    assert table.shape == (5, 3) and table.dtype == np.int64
    for r in range(3):
        assert all(a in cfg.answer_block(r) for a in table[:, r])
    assert np.array_equal(table, answer_table(cfg, seed=3))
    assert not np.array_equal(table, answer_table(cfg, seed=4))
    big = answer_table(RecallTaskConfig(200, 2, n_answers=4), seed=0)        # uses every answer of a block
    assert sorted(set(big[:, 1])) == [4, 5, 6, 7]
    structured = RecallTaskConfig(n_subjects=6, n_relations=2, n_answers=4, structured=True)
    expected = [[(s * 4) // 6 + r * 4 for r in range(2)] for s in range(6)]   # Figure 5: floor(sD/S) + rD
    assert answer_table(structured, seed=9).tolist() == expected
    f = facts(cfg, table)
    assert f.shape == (15, 3)
    assert [tuple(x) for x in f[:4]] == [(0, 5, table[0, 0]), (0, 6, table[0, 1]), (0, 7, table[0, 2]),
                                         (1, 5, table[1, 0])]
    assert all(table[s, rel - 5] == a for s, rel, a in f)


def test_every_sample_is_well_formed_in_a_mixed_stack():
    cfgs = [RecallTaskConfig(7, 3, n_answers=4, seq_len=12),
            RecallTaskConfig(30, 5, n_answers=2, n_noise=3, seq_len=12, zipf=1.0),
            RecallTaskConfig(2, 1, n_answers=9, seq_len=12, structured=True),
            RecallTaskConfig(4, 6, n_noise=1, seq_len=12)]
    tables = [answer_table(c, seed=i) for i, c in enumerate(cfgs)]
    batch = LastTokenSampler(RecallTasks(cfgs, tables)).draw(kr.model_keys(1, range(4)), 0, 300, 0)
    assert batch.inputs.shape == (4, 300, 12) and batch.targets.shape == (4, 300, 1)
    assert batch.positions == (11,) and batch.evaluated.all() and batch.has_data.all()
    assert np.allclose(batch.weight.numpy(), 1 / 300) and batch.weight.shape == (4, 300, 1)
    for m, (c, t) in enumerate(zip(cfgs, tables)):
        _check_samples(c, t, batch.inputs[m].numpy(), batch.targets[m, :, 0].numpy())


def test_positions_tokens_subjects_and_relations_are_uniform():
    cfg = RecallTaskConfig(6, 4, seq_len=10)                                   # 10 noise tokens, 9 positions
    table = answer_table(cfg, seed=0)
    x = RecallTasks([cfg], [table]).draw(kr.model_keys(2, [0]), 0, 20000, 0)[0][0, :, :9]
    p, q = (x < 6).argmax(1), ((x >= 6) & (x < 10)).argmax(1)
    pairs = np.bincount(p * 9 + q, minlength=81).reshape(9, 9)               # (subject pos, relation pos)
    assert (np.diag(pairs) == 0).all()
    ok, stat = _chi2_ok(pairs[~np.eye(9, dtype=bool)], np.full(72, 1 / 72))  # uniform over ordered pairs
    assert ok, stat
    assert _chi2_ok(np.bincount(x[x >= 10] - 10, minlength=10), np.full(10, 0.1))[0]
    assert _chi2_ok(np.bincount(x[x < 6], minlength=6), np.full(6, 1 / 6))[0]
    assert _chi2_ok(np.bincount(x[(x >= 6) & (x < 10)] - 6, minlength=4), np.full(4, 0.25))[0]


def test_zipf_subjects_follow_the_power_law():
    cfg = RecallTaskConfig(10, 2, seq_len=4, zipf=1.0)
    x = RecallTasks([cfg], [answer_table(cfg)]).draw(kr.model_keys(3, [0]), 0, 50000, 0)[0][0]
    counts = np.bincount(x[x < 10], minlength=10)
    w = np.array([1 / (s + 1) for s in range(10)])
    ok, stat = _chi2_ok(counts, w / w.sum())
    assert ok, stat
    assert not _chi2_ok(counts, np.full(10, 0.1))[0]
    assert abs(counts[0] / 50000 - 1 / sum(1 / k for k in range(1, 11))) < 0.01


def test_draws_are_keyed_per_model_not_per_stack():
    cfgs = [RecallTaskConfig(5 + m, 2 + m % 3, n_answers=3 + m, seq_len=16, zipf=0.5 * (m % 2))
            for m in range(6)]
    tables = [answer_table(c, seed=m) for m, c in enumerate(cfgs)]
    keys = kr.model_keys(11, range(6))
    stack = LastTokenSampler(RecallTasks(cfgs, tables, threads=2))
    full = stack.draw(keys, 5, 64, 0)
    alone = LastTokenSampler(RecallTasks([cfgs[3]], [tables[3]])).draw(keys[3:4], 5, 64, 0)
    assert alone.inputs[0].equal(full.inputs[3]) and alone.targets[0].equal(full.targets[3])
    assert not full.inputs.equal(stack.draw(keys, 6, 64, 0).inputs)           # another counter
    assert not full.inputs.equal(stack.draw(keys, 5, 64, 1).inputs)           # another stream
    assert stack.draw(keys, 5, 16, 0).inputs.equal(full.inputs[:, :16])      # a smaller draw is a prefix
    taken = stack.take(np.array([4, 1]))
    assert taken.n_models == 2
    part = taken.draw(keys[[4, 1]], 5, 64, 0)
    assert part.inputs.equal(full.inputs[[4, 1]]) and part.targets.equal(full.targets[[4, 1]])
    data = StreamData(stack, batch_size=8, eval_size=32, keys=keys)            # the engine's stream
    assert data.step(5).inputs.equal(full.inputs[:, :8]) and data.eval_batch().inputs.shape == (6, 32, 16)


@pytest.mark.skipif(njit is None, reason="numba missing: the numpy path is the only one")
def test_compiled_kernel_and_numpy_path_draw_the_same_numbers():
    cfgs = [RecallTaskConfig(9, 3, seq_len=8, zipf=1.3), RecallTaskConfig(4, 5, n_answers=2, seq_len=8)]
    s = RecallTasks(cfgs, [answer_table(c, seed=1) for c in cfgs])
    keys = kr.model_keys(4, range(2))
    batch = LastTokenSampler(s).draw(keys, 2, 200, 3)
    inputs, targets = np.empty((2, 200, 8), np.int64), np.empty((2, 200), np.int64)
    rt._draw_numpy(np.arange(2), keys, np.uint64(2), np.uint64(3), 200, 8, s._dims, s._cdf, s._cdf_at,
                   s._table, s._table_at, inputs, targets)
    assert np.array_equal(inputs, batch.inputs.numpy()) and np.array_equal(targets, batch.targets[..., 0].numpy())


def test_bad_configs_name_the_value():
    with pytest.raises(ConfigError, match="seq_len.*got 2"):
        RecallTaskConfig(4, 2, seq_len=2)
    with pytest.raises(ConfigError, match="n_subjects.*got 0"):
        RecallTaskConfig(0, 2)
    with pytest.raises(ConfigError, match="zipf.*got -1"):
        RecallTaskConfig(4, 2, zipf=-1.0)
    a, b = RecallTaskConfig(4, 2), RecallTaskConfig(4, 2, seq_len=16)
    with pytest.raises(ConfigError, match=r"seq_len.*\[16, 32\]"):
        LastTokenSampler(RecallTasks([a, b], [answer_table(a), answer_table(b)]))
    with pytest.raises(ConfigError, match=r"\(2, 4\)"):
        RecallTasks([a], [np.zeros((2, 4), np.int64)])
    with pytest.raises(ConfigError, match="block"):
        LastTokenSampler(RecallTasks([a], [answer_table(a) + a.n_answers]))
    with pytest.raises(ConfigError, match="3 model keys for 1"):
        LastTokenSampler(RecallTasks([a], [answer_table(a)])).draw(kr.model_keys(0, range(3)), 0, 4, 0)
