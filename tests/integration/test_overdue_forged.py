"""The forced-restore sweep trusts only the annotations maint itself writes.

Anyone who may patch a Service can write ``maint.io/*`` annotations, while maint may delete Pods
cluster-wide. So the sweep acts only on maint's exact page selector (the recorded original's
keys, each with one page name of maint's form) and deletes only Pods that
carry maint's ``managed-by``, the page and the notice labels; a ``restore-by`` it cannot read
(or without a UTC offset) is reported for that one Service and never stops the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from maint import cluster, naming
from maint.cluster import Cluster
from maint.notices import ServiceRef
from maint.runner import restore_overdue
from maint.switch import switch
from tests.support.processes import maint, maint_env

APP = {"app": "db"}
PAST = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def api(control_plane) -> Iterator[Cluster]:
    connection = cluster.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def _no_forged_service_left(k8s, namespace) -> Iterator[None]:
    """Delete this test's Services now, not with its namespace later: a cluster-wide sweep in
    a later test (``maint restore --overdue``) would report them as skipped and exit 1."""
    yield
    core = CoreV1Api(k8s)
    for service in core.list_namespaced_service(namespace).items:
        core.delete_namespaced_service(service.metadata.name, namespace)


def _service(core: CoreV1Api, namespace: str, name: str, **metadata: Any) -> None:
    selector = metadata.pop("selector", APP)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": name, **metadata},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}]},
        },
    )


def _pod(core: CoreV1Api, namespace: str, name: str, labels: dict[str, str]) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        },
    )


def _alive(core: CoreV1Api, namespace: str) -> set[str]:
    """Pods present and not being deleted."""
    return {
        pod.metadata.name
        for pod in core.list_namespaced_pod(namespace).items
        if pod.metadata.deletion_timestamp is None
    }


def _overdue(*, page: dict[str, str], original: dict[str, str], notice: str) -> dict[str, str]:
    """The annotations of a switched Service whose ``restore-by`` has passed."""
    return {
        naming.PAGE_SELECTOR_ANNOTATION: json.dumps(page),
        naming.ORIGINAL_SELECTOR_ANNOTATION: json.dumps(original),
        naming.NOTICE_ANNOTATION: notice,
        naming.RESTORE_BY_ANNOTATION: PAST.isoformat(),
    }


def test_a_forged_foreign_page_selector_deletes_nothing_and_leaves_the_service(k8s, namespace, api):
    core = CoreV1Api(k8s)
    _service(
        core,
        namespace,
        "db",
        annotations=_overdue(page=APP, original={"app": "other"}, notice="1"),
    )
    for i in range(2):
        _pod(core, namespace, f"db-{i}", APP)
    before = core.read_namespaced_service("db", namespace)

    results = restore_overdue(api, now=datetime.now(UTC), namespace=namespace)

    assert [(r.service, r.outcome) for r in results] == [(f"{namespace}/db", "skipped")]
    assert "not maint's page selector" in results[0].detail
    assert _alive(core, namespace) == {"db-0", "db-1"}
    after = core.read_namespaced_service("db", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.selector == APP


def test_pods_without_the_notice_label_survive_a_forged_maint_shaped_selector(k8s, namespace, api):
    core = CoreV1Api(k8s)
    name = "maint-42-web-abcde-0123abcd"
    page = naming.page_selector(name=name, keys=APP)
    maints = {naming.MANAGED_BY: naming.MANAGER, naming.PAGE_LABEL: name}
    _service(
        core,
        namespace,
        "web",
        selector=page,
        annotations=_overdue(page=page, original=APP, notice="42"),
    )
    _pod(core, namespace, "no-notice", page | maints)  # maint's page labels, no notice label
    _pod(core, namespace, "other-notice", page | maints | {naming.NOTICE_LABEL: "41"})
    _pod(core, namespace, "not-maints", page | {naming.NOTICE_LABEL: "42"})  # no managed-by
    _pod(core, namespace, "app-0", APP)

    results = restore_overdue(api, now=datetime.now(UTC), namespace=namespace)

    assert [r.service for r in results] == [f"{namespace}/web"]
    assert _alive(core, namespace) == {"no-notice", "other-notice", "not-maints", "app-0"}


@pytest.mark.parametrize(
    "page",
    [
        {"app": "maint-42-web-abcde-0123abcd", "tier": "maint-42-web-abcde-0123abcd"},  # keys
        {naming.MANAGED_BY: "helm", naming.PAGE_LABEL: "maint-42-web-abcde-0123abcd"},
        {naming.MANAGED_BY: naming.MANAGER, naming.PAGE_LABEL: "db"},  # legacy, not a page
        {"app": "maint-42-web-abcde-0123abcd-x"},  # not maint's page-name form
    ],
    ids=["other-keys", "maint-keys", "legacy-other-name", "other-name"],
)
def test_a_selector_not_of_the_recorded_originals_keys_is_left_alone(k8s, namespace, api, page):
    """The page selector has exactly the recorded original's keys, each with one page name of
    maint's form (or exactly an older release's shape): anything else is left alone, Pods
    untouched."""
    core = CoreV1Api(k8s)
    labels = {naming.MANAGED_BY: naming.MANAGER, naming.NOTICE_LABEL: "42"}
    _service(
        core,
        namespace,
        "web",
        selector=page,
        annotations=_overdue(page=page, original=APP, notice="42"),
    )
    _pod(core, namespace, "paged", page | labels)
    _pod(core, namespace, "app-0", APP)

    results = restore_overdue(api, now=datetime.now(UTC), namespace=namespace)

    assert [(r.service, r.outcome) for r in results] == [(f"{namespace}/web", "skipped")]
    assert "not maint's page selector" in results[0].detail
    assert _alive(core, namespace) == {"paged", "app-0"}
    assert core.read_namespaced_service("web", namespace).spec.selector == page


def test_an_offset_less_restore_by_does_not_stop_the_forced_restore_of_another_service(
    k8s, namespace, api, control_plane
):
    core = CoreV1Api(k8s)
    # Switched for real by maint; then someone rewrites two deadlines. "a-*" list first.
    bad = {"a-naive": "2020-01-01T00:00:00", "a-garbage": "next tuesday"}
    for notice_id, name in enumerate([*bad, "web"], start=1):
        _service(core, namespace, name, selector={"app": name})
        target = naming.target_name(notice_id=notice_id, namespace=namespace, service=name)
        pod = naming.object_name(target=target, revision="0123abcd")
        labels = naming.page_labels(
            name=pod, keys=["app"], base=naming.labels(notice_id=notice_id, target=target)
        )
        _pod(core, namespace, pod, labels)
        # maint's page labels but another notice: not this Service's page Pod
        _pod(core, namespace, f"{pod}-decoy", labels | {naming.NOTICE_LABEL: "99"})
        _pod(core, namespace, f"{name}-0", {"app": name})
        switch(
            api,
            ref=ServiceRef(namespace=namespace, name=name),
            page=labels,
            notice_id=notice_id,
            restore_by=PAST,
        )
    for name, deadline in bad.items():
        core.patch_namespaced_service(
            name, namespace, {"metadata": {"annotations": {naming.RESTORE_BY_ANNOTATION: deadline}}}
        )
    switched = {name: core.read_namespaced_service(name, namespace).spec.selector for name in bad}
    pods = _alive(core, namespace)

    done = maint(
        "restore",
        "--overdue",
        env=maint_env(kubeconfig=control_plane.kubeconfig, database_url="sqlite:///:memory:"),
        fork=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "not restored (failed or skipped" in done.stderr, done.stderr
    ours = [line for line in done.stdout.splitlines() if line.startswith(f"{namespace}/")]
    for name in bad:
        lines = [line for line in ours if line.startswith(f"{namespace}/{name}:")]
        assert len(lines) == 1 and "skipped" in lines[0], done.stdout
    assert f"{namespace}/a-naive: skipped" in done.stdout
    assert "no UTC offset" in done.stdout
    web = [line for line in ours if line.startswith(f"{namespace}/web:")]
    assert web and web[0].startswith(f"{namespace}/web: restored"), done.stdout
    assert len(ours) == 3, done.stdout

    assert core.read_namespaced_service("web", namespace).spec.selector == {"app": "web"}
    web_page = naming.object_name(
        target=naming.target_name(notice_id=3, namespace=namespace, service="web"),
        revision="0123abcd",
    )
    assert _alive(core, namespace) == pods - {web_page}  # only web's own page Pod went
    for name, selector in switched.items():  # unreadable deadlines: not acted on
        service = core.read_namespaced_service(name, namespace)
        assert service.spec.selector == selector
        assert naming.RESTORE_BY_ANNOTATION in service.metadata.annotations


def test_a_window_an_older_release_switched_is_still_restored_by_the_sweep(k8s, namespace, api):
    """Before the page selector kept the original's keys, maint wrote
    ``{managed-by: maint, maint.io/page: NAME}``; such a window, overdue after an upgrade, is
    given back and its page Pod removed."""
    core = CoreV1Api(k8s)
    name = "maint-42-web-abcde-0123abcd"
    page = naming.legacy_page_selector(name=name)
    _service(
        core,
        namespace,
        "web",
        selector=page,
        annotations=_overdue(page=page, original=APP, notice="42"),
    )
    _pod(core, namespace, name, page | {naming.NOTICE_LABEL: "42"})
    _pod(core, namespace, "app-0", APP)

    results = restore_overdue(api, now=datetime.now(UTC), namespace=namespace)

    assert [(r.service, r.outcome) for r in results] == [(f"{namespace}/web", "restored")]
    assert core.read_namespaced_service("web", namespace).spec.selector == APP
    assert _alive(core, namespace) == {"app-0"}
