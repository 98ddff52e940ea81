"""The controls file is read exactly as systemd's EnvironmentFile= and docker --env-file read it."""

from __future__ import annotations

import pytest

from slotgen_ops.contract import ALLOWLIST_VAR, FEATURE_VAR, KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import BadInput, IntegrityFailure
from slotgen_ops.changes.controls_file import parse_controls, render_controls, runtime_lines, runtime_values
from slotgen_ops.runbook.judge import normalise_value
from slotgen_ops.runbook.state import SAFE_CONTROLS

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


# -- the rollback's engage: replace, then read back as the strictest reader (SPEC section 14) ------------------

import os  # noqa: E402

from slotgen_ops.files import envgrammar, hooks  # noqa: E402
from slotgen_ops.files.atomic import temp_path_for  # noqa: E402
from slotgen_ops.changes.controls_file import (
    KillSwitchNotEngaged,
    READ_BOUND,
    clean_values,
    engage_kill_switch,
    target_of,
)


def _live(path, **extra):
    path.write_bytes(render_controls("staging", {**SAFE_CONTROLS, KILL_VAR: "false", **extra}, 4, "c" * 64))
    return path


def _on_second_temp(action):
    """A hook that runs `action(temp path)` when the rollback's second write has its temp file ready."""
    seen = []

    def hook(name):
        if name == "rollback-temp-written":
            seen.append(name)
            if len(seen) == 2:
                action()
    return hook


@pytest.fixture
def hook():
    yield hooks.install
    hooks.install(None)


def test_the_read_back_is_what_decides_engaged(tmp_path, hook):
    # Whatever lands in the file (a filesystem that keeps other bytes, a writer racing the rename), the
    # rollback says engaged only if the bytes read back say so.
    path = _live(tmp_path / "staging.env")
    bad = render_controls("staging", {**SAFE_CONTROLS, KILL_VAR: "false"}, 4, "c" * 64)
    hook(_on_second_temp(lambda: temp_path_for(path).write_bytes(bad)))
    with pytest.raises(KillSwitchNotEngaged, match=r"read back SLOTGEN_AI_KILL='false'"):
        engage_kill_switch(path, "staging")


def test_a_read_back_outside_the_grammar_is_not_engaged(tmp_path, hook):
    path = _live(tmp_path / "staging.env")
    good = render_controls("staging", {**SAFE_CONTROLS}, 4, "c" * 64)
    hook(_on_second_temp(lambda: temp_path_for(path).write_bytes(b"# note \\\n" + good)))
    with pytest.raises(KillSwitchNotEngaged, match="not a clean controls file"):
        engage_kill_switch(path, "staging")


def test_a_read_back_engaged_only_by_a_lenient_value_is_not_engaged(tmp_path, hook):
    # "yes" is engaged for the engine, but the engaged file slotgen writes says exactly "true": anything
    # else read back means the bytes are not the ones written.
    path = _live(tmp_path / "staging.env")
    odd = render_controls("staging", {**SAFE_CONTROLS, KILL_VAR: "yes"}, 4, "c" * 64)
    hook(_on_second_temp(lambda: temp_path_for(path).write_bytes(odd)))
    with pytest.raises(KillSwitchNotEngaged, match=r"read back SLOTGEN_AI_KILL='yes'"):
        engage_kill_switch(path, "staging")


def test_engage_keeps_clean_values_and_replaces_the_rest(tmp_path):
    path = tmp_path / "staging.env"
    raw = _live(path, **{FEATURE_VAR: "true", ROLLOUT_VAR: "5"}).read_bytes()
    path.write_bytes(raw.replace(f"{ALLOWLIST_VAR}=\n".encode(), f"{ALLOWLIST_VAR}=a.json\r{KILL_VAR}=false\n".encode()))
    values, how, old = engage_kill_switch(path, "staging")
    assert old == "false" and how == "replaced"
    parsed = envgrammar.parse(path.read_bytes())
    assert parsed.values == {KILL_VAR: "true", FEATURE_VAR: "true", ROLLOUT_VAR: "5", ALLOWLIST_VAR: None}
    assert parsed.head == (4, "c" * 64)
    assert values[KILL_VAR] == "true"


def test_clean_values_puts_the_safe_value_in_place_of_any_value_outside_the_grammar():
    dirty = {KILL_VAR: "false", FEATURE_VAR: 'tr"ue', ROLLOUT_VAR: "5\\", ALLOWLIST_VAR: "ok/a.json"}
    assert clean_values(dirty) == {KILL_VAR: "false", FEATURE_VAR: "false", ROLLOUT_VAR: "0",
                                   ALLOWLIST_VAR: "ok/a.json"}
    assert clean_values({}) == {name: None for name in SAFE_CONTROLS}


def test_target_of_follows_a_symlink_only_onto_controls(tmp_path):
    real = _live(tmp_path / "real.env")
    link = tmp_path / "staging.env"
    link.symlink_to(real)
    assert target_of(link) == real
    other = tmp_path / "notes.txt"
    other.write_text("FEATURE_SLOTGEN_AI=true\n")  # a control, but not the kill-switch nor slotgen's head
    link.unlink()
    link.symlink_to(other)
    with pytest.raises(OSError, match="holds no runtime controls"):
        target_of(link)
    link.unlink()
    link.symlink_to(tmp_path / "missing.env")
    with pytest.raises(OSError, match="which does not exist"):
        target_of(link)
    assert target_of(tmp_path / "absent.env") == tmp_path / "absent.env"


def test_a_file_over_the_read_bound_is_not_engaged(tmp_path):
    path = _live(tmp_path / "staging.env")
    with open(path, "ab") as fh:
        fh.write(b"#" * READ_BOUND)
    with pytest.raises(KillSwitchNotEngaged, match="over its bound"):
        engage_kill_switch(path, "staging")
    assert os.path.getsize(path) > READ_BOUND  # not touched


def test_a_file_under_the_read_bound_but_over_the_grammar_is_replaced(tmp_path):
    path = _live(tmp_path / "staging.env")
    with open(path, "ab") as fh:
        fh.write(b"# padding\n" * 600)  # 6 KB: a hand edit, still a file a rollback replaces
    engage_kill_switch(path, "staging")
    assert envgrammar.parse(path.read_bytes()).values[KILL_VAR] == "true"
