"""Alertmanager silences follow a window: a real Alertmanager, the real control plane.

The window is driven pass by pass (``tests.support.window``); Alertmanager is Debian's
``prometheus-alertmanager`` on a free loopback port. The observer is wired the way
``App.runner`` wires its observers (``Steps(observe=...)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import EventsV1Api

from maint.notices import TargetState
from maint.runner.alertmanager import Alertmanager
from maint.runner.silences import Silences
from tests.support.alertmanager import RealAlertmanager, alertmanager_running
from tests.support.processes import wait_until
from tests.support.window import Window

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

MARGIN = 120


@pytest.fixture
def alertmanager() -> Iterator[RealAlertmanager]:
    with alertmanager_running() as am:
        yield am


@pytest.fixture
def window_settings(alertmanager) -> dict[str, Any]:
    """The shared window, silencing through the real Alertmanager."""
    return {
        "build_timeout": 5,
        "step_retry_delay": 1,
        "alertmanager_url": alertmanager.url,
        "alertmanager_margin": MARGIN,
    }


def _observe(window: Window) -> Silences:
    """The silences observer, wired into the window's runner as App.runner would."""
    app = window.app
    silences = Silences(
        Alertmanager(app.settings.alertmanager_url, timeout=app.settings.alertmanager_timeout),
        store=app.store,
        settings=app.settings,
        clock=app.clock,
    )
    window.rewire(observe=silences)
    return silences


def _ours(am: RealAlertmanager, state: str | None = None) -> list[dict[str, Any]]:
    return [
        s
        for s in am.silences()
        if s["createdBy"] == "maint" and (state is None or s["status"]["state"] == state)
    ]


def _events(window: Window, notice_id: int, outcome: str | None = None) -> list[Any]:
    return [
        e
        for e in window.app.store.events(notice_id)
        if e.step == "silence" and (outcome is None or e.outcome == outcome)
    ]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _poll(window: Window) -> None:
    window.clock.advance(window.app.settings.poll_interval + 1)
    window.step()


def test_a_window_gets_one_silence_that_moves_on_extend_and_expires_on_an_early_end(
    window, alertmanager
):
    silences = _observe(window)
    notice = window.add()
    window.step()
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    created = wait_until(
        lambda: _events(window, notice.id, "created"), timeout=10, what="silence created"
    )
    [silence] = _ours(alertmanager)
    assert silence["id"] in created[0].detail
    assert {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]} == {
        ("namespace", window.namespace, False, True),
        ("service", "web", False, True),
    }
    assert _at(silence["startsAt"]) == notice.start - timedelta(seconds=MARGIN)
    assert _at(silence["endsAt"]) == notice.end + timedelta(seconds=MARGIN)
    assert f"maint notice {notice.id}" in silence["comment"]
    assert "Planned maintenance" in silence["comment"]

    # Extend: the same silence, posted again with its id, now ends at the new end + margin.
    new_end = notice.end + timedelta(minutes=30)
    window.app.extend_notice(notice.id, end=new_end.isoformat())
    _poll(window)
    wait_until(lambda: _events(window, notice.id, "updated"), timeout=10, what="silence updated")
    [moved] = _ours(alertmanager)
    assert moved["id"] == silence["id"]
    assert _at(moved["endsAt"]) == new_end + timedelta(seconds=MARGIN)
    assert _at(moved["startsAt"]) == _at(silence["startsAt"])

    # A restarted process (a new observer) that sees the switch again makes no second silence.
    silences.close()
    again = _observe(window)
    switched = next(e for e in window.app.store.events(notice.id) if e.step == "switch")
    again(switched)
    time.sleep(1.5)
    assert [s["id"] for s in _ours(alertmanager)] == [silence["id"]]
    assert len(_events(window, notice.id, "created")) == 1

    # `notice end` early: restored at once, and the silence expired within seconds.
    window.app.end_notice(notice.id, cancel=False)
    window.clock.advance(1)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
    ended = time.monotonic()
    wait_until(lambda: _ours(alertmanager, "expired"), timeout=10, what="silence expired")
    assert time.monotonic() - ended < 5
    assert [s["id"] for s in _ours(alertmanager)] == [silence["id"]]
    assert [e.outcome for e in _events(window, notice.id)] == ["created", "updated", "expired"]
    again.close()


