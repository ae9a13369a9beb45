"""Move a Service's selector to the page and back, never overwriting someone else's change.

Both directions are one JSON Patch whose first op is a ``test`` of the selector we expect, so
the API server applies it atomically or not at all. Switching also writes the original selector
into a Service annotation in that same patch: the forced restore (``maint restore --overdue``)
needs nothing but the Service itself. The same patch records who owned the selector (given back
after the restore, ``ownership``) and, when asked, pauses reconcilers (``pause``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from maint import cluster
from maint.cluster import Cluster, ServiceInfo
from maint.errors import Conflict, MaintError
from maint.naming import (
    NOTICE_ANNOTATION,
    ORIGINAL_SELECTOR_ANNOTATION,
    PAGE_LABEL,
    PAGE_SELECTOR_ANNOTATION,
    RESTORE_BY_ANNOTATION,
    SELECTOR_OWNERS_ANNOTATION,
    SERVICE_ANNOTATIONS,
    page_name,
    page_selector,
)
from maint.notices import ServiceRef
from maint.switch import ownership, pause
from maint.switch.rules import switchable


@dataclass(frozen=True)
class Switched:
    original: dict[str, str]
    already: bool  # the selector was already the page's (a retried step)
    paused: pause.Paused  # what the switch changed to pause reconcilers (see ``pause``)


class RestoreOutcome(StrEnum):
    RESTORED = "restored"
    ALREADY = "already restored"
    FOREIGN = "changed by someone else"


@dataclass(frozen=True)
class Restored:
    outcome: RestoreOutcome
    live: dict[str, str]
    ownership: str = ""  # what became of the selector's ownership, for the event log


@dataclass(frozen=True)
class SwitchPlan:
    """The switch of one Service, computed from a snapshot of it: one JSON Patch whose
    ``test`` ops make it fail (``Conflict``) if the Service changed since the snapshot."""

    ref: ServiceRef
    ops: list[dict[str, Any]]
    original: dict[str, str]
    paused: pause.Paused


def switch(
    api: Cluster,
    *,
    ref: ServiceRef,
    page: Mapping[str, str],
    notice_id: int,
    restore_by: datetime,
    pause_reconcilers: bool = False,
) -> Switched:
    """Point the Service at the page Pod whose labels are ``page``; returns the app's original
    selector (the live one, which only this initial switch may record; a refresh uses
    ``move_page``). Reads the Service, then ``plan_switch`` and ``apply_switch``; a Service
    that changed in between is read again."""
    for _attempt in range(3):
        service = cluster.get_service(api, namespace=ref.namespace, name=ref.name)
        planned = plan_switch(
            service,
            page=page,
            notice_id=notice_id,
            restore_by=restore_by,
            pause_reconcilers=pause_reconcilers,
        )
        if isinstance(planned, Switched):
            return planned
        try:
            return apply_switch(api, planned)
        except Conflict:
            continue  # changed between read and patch (or our own retried write): look again
    raise Conflict(f"Service {ref} selector keeps changing; will try again")


def plan_switch(
    service: ServiceInfo,
    *,
    page: Mapping[str, str],
    notice_id: int,
    restore_by: datetime,
    pause_reconcilers: bool = False,
) -> SwitchPlan | Switched:
    """The switch's patch for this snapshot of the Service (pure), or ``Switched(already)``
    when it already selects the page.

    The page selector is the live selector's keys with the page's name (``naming.page_selector``);
    the page Pod was labelled for the keys the selector had at preparation, so a selector whose
    keys changed since is refused (``Conflict``) rather than pointed at a Pod it does not match.
    With ``pause_reconcilers`` the same patch pauses them (``pause``). The patch is guarded by
    the snapshot's resourceVersion: any change since (``Conflict``) means reading it again.
    """
    ref = ServiceRef(namespace=service.namespace, name=service.name)
    name = page[PAGE_LABEL]
    if page_name(service.selector) == name:
        paused = pause.recorded(service) or {}
        return Switched(original=_saved_original(service), already=True, paused=paused)
    switchable(service)
    original = service.selector
    selector = page_selector(name=name, keys=original)
    if any(page.get(key) != value for key, value in selector.items()):
        raise Conflict(
            f"Service {ref} now selects on {sorted(original)}, not the keys page Pod {name} "
            "was labelled for; not switched"
        )
    paused = pause.to_pause(service) if pause_reconcilers else {}
    values = {
        ORIGINAL_SELECTOR_ANNOTATION: json.dumps(original, sort_keys=True),
        PAGE_SELECTOR_ANNOTATION: json.dumps(selector, sort_keys=True),
        NOTICE_ANNOTATION: str(notice_id),
        RESTORE_BY_ANNOTATION: restore_by.isoformat(),
        SELECTOR_OWNERS_ANNOTATION: json.dumps(
            ownership.selector_owners(service.managed_fields), sort_keys=True
        ),
    } | pause.pause_values(paused)
    # The whole snapshot is guarded, not only the selector: the patch may add the annotations
    # map whole (replacing one added since), records a "before" of the pause and of the
    # selector's owners, and an armed switch was planned seconds before it is sent.
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": service.resource_version},
        {"op": "test", "path": "/spec/selector", "value": service.selector},
        *_annotations(service, values),
        {"op": "replace", "path": "/spec/selector", "value": selector},
    ]
    return SwitchPlan(ref=ref, ops=ops, original=original, paused=paused)


def apply_switch(api: Cluster, plan: SwitchPlan) -> Switched:
    """The planned switch as one PATCH; ``Conflict`` when the Service is no longer the
    snapshot it was planned from (its ``test`` failed)."""
    ref = plan.ref
    cluster.json_patch_service(api, namespace=ref.namespace, name=ref.name, ops=plan.ops)
    return Switched(original=plan.original, already=False, paused=plan.paused)


class MoveOutcome(StrEnum):
    MOVED = "moved"
    ALREADY = "already"
    FOREIGN = "changed by someone else"


def move_page(
    api: Cluster,
    *,
    ref: ServiceRef,
    page: dict[str, str],
    previous_page: dict[str, str],
    restore_by: datetime,
) -> tuple[MoveOutcome, dict[str, str]]:
    """A refresh: point the Service from ``previous_page`` to ``page`` (a new revision).

    Never records an original: anything live other than the two page selectors is someone
    else's (an SRE gave the Service back by hand) and is left alone (``FOREIGN``, with it).
    """
    for _attempt in range(3):
        service = cluster.get_service(api, namespace=ref.namespace, name=ref.name)
        if service.selector == page:
            return MoveOutcome.ALREADY, service.selector
        if service.selector != previous_page:
            return MoveOutcome.FOREIGN, service.selector
        ops = [
            {"op": "test", "path": "/spec/selector", "value": previous_page},
            _set_annotation(service, PAGE_SELECTOR_ANNOTATION, json.dumps(page, sort_keys=True)),
            _set_annotation(service, RESTORE_BY_ANNOTATION, restore_by.isoformat()),
            {"op": "replace", "path": "/spec/selector", "value": page},
        ]
        try:
            cluster.json_patch_service(api, namespace=ref.namespace, name=ref.name, ops=ops)
        except Conflict:
            continue
        return MoveOutcome.MOVED, page
    raise Conflict(f"Service {ref} selector keeps changing; will try again")


def move_deadline(
    api: Cluster, *, ref: ServiceRef, page: dict[str, str], restore_by: datetime
) -> MoveOutcome:
    """Move ``maint.io/restore-by`` (an extended window) in one patch guarded by a ``test`` of
    the page selector, so the DB-less sweep never restores at the old deadline."""
    for _attempt in range(3):
        service = cluster.get_service(api, namespace=ref.namespace, name=ref.name)
        if service.selector != page:
            return MoveOutcome.FOREIGN
        if service.annotations.get(RESTORE_BY_ANNOTATION) == restore_by.isoformat():
            return MoveOutcome.ALREADY
        ops = [
            {"op": "test", "path": "/spec/selector", "value": page},
            _set_annotation(service, RESTORE_BY_ANNOTATION, restore_by.isoformat()),
        ]
        try:
            cluster.json_patch_service(api, namespace=ref.namespace, name=ref.name, ops=ops)
        except Conflict:
            continue
        return MoveOutcome.MOVED
    raise Conflict(f"Service {ref} selector keeps changing; will try again")


def drop_annotations(api: Cluster, *, ref: ServiceRef, notice_id: int) -> bool:
    """Remove maint's annotations from a Service that no longer selects our page (a FAILED
    target): the sweep then stops looking at it. Guarded by a ``test`` of our notice id."""
    service = cluster.get_service(api, namespace=ref.namespace, name=ref.name)
    if service.annotations.get(NOTICE_ANNOTATION) != str(notice_id):
        return False
    ops = [
        {
            "op": "test",
            "path": cluster.pointer("metadata", "annotations", NOTICE_ANNOTATION),
            "value": str(notice_id),
        },
        *_annotation_removals(service),
    ]
    cluster.json_patch_service(api, namespace=ref.namespace, name=ref.name, ops=ops)
    return True


def _set_annotation(service: ServiceInfo, key: str, value: str) -> dict[str, Any]:
    op = "replace" if key in service.annotations else "add"
    return {"op": op, "path": cluster.pointer("metadata", "annotations", key), "value": value}


@dataclass(frozen=True)
class RestorePlan:
    """The restore of one Service from a snapshot of it that still selects the page: one JSON
    Patch guarded by a ``test`` of the page selector."""

    ref: ServiceRef
    ops: list[dict[str, Any]]
    original: dict[str, str]
    owners: list[dict[str, Any]] | None  # whom to give the selector's ownership back to


def restore(
    api: Cluster, *, ref: ServiceRef, page: dict[str, str], original: dict[str, str]
) -> Restored:
    """Put ``original`` back if the page selector is still live; never overwrite another one.
    Then the selector's ownership goes back to the managers the switch recorded."""
    for _attempt in range(3):
        service = cluster.get_service(api, namespace=ref.namespace, name=ref.name)
        planned = plan_restore(service, page=page, original=original)
        if planned is None and service.selector != original:
            return Restored(outcome=RestoreOutcome.FOREIGN, live=service.selector)
        try:  # a Service changed since the read (its test or a remove failed): read again
            if planned is None:  # given back already: only maint's annotations go
                _drop_annotations(api, service)
                return Restored(outcome=RestoreOutcome.ALREADY, live=service.selector)
            restored = apply_restore(api, planned)
        except Conflict:
            continue
        return hand_back(api, planned, restored)
    raise Conflict(f"Service {ref} selector keeps changing; will try again")


