"""Pausing reconcilers for the window (``notice add --pause-reconcilers``).

Flux's kustomize-controller leaves an object alone while it carries
``kustomize.toolkit.fluxcd.io/reconcile: disabled`` (Flagger sets the same on the Services it
rewrites). With the notice's flag, the switch sets it in the same patch as the selector and
records what it changed in ``maint.io/paused`` as ``{annotation: value before, or null}``; every
ending (restore, the forced restore, a rollback of a switch without record, a FAILED target's
clean-up) puts back exactly that value, in the same patch that removes maint's annotations. If
someone else changed the annotation during the window, theirs stays.

An annotation that already said ``disabled`` is not touched and not recorded: the operator set it
and keeps it. The record is on the Service, which whoever may patch it can forge; the keys are
limited to the annotations in ``PAUSES``, so a forged record can only make maint write those.
"""

from __future__ import annotations

import json
from typing import Any

from maint import cluster
from maint.cluster import ServiceInfo
from maint.naming import PAUSED_ANNOTATION

FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
PAUSES = {FLUX_RECONCILE: "disabled"}  # annotation -> the value that pauses its reconciler

Paused = dict[str, str | None]  # annotation -> its value before the switch (None: absent)


def to_pause(service: ServiceInfo) -> Paused:
    """What the switch changes to pause the reconcilers: every pause not already in place."""
    return {
        key: service.annotations.get(key)
        for key, value in PAUSES.items()
        if service.annotations.get(key) != value
    }


def pause_values(paused: Paused) -> dict[str, str]:
    """The annotations the switch writes for ``paused`` (the pauses and their record)."""
    if not paused:
        return {}
    return {key: PAUSES[key] for key in paused} | {
        PAUSED_ANNOTATION: json.dumps(paused, sort_keys=True)
    }


def recorded(service: ServiceInfo) -> Paused | None:
    """The record ``maint.io/paused`` on the Service, or None when missing or not its shape."""
    raw = service.annotations.get(PAUSED_ANNOTATION)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not set(value) <= set(PAUSES):
        return None
    if not all(v is None or isinstance(v, str) for v in value.values()):
        return None
    return dict(value)


def resume_ops(service: ServiceInfo) -> list[dict[str, Any]]:
    """JSON Patch ops giving back what the switch changed: each paused annotation that still
    has the pausing value goes back to its value before (removed when it had none). The record
    itself is removed with maint's other annotations."""
    ops: list[dict[str, Any]] = []
    for key, before in (recorded(service) or {}).items():
        if service.annotations.get(key) != PAUSES[key]:
            continue  # changed by someone else during the window: theirs stays
        path = cluster.pointer("metadata", "annotations", key)
        ops.append(
            {"op": "remove", "path": path}
            if before is None
            else {
                "op": "replace",
                "path": path,
                "value": before,
            }
        )
    return ops
