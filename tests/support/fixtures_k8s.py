"""Kubernetes fixtures: one real control plane and one fake kubelet per test session.

The control plane takes seconds to start, so it is shared by the session; isolation between
tests comes from a fresh namespace each (``namespace``) and from resetting the kubelet's
per-test choices before every test. Tests that use these fixtures get the ``k8s`` marker, so
``-m "not k8s"`` deselects them.

The binaries come from ``KUBEBUILDER_ASSETS`` (the envtest convention, which ``make test`` sets
from ``tools/k8sbin/build.sh``) or else from the build script's cache folder. The fixture never
builds them itself: a cold build takes about 20 minutes and belongs in ``make k8s-bins``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import ControlPlane, missing_binaries
from tests.support.kubelet import FakeKubelet
from tests.support.require import missing

REPO = Path(__file__).resolve().parents[2]
K8S_FIXTURES = {"control_plane", "kubelet", "k8s", "namespace"}
_KUBELET = pytest.StashKey[FakeKubelet]()


def _cached_assets() -> Path:
    """Where ``tools/k8sbin/build.sh`` caches the binaries (same rule as the script)."""
    version = (REPO / "tools" / "k8sbin" / "VERSION").read_text().strip()
    cache = os.environ.get("MAINT_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maint"
    )
    return Path(cache) / "k8s" / version


def control_plane_assets() -> Path:
    """The folder holding etcd, kube-apiserver and kube-controller-manager, or stop the test."""
    from_env = os.environ.get("KUBEBUILDER_ASSETS")
    assets = Path(from_env) if from_env else _cached_assets()
    absent = missing_binaries(assets)
    if absent:
        missing(
            f"the Kubernetes binaries ({', '.join(absent)} in {assets})",
            "run `make k8s-bins` (builds them once, ~20 min) or set KUBEBUILDER_ASSETS",
        )
    return assets


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session.

    ``.server``, ``.token``, ``.kubeconfig`` (admin), ``.api_client(impersonate, groups)``.
    """
    with ControlPlane(control_plane_assets()) as plane:
        yield plane


@pytest.fixture(scope="session")
def kubelet(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[FakeKubelet]:
    """The fake kubelet serving node ``fake-node``; its choices are reset before every test."""
    client = control_plane.api_client()
    fake = FakeKubelet(client)
    fake.start()
    request.session.stash[_KUBELET] = fake
    try:
        yield fake
    finally:
        del request.session.stash[_KUBELET]
        fake.stop()
        client.close()


@pytest.fixture(autouse=True)
def _reset_fake_kubelet(request: pytest.FixtureRequest) -> None:
    """Per-test defaults, without starting anything for tests that never touch Kubernetes."""
    fake = request.session.stash.get(_KUBELET, None)
    if fake is not None:
        fake.reset()


@pytest.fixture
def k8s(control_plane: ControlPlane, kubelet: FakeKubelet) -> Iterator[ApiClient]:
    """An admin ``ApiClient``; pods created through it are served by the fake kubelet."""
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()


def _namespace_name(test_name: str) -> str:
    """Unique and readable: the test's name (DNS-1123-safe, shortened) plus random digits."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")
    return f"t-{slug[:40].rstrip('-')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(k8s: ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for this test; deleted afterwards without waiting for it to go."""
    name = _namespace_name(request.node.name)
    core = CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": name, "labels": {"maint-test": "true"}}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if K8S_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.k8s)
