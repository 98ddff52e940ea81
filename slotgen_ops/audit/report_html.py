"""`slotgen audit report`: one self-contained HTML page for approvers (SPEC section 11); this is its shell.

Pure: the page is a string built from the timeline (`audit.timeline.build`)
and the integrity document (`oversight.report.audit_verify`). Standard library only.
This module owns the page's head, its Content-Security-Policy and style sheet and the order of its parts;
`report_sections` writes the sections (escaping every recorded value), `report_chart` the chart. Nothing
is fetched when the page is viewed: no scripts, fonts, images or style sheets from
anywhere, and a Content-Security-Policy that forbids them; the exposure chart
is inline SVG.
"""

from __future__ import annotations

from typing import Any

from .report_chart import chart
from .report_sections import _e, _integrity, _now, _table, _unused, _when

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2329;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6670;margin:0 0 16px}
.status{border-radius:6px;padding:12px 16px;margin:8px 0}
.status.ok{background:#e8f5e9;border:1px solid #66bb6a}.status.bad{background:#fdecea;border:1px solid #e53935}
.status strong{font-size:16px}
ul.plain{margin:6px 0;padding-left:20px}
.now span{display:inline-block;margin-right:18px}
svg{width:100%;max-width:100%;height:auto;border:1px solid #e0e4e8;border-radius:6px;background:#fcfdfe}
table{border-collapse:collapse;width:100%;margin-top:8px}
th,td{border-bottom:1px solid #e3e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600;position:sticky;top:0}
td.seq{text-align:right;white-space:nowrap}td.ts{white-space:nowrap}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
tr.rollback td{background:#fff5f4}tr.rollback .what{color:#b71c1c;font-weight:600}
tr.refused td{color:#7a848d;background:#fafafa}tr.refused .what{font-style:italic}
tr.break-glass td{background:#fff0e0}
.tag{display:inline-block;font-size:11px;border-radius:3px;padding:0 5px;margin-left:4px;background:#e3e7eb}
.tag.red{background:#e53935;color:#fff}.tag.amber{background:#fb8c00;color:#fff}
.sub{color:#5b6670;font-size:12px}
.legend span{display:inline-block;margin-right:16px}
.swatch{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px;border:1px solid #999}
"""


def render(env: str, model: dict[str, Any], integrity: dict[str, Any], *, generated: str, version: str,
           unreadable: str | None = None) -> str:
    """The whole page."""
    rows = model.get("changes") or []
    changes = [r for r in rows if not r.get("refused")]
    refusals = len(rows) - len(changes)
    rollbacks = sum(1 for r in changes if r.get("rollback"))
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>slotgen audit report: {_e(env)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Audit report: {_e(env)}</h1>",
        f'<p class="meta">Generated {_when(generated)} UTC by slotgen {_e(version)} &middot; {len(changes)} changes '
        f"({rollbacks} rollbacks), {refusals} refused attempts &middot; check it again with "
        f"<code>slotgen audit verify --env {_e(env)}</code></p>",
        "<h2>Integrity</h2>", _integrity(integrity, unreadable),
        "<h2>Exposure now</h2>", _now(model),
        "<h2>Exposure over time</h2>",
        '<p class="legend"><span><span class="swatch" style="background:#0d47a1"></span>rollout percent</span>'
        '<span><span class="swatch" style="background:#f3d3d3"></span>kill-switch engaged</span>'
        '<span><span class="swatch" style="background:#1565c0"></span>feature flag on</span>'
        '<span><span class="swatch" style="background:#2e7d32"></span>allowlist on</span>'
        '<span><span class="swatch" style="background:#0d47a1;border-radius:6px"></span>change</span>'
        '<span><span class="swatch" style="background:#c62828;border-radius:6px"></span>rollback</span></p>',
        chart(env, model),
        "<h2>Every change</h2>",
        '<p class="meta">One row per change: who applied it and the key that signed it, who approved it, its decision '
        "record and what its verification showed. Refused attempts are greyed; break-glass rollbacks are marked.</p>",
        _table(rows),
        _unused(model),
        "</body></html>\n",
    ])


__all__ = ["CSP", "render"]
