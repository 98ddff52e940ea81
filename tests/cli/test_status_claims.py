"""`status`'s last-entries table never shows an operator that was only claimed as a proven one: a rollback by
someone not proven (recorded `unidentified`, SPEC sections 6 and 14) reads as `oncall? (unidentified)`."""

from __future__ import annotations

from .helpers import slotgen


def test_an_unidentified_rollback_is_marked_and_a_signed_change_is_not(tmp_path):
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    signed = slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1", "--operator",
                     "owner", "--yes", "--workspace", str(ws))
    assert signed.code == 0, signed.stderr
    claimed = slotgen("rollback", "--env", "staging", "--reason", "drill", "--operator", "oncall",
                      "--workspace", str(ws), env={"SLOTGEN_SIGNING_KEY": ""})
    assert claimed.code == 0, claimed.stderr
    assert "unidentified" in claimed.stderr
    run = slotgen("status", "--env", "staging", "--workspace", str(ws), env={"COLUMNS": "200"})
    table = run.stdout[run.stdout.index("last entries"):]
    rows = {line.split("│")[0].strip(): line for line in table.splitlines() if "│" in line}
    assert "oncall? (unidentified)" in rows["3"], table
    assert "owner" in rows["2"] and "?" not in rows["2"] and "unidentified" not in rows["2"], table
    assert "(none)" in rows["1"], table
    doc = slotgen("status", "--env", "staging", "--json", "--workspace", str(ws)).json()
    assert doc["lastChanges"][-1]["operator"] == "oncall"  # --json keeps the field as it was: the claim
