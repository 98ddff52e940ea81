"""`slotgen audit report`: one self-contained HTML page for approvers (SPEC section 11).

Pure: the page is a string built from the timeline (`audit.timeline.build`)
and the integrity document (`oversight.report.audit_verify`). Standard library only.
Every recorded value is shown as the terminal shows it (control characters and bidi overrides as
visible escapes, `inert.visible`), then goes through `html.escape` (quotes included); a decision
record becomes a link only when it is a plain https URL. Nothing is fetched
when the page is viewed: no scripts, fonts, images or style sheets from
anywhere, and a Content-Security-Policy that forbids them; the exposure chart
is inline SVG drawn here.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from ..inert import visible
from .timeline import verification_text

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


def _e(value: Any) -> str:
    """A recorded value as HTML text, shown as the terminal shows it: None is empty; control characters,
    bidi overrides and invisible characters visible as escapes (``\\x1b``, ``\\u202e``) and a URL's
    password as ``***`` (``inert.visible``); then HTML-escaped, quotes included."""
    return "" if value is None else escape(visible(value), quote=True)


_URL_OK = re.compile(r"https://[^\s\x00-\x1f\x7f<>\"'`\\]+\Z")


def record_link(ref: str | None) -> str:
    """A decision record: a link only for a plain https URL, else text."""
    if not ref:
        return ""
    if _URL_OK.match(ref) and urlsplit(ref).netloc:
        return f'<a href="{_e(ref)}" rel="noopener noreferrer">{_e(ref)}</a>'
    return _e(ref)


def _moment(ts: Any) -> datetime | None:
    from ..clock import parse_utc_or_none

    return parse_utc_or_none(ts)


def _readable(ts: Any) -> str:
    from ..clock import readable_utc

    return readable_utc(ts)


def _when(ts: Any) -> str:
    from ..clock import readable_utc

    return _e(readable_utc(ts)) if isinstance(ts, str) else ""


def _shown(value: Any) -> str:
    return "(unset)" if value is None or value == "" else str(value)


# -- the chart ------------------------------------------------------------------

W, H = 1000, 330
LEFT, RIGHT, TOP = 70, 24, 36
PLOT_BOTTOM = 196  # rollout 0 %
FEATURE_Y, ALLOW_Y, BAND_H = 206, 224, 12
MARK_Y = 256
MIN_GAP = 28  # px between two events at least
AXIS_Y = 276


def chart(env: str, model: dict[str, Any]) -> str:
    """The exposure of `env` over time as inline SVG: rollout percent as a step line, the kill-switch engaged as
    shaded bands, the feature flag and the allowlist as on/off bands, a marker per change (rollbacks red)."""
    points = [(m, p) for p in model.get("exposure") or [] if (m := _moment(p.get("ts"))) is not None]
    changes = [(m, r) for r in model.get("changes") or [] if not r.get("refused")
               and (m := _moment(r.get("ts"))) is not None]
    title = f"Exposure of {_e(env)} over time"
    if not points:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {W} 60" width="{W}" height="60">'
                f'<title>{title}</title><text x="{LEFT}" y="34">no recorded state to draw</text></svg>')
    moments = sorted({m for m, _ in points} | {m for m, _ in changes})
    start, last = moments[0], moments[-1]
    x_of, time_at = _time_axis(moments)
    y_of = _percent_y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title" id="exposure-chart" '
           f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui,sans-serif" font-size="11">',
           f'<title id="chart-title">{title}</title>']
    # grid and y axis
    for pct in (0, 1, 5, 10, 25, 50, 100):
        y = y_of(pct)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e6e9ec"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6670">{pct}%</text>')
    out.append(f'<text x="14" y="{(TOP + PLOT_BOTTOM) / 2:.0f}" transform="rotate(-90 14 {(TOP + PLOT_BOTTOM) / 2:.0f})" '
               'text-anchor="middle" fill="#5b6670">rollout % (square root scale)</text>')
    spans = list(zip(points, points[1:] + [(None, None)]))

    def x_end(nxt) -> float:
        return x_of(nxt[0]) if nxt[0] is not None else float(W - RIGHT)

    # kill-switch engaged: shaded over the plot
    for (m, p), nxt in spans:
        if p["killEngaged"]:
            x0, x1 = x_of(m), x_end(nxt)
            out.append(f'<rect class="kill-band" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1.5):.1f}" '
                       f'height="{PLOT_BOTTOM - TOP}" fill="#c62828" fill-opacity="0.13"><title>kill-switch engaged '
                       f'from {_when(p.get("ts"))} UTC</title></rect>')
    # feature flag and allowlist bands
    out.append(f'<text x="{LEFT - 6}" y="{FEATURE_Y + 10}" text-anchor="end" fill="#5b6670">feature</text>')
    out.append(f'<text x="{LEFT - 6}" y="{ALLOW_Y + 10}" text-anchor="end" fill="#5b6670">allowlist</text>')
    for (m, p), nxt in spans:
        x0, x1 = x_of(m), x_end(nxt)
        width = max(x1 - x0, 1.5)
        on = p["featureOn"]
        out.append(f'<rect class="feature-band {"on" if on else "off"}" x="{x0:.1f}" y="{FEATURE_Y}" '
                   f'width="{width:.1f}" height="{BAND_H}" fill="{"#1565c0" if on else "#e0e4e8"}"><title>feature flag '
                   f'{"on" if on else "off"} from {_when(p.get("ts"))} UTC</title></rect>')
        allow = p.get("allowlist")
        out.append(f'<rect class="allowlist-band {"on" if allow else "off"}" x="{x0:.1f}" y="{ALLOW_Y}" '
                   f'width="{width:.1f}" height="{BAND_H}" fill="{"#2e7d32" if allow else "#e0e4e8"}"><title>allowlist '
                   f'{_e(allow) if allow else "off"} from {_when(p.get("ts"))} UTC</title></rect>')
    # rollout percent: a step line
    path, labels, shown = [], [], None
    for (m, p), nxt in spans:
        pct = p["rolloutPercent"] if p["rolloutPercent"] is not None else 0
        x0, x1, y = x_of(m), x_end(nxt), y_of(pct)
        path.append(f'{"M" if not path else "L"}{x0:.1f},{y:.1f} H{x1:.1f}')
        if pct != shown:
            text = f"{pct}%" if p["rolloutPercent"] is not None else "invalid (0)"
            labels.append(f'<text class="level" x="{x0 + 3:.1f}" y="{y - 5:.1f}" fill="#0d47a1">{text}</text>')
            shown = pct
    out.append(f'<path class="rollout-line" d="{" ".join(path)}" fill="none" stroke="#0d47a1" stroke-width="2.2"/>')
    out.extend(labels)
    # changes: one marker each, rollbacks red (with a line across the plot)
    out.append(f'<line x1="{LEFT}" y1="{MARK_Y}" x2="{W - RIGHT}" y2="{MARK_Y}" stroke="#cfd5da"/>')
    out.append(f'<text x="{LEFT - 6}" y="{MARK_Y + 4}" text-anchor="end" fill="#5b6670">changes</text>')
    for m, row in changes:
        x = x_of(m)
        label = _e(_row_label(row))
        if row.get("rollback"):
            out.append(f'<line class="rollback-line" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{MARK_Y}" '
                       'stroke="#c62828" stroke-width="1.2" stroke-dasharray="4 3"/>')
            out.append(f'<circle class="marker rollback" data-seq="{_e(row.get("seq"))}" cx="{x:.1f}" cy="{MARK_Y}" '
                       f'r="6" fill="#c62828" stroke="#fff"><title>{label}</title></circle>')
        else:
            out.append(f'<circle class="marker change" data-seq="{_e(row.get("seq"))}" cx="{x:.1f}" cy="{MARK_Y}" '
                       f'r="5" fill="#0d47a1" stroke="#fff"><title>{label}</title></circle>')
    # time axis
    out.append(f'<line x1="{LEFT}" y1="{AXIS_Y}" x2="{W - RIGHT}" y2="{AXIS_Y}" stroke="#9aa4ad"/>')
    same_day = start.date() == last.date()
    for i in range(6):
        x = LEFT + (W - LEFT - RIGHT) * i / 5
        at = time_at(x)
        text = at.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M")
        out.append(f'<line x1="{x:.1f}" y1="{AXIS_Y}" x2="{x:.1f}" y2="{AXIS_Y + 5}" stroke="#9aa4ad"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{AXIS_Y + 18}" text-anchor="middle" fill="#3a444d">{text}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 8}" text-anchor="middle" fill="#5b6670">time (UTC), '
               f'{_e(start.strftime("%Y-%m-%d %H:%M:%S"))} to {_e(last.strftime("%Y-%m-%d %H:%M:%S"))}; '
               "stretches where nothing happened are drawn shorter, so that every change shows</text>")
    out.append("</svg>")
    return "".join(out)


def _time_axis(moments: list[datetime]):
    """x of a moment, and the moment at an x: time runs left to right, each gap between two events drawn at
    least MIN_GAP wide and the rest shared by duration; the last 6 % shows the state after the last event."""
    usable = (W - LEFT - RIGHT) * 0.94
    gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:])]
    floor = min(MIN_GAP, usable / max(len(gaps), 1))
    total = sum(gaps)
    share = usable - floor * len(gaps)
    xs = [float(LEFT)]
    for gap in gaps:
        xs.append(xs[-1] + floor + (share * gap / total if total > 0 else share / len(gaps)))
    if len(moments) == 1:
        xs = [LEFT + usable / 2]

    def x_of(moment: datetime) -> float:
        if moment <= moments[0]:
            return xs[0]
        for (a, xa), (b, xb) in zip(zip(moments, xs), zip(moments[1:], xs[1:])):
            if moment <= b:
                part = (moment - a).total_seconds() / max((b - a).total_seconds(), 1e-9)
                return xa + (xb - xa) * part
        return xs[-1]

    def time_at(x: float) -> datetime:
        if x <= xs[0] or len(moments) == 1:
            return moments[0]
        for (a, xa), (b, xb) in zip(zip(moments, xs), zip(moments[1:], xs[1:])):
            if x <= xb:
                return a + (b - a) * ((x - xa) / max(xb - xa, 1e-9))
        return moments[-1]

    return x_of, time_at


def _percent_y(pct: int) -> float:
    """Square-root scale: 1 % and 5 % are told apart from 0 % at a glance; the ticks name the values."""
    return PLOT_BOTTOM - (PLOT_BOTTOM - TOP) * (min(max(pct, 0), 100) / 100) ** 0.5


def _row_label(row: dict[str, Any]) -> str:
    seq = f"seq {row['seq']}" if row.get("seq") is not None else "break-glass"
    what = row.get("action") or ""
    if row.get("step"):
        what += f" {row['step']}"
    change = f": {row['control']} {_shown(row.get('old'))} -> {_shown(row.get('new'))}" if row.get("control") else ""
    by = (row.get("appliedBy") or {}).get("operator") or "(none)"
    return f"{seq} {what}{change} by {by} at {_readable(row.get('ts'))} UTC"


# -- the page -------------------------------------------------------------------


def _integrity(doc: dict[str, Any], unreadable: str | None) -> str:
    parts = []
    if doc.get("valid") and not unreadable:
        parts.append(f'<div class="status ok" id="integrity" data-valid="true"><strong>Integrity: valid</strong> '
                     f'&mdash; {_e(doc.get("entries"))} entries; hash chain, signatures and controls agree.')
    else:
        first = doc.get("firstBad")
        parts.append(f'<div class="status bad" id="integrity" data-valid="false"><strong>Integrity: INVALID</strong> '
                     f'&mdash; {_e(doc.get("entries"))} entries'
                     + (f"; first bad entry seq {_e(first)}" if first is not None else "")
                     + (f": {_e(doc.get('reason'))}" if doc.get("reason") else "") + ". Do not approve from this "
                     "log until it is explained.")
        if unreadable:
            parts.append(f"<br>Shown below: the entries before the first unreadable line ({_e(unreadable)}).")
    glass = doc.get("breakGlass") or {}
    if glass.get("unfolded"):
        parts.append(f'<br>{_e(glass["unfolded"])} break-glass rollback(s) not yet folded into the log '
                     "(the next change or <code>slotgen audit repair</code> folds them).")
    checkpoints = doc.get("checkpoints")
    if checkpoints is not None:
        parts.append('<ul class="plain" id="checkpoints">')
        for item in checkpoints:
            good = item.get("consistent") and item.get("signed")
            who = f", signed by {_e(item['signer'])}" if item.get("signer") else ""
            parts.append(f'<li class="{"ok" if good else "bad"}">checkpoint <code>{_e(item.get("file"))}</code> '
                         f'({_e(item.get("size"))} entries{who}): the log {"extends" if good else "DOES NOT extend"} it'
                         + (f" ({_e(item.get('reason'))})" if item.get("reason") else "") + "</li>")
        parts.append("</ul>")
    parts.append("</div>")
    return "".join(parts)


def _now(model: dict[str, Any]) -> str:
    points = model.get("exposure") or []
    if not points:
        return ""
    p = points[-1]
    rollout = p["rolloutPercent"] if p["rolloutPercent"] is not None else f"{_e(p.get('rollout'))} (invalid: fails closed)"
    return ('<p class="now" id="current">'
            f'<span>kill-switch: <strong>{"engaged" if p["killEngaged"] else "off"}</strong></span>'
            f'<span>feature flag: <strong>{"on" if p["featureOn"] else "off"}</strong></span>'
            f'<span>rollout: <strong>{rollout}{"%" if p["rolloutPercent"] is not None else ""}</strong></span>'
            f'<span>allowlist: <strong>{_e(p.get("allowlist")) or "none"}</strong></span>'
            f'<span>AI path: <strong>{"open to allowlisted jobs" if p.get("open") else "closed"}</strong></span></p>')


def _who(by: dict[str, Any]) -> str:
    text = f'<strong class="operator">{_e(by.get("operator")) or "(none)"}</strong>'
    if by.get("name"):
        text += f' <span class="sub">{_e(by["name"])}</span>'
    details = []
    if by.get("roles"):
        details.append(_e(", ".join(by["roles"])))
    if by.get("identity"):
        details.append(_e(by["identity"]))
    if details:
        text += f'<div class="sub">{" · ".join(details)}</div>'
    if by.get("key"):
        text += f'<div class="sub">key <code class="key">{_e(by["key"])}</code></div>'
    return text


def _approved(row: dict[str, Any]) -> str:
    approval = row.get("approval")
    if not approval:
        return ""
    if approval.get("missing"):
        return f'<code>{_e(approval.get("id"))}</code><div class="sub">no such approval in the log</div>'
    text = (f'<strong class="approver">{_e(approval.get("approver")) or "(none)"}</strong>'
            + (f' <span class="sub">{_e(approval["approverName"])}</span>' if approval.get("approverName") else "")
            + f'<div class="sub">approval <code class="approval-id">{_e(approval.get("id"))}</code>'
            + (f", seq {_e(approval['seq'])}" if approval.get("seq") is not None else "")
            + (f", {_when(approval.get('ts'))} UTC" if approval.get("ts") else "") + "</div>")
    if approval.get("approverKey"):
        text += f'<div class="sub">key <code class="key">{_e(approval["approverKey"])}</code></div>'
    return text


def _what(row: dict[str, Any]) -> str:
    text = f'<span class="what">{_e(row.get("action"))}</span>'
    if row.get("step"):
        text += f" {_e(row['step'])}"
    if row.get("refused"):
        text += ' <span class="tag">refused</span>' if row.get("action") == "refused" else ' <span class="tag">superseded</span>'
    elif row.get("rollback"):
        text += ' <span class="tag red">rollback</span>'
    if row.get("trigger") and row.get("trigger") not in ("operator",) and not row.get("refused"):
        text += f'<div class="sub">{_e(row["trigger"])}</div>'
    glass = row.get("breakGlass")
    if glass:
        where = (f"folded into the log as seq {_e(glass['foldedSeq'])}" if glass.get("foldedSeq") is not None
                 else ("folded into the log" if glass.get("folded") else "NOT yet in the audit log"))
        text += f' <span class="tag amber">break-glass</span><div class="sub">{where}'
        if glass.get("journal"):
            text += f"; journal <code>{_e(glass['journal'])}</code>"
            if glass.get("journalSeq") is not None:
                text += f" seq {_e(glass['journalSeq'])}"
        text += "</div>"
        if glass.get("problem"):
            text += f'<div class="sub">why: {_e(glass["problem"])}</div>'
    return text


def _change(row: dict[str, Any]) -> str:
    control = row.get("control")
    parts = []
    if control and row.get("refused") and row.get("action") == "refused":
        parts.append(f"asked <code>{_e(control)}={_e(_shown(row.get('new')))}</code>")
    elif control:
        parts.append(f"<code>{_e(control)}</code>: <code>{_e(_shown(row.get('old')))}</code> &rarr; "
                     f"<code>{_e(_shown(row.get('new')))}</code>")
    if row.get("refused") and row.get("refusal"):
        parts.append(f'<div class="refusal">{_e(row["refusal"])}</div>')
    elif row.get("reason"):
        parts.append(f'<div class="reason">reason: {_e(row["reason"])}</div>')
    return "".join(parts)


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("seq", "time (UTC)", "action / step", "change", "applied by", "approved by", "decision record",
            "verification")
    out = ['<table id="timeline"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        classes = ["change"]
        if row.get("rollback"):
            classes.append("rollback")
        if row.get("refused"):
            classes = ["refused"]
        if row.get("breakGlass"):
            classes.append("break-glass")
        seq = "" if row.get("seq") is None else _e(row["seq"])
        out.append(f'<tr class="{" ".join(classes)}" data-seq="{seq}"><td class="seq">{seq}</td>'
                   f'<td class="ts">{_when(row.get("ts"))}</td><td>{_what(row)}</td><td>{_change(row)}</td>'
                   f'<td class="applied-by">{_who(row.get("appliedBy") or {})}</td>'
                   f'<td class="approved-by">{_approved(row)}</td>'
                   f'<td class="record">{record_link(row.get("decisionRecord"))}</td>'
                   f'<td class="verification">{_e(verification_text(row))}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _unused(model: dict[str, Any]) -> str:
    unused = [a for a in model.get("approvals") or [] if a.get("usedBy") is None]
    if not unused:
        return ""
    items = "".join(
        f'<li><code>{_e(a.get("id"))}</code> by <strong>{_e(a.get("approver"))}</strong> (seq {_e(a.get("seq"))}, '
        f'{_when(a.get("ts"))} UTC): <code>{_e(a.get("control"))}</code> {_e(_shown(a.get("old")))} &rarr; '
        f'{_e(_shown(a.get("value")))}, decision record {record_link(a.get("decisionRecord"))}, expires '
        f'{_when(a.get("expiresAt"))} UTC</li>' for a in unused)
    return f'<h2>Approvals no change used</h2><ul class="plain" id="unused-approvals">{items}</ul>'


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


__all__ = ["CSP", "chart", "record_link", "render"]
