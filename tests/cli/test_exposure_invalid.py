"""`slotgen exposure` and bad lines: the true line and column, --skip-invalid, and a progress bar that is
cleared before the error (or the interrupt) is printed. Everything runs through the real CLI."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import assert_one_line_error, clean_env, command, slotgen
from .test_decide_cli import ALLOWLIST, LIVE, job

BOM = "\ufeff"


def line(**fields) -> str:
    return json.dumps(job(**fields), separators=(",", ":"), ensure_ascii=False)


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def bad_at(run, path: Path, lineno: int, column: int, problem: str) -> None:
    assert_one_line_error(run, 2)
    assert f"error: {path}:{lineno}:{column}: {problem}" in run.stderr, run.stderr


# --- line and column ---------------------------------------------------------------------------


def test_column_counts_characters_after_non_ascii_text(tmp_path):
    bad = '{"jobId":"é€😀","subject":"Mathématiques 数学","kind": oops}'
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n{line()}\n{bad}\n{line()}\n")
    column = bad.index("oops") + 1  # in characters: a byte offset would be 11 more
    assert bad.encode().index(b"oops") + 1 == column + 11
    bad_at(slotgen("exposure", str(path)), path, 3, column, "not JSON: Expecting value")


def test_column_of_a_byte_that_is_not_utf8(tmp_path):
    prefix = '{"jobId":"é€😀 '
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(line().encode() + b"\n" + prefix.encode() + b"\xff" + b'"}\n')
    bad_at(slotgen("exposure", str(path)), path, 2, len(prefix) + 1, "not UTF-8 text (byte 0xff)")


def test_bom_on_line_1_is_not_a_column(tmp_path):
    good = write(tmp_path / "good.jsonl", f"{BOM}{line()}\n{line(jobId='job-2')}\n")
    doc = slotgen("exposure", str(good), "--json", env={"SLOTGEN_AI_KILL": "true"}).json()
    assert doc["total"] == 2 and doc["invalid"] == {"count": 0, "first": []}

    bad = '{"jobId":"job-1","kind":,"x":1}'
    path = write(tmp_path / "bad.jsonl", f"{BOM}{bad}\n{line()}\n")
    bad_at(slotgen("exposure", str(path)), path, 1, bad.index(",\"x\"") + 1, "not JSON: Expecting value")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_and_column_with_either_line_ending(tmp_path, newline):
    truncated = '{"jobId":"é-1","kind":"question-slots"'
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n\n{line()}\n{truncated}\n{line()}\n", newline)
    # The object is cut short at the end of line 4: the column just past its last character, not line 5.
    bad_at(slotgen("exposure", str(path)), path, 4, len(truncated) + 1, "not JSON: Expecting ',' delimiter")

    mid = '{"jobId":"é-2" "kind":"question-slots"}'
    path = write(tmp_path / "mid.jsonl", f"{line()}\n{mid}\n", newline)
    bad_at(slotgen("exposure", str(path)), path, 2, mid.index(' "kind"') + 2, "not JSON: Expecting ',' delimiter")

    ok = write(tmp_path / "ok.jsonl", f"{BOM}{line()}\n  {line()}  \n\n{line()}\n", newline)
    assert slotgen("exposure", str(ok), "--json").json()["total"] == 3


def test_valid_json_that_is_not_a_job_is_column_1(tmp_path):
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n{line(level=3)}\n")
    bad_at(slotgen("exposure", str(path)), path, 2, 1, "level: must be a string, got number")
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n  [1, 2]\n")
    bad_at(slotgen("exposure", str(path)), path, 2, 1, "(job): must be a JSON object, got array")


def test_lines_python_cannot_read_are_bad_lines_not_a_crash(tmp_path):
    deep = '{"jobId":' + "[" * 100_000
    huge = line(payload={"n": 0}).replace('"n":0', '"n":' + "9" * 5000)
    path = write(tmp_path / "jobs.jsonl", f"{deep}\n{huge}\n{line()}\n")
    doc = slotgen("exposure", str(path), "--json", "--skip-invalid").json()
    assert doc["total"] == 1
    assert [(f["line"], f["column"]) for f in doc["invalid"]["first"]] == [(1, 1), (2, 1)]
    assert doc["invalid"]["first"][0]["problem"] == "not JSON: nested too deeply"
    assert doc["invalid"]["first"][1]["problem"].startswith("not JSON: Exceeds the limit")
    bad_at(slotgen("exposure", str(path)), path, 1, 1, "not JSON: nested too deeply")


def test_without_skip_invalid_the_count_stops_at_the_first_bad_line(tmp_path):
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n{{oops\n{line(level=3)}\n")
    for extra in ([], ["--json"]):
        run = slotgen("exposure", str(path), *extra)
        bad_at(run, path, 2, 2, "not JSON: Expecting property name enclosed in double quotes")
        assert run.stdout == ""
        assert "--skip-invalid" in run.stderr


# --- --skip-invalid ----------------------------------------------------------------------------


def test_skip_invalid_counts_and_lists_the_first_ten(tmp_path):
    lines, bad_lines = [], []
    for i in range(30):
        if i % 3 == 1:
            lines.append(line(jobId=f"job-{i}", level=i) if i % 2 else f'{{"jobId":"job-{i}",')
            bad_lines.append(len(lines))
        else:
            lines.append(line(jobId=f"job-{i}"))
        if i % 7 == 0:
            lines.append("   ")  # blank: skipped, not invalid
    path = write(tmp_path / "jobs.jsonl", "\n".join(lines) + "\n")
    run = slotgen("exposure", str(path), "--json", "--skip-invalid", env={"SLOTGEN_AI_KILL": "true"})
    assert run.code == 0, run.stderr
    doc = run.json()
    assert (doc["total"], doc["stub"], doc["codes"]) == (20, 20, {"KILL_SWITCH": 20})
    assert doc["invalid"]["count"] == 10 == len(bad_lines)
    first = doc["invalid"]["first"]
    assert [f["line"] for f in first] == bad_lines
    assert first[0] == {"line": bad_lines[0], "column": 1, "problem": "level: must be a string, got number"}
    cut = '{"jobId":"job-4",'
    assert first[1] == {"line": bad_lines[1], "column": len(cut) + 1,
                        "problem": "not JSON: Expecting property name enclosed in double quotes"}

    more = write(tmp_path / "more.jsonl", "\n".join(lines * 2) + "\n")
    doc = slotgen("exposure", str(more), "--json", "--skip-invalid", env={"SLOTGEN_AI_KILL": "true"}).json()
    assert doc["invalid"]["count"] == 20 and len(doc["invalid"]["first"]) == 10
    assert doc["total"] == 40


def test_skip_invalid_in_the_table(tmp_path):
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n\n{line()}\n{line(level=3)}\n{{oops\n")
    run = slotgen("exposure", str(path), "--skip-invalid", env={"SLOTGEN_AI_KILL": "true"})
    assert run.code == 0, run.stderr
    assert "2 jobs" in run.stdout
    assert f"2 invalid lines skipped (first at {path}:4:1: level: must be a string, got number)" in run.stdout
    assert run.stderr == ""
    clean = write(tmp_path / "clean.jsonl", f"{line()}\n")
    run = slotgen("exposure", str(clean), "--skip-invalid", env={"SLOTGEN_AI_KILL": "true"})
    assert run.code == 0 and "invalid lines skipped" not in run.stdout and "no invalid lines" in run.stdout


def test_invalid_is_always_in_the_json(tmp_path):
    path = write(tmp_path / "jobs.jsonl", f"{line()}\n\n\n")
    doc = slotgen("exposure", str(path), "--json", env={"SLOTGEN_AI_KILL": "true"}).json()
    assert doc["invalid"] == {"count": 0, "first": []} and doc["total"] == 1


def test_recorded_text_in_a_problem_cannot_drive_the_terminal(tmp_path):
    path = write(tmp_path / "jobs.jsonl", json.dumps({**job(), "\x1b[2J": 1}) + "\n")
    run = slotgen("exposure", str(path), "--skip-invalid", env={"SLOTGEN_AI_KILL": "true"})
    assert run.code == 0 and "\x1b" not in run.stdout and "\\x1b[2J: unknown field" in run.stdout
    run = slotgen("exposure", str(path))
    assert_one_line_error(run, 2)
    assert "\x1b" not in run.stderr and "\\x1b[2J: unknown field" in run.stderr


# --- the property ------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_VALID = st.fixed_dictionaries(
    {"jobId": st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
     "kind": st.sampled_from(["question-slots", "mark-scheme"]),
     "subject": st.sampled_from(["mathematics", "physics", "mathématiques", "数学"]),
     "level": st.sampled_from(["gcse", "a-level"]),
     "board": st.sampled_from(["aqa", "ocr"]),
     "specVersion": st.just("8300")},
    optional={"metadata": st.fixed_dictionaries({}, optional={"allowAI": st.booleans()}),
              "payload": st.dictionaries(_TEXT, _TEXT, max_size=2)})


@st.composite
def population_lines(draw):
    """(lines as bytes, which are corrupt) — a valid job per line, some lines corrupted, blank lines between."""
    out: list[tuple[bytes, bool | None]] = []  # None: blank
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 4)) == 0:
            out.append((draw(st.sampled_from(["", " ", "\t", "  \t "])).encode(), None))
        doc = draw(_VALID)
        text = json.dumps(doc, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([None, (",", ":")])))
        how = draw(st.sampled_from(["ok", "ok", "ok", "truncate", "bytes", "field", "not-object", "garbage"]))
        if how == "ok":
            out.append((text.encode(), False))
            continue
        if how == "truncate":  # a proper prefix of an object is never JSON
            data = text[:draw(st.integers(1, len(text) - 1))].encode()
        elif how == "bytes":  # 0xff is never UTF-8
            raw = text.encode()
            at = draw(st.integers(0, len(raw)))
            data = raw[:at] + b"\xff" + raw[at:]
        elif how == "field":
            doc = {**doc, draw(st.sampled_from(["level", "jobId", "metadata", "surprise"])): draw(
                st.sampled_from([3, None, [], "", {"allowAI": "yes"}]))}
            if not _is_bad_job(doc):  # e.g. level "" is still a string
                doc["level"] = 7
            data = json.dumps(doc, ensure_ascii=False).encode()
        elif how == "not-object":
            data = draw(st.sampled_from([b"[1, 2]", b'"job"', b"42", b"null", b"true"]))
        else:
            data = b"x" + text.encode()
        out.append((data, True))
    return out


def _is_bad_job(doc: dict) -> bool:
    from slotgen_ops.contract import job_problem

    return job_problem(doc) is not None


@pytest.fixture(scope="module")
def live_env(tmp_path_factory):
    allowlist = tmp_path_factory.mktemp("allowlist") / "allowlist.json"
    allowlist.write_text(json.dumps(ALLOWLIST))
    return {**LIVE, "SLOTGEN_AI_ROLLOUT_PERCENT": "50", "SLOTGEN_AI_ALLOWLIST_PATH": str(allowlist)}


def exposure_of(data: bytes, env: dict[str, str], *extra: str) -> dict:
    proc = subprocess.run(command("exposure", "-", "--json", *extra), input=data, capture_output=True,
                          env=clean_env(env), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(lines=population_lines(), newline=st.sampled_from([b"\n", b"\r\n"]), bom=st.booleans())
def test_skip_invalid_counts_every_non_blank_line_once(live_env, lines, newline, bom):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(raw + newline for raw, _ in lines)
    doc = exposure_of(data, live_env, "--skip-invalid")
    non_blank = sum(1 for _, bad in lines if bad is not None)
    corrupt = [n for n, (_, bad) in enumerate(lines, 1) if bad]
    assert doc["total"] + doc["invalid"]["count"] == non_blank
    assert doc["invalid"]["count"] == len(corrupt)
    assert [f["line"] for f in doc["invalid"]["first"]] == corrupt[:10]

    valid_only = b"".join(raw + newline for raw, bad in lines if bad is False)
    alone = exposure_of(valid_only, live_env)
    assert alone["invalid"] == {"count": 0, "first": []}
    assert {k: v for k, v in doc.items() if k != "invalid"} == {k: v for k, v in alone.items() if k != "invalid"}


# --- the progress bar on a terminal ------------------------------------------------------------

BIG_LINES = 180_000  # about 25 MiB: over the 16 MiB from which the bar is shown
BAD_LINE = BIG_LINES - 7
BAD_TEXT = '{"jobId":"job-é€","kind":}'


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "jobs.jsonl"
    template = line(jobId="job-%07d") + "\n"
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, BIG_LINES, 20_000):
            fh.write("".join(BAD_TEXT + "\n" if i + 1 == BAD_LINE else template % i
                             for i in range(start, min(BIG_LINES, start + 20_000))))
    assert path.stat().st_size >= 16 * 1024 * 1024
    return path


def on_terminal(*args: str, interrupt_on: bytes | None = None, times: int = 1) -> tuple[int, str, bytes]:
    """Run slotgen with its stderr on a pseudo-terminal; (exit code, everything the terminal got, stdout).
    With `interrupt_on`, SIGINT is sent once the terminal has shown that text `times` times."""
    env = clean_env({"TERM": "xterm", "COLUMNS": "120"})
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR"):
        env.pop(name, None)
    master, slave = os.openpty()
    seen = bytearray()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command(*args), stdin=subprocess.DEVNULL, stdout=out, stderr=slave, env=env)
        os.close(slave)
        sent = False
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 120)
                if not ready:
                    proc.kill()
                    raise AssertionError(f"no output for 120 s; so far: {bytes(seen)[-500:]!r}")
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child's side is closed
                    break
                if not chunk:
                    break
                seen += chunk
                if interrupt_on is not None and not sent and seen.count(interrupt_on) >= times:
                    proc.send_signal(signal.SIGINT)
                    sent = True
        finally:
            os.close(master)
        code = proc.wait(timeout=120)
        out.seek(0)
        return code, seen.decode("utf-8"), out.read()


_TOKEN = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def screen(output: str) -> list[str]:
    """What a terminal shows after `output`: carriage return, newline, cursor up/down, erase in line."""
    rows, row, col = [""], 0, 0
    for m in _TOKEN.finditer(output):
        text = m.group()
        if m.group(3):
            private, params, final = m.group(1), m.group(2), m.group(3)
            n = int(params) if params.isdigit() else None
            if private or final == "m":
                continue
            if final == "A":
                row = max(0, row - (n or 1))
            elif final == "B":
                row += n or 1
            elif final == "K":
                rows[row] = "" if n == 2 else rows[row][:col] if not n else " " * col + rows[row][col:]
            elif final == "G":
                col = (n or 1) - 1
            else:
                raise AssertionError(f"unexpected control sequence {text!r}")
        elif text == "\r":
            col = 0
        elif text == "\n":
            row += 1
        else:
            current = rows[row].ljust(col)
            rows[row] = current[:col] + text + current[col + len(text):]
            col += len(text)
        while len(rows) <= row:
            rows.append("")
    while rows and not rows[-1].strip():
        rows.pop()
    return rows


def assert_bar_cleared_then(output: str, last_line: str) -> None:
    frames = [m.start() for m in re.finditer("deciding", output)]
    assert frames, f"no progress bar was drawn: {output[:300]!r}"
    last_frame = frames[-1]
    cleared = output.find("\x1b[1A\x1b[2K", last_frame)  # cursor up, erase the line: the bar taken away
    error = output.find("error: ")
    assert last_frame < cleared < error, (last_frame, cleared, error, output[last_frame - 200:])
    assert output[error:].rstrip("\r\n") == last_line, output[error:]
    shown = screen(output)
    assert shown and shown[-1] == last_line, shown[-3:]
    assert not any("deciding" in row for row in shown), shown


def test_abort_clears_the_progress_bar_before_the_error(big_file):
    code, output, stdout = on_terminal("exposure", str(big_file))
    assert code == 2 and stdout == b""
    column = BAD_TEXT.index("}") + 1
    expected = (f"error: {big_file}:{BAD_LINE}:{column}: not JSON: Expecting value "
                "(--skip-invalid counts past bad lines)")
    assert_bar_cleared_then(output, expected)


def test_skip_invalid_on_a_terminal_clears_the_bar_and_counts(big_file):
    code, output, stdout = on_terminal("exposure", str(big_file), "--skip-invalid", "--with", "SLOTGEN_AI_KILL=true")
    assert code == 0, output[-500:]
    assert f"1 invalid line skipped (first at {big_file}:{BAD_LINE}:" in stdout.decode()
    assert f"{BIG_LINES - 1} jobs" in stdout.decode()
    assert "deciding" in output and not any("deciding" in row for row in screen(output))


@pytest.mark.parametrize("frames", [1, 2], ids=["as-the-bar-starts", "while-counting"])
def test_interrupt_clears_the_progress_bar(big_file, frames):
    code, output, stdout = on_terminal("exposure", str(big_file), interrupt_on=b"deciding", times=frames)
    assert code == 130, output[-500:]
    error = output[output.find("error: "):].rstrip("\r\n")
    assert error.startswith("error: interrupted"), output[-500:]
    assert_bar_cleared_then(output, error)
