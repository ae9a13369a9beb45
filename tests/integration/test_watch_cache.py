"""The runner's watch cache (``maint.cluster.caching``) on the real API server: it follows
changes, resumes a cut watch without losing one, knows maint's own creates at once, confirms a
miss with a direct read, and answers ``Forbidden`` as a direct read would.

Everything is real: the control plane, its RBAC, and the ``ApiProxy`` that cuts watches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CoreV1Api, RbacAuthorizationV1Api

from maint import cluster
from maint.cluster.caching import Cache
from maint.errors import Forbidden, NotFound
from tests.support.faults import ApiProxy, Fault

pytestmark = pytest.mark.k8s


@contextmanager
def _connect(kubeconfig: Path) -> Iterator[cluster.Cluster]:
    plain = cluster.connect(kubeconfig=str(kubeconfig))
    cached = cluster.Cluster(**{**plain.__dict__, "cache": Cache(plain)})
    try:
        yield cached
    finally:
        assert cached.cache is not None
        cached.cache.close()
        plain.close()


@pytest.fixture
def api(control_plane: Any) -> Iterator[cluster.Cluster]:
    """A maint client with a watch cache, straight to the API server as admin."""
    with _connect(Path(control_plane.kubeconfig)) as api:
        yield api


def _config_map(namespace: str, name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"index.html": "x" * 100},
    }


def _eventually(check: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


def _names(api: cluster.Cluster, namespace: str, **labels: str) -> set[str]:
    assert api.cache is not None
    return {o["metadata"]["name"] for o in api.cache.items("ConfigMap", namespace, labels)}


def test_it_follows_creates_changes_and_deletes(api, k8s, namespace):
    core = CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, _config_map(namespace, "before", app="a"))
    assert "before" in _names(api, namespace, app="a")  # the first list
    core.create_namespaced_config_map(namespace, _config_map(namespace, "after", app="a"))
    _eventually(lambda: "after" in _names(api, namespace, app="a"))
    core.patch_namespaced_config_map("after", namespace, {"metadata": {"labels": {"app": "b"}}})
    _eventually(lambda: _names(api, namespace, app="b") == {"after"})
    assert _names(api, namespace, app="a") == {"before"}
    core.delete_namespaced_config_map("before", namespace)
    _eventually(lambda: _names(api, namespace, app="a") == set())
    assert api.cache is not None
    kept = api.cache.items("ConfigMap", namespace, {"app": "b"})[0]
    assert "data" not in kept and "managedFields" not in kept["metadata"]  # trimmed


def test_a_cut_watch_resumes_without_losing_a_change(control_plane, k8s, namespace, tmp_path):
    with (
        ApiProxy(
            upstream=control_plane.server, ca_file=control_plane.ca_file, token=control_plane.token
        ) as proxy,
        _connect(proxy.kubeconfig(tmp_path / "kubeconfig")) as api,
    ):
        # The first three watches are cut after their first event, without a final chunk.
        proxy.inject(Fault.cut_watch(after_events=1), when=lambda e: e.watch, limit=3)
        _names(api, namespace)  # listed: from now on, watched
        core = CoreV1Api(k8s)
        for i in range(5):
            core.create_namespaced_config_map(namespace, _config_map(namespace, f"c{i}"))
            time.sleep(0.3)
        _eventually(lambda: {f"c{i}" for i in range(5)} <= _names(api, namespace), timeout=15)
        watches = [e for e in proxy.audit.all() if e.watch]
        assert len(watches) >= 4, [str(e) for e in watches]  # cut three times, resumed each time
        assert len([e for e in proxy.audit.all() if not e.watch]) == 1  # one list, never again


@pytest.fixture
def deaf(control_plane, tmp_path) -> Iterator[tuple[cluster.Cluster, ApiProxy]]:
    """A maint client with a watch cache whose first watch of each kind (through the proxy)
    gets its headers and then nothing: the cache knows only what it listed, and what maint
    tells it itself."""
    with (
        ApiProxy(
            upstream=control_plane.server, ca_file=control_plane.ca_file, token=control_plane.token
        ) as proxy,
        _connect(proxy.kubeconfig(tmp_path / "kubeconfig")) as api,
    ):
        proxy.inject(Fault.blackhole(after_events=0), when=lambda e: e.watch, limit=2)
        yield api, proxy


def _lists(proxy: ApiProxy) -> list[str]:
    return [e.path for e in proxy.audit.all() if e.method == "GET" and not e.watch]


def test_its_own_create_is_known_at_once(deaf, namespace):
    api, proxy = deaf
    assert _names(api, namespace) <= {"kube-root-ca.crt"}  # listed; the watch hears nothing
    assert cluster.create(api, _config_map(namespace, "mine", app="m"))
    found = cluster.list_managed(
        api, kind="ConfigMap", labels={"app": "m"}, namespace=namespace, cached=True
    )
    assert [r.name for r in found] == ["mine"]
    assert _lists(proxy) == [f"/api/v1/namespaces/{namespace}/configmaps"]  # one list, no other


def test_a_miss_is_read_again_before_it_counts(deaf, k8s, namespace):
    api, proxy = deaf
    assert api.cache is not None
    assert api.cache.items("Service", namespace) == []  # listed; the watch hears nothing
    CoreV1Api(k8s).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "late"},
            "spec": {"selector": {"app": "late"}, "ports": [{"port": 80}]},
        },
    )
    assert cluster.get_service(api, namespace=namespace, name="late", cached=True).name == "late"
    with pytest.raises(NotFound):
        cluster.get_service(api, namespace=namespace, name="never", cached=True)
    services = f"/api/v1/namespaces/{namespace}/services"
    assert _lists(proxy) == [services, f"{services}/late", f"{services}/never"]


def test_where_maint_may_not_watch_it_reads_directly_and_says_so_once(
    control_plane, k8s, namespace, caplog
):
    """A ServiceAccount that may get Services but not list or watch them (RBAC from before the
    cache): the cache's list is refused, it warns once naming the verbs, and the reads are
    requests, answered as without the cache."""
    rbac = RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "get-only"},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get"]}],
        },
    )
    user = f"system:serviceaccount:{namespace}:reader"
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "get-only"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "get-only",
            },
            "subjects": [{"kind": "User", "name": user}],
        },
    )
    CoreV1Api(k8s).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    plain = cluster.connect(kubeconfig=str(control_plane.kubeconfig), impersonate=user)
    api = cluster.Cluster(**{**plain.__dict__, "cache": Cache(plain)})
    try:
        _eventually(lambda: _may_get(api, namespace))  # the authorizer has the Role
        for _ in range(2):
            read = cluster.get_service(api, namespace=namespace, name="web", cached=True)
            assert read.selector == {"app": "web"}
        with pytest.raises(NotFound):
            cluster.get_service(api, namespace=namespace, name="other", cached=True)
        told = [
            r.getMessage() for r in caplog.records if "may not list and watch" in r.getMessage()
        ]
        assert len(told) == 1, told
        assert f"Services in {namespace}" in told[0] and "rbac.yaml" in told[0]
    finally:
        assert api.cache is not None
        api.cache.close()
        plain.close()


def _may_get(api: cluster.Cluster, namespace: str) -> bool:
    try:
        cluster.get_service(api, namespace=namespace, name="web")
    except Forbidden:
        return False
    return True
