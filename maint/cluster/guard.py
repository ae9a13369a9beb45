"""Checks that run before every cluster write maint makes (create, delete, Service patch).

A check is a callable given the ``Write`` about to go out (verb, kind, namespace, name) that
raises a ``MaintError`` to stop it. Two kinds:

- ``guarded(check)``: for the writes made in this block, in this context only (a context
  variable): a step's claim check applies to that step's thread and no other.
- ``installed(check)``: for every write of the process, whatever thread makes it (worker pools,
  the scheduler's jobs, the sweep thread all start with an empty context): the namespace policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from threading import Lock


@dataclass(frozen=True)
class Write:
    """One write maint is about to make, e.g. ``Write("patch", "Service", "shop", "web")``."""

    verb: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.verb} {self.kind} {self.namespace}/{self.name}"


WriteCheck = Callable[[Write], None]

_checks: ContextVar[tuple[WriteCheck, ...]] = ContextVar("maint_write_checks", default=())
_everywhere: tuple[WriteCheck, ...] = ()
_everywhere_lock = Lock()


@contextmanager
def guarded(check: WriteCheck) -> Iterator[None]:
    """Run ``check`` before every write made inside this block (in this context)."""
    token = _checks.set((*_checks.get(), check))
    try:
        yield
    finally:
        _checks.reset(token)


@contextmanager
def installed(check: WriteCheck) -> Iterator[None]:
    """Run ``check`` before every write any thread of this process makes inside this block."""
    global _everywhere
    with _everywhere_lock:
        _everywhere = (*_everywhere, check)
    try:
        yield
    finally:
        with _everywhere_lock:
            kept = list(_everywhere)
            kept.remove(check)
            _everywhere = tuple(kept)


def before_write(write: Write) -> None:
    """Called by the write verbs just before the request goes out; raises to stop it.
    Process-wide checks run first, then this context's."""
    for check in (*_everywhere, *_checks.get()):
        check(write)
