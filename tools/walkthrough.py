#!/usr/bin/env python3
"""The README's walk-through, regenerated from real runs.

    .venv/bin/python tools/walkthrough.py            # rewrite the README's walk-through blocks
    .venv/bin/python tools/walkthrough.py --check    # exit 1 (and a diff) if the README differs

Every command below runs for real, in a fresh `slotgen init` workspace, as the operator would type it, against
the package's own OpenAI-compatible endpoint (`slotgen endpoint serve`) on 127.0.0.1. Its output replaces the
text between `<!-- walkthrough:NAME -->` and `<!-- /walkthrough:NAME -->` in README.md. Only three things are
abridged, always the same way: a verification table becomes one line saying how many checks passed, the
endpoint's port shows as 8765, and the approval id the run produced is shown as it was. `--check` compares
with volatile values (approval ids, timings, times) masked: `tests/test_readme_walkthrough.py` runs it.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SHOWN_PORT = 8765
DR = "DR-1001"


class Session:
    """A shell the reader could have typed into: commands, their output, abridged."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.cwd, self.env, self.port = cwd, env, port
        self.lines: list[str] = []
        self.last_code = 0

    def run(self, shown: str, expect: int = 0, keep: int | None = None) -> str:
        """Run `slotgen ...` as shown; record `$ shown` and its abridged output (the first `keep` lines)."""
        args = shlex.split(shown)
        assert args[0] == "slotgen", shown
        proc = subprocess.run([sys.executable, "-m", "slotgen_ops", *args[1:]], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        if proc.returncode != expect:
            raise SystemExit(f"walkthrough: '{shown}' exited {proc.returncode}, expected {expect}:\n"
                             f"{proc.stdout}{proc.stderr}")
        self.last_code = proc.returncode
        out = abridge(proc.stdout + proc.stderr)
        if keep is not None:
            out = out[:keep]
        self.lines.append("$ " + _wrap(shown))
        self.lines.extend(line.replace(f":{self.port}/", f":{SHOWN_PORT}/") for line in out)
        return proc.stdout

    def note(self, line: str) -> None:
        self.lines.append(line)


def _wrap(command: str, width: int = 110) -> str:
    """A long command as a shell continues it: ` \\` and four spaces."""
    if len(command) <= width:
        return command
    words, lines, current = command.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width - 2:
            lines.append(current + " \\")
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    return "\n".join([*lines, current])


def abridge(text: str) -> list[str]:
    """Output lines, with each verification table replaced by one line (how many checks passed or failed)."""
    lines = text.rstrip("\n").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "verification" and i + 1 < len(lines) and lines[i + 1].startswith("check"):
            j = i + 3
            rows: list[str] = []
            while j < len(lines) and "│" in lines[j]:
                rows.append(lines[j])
                j += 1
            passed = sum(1 for r in rows if r.split("│")[1].strip() == "pass")
            failed = [r.split("│")[0].strip() for r in rows if r.split("│")[1].strip() == "FAIL"]
            summary = f"  (verification: {passed} checks pass" + (f"; FAILED: {', '.join(failed)})" if failed else ")")
            out.append(summary)
            i = j
            continue
        out.append(line.rstrip())
        i += 1
    return out


def _endpoint(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """`slotgen endpoint serve` on 8765 when free, else on a free port (shown as 8765)."""
    for port in (SHOWN_PORT, 0):
        proc = subprocess.Popen([sys.executable, "-m", "slotgen_ops", "endpoint", "serve", "--port", str(port)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()  # it prints its URL once it listens
        found = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if found:
            return proc, int(found.group(1))
        proc.kill()
        proc.wait()
    raise SystemExit("walkthrough: the endpoint did not start")


def generate() -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLOTGEN_", "OPENAI_", "FEATURE_SLOTGEN"))}
    env.update({"NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"})
    blocks: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="walkthrough-") as tmp:
        server, port = _endpoint(env)
        try:
            env.update({"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "rehearsal"})
            top = Session(Path(tmp), env, port)
            top.note(f"$ slotgen endpoint serve --port {SHOWN_PORT} &")
            top.note(f"$ export OPENAI_BASE_URL=http://127.0.0.1:{SHOWN_PORT}/v1 OPENAI_API_KEY=rehearsal")
            top.run("slotgen init ws", keep=0)
            top.lines[-1] = "$ slotgen init ws && cd ws"
            s = Session(Path(tmp) / "ws", env, port)
            s.lines = top.lines
            s.run("slotgen next --env staging")
            s.run(f"slotgen set --env staging SLOTGEN_AI_KILL=true --decision-record {DR} --operator owner "
                  "--key demo-keys/owner --yes")
            s.run(f"slotgen set --env staging SLOTGEN_AI_KILL=false --decision-record {DR} --operator owner "
                  "--key demo-keys/owner --yes", expect=3)
            s.note("$ echo $?")
            s.note("3")
            s.run(f"slotgen set --env staging FEATURE_SLOTGEN_AI=true --decision-record {DR} --operator oncall "
                  "--key demo-keys/oncall --yes")
            s.run(f"slotgen set --env staging SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json "
                  f"--decision-record {DR} --operator owner --key demo-keys/owner --yes")
            s.run("slotgen plan --env staging")
            out = s.run(f"slotgen approve --env staging SLOTGEN_AI_ROLLOUT_PERCENT=1 --decision-record {DR} "
                        "--operator approver --key demo-keys/approver --yes")
            apv = re.search(r"approval id: (\S+)", out).group(1)
            s.run(f"slotgen set --env staging SLOTGEN_AI_ROLLOUT_PERCENT=1 --decision-record {DR} --approval {apv} "
                  "--operator oncall --key demo-keys/oncall --yes")
            s.run(f"slotgen verify --env staging --decision-record {DR} --operator oncall --key demo-keys/oncall")
            s.run(f"slotgen set --env staging SLOTGEN_AI_KILL=false --decision-record {DR} --operator owner "
                  "--key demo-keys/owner --yes")
            out = s.run(f"slotgen approve --env staging SLOTGEN_AI_ROLLOUT_PERCENT=5 --decision-record {DR} "
                        "--operator approver --key demo-keys/approver --yes")
            apv = re.search(r"approval id: (\S+)", out).group(1)
            s.run(f"slotgen set --env staging SLOTGEN_AI_ROLLOUT_PERCENT=5 --decision-record {DR} --approval {apv} "
                  "--operator oncall --key demo-keys/oncall --yes")
            s.run("slotgen next --env staging")
            blocks["walk"] = s.lines

            f = Session(s.cwd, env, port)
            _set_mode(port, "http500")
            f.run(f"slotgen verify --env staging --decision-record {DR} --operator oncall --key demo-keys/oncall",
                  expect=1)
            _set_mode(port, "ok")
            f.run("slotgen next --env staging")
            f.run("slotgen audit verify --env staging")
            blocks["failed-check"] = f.lines

            r = Session(s.cwd, env, port)
            r.run("slotgen rollback --env staging --reason 'error rate' --operator oncall --key demo-keys/oncall")
            r.run("slotgen next --env staging")
            r.run("slotgen set --env staging SLOTGEN_AI_ROLLOUT_PERCENT=1 --decision-record DR-1002 "
                  "--operator oncall --key demo-keys/oncall --yes")
            blocks["rollback"] = r.lines

            v = Session(s.cwd, env, port)
            v.run("slotgen status")
            v.run("slotgen audit show --env staging --since 1h")
            v.run("slotgen audit report --env staging --output ../staging-review.html")
            blocks["review"] = v.lines
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return blocks


def _set_mode(port: int, mode: str) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/_mode", data=json.dumps({"mode": mode}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
        answer.read()


def render(text: str, blocks: dict[str, list[str]]) -> str:
    for name, lines in blocks.items():
        pattern = re.compile(rf"(<!-- walkthrough:{name} -->\n```console\n).*?(\n```\n<!-- /walkthrough:{name} -->)",
                             re.S)
        if not pattern.search(text):
            raise SystemExit(f"walkthrough: README has no <!-- walkthrough:{name} --> block")
        text = pattern.sub(lambda m: m.group(1) + "\n".join(lines) + m.group(2), text)
    return text


VOLATILE = [
    (re.compile(r"apv-[0-9a-f]+"), "apv-…"),
    (re.compile(r"\d+(\.\d+)? ms"), "… ms"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?Z?"), "TIME"),
    (re.compile(r"\b\d{4}-\d\d-\d\d\b"), "DATE"),  # a date wrapped away from its time (a run past midnight)
    (re.compile(r"in \d+(\.\d+)? s\b"), "in … s"),
    (re.compile(r"walkthrough-\w+"), "walkthrough-…"),
    (re.compile(r"\b\d\d:\d\d:\d\d(\.\d+)?Z?"), "HH:MM:SS"),  # a time wrapped onto its own line
    (re.compile(r"(key:? )[A-Za-z0-9+/]{8,}"), r"\1KEY"),  # each run's rehearsal keys are new
    (re.compile(r"SHA256:[A-Za-z0-9+/]+"), "SHA256:KEY"),
    (re.compile(r"(?<=│ )[A-Za-z0-9+/]{12}(?=\s)"), "KEY"),  # a key's first 12 characters, wrapped into a cell
]


def masked(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def matches(current: str, fresh: str) -> bool:
    """Equal once volatile values are masked. A line that wraps at another word, because a timing took more
    digits on a slower machine, still matches: the words must be the same, the line breaks may differ."""
    a, b = masked(current), masked(fresh)
    return a == b or a.split() == b.split()


def main(argv: list[str]) -> int:
    current = README.read_text(encoding="utf-8")
    fresh = render(current, generate())
    if "--check" in argv:
        if matches(current, fresh):
            print("README walk-through matches a fresh run")
            return 0
        diff = difflib.unified_diff(masked(current).splitlines(), masked(fresh).splitlines(), "README.md",
                                    "a fresh run", lineterm="")
        print("\n".join(diff))
        return 1
    README.write_text(fresh, encoding="utf-8")
    print("README walk-through regenerated from a fresh run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
