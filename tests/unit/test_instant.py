"""The volley of an instant: who waits for whom after a PATCH, and who does not; and the watch
cache kept quiet while it fires."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from maint.cluster import caching
from maint.cluster.caching import Cache
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


def test_the_watch_cache_is_quiet_from_the_first_patch_until_every_member_is_through():
    """(``Cache.quiet``: its informers apply no event while the volley's PATCHes leave.)"""
    cache = Cache(cluster=None)  # type: ignore[arg-type]  # never lists: no informer here
    instants = Instants(clock=_clock, quiet=cache.quiet)
    calm = cache._calm
    with instants.join(NOW, target_id=1) as first, instants.join(NOW, target_id=2) as second:
        assert calm.is_set()
        with first.firing():
            assert not calm.is_set()
        with second.firing():
            pass
        first.done(fired=False)
        assert not calm.is_set()  # the second is not through yet
        second.done(fired=False)
        assert calm.is_set()


def test_an_informer_holds_its_events_for_a_volley_at_most_quiet_max(monkeypatch):
    monkeypatch.setattr(caching, "QUIET_MAX", 0.3)
    cache = Cache(cluster=None)  # type: ignore[arg-type]
    informer = caching.Informer(
        SimpleNamespace(core=SimpleNamespace(list_namespaced_pod=None)),
        kind="Pod",
        namespace="ns",
        calm=cache._calm,
    )
    with cache.quiet():
        began = time.monotonic()
        informer._hold()
        informer._hold()  # the second event of the same volley waits no more
        assert 0.25 < time.monotonic() - began < 0.6
    began = time.monotonic()
    informer._hold()
    assert time.monotonic() - began < 0.05
