"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer


@pytest.fixture
def endpoint():
    """The shipped OpenAI-compatible server on 127.0.0.1, answering `ok` (tests may change its mode)."""
    with FakeOpenAIServer("ok") as server:
        yield server
