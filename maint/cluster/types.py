"""Frozen snapshots of the cluster objects maint cares about; no client model leaves ``cluster``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FIELD_MANAGER = "maint"
"""The field manager of every write maint makes (``patching``): ``managedFields`` tell who
changed what."""

Progress = Callable[[str], None]
"""Told what a wait is waiting for, at most every ``watching.PROGRESS_EVERY`` seconds."""

Manifest = dict[str, Any]
"""A Kubernetes object as plain data, built by the pure manifest builders."""


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    type: str
    selector: dict[str, str]
    ports: tuple[ServicePort, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str = ""
    # metadata.managedFields as the API's JSON (who owns which field: ``switch.ownership``).
    managed_fields: tuple[dict[str, Any], ...] = ()
    cluster_ip: str = ""


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    phase: str
    ready: bool
    ip: str | None
    labels: dict[str, str]
    deleting: bool = False
    node: str | None = None
    uid: str = ""


@dataclass(frozen=True)
class JobInfo:
    namespace: str
    name: str
    succeeded: bool
    failed: bool
    reason: str = ""


@dataclass(frozen=True)
class Termination:
    """How a Job's container ended: its termination message (digest or log tail) and code."""

    pod: str
    exit_code: int
    message: str


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    uid: str = ""
    ended: Termination | None = None
    """A Pod's container that has ended (a Kaniko Pod's digest), else None."""


Object = dict[str, Any]


@dataclass(frozen=True)
class Surroundings:
    """The Service as the API has it, and what else in its namespace bears on a switch."""

    service: Object
    pods: list[Object]
    """The Pods the Service selects now."""
    services: list[Object]
    """Every other Service of the namespace."""
    network_policies: list[Object] | None
    """None when maint may not read them."""
    namespace: Object | None
    """None when maint may not read it."""
    unreadable: list[str] = field(default_factory=list)
    """What could not be read, in words (``"NetworkPolicies in shop: HTTP 403 ..."``)."""


@dataclass(frozen=True)
class AppIngress:
    """What the page's NetworkPolicy is built from (``switch.netpol``), as the API has it."""

    pods: list[Object]
    """The Pods the Service's original selector selects (their labels and container ports)."""
    network_policies: list[Object]
    """Every NetworkPolicy of the namespace."""
