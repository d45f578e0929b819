"""The figures of the completions study (artifacts, generalization, hallucination).

Each takes the joined runs of a completions store (one row per (database, layer, epochs)
run) and returns a matplotlib Figure; :func:`factlab.report.figures.save` writes it.
"""

from __future__ import annotations

import pandas as pd

from factlab.report.figures import plt, scatter_with_means


def _longest(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the longest training length."""
    return runs[runs["epochs"] == runs["epochs"].max()]


def figure_artifacts_vs_layer(runs: pd.DataFrame):
    """Artifacts per training triple against the layer's lower estimate (9), at the longest training."""
    last = _longest(runs)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    scatter_with_means(ax, last, "layer_bound", "artifact_ratio", jitter=0.25, seed=0, mean_label="mean per layer",
                       s=10, alpha=0.5, label=f"{len(last)} runs ({int(runs['epochs'].max())} epochs)")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--", label="= training triples")
    ax.set_xlabel("layer rank lower estimate (9): d_model + n_heads · d_head_vo")
    ax.set_ylabel("artifacts / training triples")
    ax.set_title("Artifacts against layer size")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def figure_artifacts_vs_epochs(runs: pd.DataFrame):
    """Mean artifacts per training triple (left) and mean training loss (right) against the
    training length, one line per layer (same initialisation at every length)."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for i, (bound, group) in enumerate(runs.groupby("layer_bound")):
        by_e = group.groupby("epochs")[["artifact_ratio", "loss"]].mean()
        ax.plot(by_e.index, by_e["artifact_ratio"], "o-", color=f"C{i % 10}", label=f"layer bound {int(bound)}")
        ax2.plot(by_e.index, by_e["loss"], "o-", color=f"C{i % 10}")
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel("training epochs")
    ax2.set_yscale("log")
    ax.set_ylabel("mean artifacts / training triples")
    ax2.set_ylabel("mean training loss")
    ax.set_title("Artifacts against training length")
    ax2.set_title("Training loss (overfitting)")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def figure_generalization_vs_rank_gap(runs: pd.DataFrame):
    """Generalization error against eff(train + held out) - eff(train), at the longest training,
    coloured by the layer bound (9)."""
    last = _longest(runs).dropna(subset=["generalization_error"])
    fig, ax = plt.subplots(figsize=(5.4, 4))
    sc = scatter_with_means(ax, last, "rank_gap", "generalization_error", jitter=0.2, seed=1,
                            mean_label="mean per gap", c=last["layer_bound"], s=12, alpha=0.6, cmap="viridis")
    ax.set_xlabel("effective rank gap: eff(train + held out) − eff(train)")
    ax.set_ylabel("generalization error on held-out facts")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Generalization against the effective-rank gap")
    fig.colorbar(sc, ax=ax, label="layer bound (9)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
