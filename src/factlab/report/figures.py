"""The figures of Wong (2025, sec. 4), drawn from result tables with matplotlib (Agg backend).

Every function takes pandas frames as the result store gives them (``databases``,
``layers``, ``results`` of :class:`~factlab.experiments.store.ResultStore`) and returns a
matplotlib Figure; :func:`save` writes it as PNG and SVG.

- Figure 2(a): triples |D| against the Proposition 2.1 bound, with the least-squares slope
  through the origin (the paper: about 1.8 triples per unit of bound).
- Figure 2(b): non-embedding parameters against the lower estimate (9).
- Figure 3(a-d): mean accuracy in cells of layer bound (9) in (i-5, i] (rows) by database
  bound (Proposition 2.1) in (j-10, j] (columns), for argmax and τ = 0.75, 0.95, 0.99.
- Figure 4: mean softmax>=0.95 accuracy over d_head_vo (rows) x d_head_qk (columns).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LAYER_BIN = 5    # Figure 3 rows: layer bound in (i - 5, i]
DB_BIN = 10      # Figure 3 columns: database bound in (j - 10, j]


def slope_through_origin(x, y) -> float:
    """Least-squares slope of ``y ≈ s x`` (the line of Figure 2(a))."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float((x * y).sum() / (x * x).sum())


def figure_2a(databases: pd.DataFrame):
    """Number of database triples against the Proposition 2.1 upper bound on rank(D)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    x, y = databases["prop21"], databases["triples"]
    s = slope_through_origin(x, y)
    ax.scatter(x, y, s=8, alpha=0.6, label=f"{len(x)} databases")
    xs = np.linspace(0, x.max(), 2)
    ax.plot(xs, s * xs, color="C3", label=f"|D| ≈ {s:.2f} × bound")
    ax.set_xlabel("database rank upper bound (Proposition 2.1)")
    ax.set_ylabel("number of triples |D|")
    ax.set_title("Figure 2(a)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def figure_2b(layers: pd.DataFrame):
    """Non-embedding parameters against the lower estimate (9) of rank(L)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(layers["lower_estimate"], layers["params"], s=10, alpha=0.6, label=f"{len(layers)} layers")
    ax.set_xlabel("attention layer rank lower bound estimate (9)")
    ax.set_ylabel("non-embedding parameters")
    ax.set_title("Figure 2(b)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def bin_cells(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ``metric`` per Figure 3 cell: rows i (layer bound in (i-5, i]), columns j
    (database bound in (j-10, j]); empty cells are NaN."""
    df = results.assign(i=LAYER_BIN * np.ceil(results["layer_bound"] / LAYER_BIN).astype(int),
                        j=DB_BIN * np.ceil(results["db_bound"] / DB_BIN).astype(int))
    return df.pivot_table(index="i", columns="j", values=metric, aggfunc="mean").sort_index().sort_index(axis=1)


def cell_counts(results: pd.DataFrame) -> pd.DataFrame:
    df = results.assign(i=LAYER_BIN * np.ceil(results["layer_bound"] / LAYER_BIN).astype(int),
                        j=DB_BIN * np.ceil(results["db_bound"] / DB_BIN).astype(int))
    return df.pivot_table(index="i", columns="j", values="pair_id", aggfunc="count")


def figure_3(results: pd.DataFrame, metric: str, title: str):
    """One panel of Figure 3: the heatmap of :func:`bin_cells` (layer bound grows upwards)."""
    cells = bin_cells(results, metric)
    cells = cells.reindex(index=range(LAYER_BIN, int(cells.index.max()) + 1, LAYER_BIN),
                          columns=range(DB_BIN, int(cells.columns.max()) + 1, DB_BIN))  # empty cells shown blank
    fig, ax = plt.subplots(figsize=(7, 3.6))
    im = ax.imshow(cells.to_numpy(dtype=float), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(cells.shape[1]), [str(j) for j in cells.columns], fontsize=7)
    ax.set_yticks(range(cells.shape[0]), [str(i) for i in cells.index], fontsize=8)
    ax.set_xlabel("database rank bound j (Proposition 2.1), cell (j-10, j]")
    ax.set_ylabel("layer rank bound i (9),\ncell (i-5, i]")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="mean accuracy")
    fig.tight_layout()
    return fig


def head_grid(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ``metric`` over d_head_vo (rows) x d_head_qk (columns)."""
    return results.pivot_table(index="d_head_vo", columns="d_head_qk", values=metric, aggfunc="mean"
                               ).sort_index().sort_index(axis=1)


def figure_4(results: pd.DataFrame, metric: str):
    """Mean softmax>=0.95 accuracy as d_head_vo (rows, growing downwards) and d_head_qk vary."""
    grid = head_grid(results, metric)
    fig, ax = plt.subplots(figsize=(4.8, 4))
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
    ax.set_xlabel("d_head_qk")
    ax.set_ylabel("d_head_vo")
    ax.set_title("Figure 4 (softmax ≥ 0.95)")
    fig.colorbar(im, ax=ax, label="mean accuracy")
    fig.tight_layout()
    return fig


def save(fig, directory: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` under ``directory``; closes the figure."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.png", directory / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------- tensor completions
# Figures of the completions experiment (Wong 2025b; factlab.experiments.completions). Each takes
# the joined runs of CompletionsStore.results(): one row per (database, layer, epochs) run.

def _longest(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the longest training length."""
    return runs[runs["epochs"] == runs["epochs"].max()]


def _scatter_with_means(ax, rows: pd.DataFrame, x: str, y: str, *, jitter: float, seed: int, mean_label: str,
                        **scatter_kw):
    """``y`` against ``x`` with a fixed horizontal jitter (only to separate points on integer
    x), and the mean of ``y`` per ``x`` as a line; returns the scatter's handle."""
    shift = np.random.default_rng(seed).uniform(-jitter, jitter, len(rows))
    handle = ax.scatter(rows[x] + shift, rows[y], **scatter_kw)
    mean = rows.groupby(x)[y].mean()
    ax.plot(mean.index, mean.values, "o-", color="C3", label=mean_label)
    return handle


def figure_artifacts_vs_layer(runs: pd.DataFrame):
    """Artifacts per training triple against the layer's lower estimate (9), at the longest training."""
    last = _longest(runs)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    _scatter_with_means(ax, last, "layer_bound", "artifact_ratio", jitter=0.25, seed=0, mean_label="mean per layer",
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
    sc = _scatter_with_means(ax, last, "rank_gap", "generalization_error", jitter=0.2, seed=1,
                             mean_label="mean per gap", c=last["layer_bound"], s=12, alpha=0.6, cmap="viridis")
    ax.set_xlabel("effective rank gap: eff(train + held out) − eff(train)")
    ax.set_ylabel("generalization error on held-out facts")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Generalization against the effective-rank gap")
    fig.colorbar(sc, ax=ax, label="layer bound (9)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