def test_an_alertmanager_down_at_the_switch_is_retried_and_never_delays_the_window(
    window, alertmanager
):
    alertmanager.stop()
    silences = _observe(window)
    notice = window.add()
    window.step()
    window.clock.at(notice.start)
    began = time.monotonic()
    window.step()
    took = time.monotonic() - began
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.ACTIVE
    assert target.actual_start == notice.start  # the (settable) clock: switched on time
    failed = wait_until(
        lambda: _events(window, notice.id, "failed"), timeout=10, what="silence failed"
    )
    assert "retried" in failed[0].detail
    alertmanager.start()
    wait_until(lambda: _events(window, notice.id, "created"), timeout=20, what="silence created")
    [silence] = _ours(alertmanager)
    assert _at(silence["endsAt"]) == notice.end + timedelta(seconds=MARGIN)
    assert len(_events(window, notice.id, "failed")) == 1
    # The switch pass did not wait for Alertmanager: a pass is the usual second or two here.
    assert took < 15, f"switch pass took {took:.1f}s"
    silences.close()


def test_an_on_time_end_keeps_the_silence_for_the_margin_and_a_cancel_expires_it(
    window, alertmanager
):
    silences = _observe(window)
    first = window.add()
    window.step()
    window.clock.at(first.start)
    window.step()
    wait_until(lambda: _events(window, first.id, "created"), timeout=10, what="silence created")
    window.clock.at(first.end)
    window.step()
    assert window.notice(first.id).targets[0].state is TargetState.COMPLETED
    time.sleep(1.5)  # the observer saw `restore ok`: an on-time end leaves the silence alone
    [kept] = _ours(alertmanager)
    assert kept["status"]["state"] != "expired"
    assert _at(kept["endsAt"]) == first.end + timedelta(seconds=MARGIN)

    second = window.add(start_in=1800)
    window.step()
    window.clock.at(second.start)
    window.step()
    wait_until(lambda: _events(window, second.id, "created"), timeout=10, what="silence created")
    window.app.end_notice(second.id, cancel=True)
    window.clock.advance(1)
    window.step()
    assert window.notice(second.id).targets[0].state is TargetState.COMPLETED
    [expired] = wait_until(
        lambda: _events(window, second.id, "expired"), timeout=10, what="silence expired"
    )
    assert "cancelled" in expired.detail
    states = sorted(s["status"]["state"] for s in _ours(alertmanager))
    assert states == ["expired", "pending"]
    silences.close()


def test_a_page_rebuilt_before_the_switch_makes_no_silence_until_the_switch(window, alertmanager):
    silences = _observe(window)
    notice = window.add()
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    new_end = notice.end + timedelta(minutes=10)
    window.app.extend_notice(notice.id, end=new_end.isoformat())
    _poll(window)
    assert [e for e in window.app.store.events(notice.id) if e.step == "refresh"]
    time.sleep(1.5)
    assert _ours(alertmanager) == [] and _events(window, notice.id) == []
    window.clock.at(notice.start)
    window.step()
    wait_until(lambda: _events(window, notice.id, "created"), timeout=10, what="silence created")
    [silence] = _ours(alertmanager)
    assert _at(silence["endsAt"]) == new_end + timedelta(seconds=MARGIN)
    silences.close()


def test_app_runner_wires_silences_next_to_kubernetes_events(window, alertmanager, k8s):
    """No hand wiring: `maint run`'s App.runner sends both the silence and the Events."""
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    deadline = time.monotonic() + 15
    while not _ours(alertmanager) and time.monotonic() < deadline:
        time.sleep(0.2)
    [silence] = _ours(alertmanager)
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "namespace": window.namespace,
        "service": "web",
    }
    events = EventsV1Api(k8s)
    reasons: set[str] = set()
    while time.monotonic() < deadline + 10 and not {"Prepared", "Switched"} <= reasons:
        reasons = {e.reason for e in events.list_namespaced_event(window.namespace).items}
        time.sleep(0.2)
    assert {"Prepared", "Switched"} <= reasons


def test_an_app_builds_one_runner_and_parses_its_webhooks_once(window):
    """A second ``App.runner()`` would start another beacon, silences and webhook senders whose
    threads nobody closes: it is refused. The webhooks the store and the runner wire are parsed
    once."""
    assert window.runner is not None
    with pytest.raises(RuntimeError, match="called twice"):
        window.app.runner()
    assert window.app.webhooks is window.app.webhooks
