"""Deterministic terminals for every test: fixed width, no colour, no operator leaking in."""

import pytest


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session")
def _state_home(tmp_path_factory):
    return tmp_path_factory.mktemp("xdg-state")


@pytest.fixture(autouse=True)
def _deterministic_terminal(monkeypatch, _cache_home, _state_home):
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))  # the verified-log cache stays out of $HOME
    monkeypatch.setenv("XDG_STATE_HOME", str(_state_home))  # so does this machine's memory of heads (SPEC 14)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    for name in ("SLOTGEN_OPERATOR", "SLOTGEN_WORKSPACE", "SLOTGEN_AI_KILL", "FEATURE_SLOTGEN_AI",
                 "SLOTGEN_AI_ROLLOUT_PERCENT", "SLOTGEN_AI_ALLOWLIST_PATH", "SLOTGEN_FAULT",
                 "SLOTGEN_UNSAFE_DISABLE_LOCK", "OPENAI_BASE_URL", "OPENAI_API_KEY", "SLOTGEN_SIGNING_KEY",
                 "SLOTGEN_STATE_URL", "PGPASSWORD", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the whole session (the OS's server binaries; a machine
    without them fails here, it does not skip: .ci/run installs them)."""
    from slotgen_ops.store.pgserver import LocalPostgres

    with LocalPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database on that server; its owner's URL (the superuser's)."""
    import secrets

    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url("slotgen_admin", postgres.password, name)
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
