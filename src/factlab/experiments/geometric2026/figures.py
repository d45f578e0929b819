"""The figures of our reproduction of Ravfogel et al. (2026), from a geometric2026 store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from factlab.report.figures import plt


def figure_threshold(th: pd.DataFrame):
    """The smallest d that memorizes against N (log scale), one line per R; learned embeddings
    solid, frozen random ones dashed (a control memorizing at no d of its range is drawn at the
    range's top, hollow)."""
    rows = th[th["experiment"] == "threshold"]
    fig, ax = plt.subplots(figsize=(5.4, 4))
    for i, (R, g) in enumerate(rows.groupby("n_relations")):
        for embed, style in (("learned", "o-"), ("frozen", "s--")):
            h = g[g["embed"] == embed].sort_values("n_subjects")
            if h.empty:
                continue
            found = h.dropna(subset=["threshold"])
            ax.plot(found["n_subjects"], found["threshold"], style, color=f"C{i}", label=f"R = {R}, {embed}")
            missing = h[h["threshold"].isna()]
            ax.scatter(missing["n_subjects"], missing["d_max"], marker="^", facecolors="none", edgecolors=f"C{i}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("subjects N")
    ax.set_ylabel("smallest d that memorizes every fact")
    ax.set_title("Threshold (Theorem 4.1): learned vs frozen embeddings")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_analysis(an: pd.DataFrame):
    """Superposition R², readout accuracy (initialisation vs trained), and the intervention's
    rates, averaged over replicates: joint (the answer moved and every other kept, in the same
    intervention: the claim's rate), moved and kept apart."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    read = {k: np.mean([np.mean(json.loads(x)) for x in an[f"readout_{k}"]]) for k in ("init", "trained")}
    bars = {"R² init": an["r2_init"].mean(), "R² trained": an["r2_trained"].mean(), "readout init": read["init"],
            "readout trained": read["trained"], "joint": an["joint"].mean(), "moved": an["moved"].mean(),
            "kept": an["kept"].mean()}
    ax.bar(range(len(bars)), list(bars.values()), color=["C7", "C0", "C7", "C0", "C1", "C3", "C2"])
    ax.set_xticks(range(len(bars)), list(bars.keys()), rotation=20, fontsize=8)
    ax.set_ylim(min(0, min(bars.values()) - 0.05), 1.05)
    ax.set_title("Superposition probe, readouts and the selector intervention")
    fig.tight_layout()
    return fig


def figure_transfer(an: pd.DataFrame):
    """Steps to full accuracy on new bijections: freeze-and-swap against training from scratch."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.arange(len(an))
    ax.bar(x - 0.2, an["swap_steps"], 0.4, label="freeze-and-swap (subject embeddings only)")
    ax.bar(x + 0.2, an["scratch_steps"], 0.4, label="from scratch")
    ax.set_xticks(x, [f"replicate {int(r)}" for r in an["replicate"]])
    ax.set_ylabel("steps (to accuracy 1, or the budget)")
    ax.set_ylim(0, 1.3 * max(an["swap_steps"].max(), an["scratch_steps"].max(), 1))   # room for the legend
    ax.set_title("Transfer to new bijections")
    ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def figure_multihop(th: pd.DataFrame):
    """The smallest d that answers every k-hop query against k, with and without chain of thought."""
    rows = th[th["experiment"] == "multihop"]
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for cot, style, label in ((False, "o-", "direct (no chain of thought)"), (True, "s-", "chain of thought")):
        g = rows[rows["cot"] == cot].sort_values("hops")
        found = g.dropna(subset=["threshold"])
        ax.plot(found["hops"], found["threshold"], style, label=label)
        missing = g[g["threshold"].isna()]
        ax.scatter(missing["hops"], missing["d_max"], marker="^", facecolors="none", edgecolors="k")
    ax.set_xlabel("hops k")
    ax.set_ylabel("smallest d solving every query")
    ax.set_title("Multi-hop recall (Theorems 4.2-4.4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
