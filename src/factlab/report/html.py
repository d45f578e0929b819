"""A self-contained HTML report of an experiment: figures (embedded PNG), claims table, spec, provenance."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Sequence


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    svg = path.with_suffix(".svg")
    link = f' <a href="figures/{svg.name}">SVG</a>' if svg.exists() else ""
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.stem)}{link}</figcaption></figure>")


def _value(v) -> str:
    if isinstance(v, dict):
        return html.escape(json.dumps(v))
    return html.escape(str(v))


def render_report(*, title: str, figures: Sequence[Path], claims: Sequence[dict], spec_toml: str,
                  provenance: dict, summary: str = "") -> str:
    """The report as one HTML page (PNG figures embedded as base64, SVG linked relatively)."""
    rows = "\n".join(
        f'<tr class="{"ok" if c["holds"] else "no"}"><td>{html.escape(c["id"])}</td><td>{html.escape(str(c["figure"]))}</td>'
        f'<td>{html.escape(c["claim"])}</td><td>{_value(c["paper"])}</td><td>{_value(c["ours"])}</td>'
        f'<td>{html.escape(c["test"])}</td><td>{"yes" if c["holds"] else "no"}</td></tr>'
        for c in claims)
    prov = "\n".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                     for k, v in provenance.items())
    held = sum(c["holds"] for c in claims)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }}
tr.ok td:last-child {{ background: #d9f2d9; }} tr.no td:last-child {{ background: #f7d4d4; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 520px; }}
pre {{ background: #f4f4f4; padding: 0.8em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<h2>Claims ({held} of {len(claims)} hold)</h2>
<table><tr><th>id</th><th>figure</th><th>claim</th><th>paper</th><th>ours</th><th>test</th><th>holds</th></tr>
{rows}
</table>
<h2>Figures</h2>
{''.join(_img(p) for p in figures)}
<h2>Spec</h2>
<pre>{html.escape(spec_toml)}</pre>
<h2>Provenance</h2>
<table>{prov}</table>
</body></html>
"""


def write_report(path: str | Path, **kwargs) -> Path:
    path = Path(path)
    path.write_text(render_report(**kwargs))
    return path
