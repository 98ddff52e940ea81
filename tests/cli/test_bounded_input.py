"""Inputs slotgen reads for `decide`, `exposure` and `plan` are bounded (SPEC section 14, "Files that are not
what they seem"): a line, a job file and a JSON nesting each have a limit, and a device or a FIFO nobody named
as stdin is refused on a non-blocking open. Within the bounds, nothing changes: the same lines, the same job."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotgen_ops.cli import common
from slotgen_ops.cli.common import BoundedLines, open_input, read_json_file
from slotgen_ops.errors import BadInput


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b"\r", b""]), max_size=30),
       st.integers(min_value=1, max_value=64))
def test_the_lines_are_exactly_those_a_file_gives(parts, hint):
    data = b"".join(parts)
    expected = io.BytesIO(data).readlines()
    got, reader = [], BoundedLines(io.BytesIO(data), "x")
    while True:
        block = reader.readlines(hint)
        if not block:
            break
        got.extend(block)
    assert got == expected


def test_a_line_without_end_stops_at_its_bound(monkeypatch):
    monkeypatch.setattr(common, "MAX_LINE", 1000)
    reader = BoundedLines(io.BytesIO(b'{"a": 1}\n' * 3 + b"x" * 5000), "jobs.jsonl")
    with pytest.raises(BadInput, match=r"jobs.jsonl:4: a line longer than"):
        while reader.readlines(64):
            pass


def test_dev_zero_on_stdin_is_refused_at_the_bound():
    with open("/dev/zero", "rb") as zero:
        with pytest.raises(BadInput, match="longer than"):
            BoundedLines(zero, "<stdin>").readlines(1024 * 1024)


@pytest.mark.parametrize("path, kind", [("/dev/zero", "character device"), ("/dev/urandom", "character device")])
def test_a_device_is_refused_on_open(path, kind):
    with pytest.raises(BadInput, match=kind):
        open_input(Path(path), "jobs")


def test_a_fifo_opens_at_once_and_reads_as_empty_with_no_writer(tmp_path):
    fifo = tmp_path / "jobs"
    os.mkfifo(fifo)
    with open_input(fifo, "jobs") as fh:  # a blocking open would wait here for a writer
        assert fh.readlines(1024) == []


def test_a_pipe_is_read(tmp_path):
    read_end, write_end = os.pipe()
    os.write(write_end, b'{"a": 1}\n{"b": 2}\n')
    os.close(write_end)
    try:
        with open_input(Path(f"/proc/self/fd/{read_end}"), "jobs") as fh:
            assert fh.readlines(1024) == [b'{"a": 1}\n', b'{"b": 2}\n']
    finally:
        os.close(read_end)


@pytest.mark.parametrize("depth, refused", [(common.MAX_DEPTH, False), (common.MAX_DEPTH + 1, True),
                                            (200_000, True)])
def test_a_job_nested_past_the_limit_is_refused_before_it_is_parsed(tmp_path, depth, refused):
    path = tmp_path / "job.json"
    path.write_text("[" * depth + "]" * depth)
    if refused:
        with pytest.raises(BadInput, match="deep"):
            read_json_file(path, "job")
    else:
        assert read_json_file(path, "job") is not None


def test_brackets_inside_strings_are_not_nesting(tmp_path):
    path = tmp_path / "job.json"
    doc = {"jobId": "[" * 10_000 + '"\\' + "{" * 10_000}
    path.write_text(json.dumps(doc))
    assert read_json_file(path, "job") == doc


def test_a_job_file_past_its_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_JOB_FILE", 100)
    path = tmp_path / "job.json"
    path.write_text(" " * 101)
    with pytest.raises(BadInput, match="larger than"):
        read_json_file(path, "job")


@pytest.mark.parametrize("text", ['"\\' * 500_000, '"' + "x" * 8_000_000, "[" * 1_000_000, '["\\"", ' * 200_000])
def test_the_depth_count_is_one_linear_pass(text):
    """A crafted job file (an unterminated string of escaped quotes) must not make the count crawl."""
    import time

    started = time.perf_counter()
    common._nesting_depth_over(text, common.MAX_DEPTH)
    assert time.perf_counter() - started < 2.0


def test_plan_reads_stdin_in_bounded_lines(tmp_path):
    """`plan --jobs -` with a stream that never ends a line: one line, exit 2, not a read without end."""
    import subprocess

    from .helpers import clean_env, command

    subprocess.run(command("init", str(tmp_path / "ws")), env=clean_env(), capture_output=True, check=True,
                   stdin=subprocess.DEVNULL, timeout=60)
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run(command("plan", "--env", "staging", "--jobs", "-", "--workspace", str(tmp_path / "ws")),
                              env=clean_env(), capture_output=True, text=True, stdin=zero, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: <stdin>:1: a line longer than 4 MiB (no line ending?): not a job"]
