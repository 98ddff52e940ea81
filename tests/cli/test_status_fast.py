"""`status` and `next` start without the CLI framework (the entry point's fast path): the same bytes, exit codes
and one-line errors as the full CLI, for every form the fast path takes; every other form goes to the full CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from slotgen_ops.cli.entry import fast_view

from .helpers import clean_env, demo_key, slotgen

FULL_CLI = "import sys; from slotgen_ops.cli.app import main; sys.argv[0] = 'slotgen'; main()"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast") / "ws"
    assert slotgen("init", str(root)).code == 0
    assert slotgen("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1", "--operator",
                   "owner", "--yes", "--workspace", str(root)).code == 0
    return root


def _both(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    env = clean_env()
    fast = subprocess.run([sys.executable, "-m", "slotgen_ops", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    full = subprocess.run([sys.executable, "-c", FULL_CLI, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    return fast, full


FORMS = [
    ["status", "--env", "staging"],
    ["status", "--env=staging", "--json"],
    ["status", "-e", "production", "--json"],
    ["status"],
    ["status", "--json"],
    ["next", "--env", "staging"],
    ["next", "--json", "--env", "production"],
    ["status", "--env", "nowhere"],
    ["next", "--env", "nowhere", "--json"],
]


@pytest.mark.parametrize("args", FORMS, ids=" ".join)
def test_the_fast_path_prints_what_the_full_cli_prints(ws, args):
    assert fast_view(args) is not None, "this form should take the fast path"
    fast, full = _both([*args, "--workspace", str(ws)], ws)
    assert (fast.returncode, fast.stdout, fast.stderr) == (full.returncode, full.stdout, full.stderr)


def test_an_integrity_failure_is_the_same_exit_4_on_both_paths(tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    log = root / "environments" / "staging.audit.jsonl"
    log.write_text(log.read_text().replace('"init"', '"Init"', 1))
    for args in (["status", "--env", "staging"], ["status"], ["next", "--env", "staging", "--json"]):
        fast, full = _both([*args, "-w", str(root)], root)
        assert fast.returncode == full.returncode == 4, (args, fast.stderr)
        assert (fast.stdout, fast.stderr) == (full.stdout, full.stderr)


@pytest.mark.parametrize("argv", [
    [], ["rollback", "--env", "staging"], ["status", "--help"], ["status", "-h"], ["status", "--env"],
    ["status", "--env", "a", "--env", "b"], ["status", "-estaging"], ["status", "--env", "--json"],
    ["status", "--env="], ["status", "--verbose"], ["status", "staging"], ["next"], ["next", "--json"],
    ["status", "--json=1"], ["status", "--workspace"],
], ids=lambda a: " ".join(a) or "(nothing)")
def test_every_other_form_goes_to_the_full_cli(argv):
    assert fast_view(argv) is None


@pytest.mark.parametrize("argv", [["status", "--env", "a", "--env", "b"], ["status", "--verbose"], ["next"]])
def test_forms_left_to_the_full_cli_get_its_usual_errors(ws, argv):
    run = slotgen(*argv, "--workspace", str(ws), cwd=ws)
    if argv == ["status", "--env", "a", "--env", "b"]:
        assert run.code == 2 and "'b'" in run.stderr  # click takes the last; b is not an environment
    else:
        assert run.code == 2 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1


@pytest.mark.parametrize("args", [["status", "--env", "staging"], ["status"], ["next", "--env", "staging", "--json"]],
                         ids=" ".join)
def test_status_imports_neither_the_cli_framework_nor_pydantic_nor_openai_nor_jsonschema(ws, args):
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "slotgen_ops", *args,
                          "--workspace", str(ws)], cwd=ws, env=clean_env(), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = set(re.findall(r"\|\s+([\w.]+)\s*$", run.stderr, flags=re.M))
    assert "slotgen_ops.oversight.report" in imported  # the probe sees our own imports: the checks below can fail
    assert "slotgen_ops.runbook.runbook" in imported
    for module in ("typer", "click", "pydantic", "pydantic_core", "openai", "jsonschema", "httpx", "psycopg",
                   "cryptography"):
        assert module not in imported, f"{' '.join(args)} imported {module}"


def _reader_gone(args: list[str], cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run slotgen with stdout a pipe whose reader is already gone (its end closed first: every write fails
    with EPIPE), as in `slotgen status | head -1` when head has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "slotgen_ops", *args], cwd=cwd, env=clean_env(env),
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["status", "--env", "staging"], ["status", "--env", "staging", "--json"],
                                  ["next", "--env", "staging"], ["audit", "show", "--env", "staging"],
                                  ["audit", "verify", "--env", "staging", "--json"],
                                  ["set", "--dry-run", "--env", "staging", "FEATURE_SLOTGEN_AI=true",
                                   "--decision-record", "DR-1", "--operator", "oncall"]], ids=" ".join)
def test_a_reader_that_left_is_exit_0_and_no_noise_for_what_changes_nothing(ws, args):
    """Neither Rich's exit 1 nor Python's flush-at-exit warning (exit 1 reads as "verification failed")."""
    args = [*args, "--workspace", str(ws)]
    run = _reader_gone(args, ws, demo_key(args, ws, {}))
    assert (run.returncode, run.stderr) == (0, "")


def test_a_change_whose_reader_left_is_not_reported_as_ok(tmp_path):
    """`slotgen set ... | head -1`: the change is made (the output comes after the commit), but the command
    cannot say so: exit 2 and one line on stderr that says where to look, never exit 0 or 1."""
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    args = ["set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1", "--operator", "owner",
            "--yes", "--workspace", str(root)]
    run = _reader_gone(args, root, demo_key(args, root, {}))
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: standard output was closed before 'slotgen set' finished")
    assert "'slotgen status'" in run.stderr and len(run.stderr.splitlines()) == 1
    status = slotgen("status", "--env", "staging", "--json", "--workspace", str(root))
    assert status.json()["steps"]["done"] == ["kill-switch-on"], "and the change it made is there to see"
