"""`slotgen plan`: every remaining runbook step rehearsed in memory, through the real CLI.

The plan's predictions are checked against other commands, never against itself: each step's exposure
against `slotgen exposure --with` for that step's controls, the first step's commands against
`slotgen next`, and, walking the environment for real with the plan's own commands, the exposure each
step actually reached. Nothing `plan` runs may write: the environment's files keep their bytes and mtimes,
even where `status` would have written.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from slotgen_ops.runbook.runbook import STEP_ORDER

from .helpers import assert_one_line_error, slotgen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from walked import API_KEY, walk  # noqa: E402

ENV = {"OPENAI_API_KEY": API_KEY}
SAMPLES = "runbooks/sample-jobs.jsonl"
CONTROLS = ("SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI", "SLOTGEN_AI_ROLLOUT_PERCENT", "SLOTGEN_AI_ALLOWLIST_PATH")
TABLE_CHARS = ("│", "┃", "━", "─")


def run(ws: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return slotgen(*args, "--workspace", str(ws), cwd=ws, env={**ENV, **(env or {})}, stdin=stdin)


def plan(ws: Path, *args: str, env_name: str = "staging", env: dict[str, str] | None = None) -> dict:
    r = run(ws, "plan", "--env", env_name, "--json", *args, env=env)
    assert r.code == 0, (r.stdout, r.stderr)
    doc = r.json()
    assert doc["writes"] is False and doc["env"] == env_name
    return doc


def files(ws: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the environments (controls, audit logs, journals, reserve): bytes and mtime."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((ws / "environments").iterdir())
            if p.is_file()}


def init(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert slotgen("init", str(ws)).code == 0
    return ws


def oracle(ws: Path, controls: dict, jobs: str = SAMPLES, env_name: str = "staging") -> dict:
    """What `slotgen exposure` says for exactly these controls (every one given with --with)."""
    withs = [arg for name in CONTROLS for arg in ("--with", f"{name}={controls.get(name) or ''}")]
    r = run(ws, "exposure", jobs, "--env", env_name, *withs, "--json")
    assert r.code == 0, r.stderr
    doc = r.json()
    return {k: doc[k] for k in ("total", "openai", "stub", "codes")}


def counts(exposure: dict) -> dict:
    return {k: exposure[k] for k in ("total", "openai", "stub", "codes")}


def after(start: dict, steps: list[dict], index: int) -> dict:
    """The controls after steps[0..index], from the plan's own old -> new."""
    controls = dict(start)
    for step in steps[: index + 1]:
        if step["control"]:
            assert controls[step["control"]] == step["old"], step
            controls[step["control"]] = step["new"]
    return controls


def population(path: Path, count: int = 2000) -> Path:
    """Jobs of several kinds: in and out of the cohort, opted in and not, spread over every bucket."""
    with path.open("w") as out:
        for i in range(count):
            job = {"jobId": f"pop-{i:06d}", "kind": "question-slots", "subject": "mathematics", "level": "gcse",
                   "board": "aqa" if i % 5 else "edexcel", "specVersion": "8300",
                   "metadata": {"allowAI": i % 7 != 0}}
            out.write(json.dumps(job) + ("\n\n" if i % 100 == 0 else "\n"))
    return path


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(c in line for c in TABLE_CHARS)]


def column(text: str, index: int, sep: str = " ") -> str:
    """One column of the table's body, its cells' lines joined (folded words join with sep="")."""
    cells = (line.split("│")[index].strip() for line in text.splitlines() if "│" in line)
    return sep.join(cell for cell in cells if cell)


