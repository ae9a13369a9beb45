"""The only package that imports ``kubernetes``: one module per verb, snapshots out, our errors.

Nothing above this package builds URLs or sees a client model.
"""

from maint.cluster.calls import on_api_error
from maint.cluster.connection import Cluster, connect
from maint.cluster.creating import create, create_replacing
from maint.cluster.deleting import delete
from maint.cluster.events import emit as emit_event
from maint.cluster.guard import Write, guarded, installed
from maint.cluster.inspecting import AppIngress, Surroundings, app_ingress, surroundings
from maint.cluster.patching import FIELD_MANAGER, json_patch_service, pointer, set_pod_owners
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
    JobInfo,
    Manifest,
    ObjectRef,
    PodInfo,
    ServiceInfo,
    ServicePort,
    Termination,
)
from maint.cluster.watching import Progress, follow_pods, wait_endpoints, wait_job, wait_pod

__all__ = [
    "FIELD_MANAGER",
    "AppIngress",
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
    "set_pod_owners",
    "surroundings",
    "wait_endpoints",
    "wait_job",
    "wait_pod",
]
