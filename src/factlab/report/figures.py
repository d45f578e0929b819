"""Figure helpers shared by every paper's figures (matplotlib, Agg backend).

A leaf: it knows no factlab type. Each paper package draws its own figures from its
result tables (``factlab.experiments.<paper>.figures``) with these helpers, and
:func:`save` writes each as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def save(fig, directory: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` under ``directory``; closes the figure."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.png", directory / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def scatter_with_means(ax, rows: pd.DataFrame, x: str, y: str, *, jitter: float, seed: int, mean_label: str,
                       **scatter_kw):
    """``y`` against ``x`` with a fixed horizontal jitter (only to separate points on integer
    x), and the mean of ``y`` per ``x`` as a line; returns the scatter's handle."""
    shift = np.random.default_rng(seed).uniform(-jitter, jitter, len(rows))
    handle = ax.scatter(rows[x] + shift, rows[y], **scatter_kw)
    mean = rows.groupby(x)[y].mean()
    ax.plot(mean.index, mean.values, "o-", color="C3", label=mean_label)
    return handle
