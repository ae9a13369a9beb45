"""When and what: pure transitions, idempotent steps, the reconcile pass and the scheduler.

Names are loaded on first use (``__getattr__``): a command that only reads the database never
imports APScheduler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maint.runner.announce import KubernetesEvents
    from maint.runner.claims import Claims
    from maint.runner.overdue import OverdueResult, restore_overdue
    from maint.runner.reconcile import PassResult, Runner, make_claims, utcnow
    from maint.runner.scheduler import Scheduler
    from maint.runner.steps import Steps
    from maint.runner.transitions import Decision, Step, Window, decide, due_at

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
    "utcnow": ("reconcile", "utcnow"),
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


def __getattr__(name: str) -> Any:
    """Import the module behind ``name`` on first use (then it is an ordinary global); a
    submodule's name (``build.kaniko``) is that submodule, as after an eager import."""
    if name not in _NAMES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module, attribute = _NAMES[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value