def plan_restore(
    service: ServiceInfo, *, page: dict[str, str], original: dict[str, str]
) -> RestorePlan | None:
    """The restore's patch for this snapshot (pure); None unless it selects ``page``."""
    if service.selector != page:
        return None
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/spec/selector", "value": page},
        {"op": "replace", "path": "/spec/selector", "value": original},
        *_annotation_removals(service),
    ]
    return RestorePlan(
        ref=ServiceRef(namespace=service.namespace, name=service.name),
        ops=ops,
        original=original,
        owners=ownership.parse_owners(service.annotations.get(SELECTOR_OWNERS_ANNOTATION)),
    )


def apply_restore(api: Cluster, plan: RestorePlan) -> ServiceInfo:
    """The planned restore as one PATCH (the Service as patched); ``Conflict`` when the
    Service no longer selects the page or no longer carries what the patch removes."""
    ref = plan.ref
    return cluster.json_patch_service(api, namespace=ref.namespace, name=ref.name, ops=plan.ops)


def hand_back(api: Cluster, plan: RestorePlan, restored: ServiceInfo) -> Restored:
    """After ``apply_restore``: the selector's ownership back to the recorded managers."""
    return Restored(
        outcome=RestoreOutcome.RESTORED,
        live=plan.original,
        ownership=_hand_back(api, restored, owners=plan.owners, original=plan.original),
    )


