"""The volley of an instant: who waits for whom after a PATCH, and who does not."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from maint.runner.instant import STRAGGLER_WAIT, Instants

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def _clock() -> datetime:
    return NOW


def _through_in(instants: Instants, at: datetime, *, interrupted: bool) -> float:
    """Seconds one member of a two-member volley takes to be through with its PATCH while the
    other is still waiting for the instant."""
    with (
        instants.join(at, target_id=2),
        instants.join(at, target_id=1) as member,
    ):
        if interrupted:
            instants.interrupt(1, now=NOW - timedelta(seconds=1))
        began = time.monotonic()
        member.done(fired=True)
        return time.monotonic() - began


def test_a_member_fired_before_its_instant_does_not_wait_for_the_rest_of_its_volley():
    """(An intent such as ``notice end`` now: the others still wait for the instant.)"""
    took = _through_in(Instants(clock=_clock), NOW + timedelta(seconds=30), interrupted=False)
    assert took < STRAGGLER_WAIT / 5


def test_a_member_woken_by_an_intent_does_not_wait_for_the_rest_of_its_volley():
    took = _through_in(Instants(clock=_clock), NOW, interrupted=True)
    assert took < STRAGGLER_WAIT / 5


def test_a_member_fired_at_its_instant_waits_for_the_rest_of_its_volley_bounded():
    took = _through_in(Instants(clock=_clock), NOW, interrupted=False)
    assert STRAGGLER_WAIT - 0.5 < took < STRAGGLER_WAIT + 1
