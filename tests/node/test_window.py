"""A whole window on the real node, watched by a client: real Kaniko, real nginx, real traffic.

maint runs as its own Deployment (``kubectl apply -k manifests/overlays/local``); the notice is
registered with ``kubectl exec deploy/maint -- maint notice add``. A probe opens a fresh TCP
connection to the Service's ClusterIP every 5 ms: kube-proxy routes each one anew, so what it
records is what a new visitor gets. Nothing is faked here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.support import node_app80, node_probe
from tests.support.node import Node
from tests.support.node_probe import Probe, request, through_bypass, timeline
from tests.support.node_window import (
    leftovers,
    open_bypass_window,
    open_window,
    wait_for_states,
)

pytestmark = pytest.mark.node

TITLE = "Planned maintenance (node)"


@pytest.mark.timeout(900)
def test_window_answers_200_then_503_page_then_200_and_leaves_nothing(
    maint_deployed: Node, sample_app: str
) -> None:
    """... and an engineer with the bypass link reaches the app during the window (real
    nginx in the page Pod, through the shadow Service), while everyone else gets the page."""
    node = maint_deployed
    with Probe(sample_app, 80) as probe:
        notice_id, start, end, link = open_bypass_window(
            node, ["shop/web"], title=TITLE, lead_s=25, length_s=20
        )
        app_status, _headers, app_body = request(sample_app, 80)
        assert app_status == 200
        wait_for_states(node, notice_id, {"ACTIVE"}, within_s=120)
        visit = through_bypass(sample_app, 80, link)
        shown = wait_for_states(node, notice_id, {"COMPLETED", "FAILED"}, within_s=240)
    assert visit.link_status == 302 and visit.cookie.startswith("maint_bypass="), visit
    assert visit.with_cookie == (200, app_body), visit
    assert visit.without_cookie[0] == 503 and TITLE in visit.without_cookie[1]
    assert visit.forged[0] == 503 and TITLE in visit.forged[1]
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


@pytest.mark.timeout(900)
def test_two_targets_one_with_target_port_80_switch_and_restore_together(
    maint_deployed: Node, sample_app: str, node_images: dict[str, str]
) -> None:
    """One notice for shop/web (named targetPort, 8080) and shop/app80 (targetPort 80)."""
    node = maint_deployed
    app80 = node_app80.deploy(node, node_images["nginx"])
    node_probe.wait_for_status(app80, 80, 200)
    with Probe(sample_app, 80) as web, Probe(app80, 80) as low:
        notice_id, start, end = open_window(
            node, ["shop/web", "shop/app80"], title=TITLE, lead_s=25, length_s=20
        )
        shown = wait_for_states(node, notice_id, {"COMPLETED", "FAILED"}, within_s=240)
        for probe in (web, low):  # what clients see goes on after maint's COMPLETED
            probe.seen_after(200, end, within_s=15)
    for name, probe in (("shop/web", web), ("shop/app80", low)):
        print(f"\nprobe timeline of {name} (notice {notice_id}):")
        print(timeline(probe, start, end).render())
    assert [t["state"] for t in shown["targets"]] == ["COMPLETED", "COMPLETED"], shown["events"]
    lags = [e["detail"] for e in shown["events"] if e["step"] in ("switch", "restore")]
    print("maint's switch and restore events:", *lags, sep="\n  ")
    for probe in (web, low):
        assert probe.statuses() == [200, 503, 200] and probe.errors() == []
        assert probe.first_page is not None and TITLE in probe.first_page[2]
    images = [t["image"] for t in shown["targets"]]
    assert leftovers(node, notice_id, images) == ""


@pytest.mark.timeout(900)
def test_a_kube_proxy_that_lags_behind_the_restore_still_routes_clients_to_the_page(
    maint_deployed: Node, sample_app: str
) -> None:
    """kube-proxy frozen from just before the end until 2.5 s after it: clients keep being routed
    to the page Pod although the EndpointSlice already lists the app. The page keeps answering
    503 (MAINT_PAGE_DRAIN, a preStop sleep) until kube-proxy catches up, then the app answers;
    a page Pod deleted at once made those clients' connections fail."""
    node = maint_deployed
    with Probe(sample_app, 80) as probe:
        notice_id, start, end = open_window(node, ["shop/web"], title=TITLE, lead_s=25, length_s=10)
        time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds() - 0.5))
        with node.paused("kube-proxy"):
            time.sleep(3)
        shown = wait_for_states(node, notice_id, {"COMPLETED", "FAILED"}, within_s=120)
        time.sleep(2)
    line = timeline(probe, start, end)
    print(f"\nprobe timeline, kube-proxy frozen 3 s at the end (notice {notice_id}):")
    print(line.render())
    assert shown["targets"][0]["state"] == "COMPLETED", shown["events"]
    assert probe.statuses() == [200, 503, 200], probe.errors()[:3]
    assert line.first_200_after is not None
    assert (line.first_200_after - end).total_seconds() >= 2, "kube-proxy was frozen"
    assert leftovers(node, notice_id, [shown["targets"][0]["image"]]) == ""


@pytest.mark.timeout(900)
def test_restart_of_the_maint_pod_mid_window_still_ends_on_time(
    maint_deployed: Node, sample_app: str
) -> None:
    """The maint Pod is deleted while the page is served; its successor ends the window."""
    node = maint_deployed
    with Probe(sample_app, 80) as probe:
        notice_id, start, end = open_window(node, ["shop/web"], title=TITLE, lead_s=25, length_s=40)
        while not any(a.status == 503 for a in probe.answers):
            assert datetime.now(UTC) < end, "the window never started"
            time.sleep(0.2)
        old = node.kubectl("-n", "maint-system", "get", "pods", "-o", "name").split()
        node.kubectl("-n", "maint-system", "delete", "--wait=false", *old)
        node.kubectl("-n", "maint-system", "rollout", "status", "deploy/maint", "--timeout=300s")
        shown = wait_for_states(node, notice_id, {"COMPLETED", "FAILED"}, within_s=300)
    line = timeline(probe, start, end)
    print(f"\nprobe timeline with a maint restart (notice {notice_id}):\n{line.render()}")
    assert shown["targets"][0]["state"] == "COMPLETED", shown["events"]
    assert probe.statuses() == [200, 503, 200] and probe.errors() == []
    assert line.first_200_after is not None
    assert (line.first_200_after - end).total_seconds() < 10, "the window ended late"
    assert leftovers(node, notice_id, [shown["targets"][0]["image"]]) == ""
