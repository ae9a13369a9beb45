"""The forced restore: from the Service annotations alone, no database, no build side.

``maint restore --overdue`` (fit for a CronJob) and every pass of ``maint run`` call this, so a
window whose database or controller is broken still ends by ``end + grace``.

Anyone who may patch a Service can write its annotations, while maint may delete Pods
cluster-wide, so the sweep trusts only the exact shape maint itself writes:

- The page selector must be exactly ``naming.page_selector(name=X, keys=original)`` (the
  recorded original selector's keys, none of them maint's own, each with the same X of maint's
  page-name form, a DNS-1123 label); the original selector a non-empty map of strings;
  ``maint.io/notice`` a notice id. Anything else is reported for that Service ("left alone")
  and never acted on.
- The selector is put back only if the Service still selects that page (``switch.restore``);
  Pods are deleted only if they carry maint's ``managed-by``, ``maint.io/page=X`` *and*
  ``maint.io/notice`` equal to the Service's annotation (listed by that full label set); the
  page's NetworkPolicy only if it carries maint's labels for that notice and this Service.
- An unreadable ``maint.io/restore-by``, or one without a UTC offset, is reported as
  ``skipped`` and not acted on. maint always writes an aware ISO 8601 instant, so such a value
  was written by someone else; acting on it would let that someone trigger the Pod deletion
  early. Such a Service still ends through the normal, database-backed path.
- Each Service is handled in isolation: any error for one becomes a ``failed`` result for it
  and the sweep goes on with the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from maint import cluster, naming, switch
from maint.cluster import Cluster, ServiceInfo
from maint.notices import ServiceRef
from maint.switch import netpol

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
        if naming.RESTORE_BY_ANNOTATION not in service.annotations:
            continue
        ref = ServiceRef(namespace=service.namespace, name=service.name)
        try:
            result = _restore_one(api, service, ref=ref, now=now)
        except Exception as e:  # one Service's failure never stops the sweep of the others
            log.error("forced restore of %s failed: %s", ref, e)
            result = OverdueResult(str(ref), "failed", str(e) or type(e).__name__)
        if result is not None:
            results.append(result)
    return results


def _restore_one(
    api: Cluster, service: ServiceInfo, *, ref: ServiceRef, now: datetime
) -> OverdueResult | None:
    """The result for one annotated Service, or None while it is not overdue."""
    raw = service.annotations[naming.RESTORE_BY_ANNOTATION]
    try:
        deadline = datetime.fromisoformat(raw)
    except ValueError:
        return _skipped(ref, f"unreadable {naming.RESTORE_BY_ANNOTATION} {raw!r}; left alone")
    if deadline.utcoffset() is None:
        return _skipped(
            ref, f"{naming.RESTORE_BY_ANNOTATION} {raw!r} has no UTC offset; left alone"
        )
    if deadline > now:
        return None
    saved = switch.saved_state(service)
    if saved is None:
        return _skipped(ref, "no readable saved selectors; left alone")
    original, page = saved
    name = naming.is_page_selector(page, original=original)
    if name is None:
        return _skipped(ref, f"not maint's page selector {page}; left alone")
    notice = service.annotations.get(naming.NOTICE_ANNOTATION, "")
    if not (notice.isascii() and notice.isdigit() and str(int(notice)) == notice):
        return _skipped(ref, f"unreadable {naming.NOTICE_ANNOTATION} {notice!r}; left alone")
    # As checked: the new shape, or the legacy one of a window an older release switched.
    restored = switch.restore(api, ref=ref, page=page, original=original)
    if restored.outcome is not switch.RestoreOutcome.FOREIGN:
        pods = page | {
            naming.MANAGED_BY: naming.MANAGER,
            naming.PAGE_LABEL: name,
            naming.NOTICE_LABEL: notice,
        }
        for pod in cluster.list_managed(api, kind="Pod", labels=pods, namespace=service.namespace):
            if all(pod.labels.get(k) == v for k, v in pods.items()):
                cluster.delete(api, kind="Pod", namespace=pod.namespace, name=pod.name)
        # The page's NetworkPolicy, found by maint's labels for this notice and target (its
        # name derived from the notice id and the Service, as maint made it).
        target = naming.target_name(
            notice_id=int(notice), namespace=service.namespace, service=service.name
        )
        labels = naming.labels(notice_id=int(notice), target=target)
        netpol.retire(api, namespace=service.namespace, labels=labels)
    return OverdueResult(str(ref), restored.outcome.value, f"selector {restored.live}")


def _skipped(ref: ServiceRef, why: str) -> OverdueResult:
    return OverdueResult(str(ref), "skipped", why)
