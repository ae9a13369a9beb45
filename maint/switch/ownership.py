"""Who owns the selector, and giving it back after the window.

The API server records in ``metadata.managedFields`` which field manager set each field. A
JSON Patch makes its manager (``maint``) the owner of every selector key it sets and takes those
keys from their previous owners. After a plain restore the app's selector would belong to
maint: the tool that manages the Service (Helm 4, Argo CD or Flux applying server-side) would get
a conflict the next time it changes the selector, and no longer remove a key it drops.

So the switch records, in the same patch, which managers owned which selector keys
(``maint.io/selector-owners``), and after the restore one more patch, guarded by the
resourceVersion, takes the selector out of maint's entry and puts exactly those keys back into
their owners' entries: ownership is what it was before the window. Only the selector is handed
back; nothing else of the Service is touched.

The recorded owners are read from a Service annotation, which whoever may patch the Service
can write; such a party could set ``managedFields`` directly anyway, so nothing is gained by
forging it. Its shape is still checked: managers' names, the two operations, a flat set of
selector keys.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from maint.cluster import FIELD_MANAGER

Entry = dict[str, Any]
OPERATIONS = frozenset({"Apply", "Update"})
MAX_OWNERS = 16
MAX_NAME = 128


def selector_owners(managed_fields: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """The entries (other than maint's) that own keys of ``spec.selector``, each with only
    those keys: ``{manager, operation, apiVersion[, subresource], fields}``."""
    owners = []
    for entry in managed_fields:
        fields = _selector_fields(entry)  # {} too: the selector is an atomic map
        if fields is None or entry.get("manager") == FIELD_MANAGER:
            continue
        owner = {key: entry[key] for key in ("manager", "operation", "apiVersion") if key in entry}
        if entry.get("subresource"):
            owner["subresource"] = entry["subresource"]
        owners.append(owner | {"fields": copy.deepcopy(fields)})
    return owners


def parse_owners(raw: str | None) -> list[Entry] | None:
    """The owners recorded in ``maint.io/selector-owners``, or None when missing or not of the
    shape :func:`selector_owners` gives."""
    if raw is None:
        return None
    try:
        owners = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(owners, list) or len(owners) > MAX_OWNERS:
        return None
    return owners if all(_valid_owner(o) for o in owners) else None


def handed_back(
    managed_fields: Sequence[Mapping[str, Any]],
    owners: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
) -> list[Entry]:
    """``managed_fields`` with the selector taken out of maint's entry (dropped when it owns
    nothing else) and each owner's selector keys put back into its entry (re-created, stamped
    ``now``, when the switch took all it had)."""
    remaining = list(owners)
    result = []
    for original in managed_fields:
        entry = copy.deepcopy(dict(original))
        if entry.get("manager") == FIELD_MANAGER:
            _drop_selector(entry)
            if not entry.get("fieldsV1"):
                continue
        owner = next((o for o in remaining if _same_manager(o, entry)), None)
        if owner is not None:
            remaining.remove(owner)
            fields = entry.setdefault("fieldsV1", {})
            fields.setdefault("f:spec", {})["f:selector"] = copy.deepcopy(owner["fields"])
        result.append(entry)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for owner in remaining:
        entry = {key: owner[key] for key in ("manager", "operation", "apiVersion", "subresource")}
        result.append(
            {key: value for key, value in entry.items() if value}
            | {
                "time": stamp,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:selector": copy.deepcopy(owner["fields"])}},
            }
        )
    return result


def _selector_fields(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
    fields = spec.get("f:selector")
    return fields if isinstance(fields, dict) else None


def _drop_selector(entry: Entry) -> None:
    fields = entry.get("fieldsV1") or {}
    spec = fields.get("f:spec")
    if isinstance(spec, dict) and "f:selector" in spec:
        del spec["f:selector"]
        if not spec:
            del fields["f:spec"]


def _same_manager(owner: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(owner.get(key) == entry.get(key) for key in ("manager", "operation", "subresource"))


def _valid_owner(owner: object) -> bool:
    if not isinstance(owner, dict):
        return False
    if set(owner) - {"manager", "operation", "apiVersion", "subresource", "fields"}:
        return False
    texts = [owner.get("manager"), owner.get("apiVersion"), owner.get("subresource", "")]
    if not all(isinstance(t, str) and len(t) <= MAX_NAME for t in texts):
        return False
    if not owner.get("manager") or owner.get("operation") not in OPERATIONS:
        return False
    fields = owner.get("fields")
    return (
        isinstance(fields, dict)
        and len(fields) <= 64
        and all(
            isinstance(k, str) and (k == "." or k.startswith("f:")) and v == {}
            for k, v in fields.items()
        )
    )
