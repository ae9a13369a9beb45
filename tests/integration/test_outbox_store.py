"""The outbox of webhook notifications and the sweeps' heartbeat (migration 0006), on SQLite
and PostgreSQL: queued in the event's transaction, once per milestone, leased to one sender."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from maint.notices import Event, NoticeStore, TargetState
from maint.notices.outbox import Routing, channel_key
from maint.notices.store import _MIGRATIONS
from tests.support.outbox import deliveries
from tests.support.store import add_notice, event, open_store

NOW = datetime.now(UTC).replace(microsecond=0)
CHANNELS = (channel_key("https://a.example/x"), channel_key("https://b.example/y"))


def route(event: Event) -> tuple[str, str] | None:
    """A routing as the runner's (``runner.notify.route``): a few milestones, a drift once per
    foreign selector (here: the detail up to the first comma)."""
    kind = {
        ("switch", "ok"): "switched",
        ("switch", "already"): "switched",
        ("restore", "ok"): "restored",
        ("drift", "foreign"): "drift",
    }.get((event.step, event.outcome))
    if kind is None:
        return None
    return kind, event.detail.split(",")[0] if kind == "drift" else ""


@pytest.fixture
def store(database_url: str) -> Iterator[NoticeStore]:
    with open_store(database_url, routing=Routing(channels=CHANNELS, route=route)) as s:
        yield s


def _target(store: NoticeStore) -> tuple[int, int, str]:
    notice = add_notice(store, now=NOW)
    return notice.id, notice.targets[0].id, "shop/web"


def _event(notice_id: int, step: str, outcome: str, detail: str = "") -> Event:
    return event(notice_id, step, outcome, detail, at=NOW)


def test_a_milestone_is_queued_once_per_webhook_in_the_events_transaction(store, database_url):
    notice_id, target_id, target = _target(store)
    store.record(_event(notice_id, "switch", "ok", "selector ... (+0.1s from start)"))
    store.record(_event(notice_id, "switch", "already"))  # a retry after a crash: no second
    store.record(_event(notice_id, "endpoints", "ok"))  # no milestone
    store.transition(
        target_id,
        expect=(TargetState.SCHEDULED,),
        to=TargetState.ACTIVE,
        due_at=None,
        record=_event(notice_id, "drift", "foreign", "selector is {'x': 'y'}, not ..."),
    )
    store.record(_event(notice_id, "drift", "foreign", "selector is {'x': 'y'}, not ... again"))
    store.record(_event(notice_id, "drift", "foreign", "selector is {'x': 'z'}, not ..."))
    queued = deliveries(database_url, notice_id)
    assert [(c, k) for c, _, k, _ in queued] == [
        (CHANNELS[0], "switched"),
        (CHANNELS[1], "switched"),
        (CHANNELS[0], "drift"),
        (CHANNELS[1], "drift"),
        (CHANNELS[0], "drift"),
        (CHANNELS[1], "drift"),
    ]
    assert {t for _, t, _, _ in queued} == {target}


def test_a_notification_is_leased_to_one_sender_until_sent_or_its_lease_passes(store):
    notice_id, _, _ = _target(store)
    store.record(_event(notice_id, "restore", "ok"))
    a = store.outbox.claim(channel=CHANNELS[0], owner="a", lease=1.0)
    assert a is not None and a.kind == "restored" and a.attempts == 1
    assert a.event == _event(notice_id, "restore", "ok")  # the event it tells of, as recorded
    assert store.outbox.claim(channel=CHANNELS[0], owner="b", lease=1.0) is None
    time.sleep(1.2)  # a died holding it: the lease passes
    b = store.outbox.claim(channel=CHANNELS[0], owner="b", lease=30.0)
    assert b is not None and b.id == a.id and b.attempts == 2
    assert not store.outbox.sent(a, owner="a"), "a finished what b holds now"
    assert store.outbox.sent(b, owner="b")
    assert store.outbox.claim(channel=CHANNELS[0], owner="c", lease=1.0) is None
    # The other webhook's copy is untouched, and a failure is retried, then given up.
    other = store.outbox.claim(channel=CHANNELS[1], owner="a", lease=30.0)
    assert other is not None
    assert store.outbox.failed(other, owner="a", error="HTTP 500", retry_in=0.5)
    assert store.outbox.claim(channel=CHANNELS[1], owner="a", lease=30.0) is None
    time.sleep(0.7)
    again = store.outbox.claim(channel=CHANNELS[1], owner="a", lease=30.0)
    assert again is not None and again.attempts == 2
    assert store.outbox.failed(again, owner="a", error="HTTP 500", retry_in=None)
    assert store.outbox.backlog().gave_up == 1 and store.outbox.backlog().pending == 0


def test_each_replica_s_sweep_is_kept_by_the_database_clock(store):
    store.sweeps.completed("a")
    store.sweeps.completed("b")
    store.sweeps.completed("a")
    replicas, now = store.sweeps.last()
    assert set(replicas) == {"a", "b"}
    assert all(abs((now - at).total_seconds()) < 5 for at in replicas.values())


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def test_migration_0006_adds_the_outbox_and_the_sweeps_and_goes_back_down(database_url):
    config = _alembic(database_url)
    command.upgrade(config, "0005")
    engine = sa.create_engine(database_url)
    try:
        assert not {"notifications", "sweeps"} & set(sa.inspect(engine).get_table_names())
        command.upgrade(config, "head")
        tables = set(sa.inspect(engine).get_table_names())
        assert {"notifications", "sweeps"} <= tables
        uniques = sa.inspect(engine).get_unique_constraints("notifications")
        assert [u["column_names"] for u in uniques] == [
            ["channel", "notice_id", "target", "kind", "once"]
        ]
        command.downgrade(config, "0005")
        assert not {"notifications", "sweeps"} & set(sa.inspect(engine).get_table_names())
        command.upgrade(config, "head")
    finally:
        engine.dispose()
