"""SPEC section 14, "Output is inert": what slotgen writes for a program or a page is as harmless as what it
shows a person.

- Every --json and the JSON-lines export carry C1 controls and bidi overrides, isolates and marks as \\u
  escapes: still JSON, decoding to exactly what was recorded.
- A CSV export on a terminal is shown as human output is; to a file it stays a true CSV.
- The HTML report shows control characters visibly, as the terminal does.
- A URL is shown without its password, even a malformed one.
- --output never replaces a device or any non-regular file, and a missing folder is one line, exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotgen_ops.cli.output import json_text
from slotgen_ops.inert import JSON_UNSAFE, hide_passwords, inert_json, visible

from .helpers import assert_one_line_error, slotgen
from .test_output_safety import CORPUS, FORBIDDEN, _on_a_pty

#: What a JSON text must never carry raw: C1 controls, bidi embeddings/overrides/isolates and marks.
RAW = ["\x85", "\x9b", "\x9c", "\x9d", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067",
       "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"]
HOSTILE = [*CORPUS, "marks\u200eltr\u200frtl\u061calm\u202a\u202b\u202d\u2067\u2068\x85nel"]


def _assert_inert(text: str, where: str) -> None:
    for char in RAW:
        assert char not in text, f"{where}: raw {char!r} in the JSON text"
    assert JSON_UNSAFE.search(text) is None, where


# -- the functions ---------------------------------------------------------------------------------------------


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20))
def test_inert_json_is_json_that_decodes_to_the_same_values(doc):
    text = inert_json(json.dumps(doc, ensure_ascii=False), passwords=True)
    assert JSON_UNSAFE.search(text) is None
    assert json.loads(text) == doc


def test_every_dangerous_character_leaves_as_an_escape():
    doc = {"k\u202e": ["".join(RAW), "\U000e0041tag", "\u2028\u2029"]}
    text = json_text(doc)
    _assert_inert(text, "json_text")
    assert "\\u009b" in text and "\\u202e" in text and "\\u061c" in text and "\\udb40\\udc41" in text
    assert json.loads(text) == doc


@pytest.mark.parametrize("url, secret", [
    ("postgresql://u:s3cret@db.example:5432/slotgen", "s3cret"),
    ("postgresql://u:s3cret@[::1/db", "s3cret"),  # malformed: an IPv6 host never closed
    ("postgresql://u:s3c%zzret@h/db", "s3c%zzret"),  # malformed: a bad percent escape
    ("postgresql://u:p@ss:w/rd@h:notaport/db", "p@ss:w/rd"),  # '@', ':' and '/' inside the password
    ("postgres://u@h/db?sslmode=require&password=s3cret", "s3cret"),
    ("host=h user=u password='s3 cret' dbname=d", "s3 cret"),
    ("http://u:s3cret@127.0.0.1:1/v1", "s3cret"),
])
def test_a_url_is_shown_without_its_password_even_malformed(url, secret):
    for shown in (hide_passwords(f"state database {url}: refused"), visible(url),
                  inert_json(json.dumps({"url": url}))):
        assert secret not in shown, shown
        assert "***" in shown


def test_a_url_without_a_password_is_shown_as_it_is():
    for text in ("https://jira.example/browse/DR-1", "http://127.0.0.1:8765/v1", "postgresql://u@h:5432/db",
                 "password authentication failed for user u", "DR-7"):
        assert hide_passwords(text) == text


@pytest.mark.parametrize("text", ["a-" * 50_000 + "://x", "x://a:" * 50_000, "ab://x" * 50_000,
                                  "password='" * 50_000, "x://" + "a:@" * 50_000])
def test_hiding_passwords_stays_linear_on_hostile_text(text):
    """Recorded text reaches this on every line shown: a crafted reason must not make `audit show` crawl."""
    import time

    started = time.perf_counter()
    hide_passwords(text)
    visible(text)
    assert time.perf_counter() - started < 1.0


def test_an_error_line_never_carries_a_password(capsys):
    from slotgen_ops.cli.boundary import fail, unexpected

    with pytest.raises(SystemExit):
        fail("state database postgresql://u:s3cret@[::1/db: missing \"=\"", 2)
    with pytest.raises(SystemExit):
        unexpected(ValueError('missing "=" after "postgresql://u:s3cret@h:x/db" in connection info string'))
    err = capsys.readouterr().err
    assert "s3cret" not in err and err.count("***") == 2


def test_a_file_problem_no_command_caught_is_one_plain_line_not_an_internal_error(capsys):
    from slotgen_ops.cli.boundary import unexpected

    with pytest.raises(SystemExit) as exit_:
        unexpected(FileNotFoundError(2, "No such file or directory", "/nowhere/x"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: /nowhere/x: No such file or directory\n"


# -- through the real CLI --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_ws(tmp_path_factory):
    """A workspace whose production log holds entries with every text field hostile (below the CLI)."""
    from slotgen_ops.audit.log import AuditLog
    from slotgen_ops.audit.review import AUDIT_FIELDS

    root = tmp_path_factory.mktemp("inert") / "ws"
    assert slotgen("init", str(root)).code == 0
    log = AuditLog(root / "environments" / "production.audit.jsonl")
    with log.locked():
        for text in HOSTILE:
            fields = {name: text for name in AUDIT_FIELDS if name not in ("seq", "ts", "prevHash", "hash", "signature")}
            fields.update(env="production", roles=[text], actor={"id": text, "identity": text, "key": text},
                          verification={"passed": False, "checks": [{"name": text, "passed": False, "detail": text}]},
                          details={"problem": text})
            log.append(fields)
    return root


def _recorded(ws: Path) -> list[dict]:
    path = ws / "environments" / "production.audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.mark.parametrize("args", [
    ("audit", "show", "--env", "production", "--json"),
    ("audit", "verify", "--env", "production", "--json"),
    ("status", "--env", "production", "--json"),
    ("status", "--json"),
])
def test_every_json_output_is_inert_and_decodes_to_what_was_recorded(hostile_ws, args):
    run = slotgen(*args, "--workspace", str(hostile_ws))
    assert run.code in (0, 4), run.stderr
    _assert_inert(run.stdout, " ".join(args))
    doc = run.json()
    if args[:2] == ("audit", "show"):
        assert doc["entries"] == _recorded(hostile_ws)  # the escapes decode to exactly the recorded text


def test_the_jsonl_export_is_inert_and_faithful(hostile_ws, tmp_path):
    to_stdout = slotgen("audit", "export", "--env", "production", "--workspace", str(hostile_ws))
    assert to_stdout.code == 0, to_stdout.stderr
    target = tmp_path / "audit.jsonl"
    to_file = slotgen("audit", "export", "--env", "production", "-o", str(target), "--workspace", str(hostile_ws))
    assert to_file.code == 0, to_file.stderr
    recorded = _recorded(hostile_ws)
    for text, where in ((to_stdout.stdout, "stdout"), (target.read_text(encoding="utf-8"), "file")):
        _assert_inert(text, where)
        assert [json.loads(line) for line in text.split("\n") if line] == recorded, where
        assert "\\u202e" in text and "\\u009b" in text


def test_a_csv_on_a_terminal_is_shown_as_human_output_is(hostile_ws):
    text = _on_a_pty(("audit", "export", "--env", "production", "--format", "csv", "--workspace", str(hostile_ws)),
                     hostile_ws)
    for seq in [*FORBIDDEN, *RAW]:
        assert seq not in text, f"{seq!r} reached the terminal"
    assert "\\x1b[2K" in text and "\\u202eevil" in text and "\\x9b31mC1-CSI" in text  # shown, not dropped


def test_a_csv_to_a_file_stays_a_true_csv(hostile_ws, tmp_path):
    target = tmp_path / "audit.csv"
    run = slotgen("audit", "export", "--env", "production", "--format", "csv", "-o", str(target),
                  "--workspace", str(hostile_ws))
    assert run.code == 0, run.stderr
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    header, body = rows[0], rows[1:]
    reasons = [row[header.index("reason")] for row in body if row[header.index("reason")]]
    assert "\u202eevil\u202c\u2066iso\u2069" in reasons  # the recorded text, byte for byte
    assert "\x9b31mC1-CSI\x9d0;t\x9c" in reasons


def test_a_csv_piped_stays_a_true_csv(hostile_ws):
    run = slotgen("audit", "export", "--env", "production", "--format", "csv", "--workspace", str(hostile_ws))
    assert run.code == 0, run.stderr
    assert "\u202eevil" in run.stdout  # a pipe is a program's input: the true CSV


def test_the_html_report_shows_control_characters_visibly(hostile_ws, tmp_path):
    page_file = tmp_path / "report.html"
    run = slotgen("audit", "report", "--env", "production", "-o", str(page_file), "--workspace", str(hostile_ws))
    assert run.code in (0, 4), run.stderr
    page = page_file.read_text(encoding="utf-8")
    for seq in [*FORBIDDEN, *RAW]:
        assert seq not in page, f"{seq!r} in the page"
    assert "\\x1b[2K" in page and "\\u202eevil" in page and "\\x9b31mC1-CSI" in page  # as the terminal shows them


# -- --output --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("command", [("audit", "export"), ("audit", "report")])
def test_output_never_replaces_a_fifo(hostile_ws, tmp_path, command, force):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run = slotgen(*command, "--env", "staging", "-o", str(fifo), *force, "--workspace", str(hostile_ws))
    assert_one_line_error(run, 2)
    assert "FIFO" in run.stderr and "not a regular file" in run.stderr
    assert fifo.is_fifo()  # still the FIFO, not a file put in its place


def test_output_never_replaces_a_device(hostile_ws, tmp_path):
    """A device node of the test's own (never the real /dev/null: a broken check would replace it)."""
    import stat

    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this user may not make a device node")
    before = os.stat(node)
    run = slotgen("audit", "export", "--env", "staging", "-o", str(node), "--force", "--workspace", str(hostile_ws))
    assert_one_line_error(run, 2)
    assert "character device" in run.stderr
    after = os.stat(node)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_output_never_replaces_a_socket(hostile_ws, tmp_path):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        run = slotgen("audit", "export", "--env", "staging", "-o", str(path), "--force",
                      "--workspace", str(hostile_ws))
    assert_one_line_error(run, 2)
    assert "socket" in run.stderr


@pytest.mark.parametrize("command", [("audit", "export"), ("audit", "report")])
def test_output_into_a_missing_folder_is_one_line(hostile_ws, command):
    run = slotgen(*command, "--env", "staging", "-o", "/nonexistent/dir/x", "--workspace", str(hostile_ws))
    assert_one_line_error(run, 2)
    assert "internal error" not in run.stderr and "no such folder /nonexistent/dir" in run.stderr


def test_output_under_a_file_is_one_line(hostile_ws, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    run = slotgen("audit", "export", "--env", "staging", "-o", str(plain / "x"), "--workspace", str(hostile_ws))
    assert_one_line_error(run, 2)
    assert "is not a folder" in run.stderr
