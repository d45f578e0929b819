import pytest

from factlab.errors import ConfigError
from factlab.experiments.wong2025.config import ExperimentSpec, load_spec, parse_spec, spec_from_dict


def test_defaults_are_the_papers():
    s = parse_spec("")
    assert s == ExperimentSpec()
    assert (s.databases.n, s.databases.max_facts, s.pairing.n_pairs, s.training.max_epochs) == (548, 200, 3947, 2000)
    assert s.thresholds.taus == (0.5, 0.75, 0.95, 0.99)


def test_round_trip_through_toml(tiny_spec):
    assert parse_spec(tiny_spec.to_toml()) == tiny_spec


def test_hash_ignores_runner(tiny_spec):
    from dataclasses import replace
    other = replace(tiny_spec, runner=replace(tiny_spec.runner, shard_size=99))
    assert other.hash == tiny_spec.hash
    assert replace(tiny_spec, seed=4).hash != tiny_spec.hash


@pytest.mark.parametrize("text, words", [
    ("colour = 1", ["unknown key", "colour"]),
    ("[training]\nepochs = 5", ["[training]", "epochs"]),
    ("[pairs]\nn = 5", ["unknown key", "pairs"]),
    ("[training]\nmax_epochs = 0", ["training.max_epochs", "0"]),
    ("[training]\nmax_epochs = 'many'", ["training.max_epochs", "many"]),
    ("[thresholds]\ntaus = [0.3]", ["thresholds.taus", "0.3"]),
    ("[pairing]\nmethod = 'greedy'", ["pairing.method", "greedy"]),
    ("[training]\nstop_tau = 0.9", ["stop_tau", "0.9"]),
    ("training = 3", ["training", "table"]),
    ("[databases\nn = 3", ["not valid TOML"]),
    ("[databases]\nrank_interval = 1", ["databases.rank_interval", "bool"]),
    ("[runner]\nkernel = 'numba'", ["runner.kernel", "numba"]),
])
def test_errors_name_key_and_value(text, words):
    with pytest.raises(ConfigError) as e:
        parse_spec(text, source="my.toml")
    assert "my.toml" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_ints_accepted_for_floats():
    assert parse_spec("[training]\nlr = 1").training.lr == 1.0


def test_load_spec_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml"):
        load_spec(tmp_path / "nope.toml")


def test_a_paper_key_is_allowed_and_checked():
    assert spec_from_dict({"paper": "wong2025", "seed": 2}).seed == 2
    with pytest.raises(ConfigError, match="completions"):
        spec_from_dict({"paper": "completions"}, source="x.toml")


def test_the_hash_of_the_scales_is_the_one_stores_were_made_with():
    """Stores written before the experiment core carry these hashes; they must still resume."""
    from factlab.experiments.wong2025.config import scale_spec

    assert scale_spec("quick").hash == "131b8778780410ac"


def test_the_choices_the_paper_leaves_open_are_fields_that_keep_old_hashes():
    """Optimizer, weight decay, momentum, initialisation scale and early stopping were added
    after stores existed: at their defaults the hash is the old one; changed, it moves."""
    from dataclasses import replace

    from factlab.experiments.wong2025.config import scale_spec
    from factlab.experiments.wong2025.unit import train_config
    from factlab.training.optim import SGD, Adam, AdamW

    quick = scale_spec("quick")
    assert quick.hash == "131b8778780410ac"
    sgd = replace(quick, training=replace(quick.training, optimizer="sgd", momentum=0.9, early_stop=False))
    assert sgd.hash != quick.hash
    tc, _ = train_config(sgd)
    assert tc.optimizer == SGD(lr=0.03, momentum=0.9) and tc.stop_tau is None
    assert train_config(quick)[0].optimizer == Adam(lr=0.03) and train_config(quick)[0].stop_tau == 0.99
    adamw = replace(quick, training=replace(quick.training, optimizer="adamw"))
    assert train_config(adamw)[0].optimizer == AdamW(lr=0.03, weight_decay=0.01)   # torch's default decay
    assert parse_spec(sgd.to_toml()) == sgd
    for bad in ("optimizer = 'rmsprop'", "momentum = 0.9", "init_scale = 0", "weight_decay = -1"):
        with pytest.raises(ConfigError):
            parse_spec(f"[training]\n{bad}")