def test_a_fresh_workspace_plans_every_step_in_order_with_rising_exposure(tmp_path):
    ws = init(tmp_path)
    doc = plan(ws)
    steps = doc["steps"]
    assert [s["id"] for s in steps] == list(STEP_ORDER)
    assert [s["number"] for s in steps] == list(range(1, 8))
    assert doc["from"]["done"] == [] and doc["from"]["step"] is None and doc["from"]["next"] == "kill-switch-on"
    openai = [s["exposure"]["openai"] for s in steps]
    assert openai == sorted(openai), openai
    live = STEP_ORDER.index("kill-switch-off")
    assert set(openai[:live]) == {0} and 0 < openai[live] < openai[live + 1]
    assert all(s["exposure"]["total"] == 60 and s["population"] is None for s in steps)
    assert [s["exposes"] for s in steps] == [s["id"] == "kill-switch-off" for s in steps]
    assert [(s["id"], s["approverRole"]) for s in steps if s["needsApproval"]] == \
        [("rollout-canary", "approver"), ("rollout-progression", "approver")]
    assert [(s["control"], s["old"], s["new"]) for s in steps] == [
        ("SLOTGEN_AI_KILL", "true", "true"), ("FEATURE_SLOTGEN_AI", "false", "true"),
        ("SLOTGEN_AI_ALLOWLIST_PATH", None, "allowlists/slot-generation-allowlist.v1.json"),
        ("SLOTGEN_AI_ROLLOUT_PERCENT", "0", "1"), (None, None, None), ("SLOTGEN_AI_KILL", "true", "false"),
        ("SLOTGEN_AI_ROLLOUT_PERCENT", "1", "5")]
    assert all(s["soakMinutes"] == 0 for s in steps)  # staging soaks 0 minutes
    nxt = run(ws, "next", "--env", "staging", "--json").json()
    assert steps[0]["commands"] == nxt["commands"]
    assert steps[3]["commands"][0].startswith("slotgen approve --env staging SLOTGEN_AI_ROLLOUT_PERCENT=1 ")
    assert "--approval <APPROVAL-ID>" in steps[3]["commands"][1]
    prod = plan(ws, env_name="production")["steps"]
    assert [s["soakMinutes"] for s in prod] == [0] * 6 + [30]
    assert prod[-1]["wait"] == "30 min after step 6" and prod[0]["wait"] == "-"
    assert all("--env production" in c for s in prod for c in s["commands"])


def test_human_output_is_a_table_within_80_columns_and_the_commands(tmp_path):
    ws = init(tmp_path)
    for columns in ("80", "200"):
        r = run(ws, "plan", "--env", "production", env={"COLUMNS": columns})
        assert r.code == 0, r.stderr
        table = table_lines(r.stdout)
        assert table and max(len(line) for line in table) <= 80, table
        for step_id in STEP_ORDER:
            assert step_id in r.stdout
        assert r.stdout.count("EXPOSES") == 1
        assert "allowlists/slot-generation-allowlist.v1.json" in column(r.stdout, 1, sep="")
        assert "30 min after step 6" in column(r.stdout, 4) and column(r.stdout, 3).split().count("approver") == 2
        commands = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("slotgen ")]
        assert len(commands) == 9  # seven steps, two of which need an approval first
        assert all(len(shlex.split(c)) > 3 for c in commands)
    with_operator = run(ws, "plan", "--env", "staging", env={"SLOTGEN_OPERATOR": "owner"})
    assert "--operator <OPERATOR>" not in with_operator.stdout and "--operator <APPROVER>" in with_operator.stdout


def test_plan_writes_nothing_even_where_status_would(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url)  # live at rollout 1
    jobs = population(tmp_path / "jobs.jsonl", 300)
    before = files(ws)
    plan(ws)
    plan(ws, "--jobs", str(jobs))
    assert run(ws, "plan", "--env", "staging").code == 0
    assert files(ws) == before
    # A kill-switch engaged in the controls file but not yet in the log (a lock-free rollback's first act):
    # the next writer records it; `plan` says so and plans from there, writing nothing.
    controls = ws / "environments" / "staging.env"
    controls.write_text(controls.read_text().replace("SLOTGEN_AI_KILL=false", "SLOTGEN_AI_KILL=true"))
    before = files(ws)
    doc = plan(ws)
    assert files(ws) == before
    assert any("first records a rollback" in w for w in doc["warnings"])
    assert [s["id"] for s in doc["steps"]] == ["verify", "kill-switch-off", "rollout-progression"]
    assert doc["steps"][1]["needsApproval"] and "after a rollback" in doc["from"]["position"]
    assert run(ws, "status", "--env", "staging").code == 0
    assert files(ws)["staging.audit.jsonl"][0] != before["staging.audit.jsonl"][0], "status does record it"
    assert plan(ws)["steps"] == doc["steps"]


@pytest.mark.parametrize("upto", [3, 5, 6])
def test_a_plan_mid_walk_starts_at_the_next_step(tmp_path, endpoint, upto):
    ws = tmp_path / "ws"
    walk(ws, upto, endpoint.base_url)
    doc = plan(ws)
    assert doc["from"]["step"] == STEP_ORDER[upto - 1] and doc["from"]["number"] == upto
    assert doc["from"]["done"] == list(STEP_ORDER[:upto])
    assert [s["id"] for s in doc["steps"]] == list(STEP_ORDER[upto:])
    status = run(ws, "status", "--env", "staging", "--json").json()
    assert doc["from"]["controls"] == status["controls"]
    nxt = run(ws, "next", "--env", "staging", "--json").json()
    assert doc["steps"][0]["commands"] == nxt["commands"] and doc["steps"][0]["id"] == nxt["step"]
    assert counts(doc["from"]["exposure"]) == oracle(ws, status["controls"])


