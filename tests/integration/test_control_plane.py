"""The local control plane behaves like a cluster where ``maint`` relies on it.

These tests prove the test infrastructure itself (real validation, Pod Security admission,
RBAC, the Job and EndpointSlice controllers, the fake kubelet) and pin down the API behaviour
the product is built around: a JSON Patch ``test`` + ``replace`` moves a selector cleanly, a
strategic-merge patch does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from kubernetes import config
from kubernetes.client import (
    ApiClient,
    BatchV1Api,
    CoreV1Api,
    DiscoveryV1Api,
    RbacAuthorizationV1Api,
)
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet, JobResult

T = TypeVar("T")
DIGEST = "sha256:" + "ab" * 32


def eventually(check: Callable[[], T | None], *, what: str, timeout: float = 30.0) -> T:
    """Poll ``check`` until it returns something other than None/False, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def pod_manifest(name: str, labels: dict[str, str], *, as_root: bool = False) -> dict[str, Any]:
    """A Pod admitted by Pod Security ``restricted`` unless ``as_root``."""
    user = {"runAsUser": 0, "runAsNonRoot": False} if as_root else {"runAsUser": 101}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": not as_root,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "web",
                    "image": "registry.invalid/web:1",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        **user,
                    },
                }
            ],
        },
    }


def service_manifest(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": "http"}]},
    }


def job_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "build",
                            "image": "registry.invalid/kaniko:1",
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                }
            },
        },
    }


def ready_pod_ip(core: CoreV1Api, namespace: str, name: str) -> str:
    def ip_when_ready() -> str | None:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or ()}
        return pod.status.pod_ip if conditions.get("Ready") == "True" else None

    return eventually(ip_when_ready, what=f"pod {namespace}/{name} to be Ready")


def ready_endpoint_ips(discovery: DiscoveryV1Api, namespace: str, service: str) -> set[str]:
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    return {
        address
        for endpoint_slice in slices
        for endpoint in endpoint_slice.endpoints or ()
        if endpoint.conditions and endpoint.conditions.ready
        for address in endpoint.addresses
    }


def job_pod_message(core: CoreV1Api, namespace: str, job: str) -> str | None:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
    ).items
    for pod in pods:
        for status in pod.status.container_statuses or ():
            if status.state and status.state.terminated:
                return str(status.state.terminated.message)
    return None


# -- admission ---------------------------------------------------------------------------------


def test_api_server_rejects_an_invalid_pod_with_422(k8s: ApiClient, namespace: str) -> None:
    invalid = pod_manifest("invalid", {"app": "web"})
    invalid["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"
    with pytest.raises(ApiException) as caught:
        CoreV1Api(k8s).create_namespaced_pod(namespace, invalid)
    assert caught.value.status == 422
    assert "Not_A_DNS_Label" in caught.value.body


def test_restricted_pod_security_rejects_root_and_admits_a_hardened_pod(
    k8s: ApiClient, namespace: str
) -> None:
    core = CoreV1Api(k8s)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, pod_manifest("root", {"app": "x"}, as_root=True))
    assert caught.value.status == 403
    assert "violates PodSecurity" in caught.value.body
    core.create_namespaced_pod(namespace, pod_manifest("hardened", {"app": "x"}))


# -- RBAC through impersonation ----------------------------------------------------------------


def test_service_account_may_patch_a_service_only_once_a_role_binding_allows_it(
    k8s: ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    core = CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "switcher"}})
    core.create_namespaced_service(namespace, service_manifest("web", {"app": "web"}))
    patch = {"metadata": {"annotations": {"maint.example/touched": "yes"}}}

    with control_plane.api_client(f"system:serviceaccount:{namespace}:switcher") as acting:
        as_switcher = CoreV1Api(acting)
        with pytest.raises(ApiException) as caught:
            as_switcher.patch_namespaced_service("web", namespace, patch)
        assert caught.value.status == 403

        rbac = RbacAuthorizationV1Api(k8s)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "switch-services"},
                "rules": [
                    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "patch"]}
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "switcher"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "switch-services",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "switcher", "namespace": namespace}
                ],
            },
        )

        def patched() -> bool:  # the authorizer's cache follows the RoleBinding within moments
            try:
                as_switcher.patch_namespaced_service("web", namespace, patch)
            except ApiException as error:
                if error.status == 403:
                    return False
                raise
            return True

        eventually(patched, what="the RoleBinding to allow the patch", timeout=10)
    annotations = core.read_namespaced_service("web", namespace).metadata.annotations
    assert annotations["maint.example/touched"] == "yes"


