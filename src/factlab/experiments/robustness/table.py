"""From each setting's claims to the robustness table: claim x setting -> holds, which
settings each claim holds under, and the setting under which the most claims hold."""

from __future__ import annotations

import pandas as pd

from factlab.experiments.robustness.grids import value_text


def holds_table(results: list[dict]) -> pd.DataFrame:
    """One row per setting (its choices as columns, then one boolean column per claim, in
    the order the claims first appear). ``results``: objects with ``setting`` and ``claims``."""
    ids: list[str] = []
    for r in results:
        ids += [c for c in r["claims"] if c not in ids]
    rows = [{**r["setting"], **{c: r["claims"].get(c) for c in ids}} for r in results]
    return pd.DataFrame(rows, columns=[*(results[0]["setting"] if results else {}), *ids])


def values_table(results: list[dict]) -> pd.DataFrame:
    """The long form, with the values: one row per (setting, claim), the choices as columns,
    then ``claim``, ``holds`` and ``ours`` (our value, as JSON text)."""
    import json

    rows = [{**r["setting"], "claim": c, "holds": h, "ours": json.dumps(r.get("ours", {}).get(c), default=str)}
            for r in results for c, h in r["claims"].items()]
    return pd.DataFrame(rows, columns=[*(results[0]["setting"] if results else {}), "claim", "holds", "ours"])


def short_value(value, limit: int = 48) -> str:
    """A claim's value in a few characters for a table cell: a number to 3 significant
    digits, an object's scalar entries as ``key value`` (nested ones left out)."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (int, float)):
        text = f"{value:.3g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {short_value(v, limit)}" for k, v in value.items() if not isinstance(v, (dict, list)))
    elif isinstance(value, list):
        text = f"{len(value)} values"
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def holding_settings(table: pd.DataFrame, axes: list[str], claim: str) -> list[str]:
    """The settings (as ``axis value, ...`` text) under which ``claim`` holds, in grid order."""
    return [", ".join(f"{a} {value_text(r[a])}" for a in axes) for _, r in table.iterrows() if bool(r[claim])]


def claim_ids(table: pd.DataFrame, axes: list[str]) -> list[str]:
    return [c for c in table.columns if c not in axes]


def by_axis(table: pd.DataFrame, axes: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """For each claim and each axis, the fraction of settings with each value under which it
    holds: ``{claim: {axis: {value: fraction}}}``."""
    out = {}
    for c in claim_ids(table, axes):
        out[c] = {a: {value_text(v): float(g[c].astype(bool).mean()) for v, g in table.groupby(a, sort=False)}
                  for a in axes}
    return out


def describe(table: pd.DataFrame, axes: list[str]) -> dict[str, str]:
    """For each claim a sentence: in how many settings it holds, and which single choices
    decide it (a value under which it always holds, or never does, while it varies)."""
    out = {}
    n = len(table)
    fractions = by_axis(table, axes)
    for c in claim_ids(table, axes):
        k = int(table[c].astype(bool).sum())
        if k in (0, n):
            out[c] = f"{'holds' if k else 'fails'} in all {n} settings"
            continue
        always = [f"{a} = {v}" for a in axes for v, f in fractions[c][a].items() if f == 1.0]
        never = [f"{a} = {v}" for a in axes for v, f in fractions[c][a].items() if f == 0.0]
        parts = [f"holds in {k} of {n} settings"]
        parts += [f"in every setting with {x}" for x in always] + [f"in no setting with {x}" for x in never]
        out[c] = "; ".join(parts)
    return out


def best(table: pd.DataFrame, axes: list[str]) -> tuple[int, int]:
    """``(row, claims held)`` of the setting under which the most claims hold. Among ties,
    the one whose claims are the rarest in the grid (the most sum of 1 / the number of
    settings each of its claims holds in), then the first in grid order."""
    held = table[claim_ids(table, axes)].astype(bool)
    counts = held.sum(axis=1).to_numpy()
    rarity = (held / held.sum().clip(lower=1)).sum(axis=1).to_numpy()
    order = sorted(range(len(table)), key=lambda i: (-counts[i], -round(rarity[i], 12), i))
    return order[0], int(counts[order[0]])
