"""The exposure chart of `slotgen audit report` (SPEC section 11): inline SVG drawn here, nothing fetched.

Rollout percent as a step line on a square-root scale, the kill-switch engaged as shaded bands, the feature
flag and the allowlist as on/off bands, a marker per change (rollbacks red), on a time axis where every
change shows. Recorded values are escaped as the rest of the page's (`report_sections._e`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .report_sections import _e, _moment, _readable, _shown, _when

__all__ = ["chart"]


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
