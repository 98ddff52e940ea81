#!/usr/bin/env python3
"""Mutation testing (mutmut 3) of the modules that decide and record changes: `make mutation`.

    python tools/mutation_report.py run [MODULE ...] [--jobs N]
        Mutate MODULE (files or folders under slotgen_ops/; default: DEFAULT_MODULES)
        in a fresh copy of the project (`mutants/`), run the tests that cover each
        mutant, then print the table below.
    python tools/mutation_report.py resume
        Finish an interrupted run: test the mutants it has not checked yet.
    python tools/mutation_report.py rerun [MUTANT ...]
        Re-test the named mutants (globs; default: every survivor of the last run)
        in the existing `mutants/`, after new tests were written.
    python tools/mutation_report.py report [--json]
        Print the table for the last run: per module killed/total and score, then
        the surviving mutants by name (`.venv/bin/mutmut show NAME` shows one).

A mutant is *killed* when a test fails on it; *timeout* when the tests ran
past mutmut's time limit (reported apart: a mutant that makes the code hang is
caught, but so would be one whose tests are merely slow, so each is worth a
look); *survived*: the tests it ran all passed; *no tests*: no selected test
runs the mutated function. The score is killed / total; the column beside it
counts timeouts as caught.

Child processes see the mutant too: they get `mutants/` first on PYTHONPATH and
inherit MUTANT_UNDER_TEST, so CLI tests (which run `python -m slotgen_ops`)
kill mutants like in-process tests do; see tools/mutation_site/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
SITE = ROOT / "tools" / "mutation_site"
RUN_FILE = MUTANTS / "slotgen-mutation.json"
PACKAGE = "slotgen_ops"

#: Every module that guards safety: deciding, recording, proving and writing an environment (SPEC sections
#: 1, 6, 7, 9, 10 and 14). Keep in step with pyproject.toml's [tool.mutmut] only_mutate.
DEFAULT_MODULES = [
    "slotgen_ops/contract/",
    "slotgen_ops/audit/log.py",
    "slotgen_ops/audit/append.py",
    "slotgen_ops/audit/logtail.py",
    "slotgen_ops/audit/canonical.py",
    "slotgen_ops/audit/merkle.py",
    "slotgen_ops/audit/checkpoint.py",
    "slotgen_ops/audit/sshsig.py",
    "slotgen_ops/audit/sshkey.py",
    "slotgen_ops/audit/sshkeygen.py",
    "slotgen_ops/audit/sshagent.py",
    "slotgen_ops/audit/review.py",
    "slotgen_ops/changes/steps.py",
    "slotgen_ops/changes/outcomes.py",
    "slotgen_ops/changes/verifying.py",
    "slotgen_ops/changes/settling.py",
    "slotgen_ops/changes/environment.py",
    "slotgen_ops/changes/writer.py",
    "slotgen_ops/changes/snapshot.py",
    "slotgen_ops/changes/chain.py",
    "slotgen_ops/changes/controls_file.py",
    "slotgen_ops/changes/rollback.py",
    "slotgen_ops/verification/",
    "slotgen_ops/oversight/checkpoints.py",
    "slotgen_ops/policy/authority.py",
    "slotgen_ops/policy/pins.py",
    "slotgen_ops/files/envgrammar.py",
    "slotgen_ops/files/atomic.py",
    "slotgen_ops/files/locking.py",
    "slotgen_ops/runbook/state.py",
    "slotgen_ops/runbook/judge.py",
    "slotgen_ops/store/",
]

#: The tests run against a module's mutants, by module prefix (mutmut then runs, for
#: each mutant, only those of them that call the mutated function).
TESTS_BY_PREFIX = {
    "slotgen_ops/contract/": ["tests/contract", "tests/runtime", "tests/cli/test_decide_cli.py"],
    "slotgen_ops/audit/": ["tests/audit", "tests/ops", "tests/cli/test_integrity_cli.py",
                           "tests/cli/test_whole_log.py", "tests/cli/test_rollback_broken.py"],
    "slotgen_ops/files/": ["tests/ops", "tests/cli"],
    "slotgen_ops/policy/": ["tests/ops", "tests/cli"],
    "slotgen_ops/runbook/": ["tests/ops", "tests/cli"],
    "slotgen_ops/verification/": ["tests/ops", "tests/cli"],
    "slotgen_ops/changes/": ["tests/ops", "tests/cli"],
    "slotgen_ops/oversight/": ["tests/ops", "tests/cli"],
    "slotgen_ops/workspace/": ["tests/ops", "tests/cli"],
    "slotgen_ops/store/": ["tests/store", "tests/ops/test_environment_writer.py", "tests/ops/test_controls_file.py"],
}
FALLBACK_TESTS = ["tests/audit", "tests/contract", "tests/ops", "tests/cli"]

#: Left out of every mutation run: each takes 20-80 s, and mutmut would run it
#: for every mutant of every function it touches. `make test` runs them.
SLOW_TESTS = [
    "tests/ops/test_fault_campaign.py::test_fault_campaign",
    "tests/ops/test_service_concurrency.py",
    "tests/ops/test_repair_property.py::test_repair_is_never_less_safe",
]

KILLED = {"killed"}
CAUGHT = {"killed", "timeout"}  # a hang is caught too, but is reported apart


class Refused(Exception):
    """Bad arguments: one line, exit 2."""


def module_pattern(module: str) -> str:
    """`slotgen_ops/contract/` -> `slotgen_ops/contract/*`; a .py file stays itself."""
    path = (ROOT / module).resolve()
    try:
        rel = path.relative_to(ROOT).as_posix()
    except ValueError:
        raise Refused(f"{module}: not inside the repository") from None
    if not (rel == PACKAGE or rel.startswith(PACKAGE + "/")):
        raise Refused(f"{module}: only modules under {PACKAGE}/ are mutated")
    if path.is_dir():
        return rel.rstrip("/") + "/*"
    if path.is_file() and rel.endswith(".py"):
        return rel
    raise Refused(f"{module}: no such module or folder")


def tests_for(patterns: list[str]) -> list[str]:
    chosen: list[str] = []
    for pattern in patterns:
        found = [tests for prefix, tests in TESTS_BY_PREFIX.items()
                 if pattern.startswith(prefix) or prefix.startswith(pattern.rstrip("*"))]
        for tests in found or [FALLBACK_TESTS]:
            chosen += [t for t in tests if t not in chosen]
    return chosen


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(MUTANTS), str(SITE)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MUTMUT_SUBPROCESS_HITS"] = str(MUTANTS / "subprocess-hits")
    env["MUTMUT_PROJECT_ROOT"] = str(ROOT)
    env.pop("MUTANT_UNDER_TEST", None)
    return env


def run_mutmut(names: list[str], jobs: int) -> int:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_mutmut", "--jobs", str(jobs), *names]
    return subprocess.run(cmd, cwd=ROOT, env=child_env()).returncode


def inner_mutmut(names: list[str], jobs: int) -> int:
    """Runs in the child `run_mutmut` starts: mutmut with this run's modules and tests."""
    settings = json.loads(RUN_FILE.read_text(encoding="utf-8"))
    from mutmut import configuration

    cfg = configuration.config()
    cfg.only_mutate = settings["patterns"]
    cfg.pytest_add_cli_args_test_selection = settings["tests"]
    cfg.pytest_add_cli_args = [*cfg.pytest_add_cli_args, "-p", "slotgen_mutation_hits",
                               *(arg for test in SLOW_TESTS for arg in ("--deselect", test))]
    from mutmut.__main__ import cli

    try:
        cli.main(["run", "--max-children", str(jobs), *names], prog_name="mutmut", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


# -- reading the results ---------------------------------------------------------


def results() -> dict[str, dict[str, str]]:
    """module path -> {mutant name: status}, for the modules of the last run."""
    from mutmut.stats import status_by_exit_code

    if not RUN_FILE.is_file():
        raise Refused("no mutation run found in mutants/: run `make mutation` first")
    settings = json.loads(RUN_FILE.read_text(encoding="utf-8"))
    import fnmatch

    found: dict[str, dict[str, str]] = {}
    for meta in sorted((MUTANTS / PACKAGE).rglob("*.py.meta")):
        module = meta.relative_to(MUTANTS).as_posix()[: -len(".meta")]
        if not any(fnmatch.fnmatch(module, p) for p in settings["patterns"]):
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        if codes:
            found[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return found


def table(found: dict[str, dict[str, str]]) -> list[dict[str, object]]:
    rows = []
    for module, statuses in found.items():
        counts = Counter(statuses.values())
        killed = sum(counts[s] for s in KILLED)
        total = len(statuses)
        rows.append({
            "module": module.removeprefix(PACKAGE + "/"),
            "killed": killed,
            "total": total,
            "score": round(100.0 * killed / total, 1) if total else 100.0,
            "caught": round(100.0 * sum(counts[s] for s in CAUGHT) / total, 1) if total else 100.0,
            "survived": counts["survived"],
            "no_tests": counts["no tests"],
            "timeout": counts["timeout"],
            "other": total - killed - counts["timeout"] - counts["survived"] - counts["no tests"],
            "survivors": sorted(n for n, s in statuses.items() if s not in KILLED),
        })
    return rows


def print_report(found: dict[str, dict[str, str]], as_json: bool = False) -> None:
    rows = table(found)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no mutants recorded")
        return
    width = max(len("module"), *(len(r["module"]) for r in rows))
    head = f"{'module':<{width}}  {'killed/total':>12}  {'score':>6}  {'+timeout':>8}  {'survived':>8}  " \
           f"{'no tests':>8}  {'timeout':>7}  {'other':>5}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['module']:<{width}}  {str(r['killed']) + '/' + str(r['total']):>12}  {r['score']:>5.1f}%  "
              f"{r['caught']:>7.1f}%  {r['survived']:>8}  {r['no_tests']:>8}  {r['timeout']:>7}  {r['other']:>5}")
    killed = sum(r["killed"] for r in rows)
    total = sum(r["total"] for r in rows)
    print("-" * len(head))
    print(f"{'all':<{width}}  {f'{killed}/{total}':>12}  {100.0 * killed / total if total else 100.0:>5.1f}%")
    left = [(r["module"], name, found[PACKAGE + "/" + r["module"]][name]) for r in rows for name in r["survivors"]]
    if left:
        print()
        print(f"Not killed ({len(left)}; `.venv/bin/mutmut show NAME` prints one):")
        for _module, name, status in left:
            print(f"  {status:<11} {name}")


# -- commands --------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    patterns = []
    for module in args.modules or DEFAULT_MODULES:
        pattern = module_pattern(module)
        if pattern not in patterns:
            patterns.append(pattern)
    tests = args.tests or tests_for(patterns)
    missing = [t for t in tests if not (ROOT / t.split("::")[0]).exists()]
    if missing:
        raise Refused(f"no such tests: {', '.join(missing)}")
    shutil.rmtree(MUTANTS, ignore_errors=True)
    MUTANTS.mkdir()
    RUN_FILE.write_text(json.dumps({"patterns": patterns, "tests": tests}, indent=2) + "\n", encoding="utf-8")
    print(f"mutating: {' '.join(patterns)}")
    print(f"tests:    {' '.join(tests)} (without {len(SLOW_TESTS)} slow ones)")
    started = time.monotonic()
    code = run_mutmut([], args.jobs)
    elapsed = time.monotonic() - started
    print()
    if code != 0:
        print(f"mutmut stopped (exit {code}) after {elapsed / 60:.1f} min", file=sys.stderr)
        return code
    print_report(results())
    print(f"\nmutation run took {elapsed / 60:.1f} min with {args.jobs} worker(s)")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    if not RUN_FILE.is_file():
        raise Refused("no mutation run found in mutants/: run `make mutation` first")
    if args.command == "resume":
        names = []
    else:
        names = args.mutants or [n for rows in results().values() for n, s in rows.items() if s not in KILLED]
        if not names:
            print("nothing to re-test: every mutant was killed")
            return 0
    started = time.monotonic()
    code = run_mutmut(names, args.jobs)
    elapsed = time.monotonic() - started
    print()
    if code != 0:
        print(f"mutmut stopped (exit {code}) after {elapsed / 60:.1f} min", file=sys.stderr)
        return code
    print_report(results())
    print(f"\n{args.command} took {elapsed / 60:.1f} min with {args.jobs} worker(s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print_report(results(), as_json=args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mutation_report.py", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="mutate the modules and run the tests against every mutant")
    run.add_argument("modules", nargs="*", metavar="MODULE")
    run.add_argument("--jobs", "-j", type=int, default=2)
    run.add_argument("--tests", nargs="+", metavar="PATH", help="test paths to use instead of the default")
    rerun = sub.add_parser("rerun", help="re-test mutants of the last run (default: its survivors)")
    rerun.add_argument("mutants", nargs="*", metavar="MUTANT")
    rerun.add_argument("--jobs", "-j", type=int, default=2)
    resume = sub.add_parser("resume", help="test the mutants an interrupted run has not checked yet")
    resume.add_argument("--jobs", "-j", type=int, default=2)
    report = sub.add_parser("report", help="print the table of the last run")
    report.add_argument("--json", action="store_true")
    inner = sub.add_parser("_mutmut")
    inner.add_argument("names", nargs="*")
    inner.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # mutmut works in the current directory
    try:
        if args.command == "_mutmut":
            return inner_mutmut(args.names, args.jobs)
        if getattr(args, "jobs", 1) < 1:
            raise Refused("--jobs must be at least 1")
        return {"run": cmd_run, "rerun": cmd_rerun, "resume": cmd_rerun, "report": cmd_report}[args.command](args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
