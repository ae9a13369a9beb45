"""Kubernetes Events (events.k8s.io/v1) about a Service, so `kubectl describe service` tells
the window's story. The database's event log stays the history: Events expire (about an hour).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.guard import Write, before_write

REPORTING_CONTROLLER = "maint.io/maint"
NOTE_MAX = 1024  # bytes the API server accepts in `note`
TIMEOUT = (2.0, 5.0)
"""(connect, read), also the budget of all attempts: an Event is best effort, sent off the
step's path, and a slow API server must not pile them up."""


def emit(
    cluster: Cluster,
    *,
    namespace: str,
    service: str,
    reason: str,
    action: str,
    note: str,
    warning: bool,
    instance: str,
) -> None:
    """Create one Event regarding ``namespace/service`` (``call``'s retries, within 7 s)."""
    what = f"create Event for Service {namespace}/{service}"
    before_write(Write("create", "Event", namespace, service))
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{service}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance[:128],
        "action": action,
        "reason": reason,
        "type": "Warning" if warning else "Normal",
        "note": _clip(note),
        "regarding": {
            "apiVersion": "v1",
            "kind": "Service",
            "namespace": namespace,
            "name": service,
        },
    }
    call(what, cluster.events.create_namespaced_event, namespace, body, _request_timeout=TIMEOUT)


def _clip(note: str) -> str:
    data = note.encode("utf-8")
    if len(data) <= NOTE_MAX:
        return note
    return data[: NOTE_MAX - 3].decode("utf-8", "ignore") + "..."
