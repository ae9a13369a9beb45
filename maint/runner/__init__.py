"""When and what: pure transitions, idempotent steps, the reconcile pass and the scheduler.

Names are loaded on first use (``__getattr__``): a command that only reads the database never
imports APScheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maint import lazy

if TYPE_CHECKING:
    from maint.runner.announce import KubernetesEvents
    from maint.runner.claims import Claims
    from maint.runner.overdue import OverdueResult, restore_overdue
    from maint.runner.reconcile import PassResult, Runner, make_claims
    from maint.runner.scheduler import Scheduler
    from maint.runner.steps import Steps
    from maint.runner.transitions import Decision, Step, Window, decide, due_at, utcnow

_NAMES = {  # name -> (module, name there)
    "Claims": ("claims", "Claims"),
    "Decision": ("transitions", "Decision"),
    "KubernetesEvents": ("announce", "KubernetesEvents"),
    "OverdueResult": ("overdue", "OverdueResult"),
    "PassResult": ("reconcile", "PassResult"),
    "Runner": ("reconcile", "Runner"),
    "Scheduler": ("scheduler", "Scheduler"),
    "Step": ("transitions", "Step"),
    "Steps": ("steps", "Steps"),
    "Window": ("transitions", "Window"),
    "decide": ("transitions", "decide"),
    "due_at": ("transitions", "due_at"),
    "make_claims": ("reconcile", "make_claims"),
    "restore_overdue": ("overdue", "restore_overdue"),
    "utcnow": ("transitions", "utcnow"),
}

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


__getattr__ = lazy.loader(__name__, _NAMES)
