"""What to do next for one target: a pure function of its state, the clock and the notice.

The scheduler only decides *when* to ask; the steps do the I/O. Every rule is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from maint.notices import TargetState


def utcnow() -> datetime:
    """The default clock of the runner and the App: aware UTC."""
    return datetime.now(UTC)


class Step(StrEnum):
    WAIT = "wait"  # nothing to do before due_at
    PREPARE = "prepare"  # render, build, start the page Pod (resumes where it stopped)
    OBSERVE = "observe"  # READY/ACTIVE: the Pod still serves, the selector is still ours
    SWITCH = "switch"
    RESTORE = "restore"
    FORCE_RESTORE = "force-restore"  # after end + grace: from the Service annotation alone
    ROLLBACK = "rollback"  # never switched (or switched without a record): undo, untouched
    CANCEL = "cancel"
    RETRY = "retry"  # a step failed in a way that may pass: the same step again later


# Before the switch, a transient failure is retried until this long after the start: a page
# that is ready a little late still beats rolling the window back.
PREPARE_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    lead: timedelta
    grace: timedelta
    cancelled: bool = False


@dataclass(frozen=True)
class Decision:
    step: Step
    reason: str


def decide(state: TargetState, *, now: datetime, window: Window) -> Decision:
    w = window
    if state.terminal:
        return Decision(Step.WAIT, "done")
    if state in (TargetState.SCHEDULED, TargetState.PREPARING, TargetState.READY):
        if w.cancelled:
            return Decision(Step.CANCEL, "cancelled by an operator")
        if now >= w.end:
            return Decision(Step.ROLLBACK, "the window ended before the page was switched in")
        if state is TargetState.READY:
            if now >= w.start:
                return Decision(Step.SWITCH, "start reached")
            return Decision(Step.OBSERVE, "waiting for start")
        if now >= w.start - w.lead:
            return Decision(Step.PREPARE, "prepare lead reached")
        return Decision(Step.WAIT, "before the prepare lead")
    if now >= w.end + w.grace:
        return Decision(Step.FORCE_RESTORE, "end + grace passed")
    if w.cancelled:  # switched (or restoring) and then cancelled: give the Service back now
        return Decision(Step.RESTORE, "cancelled by an operator")
    if state is TargetState.RESTORING or now >= w.end:
        return Decision(Step.RESTORE, "end reached")
    return Decision(Step.OBSERVE, "in the window")


def due_at(state: TargetState, *, window: Window) -> datetime | None:
    """When the target next needs attention if nothing else happens (None once terminal)."""
    w = window
    if state.terminal:
        return None
    if state is TargetState.SCHEDULED:
        return w.start - w.lead
    if state in (TargetState.PREPARING, TargetState.READY):
        return w.start
    if state is TargetState.ACTIVE:
        return w.end
    return w.end + w.grace


def after_failure(state: TargetState, *, now: datetime, window: Window, permanent: bool) -> Step:
    """What a failed step leads to. Before the switch: roll back on a permanent error (or
    once the start plus ``PREPARE_MARGIN`` has passed), else the same step again. After the
    switch the restore is always retried (the forced restore at end + grace is the net)."""
    before_switch = state in (TargetState.SCHEDULED, TargetState.PREPARING, TargetState.READY)
    if before_switch and (permanent or now >= window.start + PREPARE_MARGIN):
        return Step.ROLLBACK
    return Step.RETRY


def service_gone(state: TargetState) -> TargetState:
    """The terminal state of a target whose Service was deleted (or deleted and recreated, so
    our switch is gone with it): before the switch nothing was touched (ROLLED_BACK); after it
    the page served its part of the window (COMPLETED)."""
    if state in (TargetState.SCHEDULED, TargetState.PREPARING, TargetState.READY):
        return TargetState.ROLLED_BACK
    return TargetState.COMPLETED


def backoff(attempt: int, *, first: float, cap: float) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): doubling from ``first``, capped."""
    return float(min(cap, first * 2.0 ** max(0, attempt - 1)))
