"""Our claims on the three mechanisms, each with its test (no paper makes them; docs/mechanisms.md).

From the smallest memorizing model of each (database, mechanism):

- ``<mechanism>_grows_with_facts``: the parameters needed grow with |D| (Spearman > 0 over
  databases where the mechanism memorized).
- ``<mechanism>_grows_with_rank``: beyond |D|, they grow with the rank of the database
  tensor: parameters per fact against rank per fact (the upper end of the rank interval
  over |D|), Spearman > 0; rank and |D| grow together, so the raw rank would test |D| again.
- ``geometric_fewest_per_fact``: learned embeddings with an MLP selector (Ravfogel et al.'s
  account) store a database with the fewest trained parameters per fact: the geometric
  model is the cheapest on a majority of the databases every mechanism memorized.
- ``recall_linear_in_facts``: the recall transformer's parameters grow linearly with the
  facts (Nichani et al.: O(facts) parameters are necessary and sufficient): the log-log
  exponent of parameters on |D| within 1 ± 0.3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from factlab.experiments.core.claims import claim, fit_power_law, spearman

EXPONENT_TOL = 0.3


def mechanisms_claims(best: pd.DataFrame, mechanisms) -> list[dict]:
    out = []
    found = best.dropna(subset=["params"]) if "params" in best else best.iloc[:0]
    found = found.assign(rank_per_fact=found["rank_upper"] / found["triples"])
    for m in mechanisms:
        g = found[found["mechanism"] == m]
        for cid, x, y, what, test in (
                (f"{m}_grows_with_facts", "triples", "params", "|D|", "Spearman of |D| and parameters"),
                (f"{m}_grows_with_rank", "rank_per_fact", "params_per_fact", "the rank of the database, beyond |D|",
                 "Spearman of rank per fact (upper bound / |D|) and parameters per fact")):
            rho = spearman(g[x], g[y]) if len(g) >= 3 else float("nan")
            out.append(claim(cid, "mechanisms", f"{m}: the parameters needed grow with {what}", "grow",
                             {"spearman": None if np.isnan(rho) else round(rho, 3), "databases": len(g)},
                             f"{test} of the smallest memorizing model > 0 (>= 3 databases)", rho > 0))
    per_db = found.pivot_table(index="db_id", columns="mechanism", values="params_per_fact")
    complete = per_db.dropna()
    if "geometric" in mechanisms and len(mechanisms) > 1:
        wins = (complete.idxmin(axis=1) == "geometric") if len(complete) else pd.Series(dtype=bool)
        out.append(claim("geometric_fewest_per_fact", "mechanisms", "learned embeddings with a selector need the fewest "
                         "parameters per fact", "fewest",
                         {"cheapest": complete.idxmin(axis=1).value_counts().to_dict() if len(complete) else {},
                          "median_params_per_fact": {m: round(float(complete[m].median()), 2)
                                                     for m in complete.columns} if len(complete) else {}},
                         "the geometric model has the fewest parameters per fact on a majority of the databases "
                         "every mechanism memorized", len(complete) > 0 and wins.mean() > 0.5))
    if "recall" in mechanisms:
        g = found[found["mechanism"] == "recall"]
        ok = len(g) >= 3 and np.ptp(g["triples"].to_numpy(float)) > 0
        _, a, r2 = fit_power_law(g["triples"], g["params"]) if ok else (np.nan, np.nan, np.nan)
        out.append(claim("recall_linear_in_facts", "mechanisms", "the recall transformer's parameters grow linearly "
                         "with the facts (Nichani et al.)", "exponent 1",
                         {"exponent": None if np.isnan(a) else round(a, 3), "r2": None if np.isnan(r2) else round(r2, 3)},
                         f"log-log exponent of parameters on |D| within 1 ± {EXPONENT_TOL}",
                         ok and abs(a - 1) <= EXPONENT_TOL))
    return out
