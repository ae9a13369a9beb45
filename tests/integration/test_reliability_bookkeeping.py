"""Runner bookkeeping is exception-safe: whatever a step raises, its target is released.

A step that raises something other than a ``MaintError`` (a bug; here a ``RuntimeError`` from
an observer of the event log, which runs on the step's path) must not leave the target busy
in this replica nor its claim held: the runner asks for a retry, and the next pass takes the
target up again and finishes the step where it stopped.

In-process with the settable clock; the control plane, the registry and the database (SQLite
and PostgreSQL) are real.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from maint.notices import Event, TargetState
from maint.runner import Runner, Steps, make_claims
from tests.support.processes import wait_until
from tests.support.window import Window

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"step_retry_delay": 1}


class FailsOnce:
    """An observer of the event log that raises on the first build event it sees."""

    def __init__(self) -> None:
        self.raised = 0

    def __call__(self, event: Event) -> None:
        if event.step == "build" and not self.raised:
            self.raised += 1
            raise RuntimeError("injected: a bug on the step's path")


def _runner(window: Window, *, observe: FailsOnce, wakes: list[datetime]) -> Runner:
    """A runner wired like ``App.runner`` whose steps get ``observe`` and whose wake-ups go to
    ``wakes``."""
    app = window.app
    claims = make_claims(app.store, app.settings)
    steps = Steps(
        api=app.api,
        store=app.store,
        registry=app.registry(),
        settings=app.settings,
        clock=window.clock,
        say=window.lines.append,
        renew=claims.renew,
        observe=observe,
    )
    return Runner(
        api=app.api,
        store=app.store,
        steps=steps,
        settings=app.settings,
        clock=window.clock,
        claims=claims,
        wake_at=wakes.append,
    )


def test_a_step_raising_a_runtime_error_frees_its_target_and_finishes_on_the_next_attempt(
    window,
):
    notice = window.add(start_in=600, length=600)
    target_id = window.notice(notice.id).targets[0].id
    fails, wakes = FailsOnce(), []
    runner = _runner(window, observe=fails, wakes=wakes)
    try:
        started = runner.pass_once().started
        assert started == [f"{notice.id}/{window.namespace}/web:prepare"]
        wait_until(lambda: fails.raised, timeout=30, what="the injected error")
        wait_until(lambda: not runner.running, timeout=10, what="the target to be released")
        assert runner.claims.count() == 0
        other = window.app.store.claim(
            target_id, owner="another replica", ttl=timedelta(seconds=60)
        )
        assert other is not None, "the claim was left held"
        window.app.store.release(other)
        retry = window.clock() + timedelta(seconds=window.app.settings.step_retry_delay)
        assert wakes == [retry]  # looked at again
        assert window.notice(notice.id).targets[0].state is TargetState.PREPARING

        window.clock.at(retry)
        assert runner.pass_once().started == started
        runner.wait_idle()
        assert window.notice(notice.id).targets[0].state is TargetState.READY
        outcomes = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
        assert ("build", "resumed") in outcomes  # the Job of the first attempt, not a new one
    finally:
        runner.shutdown()
