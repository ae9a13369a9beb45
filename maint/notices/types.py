"""Domain objects of the notices package: what crosses its boundary instead of ORM rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from maint.errors import InvalidInput

# Used with ``fullmatch``: ``re.match`` with ``$`` would accept a trailing newline.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class TargetState(StrEnum):
    """Where one target Service is in its window (DESIGN.md, "States")."""

    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    READY = "READY"
    ACTIVE = "ACTIVE"
    RESTORING = "RESTORING"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {TargetState.COMPLETED, TargetState.ROLLED_BACK, TargetState.CANCELLED, TargetState.FAILED}
)
# States in which the cluster may hold objects of ours: every reconcile pass looks at them.
IN_FLIGHT_STATES = frozenset(
    {TargetState.PREPARING, TargetState.READY, TargetState.ACTIVE, TargetState.RESTORING}
)


@dataclass(frozen=True, order=True)
class ServiceRef:
    """A target Service, ``NAMESPACE/SERVICE``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, value: str) -> ServiceRef:
        namespace, sep, name = value.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise InvalidInput(f"target {value!r} must be NAMESPACE/SERVICE, e.g. shop/web")
        for part, limit in ((namespace, 63), (name, 63)):
            if len(part) > limit or not _DNS1123_LABEL.fullmatch(part):
                raise InvalidInput(
                    f"target {value!r}: {part!r} is not a valid Kubernetes name "
                    "(lowercase letters, digits and '-', at most 63 characters)"
                )
        return cls(namespace=namespace, name=name)


@dataclass(frozen=True)
class NewNotice:
    """A validated notice, not yet stored."""

    title: str
    reason: str
    lang: str
    maintenance: bool
    start: datetime
    end: datetime
    targets: tuple[ServiceRef, ...]
    # An IANA name (``Asia/Seoul``) or a fixed offset (``+09:00``); None: the display default.
    display_zone: str | None = None
    # Pause reconcilers (Flux) on each target for the window (``switch.pause``).
    pause_reconcilers: bool = False
    # With an engineers' bypass: the notice's random salt (``page.bypass``); None: no bypass.
    bypass_salt: str | None = None


@dataclass(frozen=True)
class Target:
    """One Service of a notice and what maint did to it so far."""

    id: int
    notice_id: int
    ref: ServiceRef
    state: TargetState
    image: str | None = None
    pod: str | None = None
    revision: str | None = None
    original_selector: dict[str, str] | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    forced: bool = False
    # What the switch changed to pause reconcilers: {annotation: value before, or None}.
    paused: dict[str, str | None] | None = None


@dataclass(frozen=True)
class Notice:
    """A stored notice with its targets."""

    id: int
    title: str
    reason: str
    lang: str
    maintenance: bool
    start: datetime
    end: datetime
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None = None
    targets: tuple[Target, ...] = field(default=())
    # The zone the page shows times in, as in ``NewNotice``; None: MAINT_DISPLAY_TIMEZONE.
    display_zone: str | None = None
    pause_reconcilers: bool = False
    bypass_salt: str | None = None

    def target_named(self, name: str) -> Target | None:
        """The target ``NAMESPACE/SERVICE`` of this notice, if it has one."""
        return next((t for t in self.targets if str(t.ref) == name), None)

    def state(self, now: datetime) -> str:
        """The notice's state, derived from its targets (or the clock for announcements)."""
        if not self.maintenance or not self.targets:
            if self.cancelled_at is not None:
                return TargetState.CANCELLED.value
            if now < self.start:
                return TargetState.SCHEDULED.value
            return TargetState.ACTIVE.value if now < self.end else TargetState.COMPLETED.value
        states = {t.state for t in self.targets}
        if len(states) == 1:
            return next(iter(states)).value
        for candidate in _MIXED_PRECEDENCE:
            if candidate in states:
                return candidate.value
        return TargetState.COMPLETED.value


# With targets in different states the notice shows the one that needs attention first.
_MIXED_PRECEDENCE = (
    TargetState.FAILED,
    TargetState.RESTORING,
    TargetState.ACTIVE,
    TargetState.READY,
    TargetState.PREPARING,
    TargetState.SCHEDULED,
    TargetState.ROLLED_BACK,
    TargetState.CANCELLED,
)


@dataclass(frozen=True)
class Event:
    """One line of the append-only event log."""

    at: datetime
    notice_id: int
    target: str | None
    step: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class WorkItem:
    """A target that a reconcile pass must look at, with its notice."""

    notice: Notice
    target: Target
