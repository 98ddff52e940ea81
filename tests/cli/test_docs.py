"""Every command has help text and appears in the README (the sqlite-utils habit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from slotgen_ops.cli.app import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _commands():
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield f"{name} {sub}", command.commands[sub]
        else:
            yield name, command


@pytest.mark.parametrize("name, command", list(_commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_and_is_documented(name, command):
    assert command.help and command.help.strip(), f"{name} has no help text"
    assert f"slotgen {name}" in README, f"README does not mention 'slotgen {name}'"


@pytest.mark.parametrize("name, command", list(_commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_command_help_has_an_example_and_no_type_placeholders(name, command):
    """Help an operator can copy from: a runnable example, and no '<bool>'/'<list[str]>' noise (a flag that
    looks like it takes a value is a misuse waiting to happen)."""
    from .helpers import slotgen

    run = slotgen(*name.split(), "--help")
    assert run.code == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert f"Example: slotgen {name}" in text, f"'slotgen {name} --help' has no example:\n{run.stdout}"
    for placeholder in ("<bool>", "<str>", "<list[str]>", "<int>", "<path>", "<float>"):
        assert placeholder not in text, f"'slotgen {name} --help' shows {placeholder}"


def test_shell_completion_is_offered_and_works():
    from .helpers import clean_env, command
    import subprocess

    # Run from a real bash, as an operator would: the shell is detected from the process's ancestors.
    shown = subprocess.run(["bash", "-c", 'exec "$@" | cat', "bash", *command("--show-completion")],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
    assert shown.returncode == 0 and "_SLOTGEN_COMPLETE" in shown.stdout, shown.stderr
    done = subprocess.run(command(), capture_output=True, text=True, timeout=60,
                          env=clean_env({"_SLOTGEN_COMPLETE": "complete_bash", "COMP_WORDS": "slotgen audit sh",
                                         "COMP_CWORD": "2"}))
    assert done.stdout.split() == ["show"], (done.stdout, done.stderr)
