"""What to do next for one target: a pure function of its state, the clock and the notice.

The scheduler only decides *when* to ask; the steps do the I/O. Every rule is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from maint.notices import TargetState


class Step(StrEnum):
    WAIT = "wait"  # nothing to do before due_at
    PREPARE = "prepare"  # render, build, start the page Pod (resumes where it stopped)
    OBSERVE = "observe"  # READY/ACTIVE: the Pod still serves, the selector is still ours
    SWITCH = "switch"
    RESTORE = "restore"
    FORCE_RESTORE = "force-restore"  # after end + grace: from the Service annotation alone
    ROLLBACK = "rollback"  # never switched (or switched without a record): undo, untouched
    CANCEL = "cancel"


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
