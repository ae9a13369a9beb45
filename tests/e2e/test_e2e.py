"""A whole window on kind, watched from outside: real Kaniko, real nginx, real traffic.

The integration tests prove the Kubernetes behaviour without containers; this proves the images:
Kaniko builds and pushes the page, containerd pulls it by digest under the registry name Pods
use, the page answers 503 through the Service, and afterwards nothing maint made is left, not
even the image in the registry.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import REGISTRY, http_status, kubectl, maint

pytestmark = pytest.mark.e2e

TITLE = "Planned maintenance (e2e)"
MANIFEST_TYPES = ", ".join(  # Kaniko pushes Docker v2 manifests unless told otherwise
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def collapse(statuses: list[int]) -> list[int]:
    """Consecutive repeats folded: [200, 200, 503, 503, 200] -> [200, 503, 200]."""
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


def page_answer(url: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def notice(notice_id: int) -> dict:
    return json.loads(maint("notice", "show", str(notice_id), "-o", "json"))


@pytest.mark.timeout(1800)
def test_window_on_kind_answers_200_then_503_page_then_200_and_leaves_nothing(
    maint_deployed, sample_app
):
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    end = start + timedelta(seconds=60)
    added = maint(
        *("notice", "add", "--title", TITLE, "--reason", "e2e test"),
        *("--start", start.isoformat(), "--end", end.isoformat()),
        *("--target", "shop/web", "--lang", "en", "-o", "json"),
    )
    notice_id = json.loads(added)["id"]

    statuses: list[int] = []
    page: tuple[int, dict[str, str], str] | None = None
    while datetime.now(UTC) < end + timedelta(seconds=45):
        status = http_status(sample_app)
        if status is not None:  # a connection reset while endpoints move is not an answer
            statuses.append(status)
        if status == 503 and page is None:
            page = page_answer(sample_app)
        if collapse(statuses)[-3:] == [200, 503, 200] and datetime.now(UTC) > end:
            break
        time.sleep(0.5)
    assert collapse(statuses) == [200, 503, 200]
    assert page is not None
    status, headers, body = page
    assert status == 503 and TITLE in body
    assert headers.get("Retry-After") and headers.get("Cache-Control") == "no-store"

    deadline = time.monotonic() + 180
    shown = notice(notice_id)
    while shown["targets"][0]["state"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(3)
        shown = notice(notice_id)
    target = shown["targets"][0]
    assert target["state"] == "COMPLETED", shown["events"]
    digest = target["image"].split("@", 1)[1]

    selector = f"app.kubernetes.io/managed-by=maint,maint.io/notice={notice_id}"
    left = "?"
    while time.monotonic() < deadline:
        left = kubectl("get", "pods,jobs,configmaps", "-A", "-l", selector, "-o", "name")
        if not left.strip():
            break
        time.sleep(2)
    assert left.strip() == ""
    manifest = urllib.request.Request(
        f"{REGISTRY}/v2/maint-page/manifests/{digest}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(manifest, timeout=5)
    assert gone.value.code == 404
