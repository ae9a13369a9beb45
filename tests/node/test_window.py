"""A whole window on the real node, watched by a client: real Kaniko, real nginx, real traffic.

maint runs as its own Deployment (``kubectl apply -k manifests/overlays/local``); the notice is
registered with ``kubectl exec deploy/maint -- maint notice add``. A probe opens a fresh TCP
connection to the Service's ClusterIP every 5 ms: kube-proxy routes each one anew, so what it
records is what a new visitor gets. Nothing is faked here.
"""

from __future__ import annotations

import pytest

from tests.support.node import Node
from tests.support.node_probe import Probe, timeline
from tests.support.node_window import leftovers, open_window, wait_for_states

pytestmark = pytest.mark.node

TITLE = "Planned maintenance (node)"


@pytest.mark.timeout(900)
def test_window_answers_200_then_503_page_then_200_and_leaves_nothing(
    maint_deployed: Node, sample_app: str
) -> None:
    node = maint_deployed
    with Probe(sample_app, 80) as probe:
        notice_id, start, end = open_window(node, ["shop/web"], title=TITLE, lead_s=25, length_s=20)
        shown = wait_for_states(node, notice_id, {"COMPLETED", "FAILED"}, within_s=240)
    line = timeline(probe, start, end)
    print(f"\nprobe timeline (notice {notice_id}):\n{line.render()}")
    target = shown["targets"][0]
    assert target["state"] == "COMPLETED", shown["events"]
    assert probe.statuses() == [200, 503, 200], probe.errors()[:5]
    assert probe.errors() == []
    assert probe.first_page is not None
    status, headers, body = probe.first_page
    assert status == 503 and TITLE in body
    assert headers.get("Retry-After") and headers.get("Cache-Control") == "no-store"
    assert line.first_503 is not None and line.first_503 >= start
    assert line.first_200_after is not None and line.first_200_after >= end
    assert leftovers(node, notice_id, [target["image"]]) == ""
