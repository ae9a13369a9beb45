"""Every path of a window reaches a terminal state and leaves nothing, on the real control plane.

Driven pass by pass with a settable clock (``tests.support.window``); everything else is real:
kube-apiserver with admission, the EndpointSlice controller, the OCI registry, SQLite and
PostgreSQL. Kaniko cannot run here, so the fake kubelet reports a really pushed digest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import BatchV1Api, CoreV1Api

from maint import cluster
from maint.app import notice_json
from maint.errors import InvalidInput
from maint.notices import TargetState
from maint.runner.housekeeping import ImageJanitor
from maint.runner.transitions import PREPARE_MARGIN
from tests.support.faults import Exchange, Fault
from tests.support.kubelet import JobResult
from tests.support.window import APP_LABELS, Window, leftovers_after, open_window

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"build_timeout": 5, "step_retry_delay": 1}


def _active(window: Window, **fields) -> int:
    notice = window.add(**fields)
    window.step()
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    return notice.id


def _service(k8s, window: Window):
    return CoreV1Api(k8s).read_namespaced_service("web", window.namespace)


def _jobs(k8s, window: Window) -> list[str]:
    return sorted(
        j.metadata.name for j in BatchV1Api(k8s).list_namespaced_job(window.build_namespace).items
    )


def _poll(window: Window) -> None:
    window.clock.advance(window.app.settings.poll_interval + 1)
    window.step()


def test_a_runner_with_other_display_settings_never_rebuilds_a_live_page(window, k8s):
    notice_id = _active(window)
    before = window.notice(notice_id).targets[0]
    jobs = _jobs(k8s, window)
    window.reconfigure(display_timezone="Asia/Seoul")
    _poll(window)
    after = window.notice(notice_id).targets[0]
    assert (after.pod, after.image, after.revision) == (before.pod, before.image, before.revision)
    assert _jobs(k8s, window) == jobs
    assert _service(k8s, window).spec.selector == {"app": before.pod}
    assert not [e for e in window.app.store.events(notice_id) if e.step == "refresh"]


def test_extend_after_a_manual_restore_leaves_the_selector_alone(window, k8s):
    notice_id = _active(window)
    CoreV1Api(k8s).patch_namespaced_service(  # an SRE gives the Service back by hand
        "web", window.namespace, [{"op": "replace", "path": "/spec/selector", "value": APP_LABELS}]
    )
    end = window.notice(notice_id).end + timedelta(minutes=30)
    window.app.extend_notice(notice_id, end=end.isoformat())
    _poll(window)
    assert _service(k8s, window).spec.selector == APP_LABELS
    target = window.notice(notice_id).targets[0]
    assert target.original_selector == APP_LABELS
    drift = [e for e in window.app.store.events(notice_id) if e.step == "drift"]
    assert len(drift) == 1 and "left as is" in drift[0].detail
    # The end still ends it: the human's selector is the app's, so nothing is overwritten.
    window.clock.at(end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _service(k8s, window).spec.selector == APP_LABELS


def test_a_service_given_back_by_hand_whose_annotations_change_meanwhile_still_completes(
    window, k8s
):
    """The restore finds the app's selector already back and removes maint's annotations; if
    one of them goes between its read and its patch (someone else cleaning up), the patch's
    ``remove`` fails (Conflict): the restore reads again in the same step, not a retry later."""
    notice_id = _active(window)
    core = CoreV1Api(k8s)
    core.patch_namespaced_service(  # an SRE gives the Service back by hand
        "web", window.namespace, [{"op": "replace", "path": "/spec/selector", "value": APP_LABELS}]
    )
    removed: list[str] = []

    def meanwhile(write: cluster.Write) -> None:
        if write.verb == "patch" and write.kind == "Service" and not removed:
            removed.append(write.name)
            core.patch_namespaced_service(
                "web",
                window.namespace,
                [{"op": "remove", "path": "/metadata/annotations/maint.io~1restore-by"}],
            )

    window.clock.at(window.notice(notice_id).end)
    with cluster.installed(meanwhile):
        window.step()
    assert removed == ["web"]
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED, window.lines
    annotations = _service(k8s, window).metadata.annotations or {}
    assert not [key for key in annotations if key.startswith("maint.io/")]


def test_extend_moves_restore_by_before_a_slow_rebuild_and_a_failed_one_keeps_the_old_page(
    window, k8s, kubelet
):
    notice_id = _active(window)
    old = window.notice(notice_id).targets[0]
    end = window.notice(notice_id).end + timedelta(minutes=30)
    window.app.extend_notice(notice_id, end=end.isoformat())
    new_page = window.page_name(notice_id)
    kubelet.held_jobs.add(new_page)  # the rebuild never finishes within build_timeout
    _poll(window)
    service = _service(k8s, window)
    restore_by = (end + window.app.settings.grace()).isoformat()
    assert service.metadata.annotations["maint.io/restore-by"] == restore_by
    assert service.spec.selector == {"app": old.pod}  # the old page keeps serving
    events = window.app.store.events(notice_id)
    moved = next(i for i, e in enumerate(events) if e.step == "deadline")
    started = next(i for i, e in enumerate(events) if (e.step, e.outcome) == ("refresh", "started"))
    assert moved < started  # restore-by moved before any rebuild
    failed = [e for e in events if (e.step, e.outcome) == ("refresh", "failed")]
    assert len(failed) == 1 and f"page {old.pod} keeps serving, next try in" in failed[0].detail
    assert window.notice(notice_id).targets[0].pod == old.pod
    # Within the backoff nothing is rebuilt again; after it, a fresh build succeeds.
    _poll(window)
    assert len([e for e in window.app.store.events(notice_id) if e.outcome == "failed"]) == 1
    kubelet.finish_held_job(new_page)
    deadline = time.monotonic() + 40
    while window.notice(notice_id).targets[0].pod != new_page:
        assert time.monotonic() < deadline, "\n".join(window.lines[-12:])
        assert _service(k8s, window).spec.selector == {"app": old.pod}
        time.sleep(1)
        _poll(window)
    assert _service(k8s, window).spec.selector == {"app": new_page}


def test_extend_is_refused_when_it_would_overlap_another_notice_on_the_service(window):
    first = window.add(start_in=600, length=600)
    second = window.add(start_in=1800, length=600)
    with pytest.raises(InvalidInput, match=f"overlaps maintenance notice {second.id}"):
        window.app.extend_notice(first.id, end=(second.start + timedelta(minutes=1)).isoformat())
    assert window.notice(first.id).end == first.end
    # Its own window is no overlap: extending up to the next notice's start is fine.
    window.app.extend_notice(first.id, end=second.start.isoformat())
    assert window.notice(first.id).end == second.start


@pytest.fixture
def refusing_window(
    control_plane, k8s, namespace, database_url, oci_registry_without_delete, kubelet
) -> Iterator[Window]:
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry_without_delete.push_image("maint-page")
    )
    with open_window(
        control_plane=control_plane,
        k8s=k8s,
        namespace=namespace,
        database_url=database_url,
        registry=oci_registry_without_delete,
    ) as w:
        janitor = w.app.steps().janitor
        w.rewire(
            janitor=ImageJanitor(
                registry=janitor.registry,
                repository=janitor.repository,
                first_retry=2,
                max_delay=3,
                attempts=3,
            )
        )
        yield w


def test_a_registry_refusing_deletes_ends_completed_with_the_cleanup_pending_then_given_up(
    refusing_window, k8s
):
    window = refusing_window
    notice_id = _active(window)
    image = window.notice(notice_id).targets[0].image
    window.clock.at(window.notice(notice_id).end)
    started = time.monotonic()
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert time.monotonic() - started < 60
    shown = notice_json(
        window.notice(notice_id), now=window.clock(), events=window.app.store.events(notice_id)
    )
    assert shown["targets"][0]["pending_cleanup"] == [image]
    assert leftovers_after(k8s, notice_id) == []
    # Retried in the background with backoff, then given up with one event: a few rows, not
    # one per pass.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = window.app.store.events(notice_id)
        cleanup = [e for e in events if e.step == "cleanup" and image in e.detail]
        if any(e.outcome == "gave-up" for e in cleanup):
            break
        time.sleep(0.2)
    assert [e.outcome for e in cleanup] == ["pending", "gave-up"]
    shown = notice_json(
        window.notice(notice_id), now=window.clock(), events=window.app.store.events(notice_id)
    )
    assert shown["targets"][0]["pending_cleanup"] == []


def test_the_service_deleted_while_ready_ends_rolled_back_and_leaves_nothing(window, k8s):
    notice = window.add()
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    CoreV1Api(k8s).delete_namespaced_service("web", window.namespace)
    _poll(window)
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    assert leftovers_after(k8s, notice.id) == []
    assert ("service", "gone") in [(e.step, e.outcome) for e in window.app.store.events(notice.id)]


def test_the_service_deleted_while_active_ends_completed_and_leaves_nothing(window, k8s):
    notice_id = _active(window)
    CoreV1Api(k8s).delete_namespaced_service("web", window.namespace)
    _poll(window)
    target = window.notice(notice_id).targets[0]
    assert target.state is TargetState.COMPLETED and target.actual_end is not None
    assert leftovers_after(k8s, notice_id) == []


def test_the_service_recreated_while_active_ends_completed_and_is_left_as_created(window, k8s):
    notice_id = _active(window)
    core = CoreV1Api(k8s)
    fresh = core.read_namespaced_service("web", window.namespace)
    core.delete_namespaced_service("web", window.namespace)
    core.create_namespaced_service(
        window.namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": APP_LABELS,
                "ports": [
                    {"name": p.name, "port": p.port, "targetPort": p.target_port}
                    for p in fresh.spec.ports
                ],
            },
        },
    )
    _poll(window)
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert _service(k8s, window).spec.selector == APP_LABELS
    assert leftovers_after(k8s, notice_id) == []


def _pod_reads(exchange: Exchange) -> bool:
    return exchange.resource == "pods" and exchange.method == "GET"


def test_an_api_outage_of_twice_pod_ready_timeout_during_prepare_still_switches_on_time(
    window, k8s, proxy, tmp_path
):
    window.reconfigure(
        kubeconfig=str(proxy.kubeconfig(tmp_path / "kubeconfig")), pod_ready_timeout=2
    )
    notice = window.add(start_in=120, length=600)
    proxy.inject(Fault.error(503), when=_pod_reads)
    started = time.monotonic()
    while time.monotonic() - started < 2 * window.app.settings.pod_ready_timeout:
        window.step()  # the Pod cannot be seen Ready: a retry, never a rollback
        assert window.notice(notice.id).targets[0].state is TargetState.PREPARING
    proxy.clear()
    window.clock.advance(window.app.settings.step_retry_delay)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    window.clock.at(notice.start)
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.ACTIVE and target.actual_start == notice.start
    assert not [e for e in window.app.store.events(notice.id) if e.step == "rollback"]


def test_a_permanent_build_failure_rolls_back_at_once_with_the_reason(window, k8s, kubelet):
    kubelet.default_job_result = JobResult(
        succeeded=False,
        message="error building image: GET https://r/v2/nginx/manifests/9: MANIFEST_UNKNOWN",
    )
    notice = window.add(start_in=600)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    assert "MANIFEST_UNKNOWN" in " ".join(e.detail for e in window.app.store.events(notice.id))


def test_a_transient_build_failure_is_rebuilt_afresh_until_it_succeeds(
    window, k8s, kubelet, oci_registry
):
    kubelet.default_job_result = JobResult(
        succeeded=False, message="PUT https://r/v2/page/manifests/x: unexpected status code 503"
    )
    notice = window.add(start_in=600)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.PREPARING
    retry = [
        e for e in window.app.store.events(notice.id) if (e.step, e.outcome) == ("build", "retry")
    ]
    assert retry and "removed Job" in retry[0].detail
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    deadline = time.monotonic() + 30
    while window.notice(notice.id).targets[0].state is not TargetState.READY:
        assert time.monotonic() < deadline, window.lines[-5:]
        window.clock.advance(1)
        window.step()
    assert window.clock() < notice.start + PREPARE_MARGIN
