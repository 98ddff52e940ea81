"""Deterministic terminals for every test: fixed width, no colour, no operator leaking in."""

import pytest


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _deterministic_terminal(monkeypatch, _cache_home):
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))  # the verified-log cache stays out of $HOME
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    for name in ("SLOTGEN_OPERATOR", "SLOTGEN_WORKSPACE", "SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI",
                 "SLOTGEN_AI_ROLLOUT_PERCENT", "SLOTGEN_AI_ALLOWLIST_PATH", "SLOTGEN_FAULT",
                 "SLOTGEN_UNSAFE_DISABLE_LOCK", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
