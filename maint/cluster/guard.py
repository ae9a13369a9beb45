"""Checks that run before every cluster write maint makes (create, delete, Service patch).

A check is a callable ``(what, namespace)`` that raises a ``MaintError`` to stop the write;
``what`` names the request (``"patch Service shop/web"``). Checks are kept in a context
variable, so one set by a step's worker thread applies to that step's writes only, and a check
installed for the whole process (with ``guarded`` around ``maint run``) applies to all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

WriteCheck = Callable[[str, str], None]

_checks: ContextVar[tuple[WriteCheck, ...]] = ContextVar("maint_write_checks", default=())


@contextmanager
def guarded(check: WriteCheck) -> Iterator[None]:
    """Run ``check`` before every write made inside this block (in this context)."""
    token = _checks.set((*_checks.get(), check))
    try:
        yield
    finally:
        _checks.reset(token)


def before_write(what: str, namespace: str) -> None:
    """Called by the write verbs just before the request goes out; raises to stop it."""
    for check in _checks.get():
        check(what, namespace)
