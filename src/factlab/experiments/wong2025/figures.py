"""The figures of Wong (2025, sec. 4), drawn from result tables with matplotlib.

Every function takes pandas frames as the result store gives them (``databases``,
``layers`` and the joined ``results`` of a wong2025 store) and returns a matplotlib Figure;
:func:`factlab.report.figures.save` writes it as PNG and SVG.

- Figure 2(a): triples |D| against the Proposition 2.1 bound, with the least-squares slope
  through the origin (the paper: about 1.8 triples per unit of bound).
- Figure 2(b): non-embedding parameters against the lower estimate (9).
- Figure 3(a-d): mean accuracy in cells of layer bound (9) in (i-5, i] (rows) by database
  bound (Proposition 2.1) in (j-10, j] (columns), for argmax and τ = 0.75, 0.95, 0.99.
- Figure 4: mean softmax>=0.95 accuracy over d_head_vo (rows) x d_head_qk (columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from factlab.report.figures import plt

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
