"""The grammar's verdicts name the line and the exact byte, in words an operator can act on (SPEC section 14).

Pinned here so that a message or an offset that drifts is seen: `status` prints them, and an operator goes to
that byte with an editor.
"""

from __future__ import annotations

import pytest

from slotgen_ops.files.envgrammar import GrammarError, parse, value_problem


def verdict(raw: bytes) -> tuple[int, int, str]:
    with pytest.raises(GrammarError) as err:
        parse(raw)
    return err.value.line, err.value.offset, err.value.what


@pytest.mark.parametrize("name, offset", [
    (b"AZ", 0), (b"A0", 0), (b"A9", 0), (b"A_", 0),           # every byte a name may hold: the line's start
    (b"A[", 1), (b"A@", 1), (b"A:", 1), (b"A/", 1), (b"Aa", 1),  # the first byte no name may hold
])
def test_an_unknown_name_points_at_its_first_impossible_byte(name, offset):
    line, at, what = verdict(b"SLOTGEN_AI_KILL=true\n" + name + b"=1\n")
    assert (line, at) == (2, len(b"SLOTGEN_AI_KILL=true\n") + offset)
    assert what.endswith("is not a runtime control")


def test_a_line_without_equals_names_the_quote_in_it():
    assert verdict(b"SLOTGEN_AI_KILL=true\nAB\"C\n") == (2, 23, "not a NAME=VALUE line (byte '\"')")
    assert verdict(b"ABC\n") == (1, 0, "not a NAME=VALUE line")
    assert verdict(b"AXB\n") == (1, 0, "not a NAME=VALUE line")  # letters are no reason


def test_an_empty_first_line_is_a_line_not_a_missing_newline():
    assert verdict(b"\n") == (1, 0, "not a NAME=VALUE line")


def test_a_foreign_comment_names_its_first_control_byte():
    assert verdict(b"# x\ry\n") == (1, 3, "a comment slotgen did not write (byte '\\r')")
    assert verdict(b"# plain note\n") == (1, 0, "a comment slotgen did not write")


@pytest.mark.parametrize("byte, shown", [
    (b" ", "' '"), (b"!", "'!'"), (b"~", "'~'"), (b"\x7f", "0x7f"), (b"\x1f", "0x1f"), (b"\r", "'\\r'"),
    (b"\\", "'\\\\' (backslash)"),
])
def test_a_byte_outside_a_value_is_shown_as_an_operator_reads_it(byte, shown):
    line, at, what = verdict(b"SLOTGEN_AI_KILL=t" + byte + b"\n")
    assert (line, at) == (1, 17)
    assert what == f"{shown} is not allowed in a value (only A-Z a-z 0-9 . _ / + -)"


def test_value_problem_words():
    assert value_problem("a b") == ("character ' ' at position 1 is not allowed in a control value "
                                    "(only A-Z a-z 0-9 . _ / + -)")
    assert value_problem(5) == "a control value must be text, not int"
    assert value_problem(None) is None and value_problem("") is None
    assert value_problem("allowlists/a-b_c+1.v1.json") is None


def test_the_head_is_read_as_numbers_and_hex():
    from slotgen_ops.changes.controls_file import render_controls
    from slotgen_ops.runbook.state import SAFE_CONTROLS

    parsed = parse(render_controls("staging", SAFE_CONTROLS, 12, "0a" * 32))
    assert parsed.head == (12, "0a" * 32)
    assert parsed.values["SLOTGEN_AI_ALLOWLIST_PATH"] is None and parsed.values["SLOTGEN_AI_KILL"] == "true"
