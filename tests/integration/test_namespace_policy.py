"""MAINT_TARGET_NAMESPACES and the namespaces refused always: the CLI on the real API server.

``notice add`` refuses a target in a system namespace, in maint's own namespaces or outside the
allowlist (exit 2, one line, nothing stored), although the Service exists and is switchable;
and the write guard the CLI installs stops a forced restore of a Service outside the allowlist
before its PATCH leaves maint (the selector and the page Pod stay as they were).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client import CoreV1Api

from maint import cluster, naming
from maint.cli import main
from maint.notices import NoticeStore, ServiceRef
from maint.switch import switch
from maint.switch.pod import ContainerPort, page_pod
from tests.support.window import APP_LABELS, make_app

pytestmark = pytest.mark.k8s


@pytest.fixture
def run(control_plane, k8s, namespace, database_url, monkeypatch, capsys):
    make_app(k8s, namespace)
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def kube_system_service(k8s) -> Iterator[str]:
    """A real, switchable Service in kube-system: only the policy can refuse it."""
    name = f"dns-{uuid.uuid4().hex[:6]}"
    core = CoreV1Api(k8s)
    core.create_namespaced_service(
        "kube-system",
        {
            "metadata": {"name": name},
            "spec": {"selector": {"k8s-app": name}, "ports": [{"port": 53}]},
        },
    )
    try:
        yield name
    finally:
        core.delete_namespaced_service(name, "kube-system")


def _add(run, target: str) -> tuple[int, str, str]:
    start = datetime.now(UTC) + timedelta(hours=1)
    return run(
        "notice", "add", "--title", "T", "--reason", "R", "--lang", "en",
        "--start", start.isoformat(), "--end", (start + timedelta(hours=1)).isoformat(),
        "--target", target,
    )  # fmt: skip


def _stored(database_url: str) -> int:
    store = NoticeStore(database_url)
    try:
        return len(store.recent())
    finally:
        store.close()


def test_notice_add_for_kube_system_exits_2_and_stores_nothing(
    run, kube_system_service, database_url
):
    code, out, err = _add(run, f"kube-system/{kube_system_service}")
    assert (code, out) == (2, "")
    assert err == (
        f"maint: --target kube-system/{kube_system_service}: namespace kube-system is never "
        "a maint target (system or maint's own)\n"
    )
    assert _stored(database_url) == 0


@pytest.mark.parametrize("namespace_of", ["MAINT_NAMESPACE", "MAINT_BUILD_NAMESPACE"])
def test_notice_add_in_maints_own_namespaces_exits_2(
    run, namespace, database_url, monkeypatch, namespace_of
):
    monkeypatch.setenv(namespace_of, namespace)  # the test's namespace plays maint's own
    code, _, err = _add(run, f"{namespace}/web")
    assert code == 2
    assert err.count("\n") == 1 and "is never a maint target" in err, err
    assert _stored(database_url) == 0


def test_notice_add_outside_the_allowlist_exits_2_inside_it_is_stored(
    run, namespace, database_url, monkeypatch
):
    monkeypatch.setenv("MAINT_TARGET_NAMESPACES", "shop,web-team")
    code, _, err = _add(run, f"{namespace}/web")
    assert (code, err) == (
        2,
        f"maint: --target {namespace}/web: namespace {namespace} is not in "
        "MAINT_TARGET_NAMESPACES (shop, web-team)\n",
    )
    assert _stored(database_url) == 0

    monkeypatch.setenv("MAINT_TARGET_NAMESPACES", f"shop,{namespace}")
    code, out, err = _add(run, f"{namespace}/web")
    assert (code, err) == (0, ""), err
    assert out.startswith("notice 1 registered")


def test_a_bad_allowlist_is_a_bad_setting(run, namespace, monkeypatch):
    monkeypatch.setenv("MAINT_TARGET_NAMESPACES", f"{namespace},kube-system")
    code, _, err = _add(run, f"{namespace}/web")
    assert (code, err) == (
        2,
        "maint: bad setting MAINT_TARGET_NAMESPACES: Value error, kube-system is refused "
        "always; remove it from the list\n",
    )


def test_the_write_guard_stops_a_forced_restore_outside_the_allowlist(
    run, k8s, control_plane, namespace, monkeypatch
):
    core = CoreV1Api(k8s)
    target = naming.target_name(notice_id=1, namespace=namespace, service="web")
    page = naming.object_name(target=target, revision="0123abcd")
    labels = naming.page_labels(
        name=page, keys=APP_LABELS, base=naming.labels(notice_id=1, target=target)
    )
    core.create_namespaced_pod(
        namespace,
        page_pod(
            name=page,
            namespace=namespace,
            labels=labels,
            image=f"registry.example/maint-page@sha256:{'0' * 64}",
            ports=[ContainerPort(number=8080, name="http")],
            drain=10,
        ),
    )
    api = cluster.connect(kubeconfig=str(control_plane.kubeconfig))
    try:  # switched by maint for real, overdue since 2020
        switch(
            api,
            ref=ServiceRef(namespace=namespace, name="web"),
            page=labels,
            notice_id=1,
            restore_by=datetime(2020, 1, 1, tzinfo=UTC),
        )
    finally:
        api.close()
    monkeypatch.setenv("MAINT_TARGET_NAMESPACES", "shop")

    code, out, err = run("restore", "--overdue")

    ours = [line for line in out.splitlines() if line.startswith(f"{namespace}/")]
    assert ours == [
        f"{namespace}/web: failed (refused to patch Service {namespace}/web: namespace "
        f"{namespace} is not in MAINT_TARGET_NAMESPACES (shop))"
    ]
    assert code == 1 and "Traceback" not in err
    assert core.read_namespaced_service("web", namespace).spec.selector == naming.page_selector(
        name=page, keys=APP_LABELS
    )
    assert page in {p.metadata.name for p in core.list_namespaced_pod(namespace).items}

    monkeypatch.setenv("MAINT_TARGET_NAMESPACES", namespace)  # allowed: the same sweep restores
    code, out, err = run("restore", "--overdue")
    assert f"{namespace}/web: restored" in out, out + err
    assert core.read_namespaced_service("web", namespace).spec.selector == APP_LABELS


@pytest.mark.registry
def test_maint_run_refuses_a_step_write_outside_the_allowlist(
    window, control_plane, k8s, namespace, database_url, monkeypatch, capsys
):
    """A notice stored while its namespace was allowed; `maint run --once` after the allowlist
    changed must not create the page Pod: the CLI installs the policy for every thread."""
    # Stored while the namespace was allowed; then the allowlist no longer lists it.
    notice = window.add(start_in=60, length=600)
    for key, value in {
        "MAINT_KUBECONFIG": str(control_plane.kubeconfig),
        "MAINT_DATABASE_URL": database_url,
        "MAINT_BUILD_NAMESPACE": window.build_namespace,
        "MAINT_IMAGE_REPOSITORY": window.app.settings.image_repository,
        "MAINT_REGISTRY_INSECURE": "true",
        "MAINT_BUILD_TIMEOUT": "30",
        "MAINT_POD_READY_TIMEOUT": "20",
        "MAINT_TARGET_NAMESPACES": "shop",
    }.items():
        monkeypatch.setenv(key, value)

    main(["run", "--once"])
    capsys.readouterr()

    pods = CoreV1Api(k8s).list_namespaced_pod(
        namespace, label_selector=f"{naming.NOTICE_LABEL}={notice.id}"
    )
    events = window.app.store.events(notice.id)
    assert [p.metadata.name for p in pods.items] == []  # the page Pod was never created
    assert any("not in MAINT_TARGET_NAMESPACES" in e.detail for e in events), events
