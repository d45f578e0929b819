import pytest

from factlab.experiments.wong2025.config import parse_spec

TINY = """
name = "tiny"
seed = 3

[databases]
n = 12
max_facts = 20
rank_interval = false

[layers]
max_d_model = 3
max_heads = 2

[pairing]
n_pairs = 18

[training]
max_epochs = 40
lr = 0.05

[runner]
shard_size = 5
threads = 1
"""


@pytest.fixture
def tiny_spec():
    return parse_spec(TINY, source="tiny.toml")
