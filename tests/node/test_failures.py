"""What goes wrong on a real node: a page build that cannot find its base image.

Kaniko really runs and really fails (the base image's manifest is deleted from the registry
for the duration of the window and pushed again afterwards); maint must roll the target back
with a reason an operator can read, no ANSI colour codes in the event log, and the Service
never switched: the probe sees only the app. One failed window serves both tests.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass

import pytest

from tests.support import node_deploy
from tests.support.node import Node
from tests.support.node_probe import Probe
from tests.support.node_window import MANIFEST_TYPES, leftovers, open_window, wait_for_states

pytestmark = pytest.mark.node
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class FailedWindow:
    notice_id: int
    shown: dict  # type: ignore[type-arg]
    details: str  # every event's detail, one per line
    statuses: list[int | None]
    errors: int
    missing_digest: str


def _delete_manifest(node: Node, reference: str) -> None:
    repository, digest = reference.removeprefix(f"{node.registry}/").split("@", 1)
    request = urllib.request.Request(
        f"http://{node.registry}/v2/{repository}/manifests/{digest}",
        method="DELETE",
        headers={"Accept": MANIFEST_TYPES},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


@pytest.fixture(scope="module")
def failed_window(
    maint_deployed: Node, sample_app: str, node_images: dict[str, str]
) -> FailedWindow:
    node = maint_deployed
    _delete_manifest(node, node_images["nginx"])
    try:
        with Probe(sample_app, 80) as probe:
            notice_id, _, _ = open_window(
                node, ["shop/web"], title="Build fails (node)", lead_s=40, length_s=20
            )
            shown = wait_for_states(
                node, notice_id, {"ROLLED_BACK", "COMPLETED", "FAILED"}, within_s=240
            )
    finally:
        pushed = node_deploy.build_images(node)  # pushed back, same digest
        assert pushed["nginx"] == node_images["nginx"]
    print(f"\nevents of notice {notice_id}:\n{json.dumps(shown['events'], indent=1)[:3000]}")
    return FailedWindow(
        notice_id=notice_id,
        shown=shown,
        details="\n".join(str(event["detail"]) for event in shown["events"]),
        statuses=probe.statuses(),
        errors=len(probe.errors()),
        missing_digest=node_images["nginx"].split("@", 1)[1],
    )


@pytest.mark.timeout(600)
def test_failed_kaniko_build_rolls_back_with_a_readable_reason(
    maint_deployed: Node, failed_window: FailedWindow
) -> None:
    assert failed_window.shown["targets"][0]["state"] == "ROLLED_BACK", failed_window.details
    assert "MANIFEST_UNKNOWN" in failed_window.details
    assert failed_window.missing_digest in failed_window.details
    assert failed_window.statuses == [200] and failed_window.errors == 0
    assert leftovers(maint_deployed, failed_window.notice_id, []) == ""


@pytest.mark.timeout(600)
def test_failed_kaniko_build_leaves_no_ansi_escapes_in_the_event_log(
    failed_window: FailedWindow,
) -> None:
    found = ANSI.findall(failed_window.details)
    assert not found, f"ANSI escapes reached the event log: {found[:5]}"
