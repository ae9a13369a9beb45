"""maint next to the other tools that manage a Service: merge-based reverts, workload
controllers, server-side apply.

- A client-side ``kubectl apply`` (or Helm 3) of the original manifest during the window sends a
  strategic-merge patch of the selector, which merges keys. The page selector keeps exactly the
  original's keys, so that merge gives the app back; maint's old shape (its own keys) merged
  with it into a selector that matched nothing. maint reports the revert and does not fight it.
- The page Pod carries the app's selector keys with the page's own values: no ReplicaSet that
  selects the app's Pods adopts it.
- After the window, the Service's previous server-side apply manager (``helm``) applies again
  without conflicts and without ``--force``.
- A selector whose keys changed between the preparation and the start is not switched (the
  page Pod's labels would not match it); one on maint's own label keys is refused at
  ``notice add``.

Real kube-apiserver and controller-manager (ReplicaSet, Deployment, EndpointSlice controllers),
the fake kubelet, SQLite, the settable clock.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from maint import cluster, naming
from maint.cli import main
from maint.notices import TargetState
from tests.support.processes import ready_endpoints, wait_until
from tests.support.window import APP_LABELS, ON_SQLITE, Window, as_older_release, leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

MERGE = "application/strategic-merge-patch+json"  # what client-side `kubectl apply` sends
APPLY = "application/apply-patch+yaml"  # server-side apply


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"poll_interval": 1}


def _active(window: Window, *, service: str = "web") -> tuple[int, str]:
    """Prepare and switch a window on ``service``: (notice id, page Pod)."""
    notice = window.add(service=service, start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.ACTIVE, window.lines
    assert target.pod is not None
    return notice.id, target.pod


def _endpoints(k8s, namespace: str, service: str, want: set[str]) -> None:
    wait_until(
        lambda: ready_endpoints(k8s, namespace, service) == want,
        timeout=20,
        what=f"EndpointSlices of {service} to list {sorted(want) or 'nothing'}",
    )


def _merge_original(core: CoreV1Api, namespace: str, service: str) -> dict[str, str]:
    """What a client-side apply of the original manifest sends for the selector."""
    core.patch_namespaced_service(
        service, namespace, {"spec": {"selector": APP_LABELS}}, _content_type=MERGE
    )
    return dict(core.read_namespaced_service(service, namespace).spec.selector)


@ON_SQLITE
def test_a_merge_based_revert_gives_the_app_back_and_is_reported_not_fought(window, k8s):
    core = CoreV1Api(k8s)
    ns = window.namespace
    notice_id, page = _active(window)
    assert core.read_namespaced_service("web", ns).spec.selector == {"app": page}
    _endpoints(k8s, ns, "web", {page})

    # maint's old shape, on a twin Service: the same merge left a selector nothing matches.
    core.create_namespaced_service(
        ns, {"metadata": {"name": "old"}, "spec": {"selector": APP_LABELS, "ports": [{"port": 80}]}}
    )
    old_shape = {naming.MANAGED_BY: naming.MANAGER, naming.PAGE_LABEL: page}
    core.patch_namespaced_service(
        "old", ns, [{"op": "replace", "path": "/spec/selector", "value": old_shape}]
    )
    _endpoints(k8s, ns, "old", {page})
    assert _merge_original(core, ns, "old") == old_shape | APP_LABELS
    _endpoints(k8s, ns, "old", set())  # a full outage: neither the app nor the page

    # Today's shape: the same merge overwrites every key, the app is back.
    assert _merge_original(core, ns, "web") == APP_LABELS
    _endpoints(k8s, ns, "web", {"web-0", "web-1"})

    window.clock.advance(window.app.settings.poll_interval)
    window.step()
    window.clock.advance(window.app.settings.poll_interval)
    window.step()
    drift = [e for e in window.app.store.events(notice_id) if e.step == "drift"]
    assert [e.outcome for e in drift] == ["foreign"], drift  # reported once
    assert "left as is" in drift[0].detail
    assert core.read_namespaced_service("web", ns).spec.selector == APP_LABELS  # not fought

    window.clock.at(window.notice(notice_id).end)
    window.step()
    target = window.notice(notice_id).targets[0]
    assert target.state is TargetState.COMPLETED  # the app's selector is what the end wants
    restore = [e.outcome for e in window.app.store.events(notice_id) if e.step == "restore"]
    assert restore == ["already"]
    service = core.read_namespaced_service("web", ns)
    assert service.spec.selector == APP_LABELS
    assert not set(naming.SERVICE_ANNOTATIONS) & set(service.metadata.annotations or {})
    assert leftovers_after(k8s, notice_id) == []
    _endpoints(k8s, ns, "web", {"web-0", "web-1"})


def _workload(kind: str, name: str, *, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": APP_LABELS},
            "template": {
                "metadata": {"labels": APP_LABELS},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _owned(core: CoreV1Api, namespace: str) -> dict[str, set[str]]:
    """ReplicaSet uid -> names of the live Pods it controls."""
    owned: dict[str, set[str]] = {}
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        for ref in pod.metadata.owner_references or []:
            if ref.kind == "ReplicaSet" and ref.controller:
                owned.setdefault(ref.uid, set()).add(pod.metadata.name)
    return owned


@ON_SQLITE
def test_no_replicaset_adopts_the_page_pod(window, k8s):
    core, apps = CoreV1Api(k8s), AppsV1Api(k8s)
    ns = window.namespace
    # A Deployment of the app (its ReplicaSet selects app=web plus the template hash), and a
    # bare ReplicaSet selecting exactly the app's selector (it adopts the orphan web-0, web-1).
    apps.create_namespaced_deployment(ns, _workload("Deployment", "web", replicas=2))
    apps.create_namespaced_replica_set(ns, _workload("ReplicaSet", "bare", replicas=3))

    def settled() -> bool:
        sets = apps.list_namespaced_replica_set(ns).items
        owned = _owned(core, ns)
        return len(sets) == 2 and all(
            len(owned.get(rs.metadata.uid, ())) == rs.spec.replicas
            and (rs.status.ready_replicas or 0) == rs.spec.replicas
            for rs in sets
        )

    wait_until(settled, timeout=30, what="the app's ReplicaSets to run their Pods")
    before = _owned(core, ns)

    notice_id, page = _active(window)
    uid = core.read_namespaced_pod(page, ns).metadata.uid
    for _ in range(3):  # the controllers see the page Pod; a few passes of the window
        time.sleep(1)
        window.clock.advance(window.app.settings.poll_interval)
        window.step()
        assert _owned(core, ns) == before
        pod = core.read_namespaced_pod(page, ns)
        # An adopting ReplicaSet would own it, or delete it as one replica too many.
        assert pod.metadata.uid == uid
        assert not pod.metadata.owner_references, pod.metadata.owner_references
        assert pod.metadata.labels["app"] == page  # the app's key, the page's value
    assert ("pod", "missing") not in [
        (e.step, e.outcome) for e in window.app.store.events(notice_id)
    ]
    for rs in apps.list_namespaced_replica_set(ns).items:
        assert rs.status.replicas == rs.spec.replicas
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    _endpoints(k8s, ns, "web", {page})


def _helm_service(namespace: str, *, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "site", "namespace": namespace, "labels": labels},
        "spec": {
            "selector": APP_LABELS,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


@ON_SQLITE
def test_helm_applies_server_side_after_the_window_without_force(window, k8s):
    core = CoreV1Api(k8s)
    ns = window.namespace
    manifest = _helm_service(ns, labels={"chart": "site-1"})
    core.patch_namespaced_service(  # created by server-side apply, as Helm 4 does
        "site", ns, manifest, field_manager="helm", _content_type=APPLY
    )
    notice_id, page = _active(window, service="site")
    assert core.read_namespaced_service("site", ns).spec.selector == {"app": page}
    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED

    upgraded = copy.deepcopy(manifest)
    upgraded["metadata"]["labels"]["chart"] = "site-2"
    core.patch_namespaced_service(  # no force: a conflict would raise 409 here
        "site", ns, upgraded, field_manager="helm", _content_type=APPLY
    )
    service = core.read_namespaced_service("site", ns)
    assert service.metadata.labels["chart"] == "site-2"
    assert service.spec.selector == APP_LABELS


@ON_SQLITE
def test_a_selector_whose_keys_changed_since_the_page_pod_was_made_is_not_switched(window, k8s):
    """The page Pod is labelled at preparation for the selector's keys then; a selector with
    other keys at the start would not select it: the switch is refused, the Service left as is."""
    core = CoreV1Api(k8s)
    ns = window.namespace
    notice = window.add(start_in=600, length=600)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    theirs = APP_LABELS | {"tier": "fe"}
    core.patch_namespaced_service(
        "web", ns, [{"op": "replace", "path": "/spec/selector", "value": theirs}]
    )
    window.clock.at(notice.start)
    window.step()

    assert window.notice(notice.id).targets[0].state is TargetState.READY
    service = core.read_namespaced_service("web", ns)
    assert service.spec.selector == theirs
    assert not set(naming.SERVICE_ANNOTATIONS) & set(service.metadata.annotations or {})
    said = "\n".join(window.lines)
    assert "now selects on ['app', 'tier']" in said and "not switched" in said, said


def test_notice_add_refuses_a_selector_on_maints_own_label_keys(
    control_plane, k8s, namespace, tmp_path: Path, monkeypatch, capsys
):
    CoreV1Api(k8s).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "odd"},
            "spec": {
                "selector": APP_LABELS | {naming.MANAGED_BY: "helm"},
                "ports": [{"port": 80}],
            },
        },
    )
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", f"sqlite:///{tmp_path / 'maint.db'}")
    assert main(["db", "upgrade"]) == 0
    start = datetime.now(UTC) + timedelta(minutes=30)
    capsys.readouterr()

    code = main(
        [
            "notice", "add", "--title", "t", "--reason", "r",
            "--start", start.isoformat(), "--end", (start + timedelta(hours=1)).isoformat(),
            "--target", f"{namespace}/odd",
        ]
    )  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"maint: Service {namespace}/odd selects on maint's own label {naming.MANAGED_BY}; "
        "maint cannot switch it (select the app's Pods by the app's own labels)"
    ]
    assert main(["notice", "list", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@ON_SQLITE
def test_a_window_an_older_release_switched_is_restored_after_the_upgrade(window, k8s):
    """A release before this shape switched to ``{managed-by: maint, maint.io/page: NAME}``:
    the runner that takes over after the upgrade restores that selector at the end, it does
    not take it for someone else's and leave the Service on the page (FAILED)."""
    core, ns = CoreV1Api(k8s), window.namespace
    notice_id, pod = _active(window)
    as_older_release(k8s, ns, pod=pod)
    window.clock.at(window.notice(notice_id).end)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.COMPLETED
    assert core.read_namespaced_service("web", ns).spec.selector == APP_LABELS
    assert leftovers_after(k8s, notice_id) == []


@ON_SQLITE
def test_an_annotation_added_between_the_switchs_read_and_its_patch_is_kept(window, k8s):
    """The Service has no annotations when the switch reads it, so the patch adds maint's as
    the whole annotations map; someone annotating it just before the patch lands must not lose
    theirs: the patch is guarded by the snapshot's resourceVersion, fails, and is made again
    from a fresh read (the same as an armed switch planned seconds earlier)."""
    core = CoreV1Api(k8s)
    ns = window.namespace
    assert not core.read_namespaced_service("web", ns).metadata.annotations
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    added: list[str] = []

    def meanwhile(write: cluster.Write) -> None:
        if write.verb == "patch" and write.kind == "Service" and not added:
            added.append(write.name)
            core.patch_namespaced_service(
                "web", ns, {"metadata": {"annotations": {"team": "shop"}}}
            )

    with cluster.installed(meanwhile):
        window.step()
    assert added == ["web"]
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE, window.lines
    service = core.read_namespaced_service("web", ns)
    assert service.metadata.annotations["team"] == "shop"
    assert naming.ORIGINAL_SELECTOR_ANNOTATION in service.metadata.annotations
