"""Fencing in the database: claims by the database's clock, a generation per claim, and
transitions, events and renewals refused once the claim is gone (SQLite and PostgreSQL).

Replica clocks are deliberately wrong here (hours ahead or behind): the store never reads them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from maint.errors import ClaimLost, Conflict
from maint.notices import Claim, Event, NoticeStore, TargetState
from tests.support.store import add_notice, event, open_store

TTL = timedelta(seconds=30)


@pytest.fixture
def store(database_url: str) -> Iterator[NoticeStore]:
    with open_store(database_url) as s:
        yield s


def _target(store: NoticeStore, service: str = "web") -> int:
    return add_notice(store, service=service).targets[0].id


def _event(notice_id: int, outcome: str) -> Event:
    return event(notice_id, "prepare", outcome)


def test_every_claim_is_a_new_generation_and_a_live_claim_is_never_taken(store) -> None:
    target = _target(store)
    first = store.claim(target, owner="a", ttl=TTL)
    assert first is not None and first.generation == 1
    assert store.claim(target, owner="b", ttl=TTL) is None  # live: b waits, whatever b's clock
    again = store.claim(target, owner="a", ttl=TTL)  # the same owner again: still a new one
    assert again is not None and again.generation == 2
    store.release(again)
    taken = store.claim(target, owner="b", ttl=TTL)
    assert taken is not None and taken.generation == 3


def test_a_claim_expires_by_the_database_clock_and_then_renewal_is_refused(store) -> None:
    target = _target(store)
    short = store.claim(target, owner="a", ttl=timedelta(seconds=0.3))
    assert short is not None
    assert store.renew(short, ttl=timedelta(seconds=0.3))
    time.sleep(0.8)
    # Nobody took it over, but it expired: a renewal would resurrect a claim another replica
    # was entitled to take meanwhile.
    assert not store.renew(short, ttl=TTL)
    taken = store.claim(target, owner="b", ttl=TTL)
    assert taken is not None and taken.generation == short.generation + 1
    assert not store.renew(short, ttl=TTL)
    store.release(short)  # an old generation's release leaves the new holder alone
    assert store.claim(target, owner="c", ttl=TTL) is None
    assert store.renew(taken, ttl=TTL)


def test_a_transition_under_a_lost_generation_is_refused_and_writes_nothing(store) -> None:
    target = _target(store)
    notice_id = store.target(target).notice.id
    old = store.claim(target, owner="a", ttl=timedelta(seconds=0.3))
    assert old is not None
    time.sleep(0.8)
    new = store.claim(target, owner="b", ttl=TTL)
    assert new is not None
    before = store.events(notice_id)

    with store.fenced(old), pytest.raises(ClaimLost, match=r"generation 1 of a is gone \(b holds"):
        store.transition(
            target,
            expect=[TargetState.SCHEDULED],
            to=TargetState.PREPARING,
            due_at=None,
            record=_event(notice_id, "started"),
        )
    with store.fenced(old), pytest.raises(ClaimLost):
        store.record(_event(notice_id, "progress"))
    with store.fenced(old), pytest.raises(ClaimLost):
        store.reschedule(target, due_at=None)
    assert store.target(target).target.state is TargetState.SCHEDULED
    assert store.events(notice_id) == before

    with store.fenced(new):  # the holder writes as before; a wrong state is still a Conflict
        moved = store.transition(
            target,
            expect=[TargetState.SCHEDULED],
            to=TargetState.PREPARING,
            due_at=None,
            record=_event(notice_id, "started"),
        )
        assert moved.state is TargetState.PREPARING
        with pytest.raises(Conflict, match="is PREPARING") as refused:
            store.transition(
                target, expect=[TargetState.SCHEDULED], to=TargetState.PREPARING, due_at=None
            )
        assert not isinstance(refused.value, ClaimLost)


def test_an_expired_claim_fences_even_before_anyone_takes_over(store) -> None:
    target = _target(store)
    notice_id = store.target(target).notice.id
    claim = store.claim(target, owner="a", ttl=timedelta(seconds=0.3))
    assert claim is not None
    time.sleep(0.8)
    with store.fenced(claim), pytest.raises(ClaimLost, match="it expired"):
        store.transition(
            target, expect=[TargetState.SCHEDULED], to=TargetState.PREPARING, due_at=None
        )
    with store.fenced(claim), pytest.raises(ClaimLost, match="it expired"):
        store.record(_event(notice_id, "progress"))


def test_the_fence_covers_only_its_own_target(store) -> None:
    mine, other = _target(store), _target(store, "api")
    stale = Claim(target_id=mine, owner="a", generation=99)
    with store.fenced(stale):
        moved = store.transition(
            other, expect=[TargetState.SCHEDULED], to=TargetState.PREPARING, due_at=None
        )
    assert moved.state is TargetState.PREPARING
