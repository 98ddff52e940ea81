"""Fixtures of the team-backend tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cli.helpers import slotgen  # noqa: E402


@pytest.fixture
def pg_team(tmp_path, pg_url):
    """Workspace a made by `init --state URL`, and b, a second operator's copy of it (as a git clone would be),
    with the environment variables their commands need and the local OpenAI-compatible server."""
    with FakeOpenAIServer("ok") as server:
        env = {"SLOTGEN_STATE_URL": pg_url, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-local"}
        a, b = tmp_path / "a", tmp_path / "b"
        made = slotgen("init", str(a), "--state", pg_url, cwd=tmp_path)
        assert made.code == 0, made.stderr
        shutil.copytree(a, b)
        yield a, b, env, server
