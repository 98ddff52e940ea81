"""`slotgen verify --observed`: one judgement of what the runtime hosts sent since the last change (SPEC 12).

Exit 0 pass, 1 fail, 3 inconclusive. `--json` gives the judgement document:
`outcome`, `window` (`from`, `to`), `events`, `hosts`, `checks`.
"""

from __future__ import annotations

from typing import Any

from ..errors import EXIT_OK, EXIT_REFUSED, EXIT_VERIFICATION_FAILED, BadInput
from .output import console, emit_json, escape

__all__ = ["judge", "verify_observed"]

EXIT = {"pass": EXIT_OK, "fail": EXIT_VERIFICATION_FAILED, "inconclusive": EXIT_REFUSED}
MARK = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "inconclusive": "[yellow]inconclusive[/]",
        "not-applicable": "[dim]n/a[/]"}


def judge(environment: Any) -> dict[str, Any]:
    """One judgement of the environment's window, against the state its whole (checked) log records."""
    from ..changes.chain import require_sound
    from ..verification.observe import observe

    require_sound(environment)  # the whole log, as every command that judges the environment
    return observe(environment, environment.snapshot().state)


def verify_observed(environment: Any, decision_record: str | None, json_out: bool) -> int:
    if decision_record is not None:
        raise BadInput("verify --observed does not record yet: run it without --decision-record (it only judges)")
    judgement = judge(environment)
    if json_out:
        emit_json(judgement)
        return EXIT[judgement["outcome"]]
    out = console()
    window = judgement["window"]
    out.print(f"observed {escape(environment.name)}: {judgement['events']} events from {window['from']} to "
              f"{window['to']} in {escape(judgement['telemetry'])}")
    for host in judgement["hosts"]:
        carries = "current controls" if host["current"] else "[yellow]NOT the current controls[/]"
        out.print(f"  host {escape(host['host'])}: {host['events']} events, last seen {host['lastSeen']}, {carries}")
    width = max(len(check["name"]) for check in judgement["checks"])
    for check in judgement["checks"]:
        out.print(f"  {check['name']:<{width}}  {MARK[check['outcome']]}  {escape(check['detail'])}")
    out.print(f"outcome: {MARK[judgement['outcome']]}")
    return EXIT[judgement["outcome"]]
