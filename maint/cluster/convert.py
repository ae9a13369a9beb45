"""Client models to frozen snapshots. Kept apart so verb modules read as plain API calls."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from maint.cluster.types import JobInfo, PodInfo, ServiceInfo, ServicePort, Termination


def service(obj: Any) -> ServiceInfo:
    spec = obj.spec
    ports = tuple(
        ServicePort(
            port=p.port,
            target_port=p.target_port if p.target_port is not None else p.port,
            protocol=p.protocol or "TCP",
            name=p.name,
        )
        for p in (spec.ports or [])
    )
    return ServiceInfo(
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        type=spec.type or "ClusterIP",
        selector=dict(spec.selector or {}),
        ports=ports,
        annotations=dict(obj.metadata.annotations or {}),
        resource_version=obj.metadata.resource_version or "",
        managed_fields=tuple(_managed_entry(e) for e in obj.metadata.managed_fields or ()),
        cluster_ip=spec.cluster_ip or "",
    )


def _managed_entry(entry: Any) -> dict[str, Any]:
    """One ``metadata.managedFields`` entry as the API's JSON (the client model's names)."""
    raw = {
        "manager": entry.manager,
        "operation": entry.operation,
        "apiVersion": entry.api_version,
        "time": entry.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if entry.time else None,
        "fieldsType": entry.fields_type,
        "fieldsV1": entry.fields_v1,
        "subresource": entry.subresource,
    }
    return {key: value for key, value in raw.items() if value is not None}


def service_from_dict(obj: dict[str, Any]) -> ServiceInfo:
    """The same snapshot as ``service``, from the API's JSON (raw list responses)."""
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    ports = tuple(
        ServicePort(
            port=p["port"],
            target_port=p.get("targetPort", p["port"]),
            protocol=p.get("protocol", "TCP"),
            name=p.get("name"),
        )
        for p in spec.get("ports") or []
    )
    return ServiceInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        type=spec.get("type", "ClusterIP"),
        selector=dict(spec.get("selector") or {}),
        ports=ports,
        annotations=dict(meta.get("annotations") or {}),
        resource_version=meta.get("resourceVersion", ""),
        managed_fields=tuple(meta.get("managedFields") or ()),
        cluster_ip=spec.get("clusterIP", ""),
    )


def pod(obj: Any) -> PodInfo:
    status = obj.status
    conditions = (status.conditions if status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return PodInfo(
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        phase=(status.phase if status else None) or "Pending",
        ready=ready,
        ip=status.pod_ip if status else None,
        labels=dict(obj.metadata.labels or {}),
        deleting=obj.metadata.deletion_timestamp is not None,
        node=obj.spec.node_name if obj.spec else None,
        uid=obj.metadata.uid or "",
    )


def job(obj: Any) -> JobInfo:
    conditions = (obj.status.conditions if obj.status else None) or []
    done = {c.type: c for c in conditions if c.status == "True"}
    failed = done.get("Failed")
    return JobInfo(
        namespace=obj.metadata.namespace,
        name=obj.metadata.name,
        succeeded="Complete" in done,
        failed=failed is not None,
        reason=f"{failed.reason}: {failed.message}" if failed is not None else "",
    )


def termination(obj: Any) -> Termination | None:
    for status in (obj.status.container_statuses or []) if obj.status else []:
        terminated = status.state.terminated if status.state else None
        if terminated is not None:
            return Termination(
                pod=obj.metadata.name,
                exit_code=terminated.exit_code or 0,
                message=(terminated.message or "").strip(),
            )
    return None


def ready_pods(endpoint_slice: object) -> list[str]:
    names = []
    for endpoint in getattr(endpoint_slice, "endpoints", None) or []:
        ready = endpoint.conditions is None or endpoint.conditions.ready is not False
        if ready and endpoint.target_ref is not None and endpoint.target_ref.kind == "Pod":
            names.append(endpoint.target_ref.name)
    return names


# --- the same snapshots from the API's JSON (the watch cache keeps objects as JSON) ---------


def pod_from_dict(obj: dict[str, Any]) -> PodInfo:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec") or {}, obj.get("status") or {}
    conditions = status.get("conditions") or []
    return PodInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        phase=status.get("phase") or "Pending",
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        ip=status.get("podIP"),
        labels=dict(meta.get("labels") or {}),
        deleting=meta.get("deletionTimestamp") is not None,
        node=spec.get("nodeName"),
        uid=meta.get("uid", ""),
    )


def job_from_dict(obj: dict[str, Any]) -> JobInfo:
    conditions = (obj.get("status") or {}).get("conditions") or []
    done = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    failed = done.get("Failed")
    meta = obj.get("metadata", {})
    return JobInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        succeeded="Complete" in done,
        failed=failed is not None,
        reason=f"{failed.get('reason')}: {failed.get('message')}" if failed is not None else "",
    )


def termination_from_dict(obj: dict[str, Any]) -> Termination | None:
    for status in (obj.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is not None:
            return Termination(
                pod=obj.get("metadata", {}).get("name", ""),
                exit_code=terminated.get("exitCode") or 0,
                message=(terminated.get("message") or "").strip(),
            )
    return None


def ready_pods_from_dict(endpoint_slice: dict[str, Any]) -> list[str]:
    names = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        ready = (endpoint.get("conditions") or {}).get("ready") is not False
        target = endpoint.get("targetRef") or {}
        if ready and target.get("kind") == "Pod":
            names.append(target.get("name", ""))
    return names
