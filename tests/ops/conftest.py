"""Fixtures of the write-protocol tests that drive the CLI."""

from __future__ import annotations

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer


@pytest.fixture
def endpoint():
    """The rehearsal endpoint in `ok` mode, on a free port of 127.0.0.1."""
    with FakeOpenAIServer("ok") as server:
        yield server


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    """This machine's memory of heads (SPEC 14, "No rewind"), private to the test."""
    home = tmp_path / "state-home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home
