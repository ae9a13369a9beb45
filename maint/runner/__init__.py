"""When and what: pure transitions, idempotent steps, the reconcile pass and the scheduler."""

from maint.runner.overdue import OverdueResult, restore_overdue
from maint.runner.reconcile import PassResult, Runner, utcnow
from maint.runner.scheduler import Scheduler
from maint.runner.steps import Steps
from maint.runner.transitions import Decision, Step, Window, decide, due_at

__all__ = [
    "Decision",
    "OverdueResult",
    "PassResult",
    "Runner",
    "Scheduler",
    "Step",
    "Steps",
    "Window",
    "decide",
    "due_at",
    "restore_overdue",
    "utcnow",
]