# -- Jobs and the fake kubelet -----------------------------------------------------------------


def test_job_completes_and_its_pod_carries_the_chosen_termination_message(
    k8s: ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    kubelet.job_results["build-page"] = JobResult(succeeded=True, message=DIGEST)
    BatchV1Api(k8s).create_namespaced_job(namespace, job_manifest("build-page"))

    def completed() -> Any:
        job = BatchV1Api(k8s).read_namespaced_job("build-page", namespace)
        conditions = {c.type: c.status for c in job.status.conditions or ()}
        return job if conditions.get("Complete") == "True" else None

    job = eventually(completed, what="the Job to complete")
    assert job.status.succeeded == 1
    assert job_pod_message(CoreV1Api(k8s), namespace, "build-page") == DIGEST


def test_job_fails_with_the_log_tail_as_termination_message_when_told_to(
    k8s: ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    log_tail = "error pushing image: UNAUTHORIZED"
    kubelet.job_results["build-page"] = JobResult(succeeded=False, message=log_tail)
    BatchV1Api(k8s).create_namespaced_job(namespace, job_manifest("build-page"))

    def failed() -> Any:
        job = BatchV1Api(k8s).read_namespaced_job("build-page", namespace)
        conditions = {c.type: c.status for c in job.status.conditions or ()}
        return job if conditions.get("Failed") == "True" else None

    job = eventually(failed, what="the Job to fail")
    assert job.status.failed == 1
    assert job_pod_message(CoreV1Api(k8s), namespace, "build-page") == log_tail


def test_held_job_keeps_running_until_the_test_finishes_it(
    k8s: ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    batch = BatchV1Api(k8s)
    kubelet.held_jobs.add("build-page")
    batch.create_namespaced_job(namespace, job_manifest("build-page"))
    eventually(
        lambda: batch.read_namespaced_job("build-page", namespace).status.ready == 1,
        what="the held Job's pod to run",
    )
    assert not batch.read_namespaced_job("build-page", namespace).status.succeeded

    kubelet.finish_held_job("build-page", JobResult(succeeded=True, message=DIGEST))
    eventually(
        lambda: batch.read_namespaced_job("build-page", namespace).status.succeeded == 1,
        what="the released Job to complete",
    )
    assert job_pod_message(CoreV1Api(k8s), namespace, "build-page") == DIGEST


def test_pod_listed_as_never_ready_runs_but_stays_out_of_the_endpoints(
    k8s: ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    core, discovery = CoreV1Api(k8s), DiscoveryV1Api(k8s)
    kubelet.never_ready.add("stuck")
    core.create_namespaced_service(namespace, service_manifest("web", {"app": "web"}))
    core.create_namespaced_pod(namespace, pod_manifest("stuck", {"app": "web"}))
    core.create_namespaced_pod(namespace, pod_manifest("fine", {"app": "web"}))
    fine_ip = ready_pod_ip(core, namespace, "fine")

    eventually(
        lambda: ready_endpoint_ips(discovery, namespace, "web") == {fine_ip},
        what="the EndpointSlice to list only the ready pod",
    )
    stuck = core.read_namespaced_pod("stuck", namespace)
    assert stuck.status.phase == "Running"
    assert stuck.status.pod_ip not in {None, fine_ip}
    assert {c.type: c.status for c in stuck.status.conditions}["Ready"] == "False"


def test_fake_kubelet_force_deletes_a_terminating_pod(k8s: ApiClient, namespace: str) -> None:
    core = CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod_manifest("doomed", {"app": "web"}))
    ready_pod_ip(core, namespace, "doomed")
    core.delete_namespaced_pod("doomed", namespace)  # default grace period: 30 s

    def gone() -> bool:
        try:
            core.read_namespaced_pod("doomed", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(gone, what="the pod to be removed", timeout=10)


def test_fake_kubelet_lists_again_and_carries_on_after_its_watch_expires(
    k8s: ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    expiries = kubelet.watch_expiries
    kubelet.expire_watch()  # the watch is cut and answered with 410 Gone
    eventually(lambda: kubelet.watch_expiries > expiries, what="the kubelet to see 410 Gone")
    core = CoreV1Api(k8s)
    core.create_namespaced_pod(namespace, pod_manifest("after-expiry", {"app": "web"}))
    assert ready_pod_ip(core, namespace, "after-expiry")


def test_admin_kubeconfig_file_reaches_the_api_server(control_plane: ControlPlane) -> None:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as client:
        names = {ns.metadata.name for ns in CoreV1Api(client).list_namespace().items}
    assert {"default", "kube-system"} <= names


# -- moving a Service's selector ---------------------------------------------------------------


def test_json_patch_of_the_selector_moves_the_endpoint_slices_to_the_new_pods(
    k8s: ApiClient, namespace: str
) -> None:
    core, discovery = CoreV1Api(k8s), DiscoveryV1Api(k8s)
    core.create_namespaced_service(namespace, service_manifest("web", {"app": "web"}))
    core.create_namespaced_pod(namespace, pod_manifest("app", {"app": "web"}))
    core.create_namespaced_pod(namespace, pod_manifest("page", {"maint/page": "n1"}))
    app_ip = ready_pod_ip(core, namespace, "app")
    page_ip = ready_pod_ip(core, namespace, "page")
    eventually(
        lambda: ready_endpoint_ips(discovery, namespace, "web") == {app_ip},
        what="the EndpointSlice to list the application pod",
    )

    core.patch_namespaced_service(
        "web",
        namespace,
        [
            {"op": "test", "path": "/spec/selector", "value": {"app": "web"}},
            {"op": "replace", "path": "/spec/selector", "value": {"maint/page": "n1"}},
        ],
        _content_type="application/json-patch+json",
    )

    assert core.read_namespaced_service("web", namespace).spec.selector == {"maint/page": "n1"}
    eventually(
        lambda: ready_endpoint_ips(discovery, namespace, "web") == {page_ip},
        what="the EndpointSlice to list only the maintenance pod",
        timeout=15,
    )


def test_json_patch_test_op_refuses_to_overwrite_a_selector_changed_meanwhile(
    k8s: ApiClient, namespace: str
) -> None:
    core = CoreV1Api(k8s)
    core.create_namespaced_service(namespace, service_manifest("web", {"app": "web-v2"}))
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_service(
            "web",
            namespace,
            [
                {"op": "test", "path": "/spec/selector", "value": {"app": "web"}},
                {"op": "replace", "path": "/spec/selector", "value": {"maint/page": "n1"}},
            ],
            _content_type="application/json-patch+json",
        )
    assert caught.value.status == 422
    assert core.read_namespaced_service("web", namespace).spec.selector == {"app": "web-v2"}


def test_strategic_merge_patch_of_the_selector_keeps_the_old_keys(
    k8s: ApiClient, namespace: str
) -> None:
    """The pitfall ``maint`` must avoid: the merged selector matches neither set of pods."""
    core = CoreV1Api(k8s)
    core.create_namespaced_service(namespace, service_manifest("web", {"app": "web"}))
    core.patch_namespaced_service(
        "web",
        namespace,
        {"spec": {"selector": {"maint/page": "n1"}}},
        _content_type="application/strategic-merge-patch+json",
    )
    selector = core.read_namespaced_service("web", namespace).spec.selector
    assert selector == {"app": "web", "maint/page": "n1"}
