"""The forced restore: from the Service annotations alone, no database, no build side.

``maint restore --overdue`` (fit for a CronJob) and every pass of ``maint run`` call this, so a
window whose database or controller is broken still ends by ``end + grace``. Only a Service that
still selects the page recorded in its own annotation is touched; any other selector is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from maint import cluster, naming, switch
from maint.cluster import Cluster
from maint.errors import MaintError
from maint.notices import ServiceRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverdueResult:
    service: str
    outcome: str
    detail: str


def restore_overdue(
    api: Cluster, *, now: datetime, namespace: str | None = None
) -> list[OverdueResult]:
    results = []
    services = (
        cluster.list_services(api, namespace=namespace)
        if namespace is not None
        else cluster.list_annotated_services(api, annotation=naming.RESTORE_BY_ANNOTATION)
    )
    for service in services:
        deadline = service.annotations.get(naming.RESTORE_BY_ANNOTATION)
        saved = switch.saved_state(service)
        if deadline is None or saved is None:
            continue
        try:
            overdue = datetime.fromisoformat(deadline) <= now
        except ValueError:
            overdue = True  # an unreadable deadline must not keep a Service switched forever
        if not overdue:
            continue
        original, page = saved
        ref = ServiceRef(namespace=service.namespace, name=service.name)
        try:
            result = switch.restore(api, ref=ref, page=page, original=original)
            if result.outcome is not switch.RestoreOutcome.FOREIGN:
                for pod in cluster.list_managed(
                    api, kind="Pod", labels=page, namespace=service.namespace
                ):
                    cluster.delete(api, kind="Pod", namespace=pod.namespace, name=pod.name)
            results.append(OverdueResult(str(ref), result.outcome.value, f"selector {result.live}"))
        except MaintError as e:
            log.error("forced restore of %s failed: %s", ref, e)
            results.append(OverdueResult(str(ref), "failed", str(e)))
    return results
