"""A maintenance window on the real node, driven as an operator does and watched as a client.

``open_window`` registers a notice with ``kubectl exec deploy/maint -- maint notice add`` for
targets given as ``namespace/service``; ``wait_for_states`` polls ``maint notice show``;
``leftovers`` lists what maint made for the notice that still exists (Pods, Jobs, ConfigMaps
by label, and the page image in the registry).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from tests.support.node import Node
from tests.support.node_deploy import maint

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def open_window(
    node: Node,
    targets: list[str],
    *,
    title: str,
    length_s: float,
    lead_s: float = 0,
    at: datetime | None = None,
) -> tuple[int, datetime, datetime]:
    """A notice starting ``at`` (else ``lead_s`` from now), lasting ``length_s``:
    (id, start, end)."""
    notice_id, start, end, _link = open_bypass_window(
        node, targets, title=title, lead_s=lead_s, at=at, length_s=length_s, bypass=False
    )
    return notice_id, start, end


def open_bypass_window(
    node: Node,
    targets: list[str],
    *,
    title: str,
    length_s: float,
    lead_s: float = 0,
    at: datetime | None = None,
    bypass: bool = True,
) -> tuple[int, datetime, datetime, str]:
    """``open_window`` with ``--bypass``: (id, start, end, the bypass link's path)."""
    start = at or datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead_s)
    end = start + timedelta(seconds=length_s)
    args = ["notice", "add", "--title", title, "--reason", "node test"]
    args += ["--start", start.isoformat(), "--end", end.isoformat(), "--lang", "en", "-o", "json"]
    for target in targets:
        args += ["--target", target]
    if bypass:
        args.append("--bypass")
    added = json.loads(maint(node, *args))
    return int(added["id"]), start, end, str(added.get("bypass_link", ""))


def show(node: Node, notice_id: int) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(maint(node, "notice", "show", str(notice_id), "-o", "json")))


def wait_for_states(node: Node, notice_id: int, states: set[str], *, within_s: float) -> dict:  # type: ignore[type-arg]
    """Until every target is in one of ``states``; returns the notice as last shown."""
    deadline = time.monotonic() + within_s
    shown = show(node, notice_id)
    while not all(t["state"] in states for t in shown["targets"]):
        if time.monotonic() > deadline:
            raise AssertionError(f"targets not in {states} after {within_s}s: {shown}")
        time.sleep(2)
        shown = show(node, notice_id)
    return shown


def _in_registry(node: Node, image: str) -> bool:
    repository, digest = image.removeprefix(f"{node.registry}/").split("@", 1)
    request = urllib.request.Request(
        f"http://{node.registry}/v2/{repository}/manifests/{digest}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def leftovers(node: Node, notice_id: int, images: list[str], *, within_s: float = 120) -> str:
    """What maint made for the notice and is still there after ``within_s`` ('' when none)."""
    selector = f"app.kubernetes.io/managed-by=maint,maint.io/notice={notice_id}"
    deadline = time.monotonic() + within_s
    while True:
        left = node.kubectl(
            "get", "pods,jobs,configmaps,services,secrets", "-A", "-l", selector, "-o", "name"
        )
        left += "".join(
            f"image {image}\n" for image in images if image and _in_registry(node, image)
        )
        if not left.strip() or time.monotonic() > deadline:
            return left.strip()
        time.sleep(2)
