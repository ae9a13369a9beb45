"""The display zone is stored with the notice (migration 0004) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from maint.notices import NoticeStore, new_notice
from maint.notices.store import _MIGRATIONS

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store(database_url: str) -> Iterator[NoticeStore]:
    s = NoticeStore(database_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()


def _add(store: NoticeStore, start: datetime, **extra: object) -> int:
    new = new_notice(
        title="점검",
        reason="r",
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        targets=[],
        lang="ko",
        maintenance=False,
        now=NOW,
        start_tolerance=timedelta(minutes=5),
        **extra,  # type: ignore[arg-type]
    )
    return store.add(new, now=NOW, due_at=None).id


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def test_a_notice_keeps_its_zone_or_offset_and_none_when_utc(store: NoticeStore) -> None:
    start = NOW + timedelta(hours=2)
    seoul = _add(store, start, timezone="Asia/Seoul")
    offset = _add(store, start.astimezone(timezone(timedelta(hours=9))))
    utc = _add(store, start)
    assert store.get(seoul).display_zone == "Asia/Seoul"
    assert store.get(offset).display_zone == "+09:00"
    assert store.get(offset).start == start  # stored times stay UTC
    assert store.get(utc).display_zone is None
    assert [n.display_zone for n in store.recent() if n.id == seoul] == ["Asia/Seoul"]


def test_migration_0004_adds_a_nullable_column_and_goes_back_down(database_url: str) -> None:
    config = _alembic(database_url)
    command.upgrade(config, "0003")
    engine = sa.create_engine(database_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("notices")}
        assert "display_zone" not in columns
        with engine.begin() as connection:  # a notice stored before 0004
            connection.execute(
                sa.text(
                    "INSERT INTO notices (title, reason, lang, maintenance, start_at, end_at, "
                    "created_at, updated_at) VALUES ('old', 'r', 'en', false, :s, :e, :s, :s)"
                ),
                {"s": datetime(2026, 12, 1), "e": datetime(2026, 12, 2)},
            )
        command.upgrade(config, "head")
        inspected = {c["name"]: c for c in sa.inspect(engine).get_columns("notices")}
        assert inspected["display_zone"]["nullable"] is True
        store = NoticeStore(database_url)
        try:
            old = store.recent()[0]
            assert old.title == "old" and old.display_zone is None
        finally:
            store.close()
        command.downgrade(config, "0003")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("notices")}
        assert "display_zone" not in columns
        command.upgrade(config, "head")
    finally:
        engine.dispose()
