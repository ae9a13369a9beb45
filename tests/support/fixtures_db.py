"""Database fixtures: the same test runs against SQLite and a real PostgreSQL.

SQLite is what a single operator runs; PostgreSQL is what production runs. Differences that
matter (transactional DDL, time zones, locking) only show up on the real server, so database
tests take ``database_url`` and run once per backend. Each PostgreSQL test gets its own freshly
created database, which makes tests independent and lets them run in any order.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from tests.support.require import missing

DEFAULT_POSTGRES_URL = "postgresql+psycopg://maint:maint@127.0.0.1:5432/postgres"


def _conninfo(url: URL) -> str:
    """libpq connection string for a SQLAlchemy URL (libpq knows no ``postgresql+psycopg``)."""
    return make_conninfo(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        dbname=url.database or "postgres",
        user=url.username or None,
        password=url.password or None,
        connect_timeout=3,
    )


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a role that may CREATE DATABASE; tests get their own databases through it."""
    url = os.environ.get("MAINT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    parsed = make_url(url)
    try:
        with psycopg.connect(_conninfo(parsed)):
            pass
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        missing(
            f"PostgreSQL on {parsed.host}:{parsed.port or 5432} ({first_line})",
            "run tools/ensure-services.sh (apt-get install postgresql)",
        )
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database for this test only; dropped afterwards (even if still in use)."""
    admin = make_url(postgres_admin_url)
    name = f"maint_test_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction block: autocommit.
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        # WITH (FORCE): a leaked pool connection from the test must not leak the database.
        # Retried: an autovacuum worker in it can make one attempt fail (InsufficientPrivilege).
        for attempt in range(5):
            try:
                with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
                break
            except psycopg.Error:
                if attempt == 4:
                    raise
                time.sleep(0.5)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once for SQLite (a file in tmp_path) and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'maint.db'}"
    # Resolved lazily so the SQLite half runs even where PostgreSQL is absent.
    return str(request.getfixturevalue("postgres_url"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests asking for PostgreSQL directly get the ``postgres`` marker (``-m "not postgres"``)."""
    for item in items:
        if {"postgres_url", "postgres_admin_url"}.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
