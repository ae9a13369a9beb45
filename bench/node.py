"""What a client sees on the real node: planned start to its first 503, planned end to its first
200 again, through the Service's ClusterIP.

The node of the test suite (``tests.support.node``: containerd, runc, kubelet, kube-proxy in
iptables mode, real Kaniko and nginx), maint as its own Deployment (``manifests/overlays/local``)
and the sample app shop/web, deployed as ``make demo`` does. ``count`` notices for shop/web are
registered at once with ``kubectl exec deploy/maint -- maint notice add``, as an operator does:
windows of ``length`` s, starting ``spacing`` s apart, the first ``lead`` s after registration
(every page is built by Kaniko and Ready long before). One client (``node_probe.Probe``) opens a
fresh TCP connection to the ClusterIP every 5 ms for the whole run; each window's lags come from
its answers: the first 503 at or after the planned start, the first 200 after that and at or
after the planned end. The path from maint's PATCH to that answer is the EndpointSlice
controller, kube-proxy's iptables sync and, at the end, the page Pod's drain.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.lab import log
from bench.stats import summary
from tests.support import node_deploy, node_probe
from tests.support.node import CACHE, Node, missing_prerequisites
from tests.support.node_probe import Answer, Probe
from tests.support.node_window import leftovers, open_window, show, wait_for_states

TERMINAL = {"COMPLETED", "FAILED", "ROLLED_BACK", "CANCELLED"}


def _first(answers: list[Answer], status: int, *, at_or_after: datetime) -> datetime | None:
    return next((a.at for a in answers if a.status == status and a.at >= at_or_after), None)


def client_lag(
    assets: Path, *, count: int, lead: float, length: float, spacing: float
) -> dict[str, Any]:
    """``{switch_lag_s, restore_lag_s, ...}`` in seconds, or ``{not_measured: why}``."""
    absent = missing_prerequisites(assets)
    if absent:
        return {"not_measured": f"the real node needs: {'; '.join(absent)}"}
    began = time.monotonic()
    with Node(assets, cache=CACHE) as node:
        log(f"node: Ready in {node.startup_seconds:.1f}s")
        node_deploy.deploy(node, node_deploy.build_images(node))
        address = node_deploy.cluster_ip(node, "shop", "web")
        node_probe.wait_for_status(address, 80, 200)
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        windows: list[tuple[int, datetime, datetime]] = []
        with Probe(address, 80) as probe:
            for i in range(count):
                start = first + timedelta(seconds=i * spacing)
                notice_id, start, end = open_window(
                    node, ["shop/web"], title=f"bench {i}", at=start, length_s=length
                )
                windows.append((notice_id, start, end))
            log(
                f"node: {count} windows of {length:.0f}s on shop/web, {spacing:.0f}s apart, "
                f"from {first:%H:%M:%S}; a client asks {address} every 5 ms"
            )
            last_end = windows[-1][2]
            states = [
                wait_for_states(
                    node,
                    notice_id,
                    TERMINAL,
                    within_s=(last_end - datetime.now(UTC)).total_seconds() + 180,
                )["targets"][0]
                for notice_id, _, _ in windows
            ]
            probe.seen_after(200, last_end, within_s=15)
        answers = list(probe.answers)
        switch: list[float] = []
        restore: list[float] = []
        missing = 0
        for _, start, end in windows:
            page = _first(answers, 503, at_or_after=start)
            back = _first(answers, 200, at_or_after=max(end, page)) if page else None
            if page is None or back is None:
                missing += 1
                continue
            switch.append((page - start).total_seconds())
            restore.append((back - end).total_seconds())
        unfinished = {
            notice_id: [
                f"{e['step']} {e['outcome']}: {e['detail'][:160]}"
                for e in show(node, notice_id)["events"][-6:]
            ]
            for (notice_id, _, _), target in zip(windows, states, strict=True)
            if target["state"] != "COMPLETED"
        }
        left = [
            found
            for (notice_id, _, _), target in zip(windows, states, strict=True)
            if (found := leftovers(node, notice_id, [target["image"]] if target["image"] else []))
        ]
        drain = timedelta(seconds=10)  # the page Pod's drain and kube-proxy after an end
        outside = [
            a
            for a in answers
            if a.status == 503 and not any(s <= a.at <= e + drain for _, s, e in windows)
        ]
        result: dict[str, Any] = {
            "switch_lag_s": summary(switch),
            "restore_lag_s": summary(restore),
            "windows": count,
            "missing": missing,
            "states": sorted({t["state"] for t in states}),
            "probes": len(answers),
            "connection_errors": len(probe.errors()),
            "page_outside_windows": len(outside),
            "leftovers": left,
            "not_completed": unfinished,
            "node_startup_s": round(node.startup_seconds, 1),
        }
    result["seconds"] = round(time.monotonic() - began)
    return result