def _hand_back(
    api: Cluster,
    service: ServiceInfo,
    *,
    owners: list[dict[str, Any]] | None,
    original: dict[str, str],
) -> str:
    """Give the selector's ownership back to ``owners`` (``ownership``); a note for the event
    log. Never fails the restore: the selector is back whatever happens here."""
    if owners is None:
        return "selector ownership: no readable record, left with maint"
    managers = ", ".join(sorted({o["manager"] for o in owners})) or "nobody"
    try:
        for _attempt in range(3):
            if service.selector != original:
                return "selector ownership: the selector changed again, left as it is"
            fields = ownership.handed_back(service.managed_fields, owners, now=datetime.now(UTC))
            ops: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": service.resource_version,
                },
                {"op": "replace", "path": "/metadata/managedFields", "value": fields},
            ]
            try:
                cluster.json_patch_service(
                    api, namespace=service.namespace, name=service.name, ops=ops
                )
            except Conflict:
                service = cluster.get_service(api, namespace=service.namespace, name=service.name)
                continue
            return f"selector ownership given back to {managers}"
        return "selector ownership: the Service kept changing, left with maint"
    except MaintError as e:
        return f"selector ownership not given back: {e}"


def saved_state(service: ServiceInfo) -> tuple[dict[str, str], dict[str, str]] | None:
    """(original, page) selectors recorded on a switched Service, or None.

    None unless both annotations are JSON objects of strings to strings and the original is not
    empty (what :func:`switch` writes); the page's shape is checked by ``naming.is_page_selector``.
    """
    try:
        original = json.loads(service.annotations[ORIGINAL_SELECTOR_ANNOTATION])
        page = json.loads(service.annotations[PAGE_SELECTOR_ANNOTATION])
    except (KeyError, ValueError):
        return None
    if not _string_map(original) or not _string_map(page) or not original:
        return None
    return dict(original), dict(page)


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _saved_original(service: ServiceInfo) -> dict[str, str]:
    saved = saved_state(service)
    if saved is None:
        raise Conflict(
            f"Service {service.namespace}/{service.name} selects a maintenance page but carries "
            f"no {ORIGINAL_SELECTOR_ANNOTATION} annotation; restore its selector by hand"
        )
    return saved[0]


def _annotations(service: ServiceInfo, values: dict[str, str]) -> list[dict[str, Any]]:
    """Ops adding (or replacing) each of ``values`` on the Service."""
    if not service.annotations:
        return [{"op": "add", "path": "/metadata/annotations", "value": values}]
    return [
        {"op": "add", "path": cluster.pointer("metadata", "annotations", key), "value": value}
        for key, value in values.items()
    ]


def _annotation_removals(service: ServiceInfo) -> list[dict[str, Any]]:
    """maint's annotations removed and paused reconcilers resumed (``pause``)."""
    return pause.resume_ops(service) + [
        {"op": "remove", "path": cluster.pointer("metadata", "annotations", key)}
        for key in SERVICE_ANNOTATIONS
        if key in service.annotations
    ]


def _drop_annotations(api: Cluster, service: ServiceInfo) -> None:
    removals = _annotation_removals(service)
    if removals:
        cluster.json_patch_service(
            api, namespace=service.namespace, name=service.name, ops=removals
        )
