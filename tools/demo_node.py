#!/usr/bin/env python3
"""`make demo` on a real node: real Kaniko builds the page, containerd runs it, a client sees it.

Chosen by tools/demo.sh when this machine can run the node of the test suite (root, Linux, the
Debian packages and binaries of ``tests.support.node.missing_prerequisites``) and kind cannot run.
Everything is real: the control plane, kubelet, kube-proxy (iptables), containerd, the images
built locally (tools/nodeimages/build.sh), maint as its own Deployment from
``manifests/overlays/local``, the sample app, Kaniko pushing the page to a local registry and
nginx serving it. The notice is registered with ``kubectl exec deploy/maint -- maint notice add``
as an operator would. A client opens a fresh TCP connection to shop/web's ClusterIP every 5 ms;
its answers are printed as they change, next to maint's event log, then the timeline with the
lags in milliseconds. On exit the node is stopped and every change to the host undone.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import node_deploy, node_probe  # noqa: E402
from tests.support.node import CACHE, Node, missing_prerequisites  # noqa: E402
from tests.support.node_probe import Probe, timeline  # noqa: E402
from tests.support.node_window import leftovers, open_window, show  # noqa: E402
from tools.demo import Timeline, say  # noqa: E402

LEAD = 30.0  # seconds from `notice add` to the start (preparation begins at once)
LENGTH = 30.0  # seconds the window lasts
ANSWERS = {200: "200 (the app)", 503: "503 (the page)", None: "connection error"}
TERMINAL = {"COMPLETED", "FAILED", "ROLLED_BACK", "CANCELLED"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", required=True, help="folder of the Kubernetes binaries")
    args = parser.parse_args(argv)
    assets = Path(args.assets)
    absent = missing_prerequisites(assets)
    if absent:
        raise SystemExit(f"demo: the real node needs: {'; '.join(absent)}")
    say("maint demo — a real node: containerd, kubelet, kube-proxy, real Kaniko, real nginx")
    say("")
    began = time.monotonic()
    with Node(assets, cache=CACHE) as node:
        say(f"* node Ready in {node.startup_seconds:.1f}s (bridge {node.registry}, {node.workdir})")
        refs = node_deploy.build_images(node)
        say(f"* images pushed to {node.registry}: {', '.join(sorted(refs))}")
        say("  $ kubectl apply -k manifests/overlays/local   (pinned to those digests)")
        say("  $ kubectl apply -k manifests/sample-app")
        node_deploy.deploy(node, refs)
        address = node_deploy.cluster_ip(node, "shop", "web")
        node_probe.wait_for_status(address, 80, 200)
        say(f"* maint and shop/web rolled out; shop/web's ClusterIP {address} answers 200")
        say("")
        with Probe(address, 80) as probe:
            notice_id, start, end = open_window(
                node, ["shop/web"], title="Planned maintenance", lead_s=LEAD, length_s=LENGTH
            )
            say("  $ kubectl -n maint-system exec deploy/maint -- maint notice add \\")
            say(f"      --title 'Planned maintenance' --start {start.isoformat()} \\")
            say(f"      --end {end.isoformat()} --target shop/web --lang en")
            say(f"* notice {notice_id}; a client asks http://{address}/ every 5 ms, each time on")
            say("  a fresh TCP connection; its answers as they change, and maint's event log:")
            say("")
            state = follow(node, probe, notice_id, start=start, deadline_s=LEAD + LENGTH + 120)
        line = timeline(probe, start, end)
        say("")
        say("* what the client saw")
        say("  " + line.render().replace("\n", "\n  "))
        images = [t["image"] for t in show(node, notice_id)["targets"] if t["image"]]
        left = leftovers(node, notice_id, images, within_s=60)
        say("")
        say(f"  $ kubectl -n maint-system exec deploy/maint -- maint notice show {notice_id}")
        say("  " + node_deploy.maint(node, "notice", "show", str(notice_id)).replace("\n", "\n  "))
        say(f"* state {state}; Pods, Jobs, ConfigMaps or images left: {left or 'none'}")
        say("* stopping the node and undoing its changes to this host")
    say(f"* whole demo took {time.monotonic() - began:.0f}s")
    clean = probe.statuses() == [200, 503, 200] and not probe.errors()
    return 0 if state == "COMPLETED" and not left and clean else 1


def follow(node: Node, probe: Probe, notice_id: int, *, start: datetime, deadline_s: float) -> str:
    """Print each change of the client's answers and each new event in time order, until every
    target is in a terminal state; returns the states."""
    lines = Timeline()
    lines.start = start
    say(f"  {'time':<8}  {'T=start':<8} {'source':<8} {'what':<24} detail")
    seen_answers, seen_events = 0, 0
    last: int | None = -1  # no answer has this status: the first one is printed
    deadline = time.monotonic() + deadline_s
    while True:
        shown = show(node, notice_id)
        batch: list[tuple[datetime, str, str, str]] = []
        for answer in probe.answers[seen_answers:]:
            seen_answers += 1
            if answer.status != last:
                last = answer.status
                said = ANSWERS.get(answer.status, str(answer.status))
                batch.append((answer.at, "client", said, answer.error))
        for event in shown["events"][seen_events:]:
            at = datetime.fromisoformat(event["at"]).astimezone(UTC)
            what = f"{event['step']} {event['outcome']}"
            batch.append((at, "maint", what, event["detail"][:70]))
        seen_events = len(shown["events"])
        for at, source, what, detail in sorted(batch):
            lines.line(source, what, detail, at=at)
        states = {t["state"] for t in shown["targets"]}
        if states <= TERMINAL:
            return ",".join(sorted(states))
        if time.monotonic() > deadline:
            return f"still {','.join(sorted(states))} after {deadline_s:.0f}s"
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
