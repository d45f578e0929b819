"""Claims: each statement of a paper with its value, ours, the test we apply and whether it holds.

Every paper package reports its claims as a list of :func:`claim` dicts, the rows of the
claims table in claims.json and report.html. A claim whose data are missing does not hold
and says why; NaN values (an undefined correlation) are written as null, so claims.json is
strict JSON.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

KEYS = ("id", "figure", "claim", "paper", "ours", "test", "holds")


def claim(cid: str, figure: str, statement: str, paper, ours, test: str, holds) -> dict:
    """One row of a claims table (see the module docstring)."""
    return {"id": cid, "figure": figure, "claim": statement, "paper": no_nan(paper), "ours": no_nan(ours),
            "test": test, "holds": bool(holds)}


def no_nan(x):
    """NaN (anywhere in nested dicts and lists) as None, numpy scalars as Python numbers."""
    if isinstance(x, dict):
        return {str(k): no_nan(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [no_nan(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def spearman(x, y) -> float:
    """Spearman's rank correlation, NaN where it is undefined (a constant input, fewer than two points)."""
    x, y = pd.Series(np.asarray(x, dtype=float)), pd.Series(np.asarray(y, dtype=float))
    if len(x) < 2 or min(x.nunique(), y.nunique()) < 2:
        return float("nan")
    return float(x.corr(y, method="spearman"))


def fit_power_law(x, y) -> tuple[float, float, float]:
    """Least squares of ``log y = log c + a log x``: ``(c, a, r2)``."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    a, b = np.polyfit(lx, ly, 1)
    pred = a * lx + b
    ss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float(((ly - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    return float(np.exp(b)), float(a), r2
