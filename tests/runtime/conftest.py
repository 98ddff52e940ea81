"""Fixtures for the runtime tests: a real fake OpenAI endpoint on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer


@pytest.fixture(autouse=True)
def _no_ambient_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these; a developer's real key or endpoint must never leak into a test.
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI server in mode "ok"; the slow mode waits 0.5 s."""
    with FakeOpenAIServer(mode="ok", delay_s=0.5) as fake:
        yield fake
