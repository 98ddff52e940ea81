"""`slotgen audit show` as an approver reads it (SPEC section 11): one row per change with who applied it (and
the key), who approved it (approval id), the decision record and the verification; break-glass acts in the same
timeline; refusals hidden unless asked for; checked filters; readable at 80 columns; paged only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

from .helpers import assert_one_line_error, clean_env, command, slotgen
from .review_scenario import DR_LINK, DR_TEXT, DR_URL, OPERATOR, REASON, build_workspace, lock_held, run


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with FakeOpenAIServer("ok") as server:
        return build_workspace(tmp_path_factory.mktemp("show") / "ws", server.base_url)


def show(ws: Path, *args: str, columns: int = 120):
    done = slotgen("audit", "show", "--env", "staging", "--workspace", str(ws), *args, env={"COLUMNS": str(columns)})
    assert done.code == 0, done.stderr
    return done


def table_rows(out: str) -> list[list[str]]:
    """The rows of the table `audit show` prints, each a list of its cells' text (wrapped lines joined)."""
    lines = out.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if "━" in line) + 1:]
    rows, current = [], None
    for line in body:
        if "│" not in line:
            break
        cells = [cell.strip() for cell in line.split("│")]
        if not any(cells):
            current = None
            continue
        if current is None:
            current = [[] for _ in cells]
            rows.append(current)
        for parts, cell in zip(current, cells):
            if cell:
                parts.append(cell)
    return [[" ".join(parts) for parts in row] for row in rows]


def changes(ws: Path, *args: str) -> list[dict]:
    return show(ws, "--json", *args).json()["changes"]


def test_json_keeps_the_raw_entries_and_adds_one_row_per_change(ws):
    doc = show(ws, "--json").json()
    log = [json.loads(line) for line in (ws / "environments" / "staging.audit.jsonl").read_text().splitlines()]
    assert doc["entries"] == log, "entries stay the raw log entries other systems read"
    rows = doc["changes"]
    assert [r["action"] for r in rows] == ["init", "config-accept", "set", "set", "set", "set", "set", "set", "set",
                                           "refused", "rollback", "rollback"]
    step_down, refused, hostile, glass = rows[-4:]
    assert (step_down["step"], step_down["decisionRecord"], step_down["appliedBy"]["operator"]) == (
        "reduce-exposure", DR_URL, "oncall")
    assert refused["refused"] and refused["appliedBy"]["operator"] == OPERATOR and refused["decisionRecord"] == DR_LINK
    assert hostile["rollback"] and (hostile["reason"], hostile["decisionRecord"]) == (REASON, DR_TEXT)
    assert hostile["appliedBy"]["identity"] == "unidentified"
    assert glass["breakGlass"]["folded"] is False and glass["seq"] is None and glass["reason"] == "incident"
    assert [g["folded"] for g in doc["breakGlass"]] == [False]
    approved = [r for r in rows if r["approval"]]
    assert [(r["seq"], r["approval"]["approver"]) for r in approved] == [(3, "approver"), (8, "approver"),
                                                                         (12, "approver")]
    unused = [a for a in doc["approvals"] if a["usedBy"] is None]
    assert [(a["control"], a["value"], a["decisionRecord"]) for a in unused] == [("SLOTGEN_AI_KILL", "false", "DR-10")]


