"""SPEC section 11, the parts that protect the reader and the record: --output never overwrites a workspace
file (nor any existing file without --force), CSV cells a spreadsheet would run are neutralised, a mistyped
--action is an error rather than an empty table, --since/--until take durations, and --version."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from .helpers import assert_one_line_error, slotgen


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    return root


def run(ws: Path, *args: str, **kw):
    return slotgen(*args, "--workspace", str(ws), cwd=kw.pop("cwd", ws), **kw)


@pytest.mark.parametrize("target", ["environments/staging.audit.jsonl", "environments/staging.env",
                                    "environments/new.csv", "operators.yaml", "slotgen.yaml"])
def test_export_never_writes_over_the_workspace(ws, target):
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    for force in ([], ["--force"]):
        r = run(ws, "audit", "export", "--env", "staging", "--output", str(ws / target), *force)
        assert_one_line_error(r, 2)
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()} == before, "nothing in the workspace changed"


def test_export_replaces_an_existing_file_only_with_force(ws, tmp_path):
    out = tmp_path / "audit.jsonl"
    out.write_text("keep me\n")
    r = run(ws, "audit", "export", "--env", "staging", "--output", str(out))
    assert_one_line_error(r, 2)
    assert "--force" in r.stderr and out.read_text() == "keep me\n"
    assert run(ws, "audit", "export", "--env", "staging", "--output", str(out), "--force").code == 0
    assert out.read_text().startswith('{"action":"init"')


def test_checkpoint_output_follows_the_same_rules(ws, tmp_path):
    out = tmp_path / "cp"
    out.write_text("old\n")
    r = run(ws, "audit", "checkpoint", "--env", "staging", "--operator", "approver", "--key",
            "demo-keys/approver", "--output", str(out))
    assert_one_line_error(r, 2)
    assert out.read_text() == "old\n"


def test_csv_cells_that_would_run_as_formulas_are_neutralised(ws, tmp_path):
    nasty = ["=HYPERLINK(\"http://x\",\"y\")", "+DR-1", "-2+3", "@SUM(A1)"]  # (a reason is stripped of spaces)
    for text in nasty:
        assert run(ws, "rollback", "--env", "staging", "--reason", text, "--operator", "oncall", "--key",
                   "demo-keys/oncall").code == 0
    for claim in ("=cmd|' /C calc'!A0", "\tTAB", "\rCR"):  # unknown operators: refused, and recorded as claimed
        assert run(ws, "set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1", "--operator",
                   claim, "--yes").code == 3
    out = tmp_path / "audit.csv"
    assert run(ws, "audit", "export", "--env", "staging", "--format", "csv", "--output", str(out)).code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    reasons = [row["reason"] for row in rows if row["action"] == "rollback"]
    assert reasons == ["'" + text for text in nasty]
    refused = [row["operator"] for row in rows if row["action"] == "refused"]
    assert refused == ["'=cmd|' /C calc'!A0", "'\tTAB", "'\rCR"]
    for row in rows:
        for cell in row.values():
            assert not (cell or "").startswith(("=", "+", "-", "@", "\t", "\r")), row


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_mistyped_action_is_an_error_not_an_empty_table(ws, command):
    r = run(ws, "audit", command, "--env", "staging", "--action", "rollbacks")
    assert_one_line_error(r, 2)
    assert "did you mean 'rollback'" in r.stderr


def test_since_and_until_take_durations(ws):
    recent = run(ws, "audit", "show", "--env", "staging", "--since", "1h", "--json")
    assert recent.code == 0 and len(recent.json()["entries"]) == 1
    older = run(ws, "audit", "show", "--env", "staging", "--until", "1h", "--json")
    assert older.code == 0 and older.json()["entries"] == []
    assert_one_line_error(run(ws, "audit", "show", "--env", "staging", "--since", "yesterday-ish"), 2)


def test_version():
    r = slotgen("--version")
    assert r.code == 0 and r.stdout.startswith("slotgen ") and r.stdout.split()[1][0].isdigit()


def test_status_without_env_summarises_every_environment(ws):
    r = run(ws, "status")
    assert r.code == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if not line.startswith(" ")]
    assert [line.split(":")[0] for line in lines] == ["production", "staging"]
    assert all("kill-switch on" in line and "audit 1 entries ok" in line for line in lines)
    doc = run(ws, "status", "--json").json()
    assert [e["env"] for e in doc["environments"]] == ["production", "staging"]
    log = ws / "environments" / "production.audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"init"', b'"INIT"'))  # one environment tampered with
    broken = run(ws, "status")
    assert broken.code == 4 and "INTEGRITY FAILED" in broken.stdout


def test_human_output_never_shows_pythons_none(ws):
    assert run(ws, "rollback", "--env", "staging", "--reason", "r").code == 0  # no operator: recorded as such
    for args in (("audit", "show", "--env", "staging"), ("status", "--env", "staging")):
        r = run(ws, *args)
        assert r.code == 0
        assert "None" not in r.stdout, r.stdout
    shown = run(ws, "audit", "show", "--env", "staging").stdout
    assert "(none)" in shown
