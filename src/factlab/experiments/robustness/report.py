"""The robustness outputs: robustness.json, robustness.csv (holds) and robustness-values.csv
(the long form with our values), robustness.md, the table as a figure, report.html."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from factlab.experiments.robustness.grids import Axis, value_text
from factlab.experiments.robustness.table import (best, claim_ids, describe, holding_settings, holds_table,
                                                   short_value, values_table)
from factlab.report.figures import plt, save


def figure_table(table, axes: list[str]):
    """Settings (rows) x claims (columns): green where the claim holds, red where it fails."""
    ids = claim_ids(table, axes)
    held = table[ids].astype(float).to_numpy()
    labels = [", ".join(value_text(r[a]) for a in axes) for _, r in table.iterrows()]
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * len(ids) + 0.06 * max(map(len, labels)),
                                    1.6 + 0.17 * len(table)))
    ax.imshow(held, cmap=_holds_cmap(), vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(ids)), ids, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(table)), labels, fontsize=6)
    ax.set_ylabel(", ".join(axes), fontsize=8)
    ax.set_title("claims (green: holds) under each setting", fontsize=9)
    fig.tight_layout()
    return fig


def write_outputs(out: Path, paper, scale: str, axes: tuple[Axis, ...], results: list[dict], *, seconds: float,
                  provenance: dict, statements: dict[str, str] | None = None) -> int:
    """Write DIR/robustness.json, robustness.csv, robustness-values.csv, robustness.md,
    figures/robustness.* and report.html; return the index of the setting under which the
    most claims hold."""
    out = Path(out)
    names = [a.name for a in axes]
    (out / "robustness.json").write_text(json.dumps(results, indent=1, default=str))
    table = holds_table(results)
    table.to_csv(out / "robustness.csv", index=False)
    values_table(results).to_csv(out / "robustness-values.csv", index=False)
    png = save(figure_table(table, names), out / "figures", "robustness")[0]
    i, k = best(table, names)
    sentences = describe(table, names)
    statements = statements or {}
    claim_rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{html.escape(statements.get(c, ''))}</td>"
        f"<td>{int(table[c].astype(bool).sum())} / {len(table)}</td><td>{html.escape(sentences[c])}"
        + _settings_list(holding_settings(table, names, c)) + "</td></tr>"
        for c in claim_ids(table, names))
    axis_rows = "".join(f"<tr><td>{html.escape(a.name)}</td><td>{html.escape(', '.join(value_text(v) for v in a.values))}"
                        f"</td><td>{html.escape(a.why)}</td></tr>" for a in axes)
    ids = claim_ids(table, names)
    head = "".join(f"<th>{html.escape(x)}</th>" for x in [*names, "holds", *ids])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(value_text(r[a]))}</td>" for a in names)
        + f"<td>{int(sum(bool(r[c]) for c in ids))}</td>"
        + "".join(_cell(bool(r[c]), results[j].get("ours", {}).get(c)) for c in ids)
        + f'<td><a href="{html.escape(results[j]["store"])}/report.html">report</a></td></tr>'
        for j, (_, r) in enumerate(table.iterrows()))
    choice = ", ".join(f"{a} = {value_text(v)}" for a, v in results[i]["setting"].items())
    prov = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td></tr>"
                   for a, b in provenance.items())
    img = base64.b64encode(png.read_bytes()).decode()
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(paper.name)}: robustness ({scale})</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.8em; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 5px; vertical-align: top; }}
td.ok {{ background: #d9f2d9; }} td.no {{ background: #f7d4d4; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(paper.title)}: which claims survive the open choices</h1>
<p>{len(results)} settings at the {html.escape(scale)} scale in {seconds:.0f} s. The most claims, {k} of
{len(ids)}, hold under {html.escape(choice)}. Each setting is a full reproduction with its own
store and report under <code>settings/</code>.</p>
<h2>The choices</h2>
<table><tr><th>axis</th><th>values</th><th>what</th></tr>{axis_rows}</table>
<h2>Each claim, and the settings it holds under</h2>
<table><tr><th>id</th><th>claim</th><th>holds</th><th>where</th></tr>{claim_rows}</table>
<h2>Claim x setting</h2>
<table><tr>{head}<th></th></tr>{body}</table>
<figure><img alt="robustness" src="data:image/png;base64,{img}"></figure>
<h2>Provenance</h2>
<table>{prov}</table>
</body></html>
"""
    (out / "report.html").write_text(page)
    (out / "robustness.md").write_text(markdown(table, names, results, sentences, scale))
    return i


def _cell(holds: bool, value) -> str:
    """A claim x setting cell: holds or not, and our value (in full on hover)."""
    full = html.escape(json.dumps(value, default=str))
    return (f'<td class="{"ok" if holds else "no"}" title="{full}">{"yes" if holds else "no"}'
            f'<br><small>{html.escape(short_value(value))}</small></td>')


def _settings_list(settings: list[str]) -> str:
    if not settings:
        return ""
    items = "".join(f"<li>{html.escape(s)}</li>" for s in settings)
    return f"<details><summary>the {len(settings)} settings</summary><ul>{items}</ul></details>"


def markdown(table, axes: list[str], results: list[dict], sentences: dict[str, str], scale: str) -> str:
    """The robustness table in Markdown: each claim's summary, then claim x setting with the
    number of claims each setting holds (for docs pages)."""
    ids = claim_ids(table, axes)
    lines = [f"{len(table)} settings at the {scale} scale.", "", "| claim | holds in | where |", "|---|---|---|"]
    lines += [f"| {c} | {int(table[c].astype(bool).sum())} / {len(table)} | {sentences[c]} |" for c in ids]
    lines += ["", "| " + " | ".join([*axes, "claims held", *ids]) + " |", "|" + "---|" * (len(axes) + 1 + len(ids))]
    for _, r in table.iterrows():
        marks = ["yes" if r[c] else "no" for c in ids]
        lines.append("| " + " | ".join([*(value_text(r[a]) for a in axes), str(marks.count("yes")), *marks]) + " |")
    return "\n".join(lines) + "\n"


def _holds_cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap(["#e8a5a5", "#9fd89f"])