def test_each_row_says_who_applied_and_who_approved_it(ws):
    rows = {r["seq"]: r for r in changes(ws)}
    out = show(ws, columns=200).stdout
    table = {int(cells[0]) if cells[0] else None: cells for cells in table_rows(out)}
    assert list(table) == [r["seq"] for r in rows.values() if not r["refused"]]
    canary = rows[8]
    seq, when, step, change, applied, approved, record, verified = table[8]
    assert (step, change, record, verified) == ("set rollout-canary", "SLOTGEN_AI_ROLLOUT_PERCENT: 0 -> 1", "DR-1",
                                                "pass; step verify (seq 9): pass")
    assert when == canary["ts"][:19].replace("T", " ")
    assert applied == "oncall key " + canary["appliedBy"]["key"].split(":", 1)[1][:12]
    assert approved == (f"approver {canary['approval']['id']} (seq 7) key "
                        + canary["approval"]["approverKey"].split(":", 1)[1][:12])
    assert table[13][6] == DR_URL and table[13][2] == "set reduce-exposure"
    hostile = table[15]
    assert hostile[2] == "ROLLBACK" and hostile[4] == f"{OPERATOR} (unidentified)" and hostile[6] == DR_TEXT
    assert hostile[3] == f"SLOTGEN_AI_KILL: false -> true; reason: {REASON}"
    assert table[None][2] == "ROLLBACK BREAK-GLASS, NOT YET in the log" and table[None][4].startswith("oncall key ")
    assert "1 refused attempt hidden; --refusals lists it" in out
    assert "REFUSED" not in out and "REFUSED" in show(ws, "--refusals", columns=200).stdout
    assert re.search(r"approval apv-[0-9a-f]+ by approver \(seq \d+, SLOTGEN_AI_KILL: true -> false\) was not used",
                     " ".join(out.split()))


def test_readable_at_80_columns_words_never_split(ws):
    rows = changes(ws)
    out = show(ws, "--refusals", columns=80).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for row in rows:
        if row["approval"]:
            assert out.count(row["approval"]["id"]) == 1, (row["approval"]["id"], out)
    approvals = [r for r in rows if r["approval"]]
    assert out.count("approver ") + out.count("approver\n") >= len(approvals)
    expected = {"oncall": sum(1 for r in rows if r["appliedBy"]["operator"] == "oncall"),
                "owner": sum(1 for r in rows if r["appliedBy"]["operator"] == "owner"),
                "DR-1": sum(1 for r in rows if r["decisionRecord"] == "DR-1"),
                "reduce-exposure": 1, "rollout-progression": 1, "kill-switch-off": 1,
                "(unidentified)": sum(1 for r in rows if r["appliedBy"]["identity"] == "unidentified"),
                "operators.yaml": 1}
    table = {cells[0]: cells for cells in table_rows(out)}
    assert "".join(table["6"][2].split()) == ("setallowlist-enableSLOTGEN_AI_ALLOWLIST_PATH:(unset)->"
                                              "allowlists/slot-generation-allowlist.v1.json"), "a long value: all of it"
    assert "".join(table["15"][3].split()).startswith("applied:" + "".join(OPERATOR.split()) + "(unidentified)")
    words = re.findall(r"[^\s│┃━╇]+", out)  # a word split across lines ("operato" / "rs.yaml") is not counted
    for word, count in expected.items():
        assert words.count(word) == count, (word, words.count(word), count, out)


def test_filters_are_checked_and_narrow_the_rows(ws):
    r = slotgen("audit", "show", "--env", "staging", "--control", "SLOTGEN_AI_ROLOUT_PERCENT", "--workspace", str(ws))
    assert_one_line_error(r, 2)
    assert "did you mean 'SLOTGEN_AI_ROLLOUT_PERCENT'" in r.stderr
    r = slotgen("audit", "export", "--env", "staging", "--control", "kill", "--workspace", str(ws))
    assert_one_line_error(r, 2)
    assert "did you mean 'SLOTGEN_AI_KILL'" in r.stderr
    rollout = changes(ws, "--control", "SLOTGEN_AI_ROLLOUT_PERCENT")
    assert [(r["step"], r["new"]) for r in rollout] == [("rollout-canary", "1"), ("rollout-progression", "5"),
                                                       ("reduce-exposure", "1"), (None, "5")]
    assert {e["control"] for e in show(ws, "--json", "--control", "SLOTGEN_AI_ROLLOUT_PERCENT").json()["entries"]} == {
        "SLOTGEN_AI_ROLLOUT_PERCENT"}
    assert [r["step"] for r in changes(ws, "--decision-record", DR_URL)] == ["reduce-exposure"]
    assert [r["action"] for r in changes(ws, "--decision-record", DR_LINK)] == ["refused"]
    assert [r["seq"] for r in changes(ws, "--operator", "approver")] == [3, 8, 12]
    assert [r["seq"] for r in changes(ws, "--action", "approve")] == [3, 8, 12]
    exported = slotgen("audit", "export", "--env", "staging", "--decision-record", "DR-10", "--workspace", str(ws))
    assert exported.code == 0
    assert [json.loads(line)["action"] for line in exported.stdout.splitlines()] == ["approve"]
    assert "no changes to staging match" in show(ws, "--decision-record", "DR-404").stdout


