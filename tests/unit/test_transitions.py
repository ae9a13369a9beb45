"""The transition table: what a target does next, from its state and the clock alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maint.notices import TargetState as S
from maint.runner import Step, Window, decide, due_at

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
