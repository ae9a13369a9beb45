"""Milestones of the event log, told to Kubernetes as Events on the target Service.

A step records its event in the database as always; this observer sees each recorded event and,
for the milestones below, queues a Kubernetes Event. One background thread sends them, so a slow
or refusing API server never delays a switch: the queue is bounded, and when it is full the
Event is dropped with a log line (the database keeps the whole history anyway).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from maint import cluster
from maint.cluster import Cluster
from maint.errors import MaintError
from maint.notices import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Milestone:
    reason: str
    action: str
    warning: bool = False


MILESTONES: dict[tuple[str, str], Milestone] = {
    ("prepare", "ok"): Milestone("Prepared", "Prepare"),
    ("preflight", "blocked"): Milestone("PreflightBlocked", "Prepare", warning=True),
    ("switch", "ok"): Milestone("Switched", "Switch"),
    ("restore", "ok"): Milestone("Restored", "Restore"),
    ("force-restore", "ok"): Milestone("ForcedRestore", "Restore", warning=True),
    ("restore", "conflict"): Milestone("RestoreConflict", "Restore", warning=True),
    ("rollback", "ok"): Milestone("RolledBack", "Rollback", warning=True),
    ("cancel", "ok"): Milestone("Cancelled", "Cancel"),
    ("drift", "foreign"): Milestone("Drift", "Observe", warning=True),
}

QUEUE_SIZE = 1000


class KubernetesEvents:
    """Call with each recorded ``Event``; ``close`` sends what is queued (bounded) and stops."""

    def __init__(self, api: Cluster, *, instance: str) -> None:
        self.api = api
        self.instance = instance
        self.pending: queue.Queue[tuple[Event, Milestone] | None] = queue.Queue(QUEUE_SIZE)
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._send_all, name="k8s-events", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        milestone = MILESTONES.get((event.step, event.outcome))
        if milestone is None or not event.target:
            return
        try:
            self.pending.put_nowait((event, milestone))
        except queue.Full:
            log.warning(
                "Kubernetes Event %s for %s dropped: queue full", milestone.reason, event.target
            )

    def close(self, *, timeout: float = 5.0) -> None:
        try:
            self.pending.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _send_all(self) -> None:
        while (job := self.pending.get()) is not None:
            self._send(*job)

    def _send(self, event: Event, milestone: Milestone) -> None:
        assert event.target is not None
        namespace, _, service = event.target.partition("/")
        note = f"notice {event.notice_id}: {event.step} {event.outcome}"
        if event.detail:
            note += f": {event.detail}"
        try:
            cluster.emit_event(
                self.api,
                namespace=namespace,
                service=service,
                reason=milestone.reason,
                action=milestone.action,
                note=note,
                warning=milestone.warning,
                instance=self.instance,
            )
            self.sent += 1
        except MaintError as e:
            self.failed += 1
            log.warning(
                "Kubernetes Event %s for %s not sent: %s", milestone.reason, event.target, e
            )
