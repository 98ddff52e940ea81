"""`slotgen demo`: a narrated staging walk-through in a temporary workspace, no network.

Every step runs the real `slotgen` command in a child process against the
package's local OpenAI-compatible server on 127.0.0.1, so what the demo shows
is exactly what an operator types and sees.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import escape, console

DR = "DR-1001"


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary workspace and print where it is.")] = False,
    team: Annotated[bool, typer.Option("--team", help="Two operators' clones on one PostgreSQL database (a local "
                                                      "server is started), and a host's render --watch.")] = False,
) -> int:
    """Walk staging from init to a live 5% Beta, then a failed check rolling back.

    Runs in a temporary workspace with the package's local OpenAI-compatible
    server on 127.0.0.1; no network. Ends with 'audit verify'. With --team:
    a throwaway PostgreSQL server, two clones of one workspace taking turns,
    and a runtime host's env-file following a rollback.

    Example: slotgen demo --keep
    """
    from ..runtime.fakeserver import FakeOpenAIServer

    if team:
        return _team_demo(keep)

    out = console()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="slotgen-demo-"))
    workspace = root / "workspace"
    with FakeOpenAIServer(mode="ok") as server:
        env = dict(os.environ)
        env.update({"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local-demo-key",
                    "SLOTGEN_WORKSPACE": str(workspace), "NO_COLOR": env.get("NO_COLOR", ""),
                    "COLUMNS": env.get("COLUMNS", "110")})
        env.pop("SLOTGEN_OPERATOR", None)
        env.pop("SLOTGEN_SIGNING_KEY", None)
        walk = _Walk(out, env, root, workspace)
        out.rule("[bold]slotgen demo: enabling Beta in staging, one verified step at a time")
        out.print(f"A local OpenAI-compatible server answers on {server.base_url} (no network is used).")
        walk.say("1. Create a workspace: config, operators (owner, oncall, approver), the minimal-cohort "
                 "allowlist, the runbook and sample jobs. Every control starts safe.")
        walk.run(["init", str(workspace)])
        walk.say("Every entry is signed with the acting operator's SSH key (identity: signed). init wrote rehearsal "
                 "keys for the three demo operators into demo-keys/ and listed them in operators.yaml; each command "
                 "below passes its operator's key with --key (or set SLOTGEN_SIGNING_KEY). The demo runs in the "
                 "workspace folder.")
        walk.say("Ask the tool what to do next. It always names one step and the exact command.")
        walk.run(["next", "--env", "staging"])
        walk.say("Step 1: confirm the kill-switch is on. Every change names its operator and decision record, "
                 "is verified before it is committed, and is recorded in the audit log with its verification.")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", DR, "--operator", "owner", "--yes"])
        walk.say("Skipping ahead is refused (exit 3), recorded, and the refusal names the next allowed step.")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", DR, "--operator", "owner",
                  "--yes"], expect=3)
        walk.say("Step 2: the feature flag on, while the kill-switch stays on.")
        walk.run(["set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", DR, "--operator", "oncall", "--yes"])
        walk.say("Step 3: enable the approved minimal-cohort allowlist.")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json",
                  "--decision-record", DR, "--operator", "owner", "--yes"])
        walk.say("Step 4: the canary rollout needs an approval by an approver who does not apply it.")
        approval = walk.approval("1")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", DR, "--approval", approval,
                  "--operator", "oncall", "--yes"])
        walk.say("Step 5: a recorded verification: sample jobs through the real gating engine, executor and "
                 "telemetry. The kill-switch is still on, so no AI call may happen.")
        walk.run(["verify", "--env", "staging", "--decision-record", DR, "--operator", "oncall"])
        walk.say("Step 6: only now may the kill-switch go off. Allowlisted jobs in bucket 0 take the OpenAI path.")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", DR, "--operator", "owner", "--yes"])
        walk.say("Step 7: one rung up the ladder (1 -> 5), again with an approval (staging soaks for 0 minutes).")
        approval = walk.approval("5")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=5", "--decision-record", DR, "--approval", approval,
                  "--operator", "oncall", "--yes"])
        walk.say("Beta is live at 5% in staging. Status shows the controls in plain words and what is next (none).")
        walk.run(["status", "--env", "staging"])
        walk.say("Now the OpenAI endpoint starts failing (HTTP 500). The next verification fails a check, and the "
                 "tool engages the kill-switch at once, records both, and exits 1.")
        server.set_mode("http500")
        walk.run(["verify", "--env", "staging", "--decision-record", DR, "--operator", "oncall"], expect=1)
        server.set_mode("ok")
        walk.say("The environment is safe again, and 'next' shows the way back: verify, then an approval to turn "
                 "the kill-switch off (it re-exposes the rung).")
        walk.run(["next", "--env", "staging"])
        walk.say("Reducing exposure is an ordinary recorded step, with no approval: one rung down (5 -> 1).")
        walk.run(["set", "--env", "staging", "SLOTGEN_AI_ROLLOUT_PERCENT=1", "--decision-record", DR, "--operator",
                  "oncall", "--yes"])
        walk.say("Finally an approver proves the audit log untouched: every entry hash-chained to the one before and "
                 "signed by the operator it names, under the roster in force at the time.")
        walk.run(["audit", "verify", "--env", "staging"])
        walk.run(["audit", "show", "--env", "staging", "--action", "rollback"])
    seconds = time.perf_counter() - started
    out.rule(f"demo finished in {seconds:.1f} s; {walk.commands} commands"
             + (", every exit code as expected" if walk.ok else ", SOMETHING WAS UNEXPECTED"))
    if keep:
        out.print(f"workspace kept in {workspace}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if walk.ok else 1


def _team_demo(keep: bool) -> int:
    """SPEC section 10 end to end: a real PostgreSQL server, two clones, a watching host."""
    import shutil

    import psycopg

    from ..runtime.fakeserver import FakeOpenAIServer
    from ..store.pgserver import LocalPostgres

    out = console()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="slotgen-team-demo-"))
    ok = True
    with LocalPostgres() as pg, FakeOpenAIServer(mode="ok") as server:
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE slotgen")
        url = pg.url("slotgen_admin", None, "slotgen")  # the password travels in PGPASSWORD, never in a command
        env = dict(os.environ)
        for name in ("SLOTGEN_OPERATOR", "SLOTGEN_SIGNING_KEY", "SLOTGEN_WORKSPACE", "SLOTGEN_STATE_URL"):
            env.pop(name, None)
        env.update({"PGPASSWORD": pg.password, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "local-demo-key",
                    "NO_COLOR": env.get("NO_COLOR", ""), "COLUMNS": env.get("COLUMNS", "110")})
        alice_ws, bob_ws, host = root / "alice", root / "bob", root / "host"
        alice = _Walk(out, env, root, alice_ws)
        bob = _Walk(out, env, root, bob_ws)
        out.rule("[bold]slotgen demo --team: two operators, one PostgreSQL database, a runtime host")
        out.print(f"A throwaway PostgreSQL server listens on 127.0.0.1:{pg.port}; an OpenAI-compatible one on "
                  f"{server.base_url}. No network is used.")
        alice.say("Alice creates the workspace with its environments in the database (the schema is created on "
                  "first use; the URL is written without its password).")
        alice.run(["init", str(alice_ws), "--state", url])
        shutil.copytree(alice_ws, bob_ws)
        bob.say("Bob works in his own clone of the same workspace (as from version control).")
        host.mkdir()
        alice.say("A runtime host keeps its env-file current from the database: slotgen render --watch.")
        out.print(f"[bold]$ slotgen render --env staging --output {host / 'staging.env'} --watch &[/]")
        watcher = subprocess.Popen([sys.executable, "-m", "slotgen_ops", "render", "--env", "staging", "--output",
                                    str(host / "staging.env"), "--watch", "--workspace", str(alice_ws)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (host / "staging.env").exists():
                time.sleep(0.05)
            alice.say("They take turns: each step is judged against the one database, from either clone.")
            alice.run(["set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", DR, "--operator",
                       "owner", "--yes"])
            bob.run(["set", "--env", "staging", "FEATURE_SLOTGEN_AI=true", "--decision-record", DR, "--operator",
                     "oncall", "--yes"])
            bob.say("Bob tries to skip ahead: refused (exit 3), recorded where Alice sees it too.")
            bob.run(["set", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", DR, "--operator",
                     "owner", "--yes"], expect=3)
            alice.run(["status", "--env", "staging"])
            bob.say("Bob rolls back; the host's env-file follows within a second (the watcher was told by the "
                    "database).")
            before = (host / "staging.env").read_text(errors="replace")
            bob.run(["rollback", "--env", "staging", "--reason", "demo", "--operator", "oncall"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (host / "staging.env").read_text(errors="replace") == before:
                time.sleep(0.05)
            out.print(f"[bold]$ grep -v '^#' {host / 'staging.env'}[/]")
            sys.stdout.write("".join(line + "\n" for line in (host / "staging.env").read_text().splitlines()
                                     if not line.startswith("#")))
            alice.say("The database itself refuses to change history, whoever asks:")
            try:
                with psycopg.connect(pg.admin_url.replace("/postgres", "/slotgen"), autocommit=True) as conn:
                    conn.execute("UPDATE slotgen_log SET line = 'forged' WHERE seq = 1")
                ok = False
            except psycopg.Error as exc:
                out.print(f"  UPDATE slotgen_log ... -> {escape(' '.join(str(exc).split()))}")
            alice.say("Alice verifies the log from her clone: the same chain, the same signatures.")
            alice.run(["audit", "verify", "--env", "staging"])
        finally:
            watcher.terminate()
            watcher.wait(30)
    seconds = time.perf_counter() - started
    ok = ok and alice.ok and bob.ok
    out.rule(f"team demo finished in {seconds:.1f} s; {alice.commands + bob.commands} commands"
             + (", every exit code as expected" if ok else ", SOMETHING WAS UNEXPECTED"))
    if keep:
        out.print(f"workspaces kept in {root} (the database is gone with its server)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


class _Walk:
    def __init__(self, out, env: dict[str, str], root: Path, workspace: Path) -> None:
        self.out = out
        self.env = env
        self.root = root
        self.workspace = workspace
        self.commands = 0
        self.ok = True

    def say(self, text: str) -> None:
        self.out.print()
        self.out.print(f"[bold cyan]{escape(text)}[/]")

    def run(self, args: list[str], expect: int = 0, show: bool = True) -> subprocess.CompletedProcess:
        self.commands += 1
        if "--operator" in args and "--key" not in args:  # sign as that operator, with the rehearsal key
            at = args.index("--operator") + 2
            args = [*args[:at], "--key", f"demo-keys/{args[at - 1]}", *args[at:]]
        self.out.print(f"[bold]$ slotgen {escape(shlex.join(args))}[/]", soft_wrap=True)
        cwd = self.workspace if self.workspace.is_dir() else self.root
        proc = subprocess.run([sys.executable, "-m", "slotgen_ops", *args], env=self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, cwd=cwd)
        if show:
            sys.stdout.write(proc.stdout)
            sys.stdout.write(proc.stderr)
            sys.stdout.flush()
        if proc.returncode != expect:
            self.ok = False
            self.out.print(f"[bold red]unexpected exit {proc.returncode} (expected {expect})[/]")
        else:
            self.out.print(f"[dim](exit {proc.returncode})[/]")
        return proc

    def approval(self, value: str) -> str:
        proc = self.run(["approve", "--env", "staging", f"SLOTGEN_AI_ROLLOUT_PERCENT={value}", "--decision-record", DR,
                         "--operator", "approver", "--yes", "--json"], show=False)
        try:
            approval_id = json.loads(proc.stdout)["approvalId"]
        except (ValueError, KeyError):
            self.ok = False
            sys.stdout.write(proc.stderr)
            raise typer.Exit(1) from None
        self.out.print(f"approval recorded: [bold]{approval_id}[/] (single-use, bound to this exact change, expires in 24 h)")
        return approval_id


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
