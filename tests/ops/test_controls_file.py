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
def test_a_value_with_a_separator_is_a_hand_edit_named_by_line_and_byte(tmp_path, sep):
    # SPEC section 14: slotgen reads it as one value, but systemd splits a line on "\r" too; no file holding
    # such a byte is ever taken for controls, whoever would read it which way.
    bad = f"allowlists/a.json{sep}SLOTGEN_AI_KILL=false"
    path = tmp_path / "staging.env"
    clean = render_controls("staging", dict(SAFE_CONTROLS), 1, "0" * 64)
    path.write_bytes(clean.replace(f"{ALLOWLIST_VAR}=\n".encode(), f"{ALLOWLIST_VAR}={bad}\n".encode()))
    assert runtime_values(path.read_bytes())[KILL_VAR] == "true"  # slotgen's own reading: not a second line
    offset = path.read_bytes().index(f"{ALLOWLIST_VAR}=".encode()) + len(ALLOWLIST_VAR) + 1 + len("allowlists/a.json")
    with pytest.raises(IntegrityFailure, match=rf"staging.env:8: .*, at byte {offset} \(hand edit\?\)"):
        parse_controls(path)


@pytest.mark.parametrize("sep", SEPARATORS + ["\n", "\\", '"'])
def test_a_value_outside_the_grammar_is_never_written(sep):
    values = {**SAFE_CONTROLS, ALLOWLIST_VAR: f"allowlists/a.json{sep}SLOTGEN_AI_KILL=false"}
    with pytest.raises(IntegrityFailure, match=f"{ALLOWLIST_VAR}: .* not allowed in a control value"):
        render_controls("staging", values, 1, "0" * 64)


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
