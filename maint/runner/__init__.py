"""When and what: pure transitions, idempotent steps, the reconcile pass and the scheduler."""

from maint.runner.announce import KubernetesEvents
from maint.runner.claims import Claims
from maint.runner.overdue import OverdueResult, restore_overdue
from maint.runner.reconcile import PassResult, Runner, make_claims, utcnow
from maint.runner.scheduler import Scheduler
from maint.runner.steps import Steps
from maint.runner.transitions import Decision, Step, Window, decide, due_at

__all__ = [
    "Claims",
    "Decision",
    "KubernetesEvents",
    "OverdueResult",
    "PassResult",
    "Runner",
    "Scheduler",
    "Step",
    "Steps",
    "Window",
    "decide",
    "due_at",
    "make_claims",
    "restore_overdue",
    "utcnow",
]
