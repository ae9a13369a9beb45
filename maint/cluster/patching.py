"""Patches. Service selectors only ever change by JSON Patch with a ``test`` op: a strategic or
merge patch would keep old selector keys (kubernetes #36509) and a concurrent change must never be
overwritten. A failed ``test`` raises ``Conflict``. Every patch is made under the field manager
``maint`` (``FIELD_MANAGER``), so ``managedFields`` tell who changed what.

The API server (checked with 1.36) answers a JSON Patch it cannot apply (a failed ``test``, a
path that is not there) with 422 ``Invalid``, the generic message "the server rejected our
request due to an error in our request" and no field causes; a patched object that fails
validation comes back as 422 with its causes. Only the former means "the Service is not what
we read": it becomes ``Conflict`` (read again), the latter stays ``InvalidInput``.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from maint.cluster import convert
from maint.cluster.calls import call
from maint.cluster.connection import Cluster
from maint.cluster.guard import Write, before_write
from maint.cluster.reading import raw_json
from maint.cluster.types import FIELD_MANAGER, ObjectRef, ServiceInfo
from maint.errors import Conflict, InvalidInput


def json_patch_service(
    cluster: Cluster, *, namespace: str, name: str, ops: list[dict[str, Any]]
) -> ServiceInfo:
    what = f"patch Service {namespace}/{name}"
    before_write(Write("patch", "Service", namespace, name))
    try:
        # The answer read as JSON: building the client's models for it costs more CPU than the
        # request itself, and many PATCHes share one instant (``runner.instant``).
        obj = raw_json(
            what,
            cluster.core.patch_namespaced_service,
            name,
            namespace,
            ops,
            field_manager=FIELD_MANAGER,
            _content_type="application/json-patch+json",
        )
    except InvalidInput as e:
        if not _not_applicable(e.__cause__):
            raise
        raise Conflict(
            f"{what}: the Service is no longer what the patch expects (its test failed); "
            "read it again"
        ) from e.__cause__
    return convert.service_from_dict(obj)


def set_pod_owners(
    cluster: Cluster, *, kind: str, namespace: str, name: str, pods: list[ObjectRef]
) -> None:
    """Make ``pods`` the owners of an object (NetworkPolicy): the garbage collector deletes it
    once every one of them is gone, whether or not maint is still running."""
    what = f"patch {kind} {namespace}/{name}"
    api, method = _PATCHERS[kind]
    owners = [{"apiVersion": "v1", "kind": "Pod", "name": p.name, "uid": p.uid} for p in pods]
    before_write(Write("patch", kind, namespace, name))
    call(
        what,
        getattr(getattr(cluster, api), method),
        name,
        namespace,
        [{"op": "add", "path": "/metadata/ownerReferences", "value": owners}],
        field_manager=FIELD_MANAGER,
        _content_type="application/json-patch+json",
    )


_PATCHERS = {"NetworkPolicy": ("networking", "patch_namespaced_network_policy")}


def _not_applicable(error: BaseException | None) -> bool:
    """The API server could not apply the JSON Patch: 422 Invalid without field causes."""
    if not isinstance(error, ApiException) or error.status != 422:
        return False
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return False
    details = body.get("details") or {}
    return bool(body.get("reason") == "Invalid" and not details.get("causes"))


def pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) from raw path segments: ``~`` and ``/`` escaped."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
