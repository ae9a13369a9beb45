"""A whole maintenance window on the real control plane, with a real registry holding the image.

Real: kube-apiserver (validation, Pod Security admission), the job and EndpointSlice controllers,
the database (SQLite and PostgreSQL), the OCI registry (Debian's docker-registry) and the ECR API
(moto server). Simulated: the kubelet (no container runtime here) and Kaniko's push — the test
pushes a real image itself and the fake kubelet reports its digest as Kaniko would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from kubernetes.client import CoreV1Api

from maint import naming
from maint.app import App
from maint.notices import TargetState
from maint.runner.transitions import PREPARE_MARGIN
from tests.support.kubelet import JobResult
from tests.support.window import (
    APP_LABELS,
    Clock,
    Window,
    leftovers_after,
    make_app,
    make_build_namespace,
    open_window,
    settings_for,
)

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


def ready_endpoints(k8s, namespace: str, service: str = "web", timeout: float = 20) -> set[str]:
    """The Service's ready endpoint Pods, once they stop changing for a moment."""
    from kubernetes.client import DiscoveryV1Api

    api = DiscoveryV1Api(k8s)
    seen: set[str] | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slices = api.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        now = {
            e.target_ref.name
            for s in slices
            for e in (s.endpoints or [])
            if e.target_ref and (e.conditions is None or e.conditions.ready)
        }
        if now == seen:
            return now
        seen = now
        time.sleep(0.5)
    return seen or set()


def wait_endpoints(k8s, namespace: str, want: set[str], timeout: float = 20) -> set[str]:
    deadline = time.monotonic() + timeout
    got: set[str] = set()
    while time.monotonic() < deadline:
        got = ready_endpoints(k8s, namespace, timeout=2)
        if got == want:
            return got
        time.sleep(0.3)
    return got


@pytest.fixture
def window(control_plane, k8s, namespace, database_url, oci_registry) -> Iterator[Window]:
    with open_window(
        control_plane=control_plane,
        k8s=k8s,
        namespace=namespace,
        database_url=database_url,
        registry=oci_registry,
    ) as w:
        yield w


def test_whole_window_switches_endpoints_to_the_page_and_back_and_leaves_nothing(
    window, k8s, kubelet, oci_registry
):
    digest = oci_registry.push_image("maint-page")
    kubelet.default_job_result = JobResult(succeeded=True, message=digest)
    app_pods = {"web-0", "web-1"}
    assert wait_endpoints(k8s, window.namespace, app_pods) == app_pods

    notice = window.add(start_in=600, length=600)
    window.step()  # prepare: lead is 10 min, so at once
    prepared = window.notice(notice.id).targets[0]
    assert prepared.state is TargetState.READY
    assert prepared.image == f"{oci_registry.host}/maint-page@{digest}"
    assert ready_endpoints(k8s, window.namespace) == app_pods  # nothing switched yet

    window.clock.at(notice.start)
    window.step()
    active = window.notice(notice.id).targets[0]
    assert active.state is TargetState.ACTIVE
    assert active.original_selector == APP_LABELS
    assert ready_endpoints(k8s, window.namespace) == {active.pod}

    window.clock.at(notice.end)
    window.step()
    done = window.notice(notice.id).targets[0]
    assert done.state is TargetState.COMPLETED
    service = CoreV1Api(k8s).read_namespaced_service("web", window.namespace)
    assert service.spec.selector == APP_LABELS
    assert not any(k.startswith("maint.io/") for k in (service.metadata.annotations or {}))
    assert wait_endpoints(k8s, window.namespace, app_pods) == app_pods
    assert leftovers_after(k8s, notice.id) == []
    assert not oci_registry.has_manifest("maint-page", digest)


def test_event_log_of_a_normal_window_lists_every_step_in_order(window, kubelet, oci_registry):
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    notice = window.add()
    window.step()
    window.clock.at(notice.start)
    window.step()
    window.clock.at(notice.end)
    window.step()
    steps = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
    expected = [
        ("register", "ok"),
        ("prepare", "started"),
        ("build", "started"),
        ("build", "ok"),
        ("pod", "created"),
        ("pod-ready", "ok"),
        ("prepare", "ok"),
        ("switch", "ok"),
        ("endpoints", "ok"),
        ("restore", "ok"),
        ("endpoints", "ok"),
    ]
    assert steps[: len(expected)] == expected
    events = window.app.store.events(notice.id)
    cleanup = " | ".join(e.detail for e in events[len(expected) :] if e.step == "cleanup")
    for what in (f"Pod {window.namespace}/", "Job ", "ConfigMap ", "deleted image "):
        assert what in cleanup
    assert steps[-1] == ("complete", "ok")


def test_failing_kaniko_job_rolls_back_and_leaves_the_service_untouched(window, k8s, kubelet):
    kubelet.default_job_result = JobResult(
        succeeded=False, message="error building image: COPY failed: no such file"
    )
    notice = window.add()
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.ROLLED_BACK
    service = CoreV1Api(k8s).read_namespaced_service("web", window.namespace)
    assert service.spec.selector == APP_LABELS
    assert wait_endpoints(k8s, window.namespace, {"web-0", "web-1"}) == {"web-0", "web-1"}
    assert leftovers_after(k8s, notice.id) == []
    details = " ".join(e.detail for e in window.app.store.events(notice.id))
    assert "COPY failed" in details