def test_each_steps_exposure_is_what_the_exposure_command_says(tmp_path):
    ws = init(tmp_path)
    jobs = population(tmp_path / "jobs.jsonl")
    doc = plan(ws, "--jobs", str(jobs), env_name="production")
    start = doc["from"]["controls"]
    assert counts(doc["from"]["exposure"]) == oracle(ws, start, env_name="production")
    assert counts(doc["from"]["population"]) == oracle(ws, start, str(jobs), env_name="production")
    seen = set()
    for index, step in enumerate(doc["steps"]):
        controls = after(start, doc["steps"], index)
        assert counts(step["exposure"]) == oracle(ws, controls, env_name="production"), step["id"]
        assert counts(step["population"]) == oracle(ws, controls, str(jobs), env_name="production"), step["id"]
        seen.add(step["population"]["openai"])
    assert len(seen) == 3, "the population sees nothing, then the canary rung, then the next rung"
    assert doc["steps"][-1]["population"]["total"] == 2000
    piped = run(ws, "plan", "--env", "production", "--json", "--jobs", "-", stdin=jobs.read_text())
    assert piped.code == 0 and [s["population"] for s in piped.json()["steps"]] == \
        [s["population"] for s in doc["steps"]]


def test_a_bad_jobs_file_is_exit_2_with_its_line(tmp_path):
    ws = init(tmp_path)
    before = files(ws)
    good = json.dumps({"jobId": "a", "kind": "k", "subject": "s", "level": "l", "board": "b", "specVersion": "1"})
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(f"{good}\n\n{{not json\n")
    r = run(ws, "plan", "--env", "staging", "--jobs", str(bad_json))
    assert_one_line_error(r, 2)
    assert f"{bad_json}:3:" in r.stderr and r.stdout == ""
    bad_job = tmp_path / "job.jsonl"
    bad_job.write_text(f"{good}\n{json.dumps({'jobId': 'b'})}\n")
    r = run(ws, "plan", "--env", "staging", "--json", "--jobs", str(bad_job))
    assert_one_line_error(r, 2)
    assert f"{bad_job}:2:" in r.stderr and r.stdout == ""
    r = run(ws, "plan", "--env", "staging", "--jobs", str(tmp_path / "missing.jsonl"))
    assert_one_line_error(r, 2)
    assert "not found" in r.stderr
    assert files(ws) == before


def test_an_invalid_log_is_exit_4(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 3, endpoint.base_url)
    log = ws / "environments" / "staging.audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    ts = json.loads(lines[2])["ts"]
    edited = ts[:-2] + ("1" if ts[-2] != "1" else "2") + "Z"
    lines[2] = lines[2].replace(f'"ts":"{ts}"', f'"ts":"{edited}"', 1)
    assert json.loads(lines[2])["ts"] == edited
    log.write_text("".join(lines))
    for args in ([], ["--json"]):
        r = run(ws, "plan", "--env", "staging", *args)
        assert_one_line_error(r, 4)
        assert "seq 3" in r.stderr and r.stdout == ""


def test_after_a_rollback_the_plan_re_exposes_the_rung_with_an_approval(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 7, endpoint.base_url)  # live at the top: 5
    top = run(ws, "plan", "--env", "staging")
    assert top.code == 0 and len(top.stdout.strip().splitlines()) == 1 and "nothing to plan" in top.stdout
    assert plan(ws)["steps"] == []
    assert run(ws, "rollback", "--env", "staging", "--reason", "drill", "--operator", "oncall").code == 0
    doc = plan(ws)
    assert [s["id"] for s in doc["steps"]] == ["verify", "kill-switch-off"]
    off = doc["steps"][1]
    assert off["needsApproval"] and off["approverRole"] == "approver" and off["exposes"]
    assert off["commands"][0].startswith("slotgen approve --env staging SLOTGEN_AI_KILL=false ")
    live = dict(doc["from"]["controls"], SLOTGEN_AI_KILL="false")
    assert counts(off["exposure"]) == oracle(ws, live) and off["exposure"]["openai"] > 0
    assert doc["from"]["exposure"]["openai"] == 0


