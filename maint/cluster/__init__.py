"""The only package that imports ``kubernetes``: one module per verb, snapshots out, our errors.

Nothing above this package builds URLs or sees a client model. Its names are loaded on first
use (``__getattr__``): importing ``maint.cluster`` costs nothing, so commands that never talk
to the API server (``notice list``, ``notice show``, ``status``) never load the client (about a
third of a second of start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maint import lazy

if TYPE_CHECKING:
    from maint.cluster.caching import Cache
    from maint.cluster.calls import on_api_error
    from maint.cluster.connection import Cluster, connect
    from maint.cluster.convert import service_from_dict
    from maint.cluster.creating import create, create_replacing
    from maint.cluster.deleting import delete
    from maint.cluster.events import emit as emit_event
    from maint.cluster.guard import Write, guarded, installed
    from maint.cluster.inspecting import app_ingress, surroundings
    from maint.cluster.patching import json_patch_service, pointer, set_pod_owners
    from maint.cluster.reading import (
        get_pod,
        get_service,
        job_termination,
        list_annotated_services,
        list_managed,
        list_services,
        pod_log_tail,
        ready_endpoint_pods,
    )
    from maint.cluster.types import (
        FIELD_MANAGER,
        AppIngress,
        JobInfo,
        Manifest,
        ObjectRef,
        PodInfo,
        Progress,
        ServiceInfo,
        ServicePort,
        Surroundings,
        Termination,
    )
    from maint.cluster.watching import follow_pods, wait_endpoints, wait_job, wait_pod

_NAMES = {  # name -> (module, name there)
    "AppIngress": ("types", "AppIngress"),
    "Cache": ("caching", "Cache"),
    "Cluster": ("connection", "Cluster"),
    "FIELD_MANAGER": ("types", "FIELD_MANAGER"),
    "JobInfo": ("types", "JobInfo"),
    "Manifest": ("types", "Manifest"),
    "ObjectRef": ("types", "ObjectRef"),
    "PodInfo": ("types", "PodInfo"),
    "Progress": ("types", "Progress"),
    "ServiceInfo": ("types", "ServiceInfo"),
    "ServicePort": ("types", "ServicePort"),
    "Surroundings": ("types", "Surroundings"),
    "Termination": ("types", "Termination"),
    "Write": ("guard", "Write"),
    "app_ingress": ("inspecting", "app_ingress"),
    "connect": ("connection", "connect"),
    "create": ("creating", "create"),
    "create_replacing": ("creating", "create_replacing"),
    "delete": ("deleting", "delete"),
    "emit_event": ("events", "emit"),
    "follow_pods": ("watching", "follow_pods"),
    "get_pod": ("reading", "get_pod"),
    "get_service": ("reading", "get_service"),
    "guarded": ("guard", "guarded"),
    "installed": ("guard", "installed"),
    "job_termination": ("reading", "job_termination"),
    "json_patch_service": ("patching", "json_patch_service"),
    "list_annotated_services": ("reading", "list_annotated_services"),
    "list_managed": ("reading", "list_managed"),
    "list_services": ("reading", "list_services"),
    "on_api_error": ("calls", "on_api_error"),
    "pod_log_tail": ("reading", "pod_log_tail"),
    "pointer": ("patching", "pointer"),
    "ready_endpoint_pods": ("reading", "ready_endpoint_pods"),
    "service_from_dict": ("convert", "service_from_dict"),
    "set_pod_owners": ("patching", "set_pod_owners"),
    "surroundings": ("inspecting", "surroundings"),
    "wait_endpoints": ("watching", "wait_endpoints"),
    "wait_job": ("watching", "wait_job"),
    "wait_pod": ("watching", "wait_pod"),
}

__all__ = [
    "FIELD_MANAGER",
    "AppIngress",
    "Cache",
    "Cluster",
    "JobInfo",
    "Manifest",
    "ObjectRef",
    "PodInfo",
    "Progress",
    "ServiceInfo",
    "ServicePort",
    "Surroundings",
    "Termination",
    "Write",
    "app_ingress",
    "connect",
    "create",
    "create_replacing",
    "delete",
    "emit_event",
    "follow_pods",
    "get_pod",
    "get_service",
    "guarded",
    "installed",
    "job_termination",
    "json_patch_service",
    "list_annotated_services",
    "list_managed",
    "list_services",
    "on_api_error",
    "pod_log_tail",
    "pointer",
    "ready_endpoint_pods",
    "service_from_dict",
    "set_pod_owners",
    "surroundings",
    "wait_endpoints",
    "wait_job",
    "wait_pod",
]


__getattr__ = lazy.loader(__name__, _NAMES)
