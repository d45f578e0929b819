"""The figures of the mechanisms comparison."""

from __future__ import annotations

import pandas as pd

from matplotlib import cm
from matplotlib.colors import LogNorm
from matplotlib.ticker import NullFormatter

from factlab.report.figures import plt

COLOURS = {"attention": "C0", "recall": "C1", "geometric": "C2"}


def _log_axis(ax, which: str = "x") -> None:
    """A log axis with labels at the decades only (minor labels overlap in small panels)."""
    getattr(ax, f"set_{which}scale")("log")
    getattr(ax, f"{which}axis").set_minor_formatter(NullFormatter())


def figure_accuracy_vs_params(probes: pd.DataFrame, dbs: pd.DataFrame):
    """Every probe's argmax accuracy against its trained parameters. Up to 4 databases: a
    panel per database, a line per mechanism; more: a panel per mechanism, a line per
    database against parameters per fact, coloured by |D|."""
    info = dbs.set_index("db_id")
    if len(info) <= 4:
        fig, axes = plt.subplots(1, len(info), figsize=(3.6 * len(info), 3.0), squeeze=False)
        for ax, (db_id, db) in zip(axes[0], info.iterrows()):
            for m, g in probes[probes["db_id"] == db_id].groupby("mechanism"):
                g = g.sort_values("params")
                ax.plot(g["params"], g["accuracy"], "o-", ms=3, color=COLOURS.get(m), label=m)
            ax.set_title(f"{db['name']} (|D| = {db['triples']})", fontsize=8)
            _log_axis(ax)
        xlabel = "trained parameters"
    else:
        mechanisms = [m for m in COLOURS if m in set(probes["mechanism"])]
        fig, axes = plt.subplots(1, len(mechanisms), figsize=(3.6 * len(mechanisms), 3.0), squeeze=False,
                                 sharey=True)
        norm = LogNorm(info["triples"].min(), max(info["triples"].max(), info["triples"].min() + 1))
        for ax, m in zip(axes[0], mechanisms):
            for db_id, g in probes[probes["mechanism"] == m].groupby("db_id"):
                g = g.sort_values("params")
                n = info.loc[db_id, "triples"]
                ax.plot(g["params"] / n, g["accuracy"], "o-", ms=2.5, lw=0.8, alpha=0.8, color=cm.viridis(norm(n)))
            ax.set_title(m, fontsize=9)
            _log_axis(ax)
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.viridis), ax=axes[0].tolist(), label="facts |D|")
        xlabel = "trained parameters per fact"
    for ax in axes[0]:
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
    if len(info) <= 4:
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
    fig.supxlabel(xlabel, fontsize=9)
    axes[0, 0].set_ylabel("argmax accuracy")
    return fig


def figure_params_vs_facts(best: pd.DataFrame):
    """The smallest memorizing model's parameters against |D| (log-log), per mechanism."""
    fig, ax = plt.subplots(figsize=(5, 4))
    found = best.dropna(subset=["params"]) if "params" in best else best.iloc[:0]
    for m, g in found.groupby("mechanism"):
        ax.scatter(g["triples"], g["params"], color=COLOURS.get(m), label=m, s=18)
    if len(found):
        lo, hi = found["triples"].min(), found["triples"].max()
        ax.plot([lo, hi], [lo, hi], ":", color="grey", label="one parameter per fact")
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    ax.set_xlabel("facts |D|")
    ax.set_ylabel("parameters of the smallest memorizing model")
    ax.set_title("How big must a model be?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
