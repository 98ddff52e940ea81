"""The one byte grammar of a controls file (SPEC section 14), rule by rule, and its argument.

The argument: whatever bytes the grammar accepts, systemd's own parser, docker's --env-file rules and
slotgen read the same four controls (tests/envfile_oracle.py holds the three readers). The property tests
try it on bytes built from valid lines mixed with the bytes the readers treat differently.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envfile_oracle as oracle
from slotgen_ops.contract import CONTROL_VARS, KILL_VAR, kill_switch_engaged
from slotgen_ops.files import envgrammar
from slotgen_ops.files.envgrammar import MAX_BYTES, GrammarError, check_value, parse, problem, value_problem

DIGEST = "ab" * 32
HEADER = (b"# slotgen runtime controls for environment 'prod'.\n"
          b"# Written by slotgen; do not edit by hand: an edit is detected and blocks every change.\n"
          b"# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset.\n"
          b"# slotgen-head: seq=7 hash=" + DIGEST.encode() + b"\n")
KILL_LINE = b"SLOTGEN_AI_KILL=true\n"
BODY = (KILL_LINE + b"FEATURE_SLOTGEN_AI=false\n" + b"SLOTGEN_AI_ROLLOUT_PERCENT=0\n"
        + b"SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json\n")
GOOD = HEADER + BODY


def rejected(raw: bytes) -> GrammarError:
    with pytest.raises(GrammarError) as info:
        parse(raw)
    assert problem(raw) == str(info.value)
    assert str(info.value) == f"line {info.value.line}, byte {info.value.offset}: {info.value.what}"
    return info.value


# ------------------------------------------------------------------------------------- what it accepts

def test_the_file_slotgen_writes_is_accepted_with_its_values_and_head():
    parsed = parse(GOOD)
    assert parsed.values == {"SLOTGEN_AI_KILL": "true", "FEATURE_SLOTGEN_AI": "false",
                             "SLOTGEN_AI_ROLLOUT_PERCENT": "0",
                             "SLOTGEN_AI_ALLOWLIST_PATH": "allowlists/slot-generation-allowlist.v1.json"}
    assert parsed.head == (7, DIGEST)
    assert problem(GOOD) is None


def test_render_controls_output_is_accepted():
    from slotgen_ops.changes.controls_file import render_controls

    raw = render_controls("stage-2", {KILL_VAR: "true", "FEATURE_SLOTGEN_AI": None}, 12, DIGEST)
    parsed = parse(raw)
    assert parsed.head == (12, DIGEST)
    assert parsed.values[KILL_VAR] == "true"
    assert parsed.values["FEATURE_SLOTGEN_AI"] is None


def test_an_empty_value_is_accepted_as_present_and_unset():
    parsed = parse(b"SLOTGEN_AI_ALLOWLIST_PATH=\n")
    assert parsed.values == {"SLOTGEN_AI_ALLOWLIST_PATH": None}
    assert parsed.head is None


def test_every_value_byte_of_the_grammar_is_accepted():
    value = (string.ascii_letters + string.digits + "._/+-").encode()
    assert parse(b"SLOTGEN_AI_ALLOWLIST_PATH=" + value + b"\n").values == {
        "SLOTGEN_AI_ALLOWLIST_PATH": value.decode()}


def test_empty_bytes_hold_no_control_and_no_head():
    assert parse(b"") == envgrammar.Parsed(values={}, head=None)


def test_a_file_of_exactly_max_bytes_is_accepted_one_more_is_not():
    prefix = b"SLOTGEN_AI_ALLOWLIST_PATH="
    raw = prefix + b"a" * (MAX_BYTES - len(prefix) - 1) + b"\n"
    assert len(raw) == MAX_BYTES
    assert parse(raw).values["SLOTGEN_AI_ALLOWLIST_PATH"] == "a" * (MAX_BYTES - len(prefix) - 1)
    err = rejected(raw + b"\n")
    assert (err.line, err.offset) == (2, MAX_BYTES)  # byte 4096 is the first of line 2
    assert f"over {MAX_BYTES} bytes ({MAX_BYTES + 1})" in err.what


def test_a_head_of_18_digits_is_accepted_19_are_not():
    first = HEADER[:HEADER.index(b"# slotgen-head")]
    assert parse(first + b"# slotgen-head: seq=" + b"9" * 18 + b" hash=" + DIGEST.encode() + b"\n").head == (
        10 ** 18 - 1, DIGEST)
    err = rejected(first + b"# slotgen-head: seq=" + b"9" * 19 + b" hash=" + DIGEST.encode() + b"\n")
    assert (err.line, err.offset) == (4, len(first))


def test_the_header_comes_first_in_order_once():
    lines = HEADER.split(b"\n")[:-1]
    err = rejected(lines[1] + b"\n" + lines[0] + b"\n" + BODY)
    assert (err.line, err.what) == (1, "slotgen's header lines come first, once each, in the order slotgen writes them")
    assert rejected(BODY + HEADER).line == 5
    assert rejected(HEADER.replace(b"seq=7 ", b"seq=07 ") + BODY).line == 4
    assert parse(b"\n".join(lines[:2]) + b"\n" + BODY).head is None  # a prefix of it is still its order


# ------------------------------------------------------------------------------- each rule, line and byte

def test_carriage_return_in_a_value():
    err = rejected(b"SLOTGEN_AI_KILL=true\r\n")
    assert (err.line, err.offset) == (1, 20)
    assert "'\\r'" in err.what


def test_carriage_return_hiding_an_assignment_after_the_header():
    raw = HEADER + KILL_LINE + b"SLOTGEN_AI_ALLOWLIST_PATH=a.json\rSLOTGEN_AI_KILL=false\n"
    err = rejected(raw)
    assert (err.line, err.offset) == (6, len(HEADER) + len(KILL_LINE) + len(b"SLOTGEN_AI_ALLOWLIST_PATH=a.json"))


def test_carriage_return_in_a_comment():
    err = rejected(b"# slotgen-head: seq=7 hash=" + DIGEST.encode() + b"\r\n")
    assert (err.line, err.offset) == (1, 27 + 64)
    assert "'\\r'" in err.what


def test_backslash_in_a_value():
    err = rejected(b"SLOTGEN_AI_ALLOWLIST_PATH=a\\b\n")
    assert (err.line, err.offset) == (1, 27)
    assert "backslash" in err.what


def test_backslash_ending_a_foreign_comment_just_above_the_kill_switch():
    err = rejected(b"# note \\\n" + KILL_LINE)
    assert (err.line, err.offset) == (1, 7)
    assert "backslash" in err.what


def test_backslash_ending_a_header_comment():
    raw = b"# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset.\\\n" + KILL_LINE
    err = rejected(raw)
    assert (err.line, err.offset) == (1, raw.index(b"\\"))


def test_backslash_at_the_end_of_the_last_value():
    err = rejected(HEADER + b"SLOTGEN_AI_KILL=true\\\n")
    assert (err.line, err.offset) == (5, len(HEADER) + 20)


@pytest.mark.parametrize("quoted, at", [(b'"true"', 16), (b"'true'", 16), (b'tr"ue', 18), (b"true'", 20)])
def test_quotes_in_a_value(quoted, at):
    err = rejected(b"SLOTGEN_AI_KILL=" + quoted + b"\n")
    assert (err.line, err.offset) == (1, at)
    assert "not allowed in a value" in err.what


def test_blank_before_the_equals_sign():
    err = rejected(b"SLOTGEN_AI_KILL =true\n")
    assert (err.line, err.offset) == (1, 15)
    assert "is not a runtime control" in err.what


def test_blank_after_the_equals_sign():
    err = rejected(b"SLOTGEN_AI_KILL= true\n")
    assert (err.line, err.offset) == (1, 16)


def test_blank_at_the_end_of_a_value():
    err = rejected(b"SLOTGEN_AI_KILL=true \n")
    assert (err.line, err.offset) == (1, 20)


def test_tab_and_leading_blank_before_a_name():
    assert (rejected(b"\tSLOTGEN_AI_KILL=true\n").offset, rejected(b" SLOTGEN_AI_KILL=true\n").offset) == (0, 0)


def test_a_second_assignment_names_the_second_line():
    err = rejected(HEADER + KILL_LINE + b"SLOTGEN_AI_KILL=false\n")
    assert (err.line, err.offset) == (6, len(HEADER) + len(KILL_LINE))
    assert err.what == "SLOTGEN_AI_KILL is set twice"


def test_a_second_head_line():
    err = rejected(HEADER + b"# slotgen-head: seq=8 hash=" + DIGEST.encode() + b"\n")
    assert (err.line, err.offset) == (5, len(HEADER))
    assert "come first, once each" in err.what


def test_an_unknown_name():
    err = rejected(KILL_LINE + b"SLOTGEN_AI_KILLED=false\n")
    assert (err.line, err.offset) == (2, len(KILL_LINE))
    assert err.what == "'SLOTGEN_AI_KILLED' is not a runtime control"


def test_a_lower_case_name_and_an_export_prefix():
    assert rejected(b"slotgen_ai_kill=true\n").offset == 0
    err = rejected(b"export SLOTGEN_AI_KILL=true\n")
    assert (err.line, err.offset) == (1, 0)


def test_a_line_without_equals_sign():
    err = rejected(KILL_LINE + b"SLOTGEN_AI_KILL\n")
    assert (err.line, err.offset) == (2, len(KILL_LINE))
    assert err.what == "not a NAME=VALUE line"


def test_an_empty_line():
    err = rejected(HEADER + b"\n" + BODY)
    assert (err.line, err.offset) == (5, len(HEADER))
    assert err.what == "not a NAME=VALUE line"


@pytest.mark.parametrize("comment", [b"# hand edit", b"#", b";SLOTGEN_AI_KILL=true", b"#SLOTGEN_AI_KILL=true",
                                     b"# slotgen runtime controls for environment 'PROD'.",
                                     b"# Written by slotgen; do not edit by hand."])
def test_a_foreign_comment(comment):
    err = rejected(comment + b"\n" + KILL_LINE)
    assert (err.line, err.offset) == (1, 0)


def test_a_foreign_comment_names_its_first_bad_byte():
    err = rejected(KILL_LINE + b"# caf\xc3\xa9\n")
    assert (err.line, err.offset) == (2, len(KILL_LINE) + 5)
    assert "0xc3" in err.what


def test_no_final_newline():
    err = rejected(b"SLOTGEN_AI_KILL=true")
    assert (err.line, err.offset) == (1, 20)
    err = rejected(GOOD + b"FEATURE_SLOTGEN_AI=true")
    assert (err.line, err.offset) == (9, len(GOOD) + len(b"FEATURE_SLOTGEN_AI=true"))
    assert err.what == "the last line does not end with a newline"


def test_over_max_bytes_names_the_line_of_the_bound():
    raw = KILL_LINE * 200  # 4200 bytes; the first byte past the bound is on line 196
    err = rejected(raw)
    assert (err.line, err.offset) == (1 + MAX_BYTES // len(KILL_LINE), MAX_BYTES)


def test_non_ascii_in_a_value_in_a_name_and_a_byte_order_mark():
    err = rejected(b"SLOTGEN_AI_ALLOWLIST_PATH=caf\xc3\xa9.json\n")
    assert (err.line, err.offset) == (1, 29)
    assert "0xc3" in err.what
    assert rejected(b"SLOTGEN_AI_K\xc3\x8dLL=true\n").offset == 12
    err = rejected(b"\xef\xbb\xbf" + KILL_LINE)
    assert (err.line, err.offset) == (1, 0)


def test_nul_and_other_control_bytes():
    err = rejected(b"SLOTGEN_AI_KILL=true\x00\n")
    assert (err.line, err.offset) == (1, 20)
    assert "0x00" in err.what
    assert rejected(b"SLOTGEN_AI_KILL=tr\x0bue\n").offset == 18
    assert rejected(b"# x\x7f\n").offset == 3


@pytest.mark.parametrize("char", list("$#`;=,:!*?()[]{}<>|&~@%^ \t\"'\\"))
def test_shell_and_comment_characters_in_a_value(char):
    err = rejected(b"SLOTGEN_AI_ALLOWLIST_PATH=a" + char.encode() + b"b\n")
    assert (err.line, err.offset) == (1, 27)


def test_the_byte_offset_counts_bytes_not_characters():
    err = rejected(b"# caf\xc3\xa9\n")  # the comment's own first bad byte
    assert err.offset == 5
    err = rejected(KILL_LINE + b"FEATURE_SLOTGEN_AI=\xc3\xa9\xc3\xa9\n")
    assert err.offset == len(KILL_LINE) + len(b"FEATURE_SLOTGEN_AI=")


# ---------------------------------------------------------------------------------- value_problem, check

@pytest.mark.parametrize("value", [None, "", "true", "0", "100", "allowlists/a-b_c.v1+x.json"])
def test_value_problem_accepts_grammar_values(value):
    assert value_problem(value) is None
    check_value(KILL_VAR, value)


@pytest.mark.parametrize("value, position", [("tr ue", 2), ("true\r", 4), ("a\\b", 1), ('"x"', 0), ("é", 0),
                                             ("x\nSLOTGEN_AI_KILL=false", 1), ("$HOME", 0), ("a#b", 1),
                                             ("ab\ud800", 2)])
def test_value_problem_names_the_position(value, position):
    assert f"at position {position} " in value_problem(value)
    with pytest.raises(ValueError, match=f"^{KILL_VAR}: "):
        check_value(KILL_VAR, value)


def test_value_problem_rejects_what_is_not_text():
    assert "must be text" in value_problem(b"true")
    assert "must be text" in value_problem(1)


def test_check_value_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="not a runtime control"):
        check_value("PATH", "x")


# ------------------------------------------------------------------------ the argument, held to the readers

VALUE_CHARS = string.ascii_letters + string.digits + "._/+-"
HEADER_LINES = [line + b"\n" for line in HEADER.split(b"\n")[:-1]]
#: The bytes the readers treat differently, and some lines that only a hand edit would add.
HOSTILE = [b"\r", b"\\", b'"', b"'", b" ", b"\t", b"#", b";", b"$", b"=", b"\x00", b"\xc3\xa9", b"\xff",
           b"\xef\xbb\xbf", b"\n", b"\r\n", b"\\\n", b"export ", b"`", b"\x0b", b"\x0c", b"\xc2\x85", b"\xc2\xa0"]
FOREIGN_LINES = [b"# hand edit\n", b"; comment\n", b"\n", b"   \n", b"OTHER=1\n", b"SLOTGEN_AI_KILL\n",
                 b"export SLOTGEN_AI_KILL=false\n", b"SLOTGEN_AI_KILL=false\n", b"#SLOTGEN_AI_KILL=true\n",
                 b"# note \\\n", b"# x\rSLOTGEN_AI_KILL=false\n", b"#\\\n", b"# \"\n"]
#: What a hand edit or a database row may put inside a value.
VALUE_HOSTILE = [b"\r", b"\\", b'"', b"'", b" ", b"\t", b"#", b"$", b"\x00", b"\n", b"\r\n", b"\xc3\xa9", b"`",
                 b"\rSLOTGEN_AI_KILL=false", b"\nSLOTGEN_AI_KILL=false"]

plain_values = st.text(VALUE_CHARS, max_size=10).map(str.encode) | st.sampled_from(
    [b"true", b"false", b"TRUE", b"0", b"100", b"1", b"yes", b""])


@st.composite
def values(draw) -> bytes:
    """A value the grammar allows, or (one in three) one with hostile bytes inside it."""
    value = draw(plain_values)
    if draw(st.integers(0, 2)) == 0:
        at = draw(st.integers(0, len(value)))
        value = value[:at] + draw(st.sampled_from(VALUE_HOSTILE)) + value[at:]
    return value


assignments = st.lists(st.tuples(st.sampled_from(CONTROL_VARS), values()), unique_by=lambda t: t[0], max_size=4)


@st.composite
def hostile_files(draw) -> bytes:
    """Valid lines in any order, some values with a hostile byte, sometimes a foreign line, and sometimes
    hostile bytes spliced in anywhere, at the start of a line or before its newline (none of that in about
    half the examples, so that the grammar accepts often)."""
    lines = [name.encode() + b"=" + value + b"\n" for name, value in draw(assignments)]
    if draw(st.integers(0, 2)) == 0:
        lines.append(draw(st.sampled_from(FOREIGN_LINES)))
    lines = list(draw(st.permutations(lines)))
    header = HEADER_LINES[:draw(st.integers(0, len(HEADER_LINES)))]  # slotgen's header comes first...
    lines = header + lines
    if draw(st.integers(0, 3)) == 0:  # ...except in a hand edit that moves it
        lines = list(draw(st.permutations(lines)))
    splices = draw(st.integers(1, 3)) if draw(st.integers(0, 2)) == 0 else 0
    for _ in range(splices):
        piece = draw(st.sampled_from(HOSTILE))
        if not lines:
            lines.append(piece)
            continue
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        where = draw(st.sampled_from(["start", "end", "anywhere"]))
        at = {"start": 0, "end": max(len(line) - 1, 0)}.get(where) if where != "anywhere" else \
            draw(st.integers(0, len(line)))
        lines[index] = line[:at] + piece + line[at:]
    raw = b"".join(lines)
    if draw(st.integers(0, 9)) == 0 and raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw


def test_whatever_the_grammar_accepts_every_reader_reads_alike(tmp_path):
    """(a) For any bytes envgrammar.parse accepts, systemd, docker and slotgen read the same four controls,
    the ones the grammar reads, and agree on the kill-switch."""
    seen = {"accepted": 0, "rejected": 0}

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(hostile_files())
    def check(raw):
        try:
            parsed = parse(raw)
        except GrammarError:
            seen["rejected"] += 1
            return
        seen["accepted"] += 1
        readings = oracle.read_all_bytes(raw, tmp_path, environ={})
        expected = oracle.controls(parsed.values)
        assert readings == {reader: expected for reader in oracle.READERS}, raw
        engaged = oracle.kill_engaged(readings)
        assert set(engaged.values()) == {kill_switch_engaged(expected[KILL_VAR])}, raw

    check()
    # The property says something only if the grammar accepted often, and rejected too.
    assert seen["accepted"] >= 75, seen
    assert seen["rejected"] >= 50, seen


def test_bytes_the_readers_disagree_on_are_rejected(tmp_path):
    """The same argument from the other side: wherever the readers disagree, the grammar has said no."""

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(hostile_files())
    def check(raw):
        readings = oracle.read_all_bytes(raw, tmp_path, environ={})
        if not oracle.agree(readings) or len(set(oracle.kill_engaged(readings).values())) > 1:
            assert problem(raw) is not None, (raw, readings)

    check()


SMALL = HEADER + b"SLOTGEN_AI_KILL=true\nFEATURE_SLOTGEN_AI=false\nSLOTGEN_AI_ROLLOUT_PERCENT=0\nSLOTGEN_AI_ALLOWLIST_PATH=a.json\n"


def _edit_points(raw: bytes) -> list[int]:
    """Where a one-byte edit says most: each line's start and end, each value's start, middle and end."""
    points, start = {len(raw)}, 0
    for line in raw.split(b"\n")[:-1]:
        points |= {start, start + len(line)}
        if not line.startswith(b"#"):
            eq = start + line.index(b"=") + 1
            points |= {eq, (eq + start + len(line)) // 2}
        start += len(line) + 1
    return sorted(points)


def test_every_one_byte_edit_the_grammar_accepts_reads_alike(tmp_path):
    """Exhaustive over the 256 byte values: inserted at, or replacing the byte at, each edit point of a
    file slotgen writes. Whatever edit the grammar accepts, the three readers read alike."""
    accepted = set()
    for at in _edit_points(SMALL):
        for byte in range(256):
            piece = bytes([byte])
            for edited in (SMALL[:at] + piece + SMALL[at:], SMALL[:at] + piece + SMALL[at + 1:]):
                if problem(edited) is None:
                    accepted.add(edited)
    assert len(accepted) > 500  # the value bytes, at each point of each value
    for edited in sorted(accepted):
        expected = oracle.controls(parse(edited).values)
        assert oracle.read_all_bytes(edited, tmp_path, environ={}) == {r: expected for r in oracle.READERS}, \
            edited


env_names = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)
any_text = st.text(st.characters(codec="utf-8"), max_size=12)
grammar_values = st.none() | st.text(VALUE_CHARS, max_size=40) | any_text.filter(lambda v: value_problem(v) is None)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(env=env_names, controls=st.fixed_dictionaries({name: grammar_values for name in CONTROL_VARS}),
       seq=st.integers(0, 10 ** 18 - 1), digest=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_render_controls_with_grammar_values_reads_back_identically_everywhere(tmp_path, env, controls, seq,
                                                                               digest):
    """(b) What slotgen writes from values the grammar allows parses, and every reader reads it back."""
    from slotgen_ops.changes.controls_file import render_controls

    raw = render_controls(env, controls, seq, digest)
    parsed = parse(raw)
    expected = {name: controls[name] or None for name in CONTROL_VARS}
    assert parsed.values == expected
    assert parsed.head == (seq, digest)
    assert oracle.read_all_bytes(raw, tmp_path, environ={}) == {reader: expected for reader in oracle.READERS}
