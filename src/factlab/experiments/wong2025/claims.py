"""The quantitative claims of Wong (2025, sec. 4), each with an operational test.

Each claim is a dict ``{"id", "figure", "claim", "paper", "ours", "test", "holds"}``:
the paper's value, ours, the test we apply (stated in words), and whether it holds. A claim
whose data are missing (an empty cell, say) does not hold, and says why. Definitions:

- A Figure 3 cell (i, j) *is memorized* at a threshold when the mean accuracy of its pairs
  is at least ``thresholds.memorized`` (0.9 by default; compared with a tolerance of 1e-9,
  so that a mean of exactly 0.9 computed as 0.8999999999999999 counts).
- The *frontier* of row i is the largest j such that every populated cell (i, j') with
  j' <= j is memorized (0 when the first populated cell is not); a layer of bound i
  "memorizes databases of bound up to" its frontier.
- The *capacity factor* of row i is frontier / i; "a layer memorizes databases of c times
  its bound" is read as the median capacity factor over rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from factlab.experiments.core.claims import claim as _claim
from factlab.experiments.core.claims import spearman
from factlab.experiments.wong2025.config import ExperimentSpec
from factlab.experiments.wong2025.figures import bin_cells, head_grid, slope_through_origin
from factlab.experiments.wong2025.unit import tau_column

#: floating-point slack when a cell's mean accuracy is compared with the memorized threshold
TOLERANCE = 1e-9


def frontier(cells: pd.DataFrame, row, threshold: float) -> int:
    """Largest j with every populated cell (row, j' <= j) memorized (mean >= threshold)."""
    best = 0
    for j, v in cells.loc[row].items():
        if np.isnan(v):
            continue
        if v < threshold - TOLERANCE:
            break
        best = int(j)
    return best


def capacity_factors(results: pd.DataFrame, metric: str, threshold: float) -> dict[int, float]:
    cells = bin_cells(results, metric)
    return {int(i): frontier(cells, i, threshold) / i for i in cells.index}


def wong2025_claims(spec: ExperimentSpec, databases: pd.DataFrame, layers: pd.DataFrame,
                    results: pd.DataFrame) -> list[dict]:
    """Every quantitative claim of Wong (2025, sec. 4), tested on a store's tables."""
    thr = spec.thresholds.memorized
    taus = spec.thresholds.taus
    out = []
    # -- the setup (sec. 4, first paragraph and the paragraph before Figure 3)
    out.append(_claim("n_databases", "setup", "548 random databases", 548, len(databases),
                      "number of databases == 548", len(databases) == 548))
    mt = int(databases["triples"].max()) if len(databases) else 0
    out.append(_claim("max_triples", "setup", "databases have at most 200 triples", 200, mt,
                      "largest |D| <= 200", mt <= 200))
    out.append(_claim("n_layers", "setup", "364 attention layers, 1 <= d_head_vo, d_head_qk <= d_model <= 6, "
                      "1 <= n_heads <= 4", 364, len(layers), "number of layers == 364", len(layers) == 364))
    out.append(_claim("n_pairs", "setup", "3,947 random (layer, database) pairs trained", 3947, len(results),
                      "number of trained pairs == 3947", len(results) == 3947))
    out.append(_claim("max_epochs", "setup", "at most 2,000 epochs per pair", 2000, spec.training.max_epochs,
                      "max_epochs == 2000", spec.training.max_epochs == 2000))
    # -- Figure 2
    s = slope_through_origin(databases["prop21"], databases["triples"])
    out.append(_claim("fig2a_slope", "2a", "|D| is about 1.8 times the Proposition 2.1 bound", 1.8, round(s, 3),
                      "least-squares slope through the origin of |D| on the bound within 1.8 ± 20%",
                      1.44 <= s <= 2.16))
    rho = spearman(layers["params"], layers["lower_estimate"])
    out.append(_claim("fig2b_corr", "2b", "parameters and the lower estimate (9) are positively correlated",
                      "positive", round(rho, 3), "Spearman correlation over layers > 0", rho > 0))
    if results.empty:
        out.append(_claim("fig3", "3", "training results", "3,947 pairs", 0, "some pairs trained", False))
        return out
    # -- Figure 3(a): argmax
    cells = bin_cells(results, "accuracy")
    small = [i for i in cells.index if i <= 10]
    f_small = max((frontier(cells, i, thr) for i in small), default=0)
    reach = int(max((j for i in small for j, v in cells.loc[i].items()
                     if not np.isnan(v) and v >= thr - TOLERANCE), default=0))
    out.append(_claim("fig3a_argmax_small_layers", "3a",
                      "with argmax, layers of bound up to 10 memorize databases of bound 80", 80,
                      {"frontier": f_small, "largest_memorized_cell": reach},
                      f"rows i <= 10: some row's frontier >= 80 (cells memorized at mean accuracy >= {thr})",
                      f_small >= 80))
    # -- tau = 0.5 vs argmax
    if 0.5 in taus:
        gap = float((results[tau_column(0.5)] - results["accuracy"]).abs().mean())
        out.append(_claim("tau05_argmax", "3 (text)", "with τ = 0.5 results are almost identical to argmax",
                          "almost identical", round(gap, 4),
                          "mean |acc(τ=0.5) - acc(argmax)| over pairs <= 0.05", gap <= 0.05))
    # -- Figure 3(b, c): capacity factors
    for tau, lo, hi, paper, band in ((0.75, 2.5, 5.0, "3-4", "[2.5, 5]"), (0.95, 0.5, 2.5, "1-2", "[0.5, 2.5]")):
        if tau not in taus:
            continue
        f = capacity_factors(results, tau_column(tau), thr)
        med = float(np.median(list(f.values())))
        out.append(_claim(f"fig3_tau{tau:g}_factor", "3b" if tau == 0.75 else "3c",
                          f"at τ = {tau:g} a layer memorizes databases of {paper} times its bound", paper,
                          {"median_factor": round(med, 2), "per_row": {str(k): round(v, 2) for k, v in f.items()}},
                          f"median over rows of frontier(i)/i in {band}", lo <= med <= hi))
    # -- Figure 3(d)
    if 0.99 in taus:
        below = results[results["db_bound"] <= results["layer_bound"]]
        m = float(below[tau_column(0.99)].mean()) if len(below) else float("nan")
        out.append(_claim("fig3d_tau099_fails", "3d",
                          "at τ = 0.99 layers fail even on databases of bound below their own", "fail",
                          {"mean_accuracy": round(m, 3), "pairs": len(below)},
                          f"mean τ=0.99 accuracy of pairs with database bound <= layer bound < {thr}",
                          len(below) > 0 and m < thr))
    # -- accuracy rises with the layer bound (9), for every threshold
    metrics = {"argmax": "accuracy", **{f"tau={t:g}": tau_column(t) for t in taus}}
    rhos = {k: spearman(results["layer_bound"], results[c]) for k, c in metrics.items()}
    out.append(_claim("fig3_rises_with_layer_bound", "3",
                      "for every threshold, accuracy rises with the layer lower bound (9)", "rises",
                      {k: round(v, 3) for k, v in rhos.items()},
                      "Spearman correlation of layer bound and accuracy over pairs > 0 for argmax and every τ",
                      all(v > 0 for v in rhos.values())))
    # -- Figure 4
    if 0.95 in taus:
        grid = head_grid(results.dropna(subset=[tau_column(0.95)]), tau_column(0.95))
        diag = {}
        top = int(grid.index.max() + grid.columns.max()) if grid.size else 1   # no τ=0.95 values: no diagonal
        for total in range(2, top + 1):
            pts = [(vo, grid.loc[vo, total - vo]) for vo in grid.index
                   if (total - vo) in grid.columns and not np.isnan(grid.loc[vo, total - vo])]
            if len(pts) >= 2:
                diag[total] = pts[-1][1] > pts[0][1]
        frac = float(np.mean(list(diag.values()))) if diag else float("nan")
        out.append(_claim("fig4_antidiagonals", "4",
                          "along every anti-diagonal of constant d_head_vo + d_head_qk, τ=0.95 accuracy rises "
                          "toward larger d_head_vo", "all anti-diagonals",
                          {"fraction": round(frac, 3), "per_diagonal": {str(k): bool(v) for k, v in diag.items()}},
                          "for each anti-diagonal with >= 2 cells: accuracy at the largest d_head_vo > at the "
                          "smallest; holds when true for all", bool(diag) and all(diag.values())))
    return out
