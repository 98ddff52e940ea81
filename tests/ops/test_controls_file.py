"""The controls file is read exactly as systemd's EnvironmentFile= and docker --env-file read it."""

from __future__ import annotations

import pytest

from slotgen_ops.contract import ALLOWLIST_VAR, KILL_VAR
from slotgen_ops.errors import BadInput, IntegrityFailure
from slotgen_ops.ops.controls_file import parse_controls, render_controls, runtime_lines, runtime_values
from slotgen_ops.ops.runbook import normalise_value
from slotgen_ops.ops.state import SAFE_CONTROLS

SEPARATORS = ["\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\x0b", "\x0c"]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_lines_split_on_newline_only(sep):
    text = f"A=1{sep}B=2\nC=3\n"
    assert runtime_lines(text) == [f"A=1{sep}B=2", "C=3"]
    assert len(text.splitlines()) > 2  # what the old parser did: another reading than the runtime's


@pytest.mark.parametrize("sep", SEPARATORS)
def test_a_value_with_a_separator_is_one_value_to_slotgen_as_to_the_runtime(tmp_path, sep):
    values = {**SAFE_CONTROLS, ALLOWLIST_VAR: f"allowlists/a.json{sep}SLOTGEN_AI_KILL=false"}
    path = tmp_path / "staging.env"
    path.write_bytes(render_controls("staging", values, 1, "0" * 64))
    assert runtime_values(path.read_bytes())[KILL_VAR] == "true"  # not smuggled in as a second line
    assert parse_controls(path).values[ALLOWLIST_VAR] == values[ALLOWLIST_VAR]


@pytest.mark.parametrize("sep", SEPARATORS + ["\n", " ", '"', "'", "\\", "$", "\x00", "\x7f", "é"])
def test_set_refuses_an_allowlist_path_any_reader_could_read_differently(sep):
    with pytest.raises(BadInput, match="read the same path"):
        normalise_value(ALLOWLIST_VAR, f"allowlists/a{sep}b.json")


def test_ordinary_paths_and_unset_are_accepted():
    assert normalise_value(ALLOWLIST_VAR, " allowlists/slot-generation-allowlist.v1.json ") == \
        "allowlists/slot-generation-allowlist.v1.json"
    assert normalise_value(ALLOWLIST_VAR, "") == ""


def test_later_assignments_win_for_the_runtime_and_are_refused_by_slotgen(tmp_path):
    path = tmp_path / "staging.env"
    path.write_bytes(render_controls("staging", dict(SAFE_CONTROLS), 1, "0" * 64) + b"SLOTGEN_AI_KILL=false\n")
    assert runtime_values(path.read_bytes())[KILL_VAR] == "false"
    with pytest.raises(IntegrityFailure, match="set twice"):
        parse_controls(path)
