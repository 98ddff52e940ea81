"""The text sections of `slotgen audit report` (SPEC section 11), and how a recorded value is shown in them.

Every recorded value is shown as the terminal shows it (control characters and bidi overrides as visible
escapes, `inert.visible`), then goes through `html.escape` (quotes included): `_e`. A decision record becomes
a link only when it is a plain https URL (`record_link`). The sections: the integrity status, the exposure
now, the table of every change (who applied it, who approved it, its record and verification) and the
approvals no change used. `report_chart` draws the chart; `report_html` puts the page together.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from ..inert import visible
from .timeline import verification_text

__all__ = ["record_link"]


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
