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
