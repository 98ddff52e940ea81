"""SPEC section 11: recorded text never reaches a terminal as control characters or escape sequences.

A nasty corpus (ANSI CSI, OSC 8 hyperlinks, OSC title, C1 controls, bidi overrides, zero-width characters,
Rich markup) goes into every text field the CLI lets anyone record (a rollback reason, an unknown operator's
name, a refused value, a policy file's name) and into every field of entries appended below the CLI. Then
every human output is read back, piped and on a real pty with colour on: no corpus sequence survives, the
text is there escaped, and Rich markup in it was not obeyed.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotgen_ops.cli.safe import DANGEROUS, SafeConsole, escape, visible

from .helpers import clean_env, command, slotgen

CORPUS = [
    "\x1b[2K\x1b[1Gapprover approve SLOTGEN_AI_KILL=false",  # erase the line, redraw a fake row
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]0;owned title\x07",  # OSC window title, BEL-terminated
    "\x9b31mC1-CSI\x9d0;t\x9c",  # C1 CSI / OSC / ST
    "\u202eevil\u202c\u2066iso\u2069",  # bidi override and isolate
    "zero\u200bwidth\ufeffbom",
    "[bold red]FAKE[/bold red][link=https://evil.example]x[/link]",  # Rich markup
    "back\bspace\rreturn\x00nul\x7fdel",
]
#: Sequences that must never reach the terminal as bytes (each corpus item's active parts).
FORBIDDEN = ["\x1b[2K", "\x1b[1G", "\x1b]8;;https://evil", "\x1b]0;", "\x07", "\x9b", "\x9d", "\x9c", "\u202e",
             "\u2066", "\u200b", "\ufeff", "\b", "\x00", "\x7f"]
#: ... and what an operator sees instead.
SHOWN = ["\\x1b[2K", "\\x1b]8;;https://evil.example/", "\\x9b31mC1-CSI", "\\u202eevil", "zero\\u200bwidth",
         "[bold red]FAKE[/bold red]"]


# -- the gate itself -----------------------------------------------------------------------------------------


@given(st.text())
def test_visible_text_carries_no_dangerous_character(text):
    shown = visible(text)
    assert DANGEROUS.search(shown) is None
    if DANGEROUS.search(text) is None:
        assert shown == text  # safe text is shown unchanged


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_escaped_text_prints_as_itself(text):
    out = SafeConsole(width=10_000, color_system=None, highlight=False, force_terminal=False, soft_wrap=True)
    with out.capture() as captured:
        out.print(escape(text), end="")
    expected = visible(text)
    if expected.endswith("\\") and not expected.endswith("\\\\"):
        expected += "\\"  # Rich doubles a lone trailing backslash so that it cannot escape markup that follows
    assert captured.get() == expected  # Rich obeyed no markup in it and dropped nothing


@pytest.mark.parametrize("nasty", CORPUS)
def test_the_console_strips_what_escape_was_forgotten_on(nasty):
    """The net under the gate: text given to Rich without escape() still loses its control characters."""
    out = SafeConsole(width=200, color_system="truecolor", force_terminal=True, highlight=False)
    with out.capture() as captured:
        out.print("[bold]row:[/] " + nasty.replace("[", "\\["))
    text = captured.get()
    for seq in FORBIDDEN:
        assert seq not in text, (seq, text)
    assert "\x1b[1m" in text  # Rich's own styling is untouched


# -- through the real CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nasty_ws(tmp_path_factory):
    """A workspace whose log and files carry the corpus everywhere a user can put text."""
    root = tmp_path_factory.mktemp("nasty") / "ws"
    assert slotgen("init", str(root)).code == 0

    def run(*args: str):
        return slotgen(*args, "--workspace", str(root), cwd=root)

    for text in (item.replace("\x00", "") for item in CORPUS):  # an argv cannot hold NUL; the log below can
        assert run("rollback", "--env", "staging", "--reason", text, "--operator", "oncall").code == 0
        refused = run("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1",
                      "--operator", text, "--yes", "--key", "demo-keys/oncall")
        assert refused.code == 3, refused.stderr
    refused = run("set", "--env", "staging", "SLOTGEN_AI_ALLOWLIST_PATH=" + CORPUS[0], "--decision-record", "DR-2",
                  "--operator", "oncall", "--yes")
    assert refused.code in (2, 3), refused.stderr
    # A policy file whose very name is hostile: status names drifted files.
    (root / "allowlists" / ("x" + CORPUS[0].replace("/", "") + ".json")).write_text("{}")
    _append_below_the_cli(root / "environments" / "production.audit.jsonl")
    return root


def _append_below_the_cli(log_path: Path) -> None:
    """Entries whose every text field is hostile (what a forged or foreign log can hold)."""
    from slotgen_ops.audit.log import AuditLog
    from slotgen_ops.audit.review import AUDIT_FIELDS

    log = AuditLog(log_path)
    with log.locked():
        for text in CORPUS:
            fields = {name: text for name in AUDIT_FIELDS if name not in ("seq", "ts", "prevHash", "hash", "signature")}
            fields.update(env="production", roles=[text], actor={"id": text, "identity": text, "key": text},
                          verification={"passed": False, "checks": [{"name": text, "passed": False, "detail": text}]},
                          details={"problem": text})
            log.append(fields)


HUMAN_COMMANDS = [
    ("audit", "show", "--env", "staging"),
    ("audit", "show", "--env", "production"),
    ("audit", "verify", "--env", "production"),
    ("status", "--env", "staging"),
    ("status", "--env", "production"),
    ("status",),
    ("next", "--env", "staging"),
    ("config", "status"),
    ("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-3", "--operator",
     CORPUS[0], "--yes"),
    ("rollback", "--env", "staging", "--reason", CORPUS[3], "--operator", "oncall"),
]


def _assert_safe(text: str, where: str) -> None:
    for seq in FORBIDDEN:
        assert seq not in text, f"{where}: {seq!r} reached the terminal:\n{text[:3000]!r}"
    assert "FAKE" not in text or "[bold red]FAKE" in text, f"{where}: Rich markup from the log was obeyed"


@pytest.mark.parametrize("args", HUMAN_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_piped_human_output_shows_recorded_text_escaped(nasty_ws, args):
    run = slotgen(*args, "--workspace", str(nasty_ws), cwd=nasty_ws, env={"COLUMNS": "400"})
    assert "Traceback" not in run.stderr
    for stream, name in ((run.stdout, "stdout"), (run.stderr, "stderr")):
        _assert_safe(stream, f"{' '.join(args)} {name}")
        assert DANGEROUS.search(stream.replace("\n", "")) is None, (name, stream[:2000])


def test_the_corpus_is_shown_not_dropped(nasty_ws):
    run = slotgen("audit", "show", "--env", "production", "--workspace", str(nasty_ws), cwd=nasty_ws,
                  env={"COLUMNS": "4000"})
    flat = " ".join(run.stdout.split())
    for shown in SHOWN:
        assert " ".join(shown.split()) in flat, shown


def _on_a_pty(args: tuple[str, ...], cwd: Path) -> str:
    """Run the real CLI with stdout and stderr on a pty, colour on, and return everything it wrote."""
    env = clean_env({"TERM": "xterm-256color", "COLUMNS": "200", "LINES": "10000"})
    env.pop("NO_COLOR", None)
    env["FORCE_COLOR"] = "1"
    parent, child = pty.openpty()
    proc = subprocess.Popen(command(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=child,
                            stderr=child, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([parent], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError(f"{args}: no output for 60 s")
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(parent)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("args", HUMAN_COMMANDS[:8], ids=lambda a: " ".join(a[:3]))
def test_on_a_terminal_with_colour_no_recorded_sequence_gets_through(nasty_ws, args):
    text = _on_a_pty((*args, "--workspace", str(nasty_ws)), nasty_ws)
    assert "Traceback" not in text
    _assert_safe(text, " ".join(args))
    if args[:2] == ("audit", "show"):
        assert "\x1b[" in text  # the terminal did get Rich's own colours: the check above is not vacuous


def test_python_none_never_shows(nasty_ws):
    for args in HUMAN_COMMANDS[:8]:
        run = slotgen(*args, "--workspace", str(nasty_ws), cwd=nasty_ws)
        assert "None" not in run.stdout + run.stderr.replace("None of", ""), (args, run.stdout, run.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# -- the confirmation prompt says what is approved, and which step exposes jobs ---------------------------------


def _prompted(args: tuple[str, ...], cwd: Path, answer: bytes, env: dict[str, str]) -> tuple[str, int]:
    """Run the real CLI with stdin, stdout and stderr on one pty; answer its prompt; return what it showed."""
    full = clean_env({"TERM": "dumb", "COLUMNS": "200", **env})
    parent, child = pty.openpty()
    proc = subprocess.Popen(command(*args), cwd=cwd, env=full, stdin=child, stdout=child, stderr=child,
                            close_fds=True)
    os.close(child)
    seen = b""
    answered = False
    while True:
        ready, _, _ = select.select([parent], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError(f"{args}: silent for 120 s; so far {seen!r}")
        try:
            data = os.read(parent, 65536)
        except OSError:
            break
        if not data:
            break
        seen += data
        if not answered and b"[y/N]" in seen:
            os.write(parent, answer + b"\n")
            answered = True
    code = proc.wait(timeout=60)
    os.close(parent)
    return seen.decode("utf-8", "replace").replace("\r\n", "\n"), code


@pytest.fixture
def at_step_six(tmp_path, endpoint):
    from tests.walked import walk

    root = tmp_path / "ws"
    walk(root, 5, endpoint.base_url)
    return root


def test_the_approval_prompt_says_what_is_approved_and_that_it_exposes_jobs(at_step_six):
    root = at_step_six
    log = root / "environments" / "staging.audit.jsonl"
    before = log.read_bytes()
    text, code = _prompted(("approve", "--env", "staging", "SLOTGEN_AI_KILL=false", "--decision-record", "DR-7",
                            "--operator", "approver", "--workspace", str(root)), root, b"n",
                           {"SLOTGEN_SIGNING_KEY": str(root / "demo-keys" / "approver")})
    assert code == 3, text  # declined: nothing recorded
    assert "APPROVAL in staging: you approve SLOTGEN_AI_KILL=false (now true)" in text, text
    assert "Record this approval?" in text and "Apply this change?" not in text
    head = text.split("Record this approval?")[0]
    import re

    exposure = re.search(r"exposure: (\d+) of (\d+) sample jobs take the OpenAI path \(now 0\)", head)
    assert exposure and int(exposure.group(1)) > 0, head
    assert f"THIS IS THE STEP THAT EXPOSES JOBS: {exposure.group(1)} more sample job(s)" in head
    assert log.read_bytes() == before, "a declined prompt records nothing"


def test_a_harmless_step_prompt_names_the_step_and_does_not_claim_exposure(tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    text, code = _prompted(("set", "--env", "staging", "SLOTGEN_AI_KILL=true", "--decision-record", "DR-1",
                            "--operator", "owner", "--workspace", str(root)), root, b"y",
                           {"SLOTGEN_SIGNING_KEY": str(root / "demo-keys" / "owner")})
    assert code == 0, text
    assert "step kill-switch-on in staging: SLOTGEN_AI_KILL: true -> true" in text, text
    assert "Apply step kill-switch-on to staging? [y/N]" in text
    assert "exposure: 0 of" in text and "EXPOSES" not in text
