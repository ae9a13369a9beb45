"""Real-node fixtures: one node for the session (tests.support.node), marker ``node``.

The node needs root, Debian's containerd, runc, containernetworking-plugins, iptables,
conntrack, docker-registry, skopeo and gcc, and the binaries of ``tools/k8sbin/build.sh`` and
``tools/k8sbin/build.sh node`` in one folder (``KUBEBUILDER_ASSETS`` or the build cache). Where
any is missing the tests are skipped with what to install, and fail with the same words under
``CI=true``.

The node is stopped and every host change undone at the end of the session, whatever the tests
did; the teardown then compares the host with the snapshot taken before start and fails the
session's last test if anything is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import node_deploy, node_host, node_probe
from tests.support.fixtures_k8s import control_plane_assets
from tests.support.node import CACHE, Node, missing_prerequisites
from tests.support.require import missing


def node_assets() -> Path:
    """The folder with the control-plane and node binaries, or stop the test saying how."""
    assets = control_plane_assets()
    absent = missing_prerequisites(assets)
    if absent:
        missing(f"the real node's prerequisites ({'; '.join(absent)})", "install them, see README")
    return assets


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """A Ready node with its control plane, registry and kube-proxy; gone after the session."""
    with Node(node_assets(), cache=CACHE) as running:
        print(f"\nnode: up in {running.startup_seconds:.1f}s ({running.workdir})")
        yield running
    left = (
        node_host.compare(running.before, node_host.HostSnapshot.take()) if running.before else []
    )
    assert not left, f"the node left host changes behind: {left}"


@pytest.fixture(scope="session")
def node_images(node: Node) -> dict[str, str]:
    """The images of tools/nodeimages/build.sh in the node's registry, by digest."""
    return node_deploy.build_images(node)


@pytest.fixture(scope="session")
def maint_deployed(node: Node, node_images: dict[str, str]) -> Node:
    """maint as its own Deployment (``kubectl apply -k`` of manifests/overlays/local) and the
    sample app (manifests/sample-app), both rolled out."""
    node_deploy.deploy(node, node_images)
    return node


@pytest.fixture(scope="session")
def sample_app(maint_deployed: Node) -> str:
    """shop/web's ClusterIP, answering 200 from the host on fresh connections."""
    address = node_deploy.cluster_ip(maint_deployed, "shop", "web")
    node_probe.wait_for_status(address, 80, 200)
    return address


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marker ``node``; the host check first, because it runs a node of its own and two nodes
    cannot share the bridge: it must be done before the session's node starts."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.node)
    items.sort(key=lambda item: Path(str(item.fspath)) != here / "test_host.py")
