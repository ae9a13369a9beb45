"""Patches. Service selectors only ever change by JSON Patch with a ``test`` op: a strategic or
merge patch would keep old selector keys (kubernetes #36509) and a concurrent change must never be
overwritten. A failed ``test`` raises ``Conflict``."""

from __future__ import annotations

from typing import Any

from maint.cluster import convert
from maint.cluster.calls import call
from maint.cluster.connection import REQUEST_TIMEOUT, Cluster
from maint.cluster.types import ServiceInfo


def json_patch_service(
    cluster: Cluster, *, namespace: str, name: str, ops: list[dict[str, Any]]
) -> ServiceInfo:
    obj = call(
        f"patch Service {namespace}/{name}",
        cluster.core.patch_namespaced_service,
        name,
        namespace,
        ops,
        _content_type="application/json-patch+json",
        _request_timeout=REQUEST_TIMEOUT,
    )
    return convert.service(obj)


def pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) from raw path segments: ``~`` and ``/`` escaped."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