def test_break_glass_acts_are_in_the_timeline_before_and_after_folding(tmp_path):
    with FakeOpenAIServer("ok") as server:
        from .review_scenario import walk

        root = tmp_path / "ws"
        walk(root, 7, server.base_url)
    with lock_held(root / "environments"):
        run(root, "rollback", "--env", "staging", "--reason", "incident 9", "--operator", "oncall")
    act = table_rows(show(root, columns=200).stdout)[-1]
    assert act[0] == "" and act[2] == "ROLLBACK BREAK-GLASS, NOT YET in the log"
    assert act[3] == "SLOTGEN_AI_KILL: false -> true; reason: incident 9" and act[4].startswith("oncall key ")
    run(root, "audit", "repair", "--env", "staging", "--operator", "owner")
    rows = changes(root)
    folded = [r for r in rows if r["breakGlass"]]
    assert len(folded) == 1 and folded[0]["breakGlass"]["folded"] is True
    act = table_rows(show(root, columns=200).stdout)[-1]
    assert act[0] == str(folded[0]["seq"]) and act[2] == f"ROLLBACK BREAK-GLASS, folded as seq {folded[0]['seq']}"
    assert act[3] == "SLOTGEN_AI_KILL: false -> true; reason: incident 9" and act[4].startswith("oncall key ")


def test_recorded_control_characters_are_shown_escaped(ws, tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    assert slotgen("rollback", "--env", "staging", "--reason", "a\x1b[2Jb", "--operator", "evil\x1b]0;x\x07",
                   "--workspace", str(root)).code == 0
    out = show(root).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "evil\\x1b]0;x\\x07" in out


def _on_a_terminal(ws: Path, paged: Path, *args: str) -> bytes:
    """Run `audit show` with a pseudo-terminal as stdin/stdout, 10 lines high, PAGER writing to `paged`."""
    master, slave = pty.openpty()
    env = clean_env({"PAGER": f"cat > {paged}", "LINES": "10", "COLUMNS": "100", "TERM": "xterm"})
    proc = subprocess.Popen(command("audit", "show", "--env", "staging", "--workspace", str(ws), *args),
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen
    return seen


def test_long_output_is_paged_on_a_terminal_only(ws, tmp_path):
    paged = tmp_path / "paged.txt"
    on_screen = _on_a_terminal(ws, paged)
    assert paged.exists() and "changes to staging" in paged.read_text()
    assert b"changes to staging" not in on_screen
    paged.unlink()
    on_screen = _on_a_terminal(ws, paged, "--no-pager")
    assert not paged.exists() and b"changes to staging" in on_screen
    short = _on_a_terminal(ws, paged, "--decision-record", "DR-404")  # shorter than the screen: no pager
    assert not paged.exists() and b"no changes to staging match" in short
    piped = slotgen("audit", "show", "--env", "staging", "--workspace", str(ws),
                    env={"PAGER": f"cat > {paged}", "LINES": "10"})
    assert piped.code == 0 and "changes to staging" in piped.stdout and not paged.exists()
