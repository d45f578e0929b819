"""A round's learning-rate ladder trains as one stack, and each probe ends where it ends alone."""

import json

import pytest

from factlab.experiments.nichani2024 import unit
from factlab.experiments.nichani2024.config import (CapacitySpec, LinearMemorySpec, NichaniConfig, TrainingSpec)
from factlab.experiments.nichani2024.plan import Probe, Search

CONFIG = NichaniConfig(name="ladder", linear=LinearMemorySpec(ds=(4,), seeds=1, steps=96),
                       training=TrainingSpec(lrs=(3e-3, 1e-2, 3e-2), steps=48, batch_size=64, eval_size=64,
                                             eval_every=16),
                       capacity=CapacitySpec(ds=(8,), pairs=((2.0, 2.0),), s_max=6))


@pytest.fixture
def calls(monkeypatch):
    seen = []
    real = unit.train

    def counting(model, data, config, run, **kw):
        seen.append((model.n_models, kw.get("lr")))
        return real(model, data, config, run, **kw)

    monkeypatch.setattr(unit, "train", counting)
    return seen


@pytest.mark.parametrize("experiment", ["linear", "capacity"])
def test_every_learning_rate_of_a_round_trains_in_one_stack_as_each_would_alone(experiment, calls):
    lrs = CONFIG.training.lrs
    search = Search(f"{experiment}-test", experiment, d=4 if experiment == "linear" else 8, lo=2, hi=16,
                    ratio=None, lrs=lrs, alpha=2.0, beta=2.0)
    probes = [Probe(search, size, lr) for size in (4, 5) for lr in lrs]
    run = unit.train_memories if experiment == "linear" else unit.train_capacity_probes
    together = run(CONFIG, probes)
    assert calls == [(len(probes), [p.lr for p in probes])]
    for row, p in zip(together, probes):
        assert row["lr"] == p.lr
        assert json.loads(row["train_config"])["engine"]["optimizer"]["lr"] == p.lr   # its own rate recorded
    for i in (0, 4):                                      # two probes retrained alone
        alone = run(CONFIG, [probes[i]])[0]
        assert (alone["steps"], alone["status"]) == (together[i]["steps"], together[i]["status"])
        assert alone["accuracy"] == pytest.approx(together[i]["accuracy"], abs=1e-6)
        assert alone["loss"] == pytest.approx(together[i]["loss"], rel=1e-4)
    assert len({round(r["loss"], 6) for r in together}) > 1      # the rates did differ