def test_the_soak_still_to_wait_is_said_for_the_first_step(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 6, endpoint.base_url, env="production")  # just went live; production soaks 30 minutes
    doc = plan(ws, env_name="production")
    (step,) = doc["steps"]
    assert step["id"] == "rollout-progression" and step["soakMinutes"] == 30
    wait = re.fullmatch(r"in (\d+) min", step["wait"])
    assert wait and 0 < int(wait.group(1)) <= 30, step["wait"]
    assert "soak" in step["blockedBy"]
    r = run(ws, "plan", "--env", "production")
    assert column(r.stdout, 4) == f"{step['wait']} (soak 30 min)" and "not yet:" in r.stdout


def test_recorded_and_policy_text_reaches_the_terminal_escaped(tmp_path):
    ws = init(tmp_path)
    runbook = ws / "runbooks" / "beta-enable.yaml"
    runbook.write_text(runbook.read_text().replace(
        "title: Confirm the kill-switch is ON", 'title: "Confirm \\e]0;owned\\a[bold]ON[/bold]"'))
    r = run(ws, "plan", "--env", "staging")
    assert r.code == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "[bold]ON[/bold]" in r.stdout
    assert "runbooks/beta-enable.yaml" in r.stdout  # the edit is policy drift: said, and every change refused


def test_walking_the_plan_for_real_reaches_each_predicted_exposure(tmp_path, endpoint):
    ws = tmp_path / "ws"
    walk(ws, 0, endpoint.base_url)  # a workspace that verifies against the local endpoint
    jobs = population(tmp_path / "jobs.jsonl", 500)
    predicted = plan(ws, "--jobs", str(jobs))
    assert [s["id"] for s in predicted["steps"]] == list(STEP_ORDER)
    for index, step in enumerate(predicted["steps"]):
        current = plan(ws, "--jobs", str(jobs))
        assert current["steps"] == predicted["steps"][index:]  # taking a step moves the plan on by exactly it
        approval = None
        for command in step["commands"]:
            argv = shlex.split(command)[1:]
            who = "approver" if argv[0] == "approve" else "owner"
            argv = [{"<REF>": "DR-7", "<OPERATOR>": who, "<APPROVER>": who}.get(a, a) for a in argv]
            if approval is not None:
                argv = [approval if a == "<APPROVAL-ID>" else a for a in argv]
            r = run(ws, *argv, "--yes", "--json") if argv[0] != "verify" else run(ws, *argv, "--json")
            assert r.code == 0, (command, r.stdout, r.stderr)
            if argv[0] == "approve":
                approval = r.json()["approvalId"]
            elif argv[0] == "set":
                assert r.json()["step"] == step["id"]
        real = run(ws, "exposure", SAMPLES, "--env", "staging", "--json").json()
        assert counts(step["exposure"]) == {k: real[k] for k in ("total", "openai", "stub", "codes")}, step["id"]
        real = run(ws, "exposure", str(jobs), "--env", "staging", "--json").json()
        assert counts(step["population"]) == {k: real[k] for k in ("total", "openai", "stub", "codes")}, step["id"]
    done = run(ws, "plan", "--env", "staging")
    assert done.code == 0 and done.stdout.count("\n") == 1 and "nothing to plan" in done.stdout


def test_a_longer_ladder_plans_one_progression_a_rung(tmp_path):
    ws = init(tmp_path)
    runbook = ws / "runbooks" / "beta-enable.yaml"
    text = runbook.read_text()
    assert "ladder: [1, 5]" in text
    runbook.write_text(text.replace("ladder: [1, 5]", "ladder: [1, 5, 25, 100]").replace(
        '"5": 3000', '"5": 3000\n  "100": 3000'))
    doc = plan(ws, env_name="production")
    steps = doc["steps"]
    assert [s["id"] for s in steps] == list(STEP_ORDER) + ["rollout-progression"] * 2
    assert [(s["old"], s["new"]) for s in steps[6:]] == [("1", "5"), ("5", "25"), ("25", "100")]
    assert [s["wait"] for s in steps[6:]] == ["30 min after step 6", "30 min after step 7", "30 min after step 7"]
    openai = [s["exposure"]["openai"] for s in steps[5:]]
    assert openai == sorted(set(openai)), "each rung exposes more sample jobs than the one below"
    for index, step in enumerate(steps):
        assert counts(step["exposure"]) == oracle(ws, after(doc["from"]["controls"], steps, index),
                                                  env_name="production"), step["id"]
    assert any("runbooks/beta-enable.yaml" in w for w in doc["warnings"])
