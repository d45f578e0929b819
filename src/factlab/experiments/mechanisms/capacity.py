"""``factlab capacity PATH``: the smallest model of each mechanism that memorizes a user's facts.

The same experiment as ``factlab reproduce mechanisms`` (store, resume, figures, claims,
report), over one database and no random population; this module turns its store into the
command's table and JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from factlab.experiments.core.store import Store
from factlab.experiments.mechanisms import PAPER, plan
from factlab.experiments.mechanisms.unit import tau_column


def capacity_report(out: str | Path) -> dict:
    """The database's |D|, Proposition 2.1 and rank interval (``triples``, ``prop21``,
    ``lower``, ``upper``) and, per mechanism, the smallest model that memorized it, or, if
    none on the ladder did, the largest one tried (``memorized`` false): its ``params``,
    ``config``, ``argmax_accuracy``, softmax >= tau accuracies, ``steps`` and width ``d``."""
    with Store.open(out, PAPER, read_only=True) as store:
        config, dbs, probes = store.config, store.frame("databases"), store.frame("probes")
    db = dbs.iloc[0]
    best = plan.smallest(config, probes, dbs.iloc[:1])
    mechanisms = []
    for r in best.itertuples():
        mine = probes[(probes["db_id"] == db.db_id) & (probes["mechanism"] == r.mechanism)]
        found = r.rung is not None and not pd.isna(r.rung)
        row = mine[mine["rung"] == r.rung].iloc[0] if found else (mine.sort_values("rung").iloc[-1] if len(mine) else None)
        entry = {"mechanism": r.mechanism, "memorized": bool(found), "params": None, "config": None,
                 "argmax_accuracy": None, "tau_accuracy": {}, "steps": None, "d": None}
        if row is not None:
            entry.update(params=int(row["params"]), config=json.loads(row["config_json"]),
                         argmax_accuracy=float(row["accuracy"]), steps=int(row["steps"]), d=int(row["d"]),
                         tau_accuracy={f"{t:g}": float(row[tau_column(t)]) for t in config.training.taus})
        mechanisms.append(entry)
    return {"database": str(db["source"]), "triples": int(db.triples), "prop21": int(db.prop21),
            "lower": int(db.rank_lower), "upper": int(db.rank_upper), "mechanisms": mechanisms}


def format_report(report: dict) -> list[str]:
    """The report as a table, one line per mechanism."""
    taus = list(report["mechanisms"][0]["tau_accuracy"]) if report["mechanisms"] else []
    lines = [f"{report['database']}: |D| = {report['triples']}, Proposition 2.1 = {report['prop21']}, "
             f"rank in [{report['lower']}, {report['upper']}]",
             f"  {'mechanism':<10} {'memorized':<9} {'d':>3} {'params':>7} {'per fact':>8} {'steps':>6} "
             f"{'argmax':>6} " + " ".join(f"{'>=' + t:>6}" for t in taus) + "  model"]
    for m in report["mechanisms"]:
        if m["params"] is None:
            lines.append(f"  {m['mechanism']:<10} {'no':<9} (nothing trained)")
            continue
        lines.append(f"  {m['mechanism']:<10} {'yes' if m['memorized'] else 'no':<9} {m['d']:>3} {m['params']:>7} "
                     f"{m['params'] / report['triples']:>8.1f} {m['steps']:>6} {m['argmax_accuracy']:>6.3f} "
                     + " ".join(f"{m['tau_accuracy'][t]:>6.3f}" for t in taus) + f"  {m['config']}")
    return lines
