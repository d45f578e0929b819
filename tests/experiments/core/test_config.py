"""Configs: dicts and TOML in and out, errors that name the key, and the hash rules."""

from dataclasses import dataclass, field, replace

import pytest
import tomllib

from factlab.errors import ConfigError
from factlab.experiments.core.config import (OMIT_AT_DEFAULT, RUN_ONLY, config_dict, config_from_dict,
                                             config_hash, config_to_toml)
from factlab.training.optim import SGD, Adam, AdamW


@dataclass(frozen=True)
class Inner:
    width: int = 3
    rates: tuple[float, ...] = (0.1, 0.2)

    def __post_init__(self):
        if self.width < 1:
            raise ConfigError(f"width must be >= 1, got {self.width}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = Inner()
    grid: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))
    batch: int | None = None
    optimizer: Adam | AdamW | SGD = Adam()
    threads: int = field(default=0, metadata=RUN_ONLY)
    extra: float = field(default=1.5, metadata=OMIT_AT_DEFAULT)


def test_round_trips_through_dicts_and_toml():
    c = Outer(name="y", inner=Inner(5, (1.0,)), grid=((7, 8),), batch=4, optimizer=SGD(lr=0.5, momentum=0.9))
    assert config_from_dict(Outer, config_dict(c)) == c
    assert config_from_dict(Outer, tomllib.loads(config_to_toml(c))) == c
    assert config_dict(c)["optimizer"]["kind"] == "sgd"
    # None is left out of TOML and comes back as the default
    assert config_from_dict(Outer, tomllib.loads(config_to_toml(Outer()))) == Outer()


def test_ints_are_floats_and_lists_are_tuples():
    c = config_from_dict(Outer, {"inner": {"rates": [1, 2]}, "extra": 2})
    assert c.inner.rates == (1.0, 2.0) and c.extra == 2.0


@pytest.mark.parametrize("data, words", [
    ({"colour": 1}, ["unknown key", "colour"]),
    ({"inner": {"depth": 1}}, ["[inner]", "depth"]),
    ({"inner": {"width": "wide"}}, ["inner.width", "wide"]),
    ({"inner": {"width": 0}}, ["width", "0"]),
    ({"inner": 3}, ["inner", "table"]),
    ({"grid": [[1, 2, 3]]}, ["grid[0]", "2 entries"]),
    ({"optimizer": {"kind": "rmsprop"}}, ["optimizer.kind", "rmsprop"]),
    ({"optimizer": {"kind": "sgd", "betas": [0.9, 0.9]}}, ["optimizer", "betas"]),
    ({"batch": True}, ["batch", "True"]),
])
def test_errors_name_the_source_key_and_value(data, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict(Outer, data, source="my.toml")
    assert "my.toml" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_the_hash_leaves_out_run_only_fields_and_new_fields_at_their_default():
    base = Outer()
    assert config_hash(Outer(threads=8)) == config_hash(base)
    assert config_hash(Outer(extra=2.5)) != config_hash(base)
    assert "extra" not in config_dict(base, for_hash=True) and "threads" not in config_dict(base, for_hash=True)
    assert config_hash(Outer(inner=Inner(width=4))) != config_hash(base)


def test_a_paper_runs_its_units_on_the_threads_its_runner_asks_for_and_hashes_without_them():
    from factlab.experiments import registry
    from factlab.experiments.core.config import RunnerSpec

    for name in ("wong2025", "nichani2024", "geometric2026", "mechanisms"):
        paper = registry.paper(name)
        quick = paper.config("quick")
        two = replace(quick, runner=RunnerSpec(threads=2))
        assert (paper.threads(quick), paper.threads(two)) == (0, 2), name
        assert two.hash == quick.hash == config_hash(quick)
    assert registry.paper("completions").threads(registry.paper("completions").config("quick")) == 1
