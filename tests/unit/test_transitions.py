"""The transition table: what a target does next, from its state and the clock alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maint.notices import TargetState as S
from maint.runner import Step, Window, decide, due_at
from maint.runner.transitions import PREPARE_MARGIN, after_failure, backoff, service_gone

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
LEAD = timedelta(minutes=10)
GRACE = timedelta(minutes=5)
W = Window(start=START, end=END, lead=LEAD, grace=GRACE)
CANCELLED = Window(start=START, end=END, lead=LEAD, grace=GRACE, cancelled=True)


def at(delta: timedelta) -> datetime:
    return START + delta


@pytest.mark.parametrize(
    ("state", "now", "window", "step"),
    [
        (S.SCHEDULED, at(-LEAD - timedelta(seconds=1)), W, Step.WAIT),
        (S.SCHEDULED, at(-LEAD), W, Step.PREPARE),
        (S.PREPARING, at(-timedelta(minutes=1)), W, Step.PREPARE),
        (S.READY, at(-timedelta(seconds=1)), W, Step.OBSERVE),
        (S.READY, START, W, Step.SWITCH),
        (S.ACTIVE, START, W, Step.OBSERVE),
        (S.ACTIVE, END, W, Step.RESTORE),
        (S.RESTORING, END + timedelta(minutes=1), W, Step.RESTORE),
        (S.ACTIVE, END + GRACE, W, Step.FORCE_RESTORE),
        (S.RESTORING, END + GRACE, W, Step.FORCE_RESTORE),
        (S.SCHEDULED, END, W, Step.ROLLBACK),
        (S.PREPARING, END, W, Step.ROLLBACK),
        (S.READY, END, W, Step.ROLLBACK),
        (S.SCHEDULED, at(-LEAD * 3), CANCELLED, Step.CANCEL),
        (S.READY, START, CANCELLED, Step.CANCEL),
        # a late prepare finished after the cancel: READY never switches
        (S.READY, START + timedelta(minutes=5), CANCELLED, Step.CANCEL),
        (S.PREPARING, START + timedelta(minutes=5), CANCELLED, Step.CANCEL),
        # switched, then cancelled: restore now, long before the planned end
        (S.ACTIVE, START + timedelta(minutes=1), CANCELLED, Step.RESTORE),
        (S.RESTORING, START + timedelta(minutes=1), CANCELLED, Step.RESTORE),
        (S.ACTIVE, END + GRACE, CANCELLED, Step.FORCE_RESTORE),
        (S.COMPLETED, END + GRACE * 10, W, Step.WAIT),
        (S.FAILED, END + GRACE * 10, W, Step.WAIT),
        (S.ROLLED_BACK, START, W, Step.WAIT),
        (S.CANCELLED, START, W, Step.WAIT),
    ],
)
def test_decide_picks_the_step_for_state_and_clock(state, now, window, step):
    assert decide(state, now=now, window=window).step is step


def test_a_scheduler_waking_long_after_the_end_still_restores_an_active_window():
    late = END + timedelta(days=2)
    assert decide(S.ACTIVE, now=late, window=W).step is Step.FORCE_RESTORE


def test_a_window_never_switched_is_rolled_back_not_restored_when_the_end_passed():
    assert decide(S.READY, now=END + timedelta(days=1), window=W).step is Step.ROLLBACK


@pytest.mark.parametrize(
    ("state", "due"),
    [
        (S.SCHEDULED, START - LEAD),
        (S.PREPARING, START),
        (S.READY, START),
        (S.ACTIVE, END),
        (S.RESTORING, END + GRACE),
        (S.COMPLETED, None),
        (S.ROLLED_BACK, None),
    ],
)
def test_due_at_is_the_next_moment_the_state_needs_attention(state, due):
    assert due_at(state, window=W) == due


MARGIN = PREPARE_MARGIN


@pytest.mark.parametrize(
    ("state", "now", "permanent", "step"),
    [
        # before the switch a failure that may pass is retried until start + margin ...
        (S.PREPARING, at(-LEAD), False, Step.RETRY),
        (S.PREPARING, START, False, Step.RETRY),
        (S.READY, START + MARGIN - timedelta(seconds=1), False, Step.RETRY),
        (S.PREPARING, START + MARGIN, False, Step.ROLLBACK),
        (S.READY, START + MARGIN, False, Step.ROLLBACK),
        # ... and a permanent one (Forbidden, invalid, no such base image) rolls back at once
        (S.PREPARING, at(-LEAD), True, Step.ROLLBACK),
        (S.READY, START, True, Step.ROLLBACK),
        # after the switch the restore is always tried again
        (S.ACTIVE, END, True, Step.RETRY),
        (S.RESTORING, END + GRACE, False, Step.RETRY),
    ],
)
def test_after_failure_retries_what_may_pass_until_the_start_and_rolls_back_the_rest(
    state, now, permanent, step
):
    assert after_failure(state, now=now, window=W, permanent=permanent) is step


@pytest.mark.parametrize(
    ("state", "ending"),
    [
        (S.PREPARING, S.ROLLED_BACK),
        (S.READY, S.ROLLED_BACK),
        (S.ACTIVE, S.COMPLETED),
        (S.RESTORING, S.COMPLETED),
    ],
)
def test_a_vanished_service_ends_the_target_terminally(state, ending):
    assert service_gone(state) is ending
    assert service_gone(state).terminal


def test_backoff_doubles_from_the_first_delay_and_stops_at_the_cap():
    delays = [backoff(n, first=5, cap=60) for n in range(1, 7)]
    assert delays == [5, 10, 20, 40, 60, 60]
