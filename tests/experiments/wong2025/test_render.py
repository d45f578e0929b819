"""Figures exist and show data; claims.json holds every claim of Wong (2025, sec. 4)."""

import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from factlab.errors import ConfigError
from factlab.experiments.core.runner import render, run
from factlab.experiments.wong2025 import PAPER
from factlab.experiments.wong2025.config import scale_spec

CLAIM_IDS = {"n_databases", "max_triples", "n_layers", "n_pairs", "max_epochs", "fig2a_slope", "fig2b_corr",
             "fig3a_argmax_small_layers", "tau05_argmax", "fig3_tau0.75_factor", "fig3_tau0.95_factor",
             "fig3d_tau099_fails", "fig3_rises_with_layer_bound", "fig4_antidiagonals"}
FIGURES = ["fig2a", "fig2b", "fig3a_argmax", "fig3b_tau0.75", "fig3c_tau0.95", "fig3d_tau0.99", "fig4"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from factlab.experiments.wong2025.config import parse_spec

    from .conftest import TINY
    spec = parse_spec(TINY)
    out = tmp_path_factory.mktemp("wong")
    run(PAPER, spec, out, progress=False, log=lambda m: None)
    doc = render(PAPER, out, out)
    return out, doc


def test_figures_exist_and_show_data(rendered):
    out, _ = rendered
    for stem in FIGURES:
        png, svg = out / "figures" / f"{stem}.png", out / "figures" / f"{stem}.svg"
        assert png.stat().st_size > 5000 and svg.stat().st_size > 5000
        img = mpimg.imread(png)[..., :3]
        colours = len(np.unique((img.reshape(-1, 3) * 255).astype(int), axis=0))
        assert colours > 20, f"{stem} looks empty"


def test_claims_json_holds_every_claim(rendered):
    out, doc = rendered
    saved = json.loads((out / "claims.json").read_text())
    ids = {c["id"] for c in saved["claims"]}
    assert ids == CLAIM_IDS
    for c in saved["claims"]:
        assert set(c) == {"id", "figure", "claim", "paper", "ours", "test", "holds"}
        assert isinstance(c["holds"], bool)
    assert {c["id"]: c["holds"] for c in saved["claims"]}["n_databases"] is False  # 12, not 548
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "fig2a_slope" in html


def test_scales():
    paper, quick = scale_spec("paper"), scale_spec("quick")
    assert (paper.databases.n, paper.pairing.n_pairs, paper.training.max_epochs) == (548, 3947, 2000)
    assert len(__import__("factlab.experiments.wong2025.plan", fromlist=["layers"]).layers(paper)) == 364
    assert quick.hash != paper.hash
    with pytest.raises(ConfigError, match="scale"):
        scale_spec("huge")


def test_rank_summary_counts_certified_and_cp_wins():
    import pandas as pd

    from factlab.experiments.wong2025 import rank_summary

    dbs = pd.DataFrame({"prop21": [6, 10, 4, 9], "rank_lower": [5, 7, 4, None],
                        "rank_upper": [5, 10, 4, None], "rank_certified": [True, False, True, None]})
    text = rank_summary(dbs)
    assert "of 3 databases: 2 certified" in text
    assert "mean width 1.00" in text          # widths 0, 3, 0
    assert "beat Proposition 2.1 on 1" in text  # 5 < 6 only
    assert rank_summary(dbs.assign(rank_upper=None)) == ""


def test_quick_scale_stores_rank_intervals():
    assert scale_spec("quick").databases.rank_interval
