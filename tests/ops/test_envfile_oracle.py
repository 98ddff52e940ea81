"""Hand edits of a controls file, read by systemd's own parser, docker's --env-file rules and slotgen.

Each file of the corpus is a real file, read by the three readers (tests/envfile_oracle.py). What each reads
as SLOTGEN_AI_KILL is recorded here, so the attack stays visible: a comment ending in a backslash hides the
kill-switch from systemd, a "\\r" hides a second assignment from slotgen and docker, a quote turns `false`
into garbage (engaged) for docker and slotgen but not for systemd, and so on. The grammar (SPEC section 14)
must reject every file on which the readers disagree, or on which one sees the kill-switch off while
another sees it on; it rejects every hand edit of the corpus.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

import envfile_oracle as oracle
from slotgen_ops.contract import KILL_VAR
from slotgen_ops.files.envgrammar import MAX_BYTES, GrammarError, parse, problem

DIGEST = "cd" * 32
HEADER = (b"# slotgen runtime controls for environment 'prod'.\n"
          b"# Written by slotgen; do not edit by hand: an edit is detected and blocks every change.\n"
          b"# Load it with systemd EnvironmentFile= or docker --env-file. Empty = unset.\n"
          b"# slotgen-head: seq=41 hash=" + DIGEST.encode() + b"\n")
KILL_ON = b"SLOTGEN_AI_KILL=true\n"
REST = (b"FEATURE_SLOTGEN_AI=true\n" b"SLOTGEN_AI_ROLLOUT_PERCENT=5\n"
        b"SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json\n")
ENGAGED = HEADER + KILL_ON + REST  # what a rollback writes
ERROR = "error"  # the reader refuses the file


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    kill: dict[str, str | None]  # reader -> the SLOTGEN_AI_KILL it reads (None: unset), or ERROR
    environ: dict[str, str] = field(default_factory=dict)  # docker's environment, for a line without '='


def kill(systemd, docker, slotgen):
    return {"systemd": systemd, "docker": docker, "slotgen": slotgen}


def without_kill(*middle: bytes) -> bytes:
    """The engaged file with its kill-switch line replaced by `middle`."""
    return HEADER + b"".join(middle) + REST


CORPUS = [
    # systemd joins a line ending in a backslash with the next, comments too: the kill-switch vanishes.
    Case("comment-backslash-above-kill", without_kill(b"# engaged by hand, see ticket \\\n", KILL_ON),
         kill(None, "true", "true")),
    Case("header-comment-backslash-above-kill",
         HEADER[:-1] + b"\\\n" + KILL_ON + REST, kill(None, "true", "true")),
    # systemd also ends a line at "\r": a second assignment hidden inside a value (issue 18, critical 5).
    Case("cr-in-value-hides-assignment",
         HEADER + KILL_ON + b"FEATURE_SLOTGEN_AI=true\nSLOTGEN_AI_ROLLOUT_PERCENT=5\n"
         b"SLOTGEN_AI_ALLOWLIST_PATH=allowlists/slot-generation-allowlist.v1.json\rSLOTGEN_AI_KILL=false\n",
         kill("false", "true", "true")),
    Case("cr-in-kill-line", without_kill(b"SLOTGEN_AI_KILL=true\rSLOTGEN_AI_KILL=false\n"),
         kill("false", "true\rSLOTGEN_AI_KILL=false", "true\rSLOTGEN_AI_KILL=false")),
    Case("cr-in-comment-hides-assignment", without_kill(KILL_ON, b"# note\rSLOTGEN_AI_KILL=false\n"),
         kill("false", "true", "true")),
    # systemd strips quotes; docker and slotgen keep them, and garbage is engaged (SPEC section 1).
    Case("double-quoted-true", without_kill(b'SLOTGEN_AI_KILL="true"\n'), kill("true", '"true"', '"true"')),
    Case("double-quoted-false", without_kill(b'SLOTGEN_AI_KILL="false"\n'), kill("false", '"false"', '"false"')),
    Case("single-quoted-false", without_kill(b"SLOTGEN_AI_KILL='false'\n"), kill("false", "'false'", "'false'")),
    Case("unterminated-quote-swallows-lines", without_kill(b'SLOTGEN_AI_KILL="true\n', b"SLOTGEN_AI_KILL=false\n"),
         kill("true\nSLOTGEN_AI_KILL=false\n" + REST.decode(), "false", "false")),
    # systemd trims blanks around '=' and at the end; docker refuses a blank in a name; slotgen skips it.
    Case("blanks-around-equals", without_kill(KILL_ON, b"SLOTGEN_AI_KILL = false\n"), kill("false", ERROR, "true")),
    Case("tab-before-equals", without_kill(KILL_ON, b"SLOTGEN_AI_KILL\t=false\n"), kill("false", ERROR, "true")),
    Case("blank-after-equals", without_kill(b"SLOTGEN_AI_KILL= true\n"), kill("true", " true", " true")),
    Case("trailing-blank", without_kill(b"SLOTGEN_AI_KILL=false \n"), kill("false", "false ", "false ")),
    Case("export-prefix", without_kill(KILL_ON, b"export SLOTGEN_AI_KILL=false\n"), kill("true", ERROR, "true")),
    # Every reader trims leading blanks but slotgen.
    Case("leading-spaces", without_kill(KILL_ON, b"   SLOTGEN_AI_KILL=false\n"), kill("false", "false", "true")),
    Case("leading-tab", without_kill(KILL_ON, b"\tSLOTGEN_AI_KILL=false\n"), kill("false", "false", "true")),
    # docker trims any Unicode space (Go's unicode.IsSpace); systemd only " \t\n\r".
    Case("leading-no-break-space", without_kill(KILL_ON, b"\xc2\xa0SLOTGEN_AI_KILL=false\n"),
         kill("true", "false", "true")),
    Case("leading-form-feed", without_kill(KILL_ON, b"\x0cSLOTGEN_AI_KILL=false\n"), kill("true", "false", "true")),
    # systemd joins a value ending in a backslash with the next line.
    Case("backslash-continues-value", without_kill(b"SLOTGEN_AI_KILL=fal\\\n", b"se\n"),
         kill("false", "fal\\", "fal\\")),
    Case("backslash-swallows-next-assignment",
         HEADER + b"SLOTGEN_AI_KILL=true\\\n" + REST, kill("trueFEATURE_SLOTGEN_AI=true", "true\\", "true\\")),
    # A byte order mark: docker removes it, systemd and slotgen read it as part of the name.
    Case("byte-order-mark", b"\xef\xbb\xbf" + KILL_ON + REST, kill(None, "true", None)),
    # A NUL byte: systemd refuses the file (EBADMSG); no container starts with one in its environment.
    Case("nul-in-value", without_kill(b"SLOTGEN_AI_KILL=true\x00false\n"), kill(ERROR, ERROR, "true\x00false")),
    Case("nul-in-comment", without_kill(b"# x\x00\n", KILL_ON), kill(ERROR, "true", "true")),
    # Invalid UTF-8: systemd checks only names and values, docker every line.
    Case("latin1-in-comment", without_kill(b"# caf\xe9\n", KILL_ON), kill("true", ERROR, "true")),
    Case("latin1-in-value", without_kill(KILL_ON, b"SLOTGEN_AI_ALLOWLIST_PATH=caf\xe9.json\n"),
         kill(ERROR, ERROR, "true")),
    # CRLF line ends: systemd and docker drop the "\r", slotgen keeps it in every value.
    Case("crlf-line-ends", ENGAGED.replace(b"\n", b"\r\n"), kill("true", "true", "true\r")),
    Case("crlf-kill-false", without_kill(b"SLOTGEN_AI_KILL=false\r\n"), kill("false", "false", "false\r")),
    # docker takes a name without '=' from the operator's environment.
    Case("bare-name-from-environment", without_kill(KILL_ON, b"SLOTGEN_AI_KILL\n"),
         kill("true", "false", "true"), environ={"SLOTGEN_AI_KILL": "false"}),
    # Hand edits the readers all read alike: still hand edits, and the grammar says so.
    Case("later-duplicate", without_kill(KILL_ON, b"SLOTGEN_AI_KILL=false\n"), kill("false", "false", "false")),
    Case("dollar-variable", without_kill(b"SLOTGEN_AI_KILL=$KILL\n"), kill("$KILL", "$KILL", "$KILL")),
    Case("dollar-default", without_kill(b"SLOTGEN_AI_KILL=${KILL:-false}\n"),
         kill("${KILL:-false}", "${KILL:-false}", "${KILL:-false}")),
    Case("bare-name-unset", without_kill(KILL_ON, b"SLOTGEN_AI_KILL\n"), kill("true", "true", "true")),
    Case("lower-case-name", without_kill(KILL_ON, b"slotgen_ai_kill=false\n"), kill("true", "true", "true")),
    Case("semicolon-comment", without_kill(KILL_ON, b";SLOTGEN_AI_KILL=false\n"), kill("true", "true", "true")),
    Case("indented-comment", without_kill(KILL_ON, b"  # SLOTGEN_AI_KILL=false\n"), kill("true", "true", "true")),
    Case("kill-commented-out", without_kill(b"#SLOTGEN_AI_KILL=true\n"), kill(None, None, None)),
    Case("foreign-comment", without_kill(b"# set by ops on call\n", KILL_ON), kill("true", "true", "true")),
    Case("blank-lines", without_kill(b"\n", KILL_ON, b"   \n"), kill("true", "true", "true")),
    Case("unknown-variable", without_kill(KILL_ON, b"OPENAI_API_KEY=sk-x\n"), kill("true", "true", "true")),
    Case("no-final-newline", ENGAGED[:-1], kill("true", "true", "true")),
    Case("second-head-line", HEADER + b"# slotgen-head: seq=40 hash=" + b"0" * 64 + b"\n" + KILL_ON + REST,
         kill("true", "true", "true")),
    Case("over-max-bytes", HEADER + KILL_ON + b"FEATURE_SLOTGEN_AI=true\nSLOTGEN_AI_ROLLOUT_PERCENT=5\n"
         b"SLOTGEN_AI_ALLOWLIST_PATH=" + b"a" * MAX_BYTES + b".json\n", kill("true", "true", "true")),
]


def kill_read(readings) -> dict[str, str | None]:
    return {reader: ERROR if isinstance(v, oracle.ReaderError) else v[KILL_VAR] for reader, v in readings.items()}


def dangerous(readings) -> bool:
    """The readers disagree, or one sees the kill-switch off while another sees it on."""
    return not oracle.agree(readings) or len(set(oracle.kill_engaged(readings).values())) > 1


def test_the_corpus_is_large_and_each_case_distinct():
    assert len(CORPUS) >= 25
    assert len({case.name for case in CORPUS}) == len(CORPUS)
    assert len({(case.data, tuple(case.environ.items())) for case in CORPUS}) == len(CORPUS)


def test_the_file_a_rollback_writes_is_read_engaged_by_every_reader(tmp_path):
    path = tmp_path / "controls.env"
    path.write_bytes(ENGAGED)
    assert problem(ENGAGED) is None
    readings = oracle.read_all(path, environ={})
    assert oracle.agree(readings)
    assert readings["systemd"] == {"SLOTGEN_AI_KILL": "true", "FEATURE_SLOTGEN_AI": "true",
                                   "SLOTGEN_AI_ROLLOUT_PERCENT": "5",
                                   "SLOTGEN_AI_ALLOWLIST_PATH": "allowlists/slot-generation-allowlist.v1.json"}
    assert oracle.kill_engaged_everywhere(path, environ={})


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hand_edit(case, tmp_path):
    path = tmp_path / "controls.env"
    path.write_bytes(case.data)
    readings = oracle.read_all(path, environ=case.environ)
    assert kill_read(readings) == case.kill  # what each reader reads, recorded
    with pytest.raises(GrammarError) as info:  # every hand edit is one (SPEC section 14)
        parse(case.data)
    assert str(info.value).isascii() and str(info.value).isprintable()  # status shows it: inert
    engaged = oracle.kill_engaged(readings)
    assert oracle.kill_engaged_everywhere(path, environ=case.environ) == all(engaged.values())


def test_every_file_the_readers_disagree_on_is_rejected(tmp_path):
    """The grammar is at least as strict as needed: wherever the readers part, it has said no."""
    found = []
    for case in CORPUS:
        path = tmp_path / f"{case.name}.env"
        path.write_bytes(case.data)
        if dangerous(oracle.read_all(path, environ=case.environ)):
            found.append(case.name)
            assert problem(case.data) is not None, case.name
    # The corpus carries the attacks: most of it is read differently by some reader.
    assert len(found) >= 25, found
    for name in ("comment-backslash-above-kill", "cr-in-value-hides-assignment", "double-quoted-false",
                 "blanks-around-equals", "leading-spaces", "byte-order-mark", "nul-in-value", "crlf-line-ends"):
        assert name in found


def test_kill_switch_off_for_one_reader_and_on_for_another_is_rejected(tmp_path):
    split = []
    for case in CORPUS:
        path = tmp_path / f"{case.name}.env"
        path.write_bytes(case.data)
        engaged = oracle.kill_engaged(oracle.read_all(path, environ=case.environ))
        if len(set(engaged.values())) > 1:
            split.append(case.name)
            assert problem(case.data) is not None, case.name
            assert not oracle.kill_engaged_everywhere(path, environ=case.environ)
    assert "comment-backslash-above-kill" in split and "cr-in-value-hides-assignment" in split


def test_the_grammar_names_the_line_of_the_hand_edit():
    err = pytest.raises(GrammarError, parse, without_kill(b"# engaged by hand, see ticket \\\n", KILL_ON)).value
    assert (err.line, err.offset) == (5, len(HEADER) + len(b"# engaged by hand, see ticket "))
    data = next(case.data for case in CORPUS if case.name == "cr-in-value-hides-assignment")
    err = pytest.raises(GrammarError, parse, data).value
    assert (err.line, err.offset) == (8, data.index(b"\r"))


#: Edits of slotgen's header comments alone: no reader sees them.
COSMETIC = {
    "repeated-header-comment": HEADER[:51] + ENGAGED,
    "head-seq-with-leading-zeros": ENGAGED.replace(b"seq=41 ", b"seq=0041 "),
    "header-comment-after-the-assignments": ENGAGED[51:] + ENGAGED[:51],
}


@pytest.mark.parametrize("name", sorted(COSMETIC))
def test_cosmetic_hand_edits_of_the_header_are_harmless_to_readers(name, tmp_path):
    path = tmp_path / "controls.env"
    path.write_bytes(COSMETIC[name])
    readings = oracle.read_all(path, environ={})
    assert oracle.agree(readings) and readings["systemd"] == oracle.read_all_bytes(ENGAGED, environ={})["systemd"]
    assert oracle.kill_engaged_everywhere(path, environ={})


@pytest.mark.parametrize("name", sorted(COSMETIC))
def test_cosmetic_hand_edits_of_the_header_are_rejected(name):
    assert problem(COSMETIC[name]) is not None


# ------------------------------------------------------------------------------------ the readers themselves

def test_systemd_reader_is_the_libraries_own_and_reads_every_assignment(tmp_path):
    assert oracle.systemd_library().path == oracle.find_systemd_library()
    path = tmp_path / "e.env"
    path.write_bytes(b"A=1\nB='x y'\n# c\nC=\"q\\\"r\"\nA=2\n")
    assert oracle.systemd_read(path) == {"A": "2", "B": "x y", "C": 'q"r'}
    assert oracle.systemd_read_bytes(b"") == {}


def test_systemd_reader_errors_are_reader_errors(tmp_path):
    with pytest.raises(oracle.SystemdReadError) as info:
        oracle.systemd_read(tmp_path / "missing.env")
    assert info.value.errno == 2
    with pytest.raises(oracle.SystemdReadError, match="Invalid argument"):
        oracle.systemd_read_bytes(b"A=\xff\n", tmp_path)


def test_a_machine_without_libsystemd_shared_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(oracle, "LIBRARY_GLOBS", ("/nonexistent/libsystemd-shared-*.so",))
    with pytest.raises(oracle.SystemdMissing, match="install the OS package `systemd`"):
        oracle.systemd_library.__wrapped__()


def test_docker_reader_rules():
    assert oracle.docker_read(b"\xef\xbb\xbfA=1\r\nC='3'\n#D=4\n\n \t# E=5\nF=6\r\r\nG=a=b") == {
        "A": "1", "C": "'3'", "F": "6\r", "G": "a=b"}
    assert oracle.docker_read(b"A\nB\n", environ={"A": "from-env"}) == {"A": "from-env"}
    assert oracle.docker_read(b"\xc2\xa0\xe3\x80\x80A=1\n") == {"A": "1"}  # unicode.IsSpace
    assert oracle.docker_read(b"A=1\nA=2\n") == {"A": "2"}
    assert oracle.docker_read(b"\xef\xbb\xbfA=1\n\xef\xbb\xbfB=2\n") == {"A": "1", "\ufeffB": "2"}  # line 1 only


@pytest.mark.parametrize("data, message", [
    (b"A B=1\n", "contains whitespaces"), (b"A\t=1\n", "contains whitespaces"), (b"=1\n", "no variable name"),
    (b"A=\xff\n", "invalid utf8 bytes at line 1"), (b"# ok\n# \xe9\n", "invalid utf8 bytes at line 2"),
    (b"A=" + b"x" * (64 * 1024) + b"\n", "token too long"), (b"A=1\x00\n", "NUL"),
])
def test_docker_reader_refusals(data, message):
    with pytest.raises(oracle.DockerReadError, match=message):
        oracle.docker_read(data)


def test_docker_reader_line_bound_is_bufio_max_token_size():
    assert oracle.docker_read(b"A=" + b"x" * (64 * 1024 - 3) + b"\n") == {"A": "x" * (64 * 1024 - 3)}


def test_slotgen_reader_is_runtime_values():
    assert oracle.slotgen_read(ENGAGED)[KILL_VAR] == "true"
    assert set(oracle.slotgen_read(b"")) == {"SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI",
                                             "SLOTGEN_AI_ROLLOUT_PERCENT", "SLOTGEN_AI_ALLOWLIST_PATH"}


def test_what_no_reader_can_read_is_not_engaged(tmp_path):
    assert not oracle.kill_engaged_everywhere(tmp_path / "missing.env")
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    assert not oracle.kill_engaged_everywhere(fifo)  # never opened: it would block every reader
    readings = oracle.read_all(tmp_path)
    assert all(isinstance(v, oracle.NotReadable) for v in readings.values())
    link = tmp_path / "link.env"
    (tmp_path / "target.env").write_bytes(ENGAGED)
    link.symlink_to(tmp_path / "target.env")
    assert oracle.kill_engaged_everywhere(link)  # a symlink is followed, as the runtime follows it
