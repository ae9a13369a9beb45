"""The host is as it was after a real node ran: sysctls, iptables, interfaces, mounts, cgroups.

This test brings up a node of its own (the session's ``node`` fixture is not started yet: files
run in name order and this one comes first), runs Pods behind a Service so that containerd,
the CNI bridge plugin, the kubelet and kube-proxy all make their changes, stops it and compares
the host with the snapshot taken before.
"""

from __future__ import annotations

import time

import pytest

from tests.node.conftest import node_assets
from tests.support import node_host
from tests.support.node import BRIDGE, BRIDGE_MAC, CACHE, Node

pytestmark = pytest.mark.node


def bridge_address() -> str:
    with open(f"/sys/class/net/{BRIDGE}/address") as f:
        return f.read().strip()


@pytest.mark.timeout(600)
def test_node_leaves_the_host_as_it_was() -> None:
    began = time.monotonic()
    before = node_host.HostSnapshot.take()
    with Node(node_assets(), cache=CACHE) as node:
        up = time.monotonic() - began
        node.kubectl("create", "deployment", "idle", f"--image={node.pause_image}", "--replicas=2")
        node.kubectl("expose", "deployment", "idle", "--port=80")
        node.kubectl("rollout", "status", "deployment/idle", "--timeout=120s")
        # Pods' veths came (and the rollout's go): the gateway's MAC must not move with them, or
        # every Pod's ARP entry for it goes stale and replies to clients are lost for seconds.
        node.kubectl("scale", "deployment/idle", "--replicas=1")
        node.kubectl("rollout", "status", "deployment/idle", "--timeout=120s")
        assert bridge_address() == BRIDGE_MAC
        during = node_host.HostSnapshot.take()
        # Wait for kube-proxy to program the Service (its chains are the side effect to undo).
        deadline = time.monotonic() + 60
        while not any(c.startswith("KUBE-SVC-") for _, c in during.tables["iptables"].chains):
            assert time.monotonic() < deadline, "kube-proxy never programmed the Service"
            time.sleep(0.5)
            during = node_host.HostSnapshot.take()
        changed = node_host.compare(before, during)
    after = node_host.HostSnapshot.take()
    print(f"\nnode up in {up:.1f}s; while it ran the host differed in: {len(changed)} kinds")
    assert any("interfaces added" in line for line in changed)
    assert any("iptables chains added" in line for line in changed)
    assert node_host.compare(before, after) == []