def test_page_pod_that_never_becomes_ready_is_retried_until_the_start_then_rolls_back(
    window, k8s, kubelet, oci_registry
):
    """Not Ready within ``pod_ready_timeout`` may pass (a slow node, an API outage): retried
    while the start plus the margin is ahead, rolled back untouched once it has passed."""
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    notice = window.add()
    kubelet.never_ready.add(window.page_name(notice.id))
    window.reconfigure(pod_ready_timeout=3)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.PREPARING
    window.clock.at(notice.start + PREPARE_MARGIN)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    assert (
        CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == APP_LABELS
    )
    assert leftovers_after(k8s, notice.id) == []
    outcomes = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
    assert ("switch", "ok") not in outcomes
    assert ("rollback", "ok") in outcomes


def test_selector_changed_by_someone_else_is_not_overwritten_at_restore(
    window, k8s, kubelet, oci_registry
):
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    notice = window.add()
    window.step()
    window.clock.at(notice.start)
    window.step()
    theirs = {"app": "web", "track": "canary"}
    CoreV1Api(k8s).patch_namespaced_service(
        "web",
        window.namespace,
        [{"op": "replace", "path": "/spec/selector", "value": theirs}],
    )
    window.clock.at(notice.end)
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.FAILED
    assert CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == theirs
    conflict = [e for e in window.app.store.events(notice.id) if e.outcome == "conflict"]
    assert conflict and "not overwritten" in conflict[0].detail
    assert "{'app': 'web'}" in conflict[0].detail  # the app's selector, for the human
    # Nothing selects the page any more: Pod, Job, ConfigMap and our annotations are gone,
    # so no later pass or sweep warns about this Service again.
    assert leftovers_after(k8s, notice.id) == []
    service = CoreV1Api(k8s).read_namespaced_service("web", window.namespace)
    assert not any(k.startswith("maint.io/") for k in service.metadata.annotations or {})
    window.clock.at(notice.end + window.app.settings.grace())
    assert window.step().overdue == []
    assert [e.outcome for e in window.app.store.events(notice.id)].count("conflict") == 1


@pytest.mark.aws
def test_whole_window_on_ecr_deletes_the_image_through_the_ecr_api(
    control_plane, k8s, namespace, moto_ecr, kubelet, tmp_path
):
    build_ns = make_build_namespace(k8s)
    make_app(k8s, namespace)
    repo = moto_ecr.create_repository(f"maint-page-{namespace}")
    digest = "sha256:" + "ab" * 32
    moto_ecr.put_image(repo.repository, digest)
    kubelet.default_job_result = JobResult(succeeded=True, message=digest)
    settings = settings_for(
        kubeconfig=str(control_plane.kubeconfig),
        database_url=f"sqlite:///{tmp_path}/maint.db",
        build_namespace=build_ns,
        registry_kind="ecr",
        image_repository=str(repo),
        aws_region=moto_ecr.region,
        ecr_endpoint_url=moto_ecr.endpoint_url,
    )
    clock = Clock()
    app = App(settings=settings, clock=clock, say=lambda _line: None)
    app.store.upgrade()
    w = Window(app=app, clock=clock, namespace=namespace, build_namespace=build_ns)
    try:
        notice = w.add()
        w.step()
        clock.at(notice.start)
        w.step()
        assert w.notice(notice.id).targets[0].state is TargetState.ACTIVE
        clock.at(notice.end)
        w.step()
        assert w.notice(notice.id).targets[0].state is TargetState.COMPLETED
        assert not moto_ecr.has_image(repo.repository, digest)
        assert leftovers_after(k8s, notice.id) == []
    finally:
        w.close()
        CoreV1Api(k8s).delete_namespace(build_ns)


def test_a_window_prepared_while_the_previous_window_of_its_service_serves_its_page(window, k8s):
    """Two windows on one Service, the second prepared while the first's page serves: the
    Service is behind maint's page only until the first ends, so the second builds its page
    meanwhile and switches at its own start instead of being rolled back as "behind a
    maintenance page"."""
    first = window.add(start_in=600, length=600)
    second = window.add(start_in=1225, length=300)  # prepared from 625 s, in the first window
    window.step()
    window.clock.at(first.start)
    window.step()
    assert window.notice(first.id).targets[0].state is TargetState.ACTIVE
    window.clock.at(first.start + timedelta(seconds=30))
    window.step()
    assert window.notice(second.id).targets[0].state is TargetState.READY, window.lines[-6:]
    window.clock.at(first.end)
    window.step()
    assert window.notice(first.id).targets[0].state is TargetState.COMPLETED
    window.clock.at(second.start)
    window.step()
    target = window.notice(second.id).targets[0]
    assert target.state is TargetState.ACTIVE
    service = CoreV1Api(k8s).read_namespaced_service("web", window.namespace)
    assert service.spec.selector == naming.page_selector(name=target.pod, keys=APP_LABELS)
    window.clock.at(second.end)
    window.step()
    assert window.notice(second.id).targets[0].state is TargetState.COMPLETED
    assert CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == (
        APP_LABELS
    )
    assert leftovers_after(k8s, first.id) == [] and leftovers_after(k8s, second.id) == []
