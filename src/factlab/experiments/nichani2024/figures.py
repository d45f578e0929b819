"""The figures of Nichani, Lee and Bietti (2024), drawn from our stored results.

Each takes frames of a nichani2024 store (the searches' capacities, the trade-off grid,
Figure 5's curves) and returns a matplotlib Figure with the paper's reference line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import lambertw

from factlab.report.figures import plt


def n_log_n_inverse(y) -> np.ndarray:
    """N with N ln N = y (y > 0), through the Lambert W function: N = y / W(y)."""
    y = np.asarray(y, dtype=float)
    return y / np.real(lambertw(y))


def _loglog(ax, xlabel, ylabel, title):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def figure_1_linear(caps: pd.DataFrame):
    """Capacity of the linear memory against d^2, with the reference ``d^2 = 1.3 N ln N``."""
    lin = caps[(caps["experiment"] == "linear") & caps["capacity"].notna()]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(lin["d"] ** 2, lin["capacity"], s=14, alpha=0.6, label="our capacities (each seed)")
    x = np.geomspace(max(lin["d"].min() ** 2, 16), lin["d"].max() ** 2, 50) if len(lin) else np.geomspace(64, 1024, 5)
    ax.plot(x, n_log_n_inverse(x / 1.3), "k--", label="paper: d² = 1.3 N ln N")
    ax.plot(x, x, ":", color="grey", label="N = d²")
    _loglog(ax, "d² (parameters)", "capacity N (99% accuracy)", "Figure 1 (left): linear associative memory")
    fig.tight_layout()
    return fig


def figure_mlp(caps: pd.DataFrame, experiment: str, title: str, reference: str):
    """Capacity of the MLP memory against m·d, one series per alpha; ``reference`` is
    ``"nlogn"`` (m·d = 0.35 N ln N, Figure 1 right) or ``"linear"`` (m·d = 1.2 N, Figure 6)."""
    rows = caps[(caps["experiment"] == experiment) & caps["capacity"].notna()]
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, (a, g) in enumerate(rows.groupby("alpha")):
        ax.scatter(a * g["d"] ** 2, g["capacity"], s=16, color=f"C{i}", label=f"m = {a:g}·d")
    md = (rows["alpha"] * rows["d"] ** 2).to_numpy(float)
    x = np.geomspace(md.min(), md.max(), 50) if len(md) else np.geomspace(64, 1024, 5)
    if reference == "nlogn":
        ax.plot(x, n_log_n_inverse(x / 0.35), "k--", label="paper: m·d = 0.35 N ln N")
    else:
        ax.plot(x, x / 1.2, "k--", label="paper: m·d = 1.2 N")
    _loglog(ax, "m·d (parameters / 2)", "capacity N (99% accuracy)", title)
    fig.tight_layout()
    return fig


def figure_4_left(caps: pd.DataFrame):
    """Facts stored (S·R at capacity) against parameters, one curve per (alpha, beta), with
    the reference ``facts = 0.15 · parameters``."""
    rows = caps[(caps["experiment"] == "capacity") & caps["facts"].notna()]
    fig, ax = plt.subplots(figsize=(5.4, 4))
    for i, ((a, b), g) in enumerate(rows.groupby(["alpha", "beta"])):
        g = g.sort_values("params")
        ax.plot(g["params"], g["facts"], "o-", color=f"C{i % 10}", ms=4, label=f"α={a:g}, β={b:g}")
    x = np.geomspace(max(rows["params"].min(), 1), rows["params"].max(), 20) if len(rows) else np.geomspace(1e2, 1e4, 5)
    ax.plot(x, 0.15 * x, "k--", label="paper: facts = 0.15 · params")
    _loglog(ax, "parameters 4·H·d_h·d + 2·m·d", "facts stored S·R", "Figure 4 (left): facts against parameters")
    fig.tight_layout()
    return fig


def figure_4_right(grid: pd.DataFrame, boundary: pd.Series):
    """Accuracy over attention parameters d·d_h·H (x) and MLP parameters d·m (y), with our
    accuracy-0.99 boundary."""
    table = grid.pivot_table(index="mlp_params", columns="attention_params", values="best_accuracy")
    fig, ax = plt.subplots(figsize=(6, 4.6))
    im = ax.imshow(table.to_numpy(float), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(table.shape[1]), [str(int(c)) for c in table.columns], rotation=60, fontsize=7)
    ax.set_yticks(range(table.shape[0]), [str(int(r)) for r in table.index], fontsize=7)
    cols, rows = list(table.columns), list(table.index)
    if len(boundary):
        ax.plot([cols.index(v) for v in boundary.values], [rows.index(k) for k in boundary.index], "w.-",
                label="fewest attention params at 99%")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlabel("attention parameters d·d_h·H")
    ax.set_ylabel("MLP parameters d·m")
    ax.set_title("Figure 4 (right): accuracy")
    fig.colorbar(im, ax=ax, label="best accuracy")
    fig.tight_layout()
    return fig


def figure_5(curves: pd.DataFrame, n_answers: int, n_relations: int):
    """Total, relation-only and subject-only losses over steps, with log(D·R) and log D marked."""
    c = curves.sort_values("step")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(c["step"], c["loss"], label="total loss")
    ax.plot(c["step"], c["relation_loss"], label="relation-only loss")
    ax.plot(c["step"], c["subject_loss"], label="subject-only loss")
    for level, text in ((math.log(n_answers * n_relations), f"log {n_answers * n_relations}"),
                        (math.log(n_answers), f"log {n_answers}")):
        ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.text(c["step"].max() if len(c) else 1, level, text, ha="right", va="bottom", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Figure 5: sequential learning (linear attention)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
