"""Pure rules of a window that are not transitions: which Service can be switched, which page
revision a notice asks for, which failed build may pass, which image cleanup is pending."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from maint import build, naming, page, switch
from maint.cluster import ServiceInfo, ServicePort
from maint.errors import BuildFailed, InvalidInput
from maint.notices import Event
from maint.runner.housekeeping import pending_images

SERVICE = ServiceInfo(
    namespace="shop",
    name="web",
    type="ClusterIP",
    selector={"app": "web"},
    ports=(ServicePort(port=80, target_port="http"),),
)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "ExternalName", "selector": {}}, "ExternalName"),
        ({"selector": {}}, "no selector"),
        ({"selector": {"maint.io/page": "x", "app.kubernetes.io/managed-by": "maint"}}, "page"),
        ({"selector": {"app": "maint-2-web-abcde-0123abcd"}}, "behind a maintenance page"),
        ({"selector": {"app": "web", "maint.io/notice": "3"}}, "maint's own label maint.io/notice"),
        (
            {"selector": {"app": "web", "app.kubernetes.io/managed-by": "helm"}},
            "maint's own label app.kubernetes.io/managed-by",
        ),
        ({"ports": (ServicePort(port=53, target_port=53, protocol="UDP"),)}, "no TCP port"),
    ],
)
def test_switchable_refuses_every_service_maint_cannot_switch_with_the_reason(change, message):
    with pytest.raises(InvalidInput, match=message):
        switch.switchable(replace(SERVICE, **change))


def test_switchable_gives_the_page_ports_of_a_service_it_can_switch():
    assert [p.number for p in switch.switchable(SERVICE)] == [8080]


def test_a_service_behind_this_targets_own_page_is_switched_not_refused():
    """The switch landed but its record did not (a database blip): the retried preparation
    must see its own page, not roll the window back as "behind a maintenance page"."""
    own = replace(
        SERVICE, selector=naming.page_selector(name="maint-1-web-abcde-0123abcd", keys=["app"])
    )
    assert [p.number for p in switch.switchable(own, own_page="maint-1-web-abcde-0123abcd")] == [
        8080
    ]
    with pytest.raises(InvalidInput, match="behind a maintenance page"):
        switch.switchable(own, own_page="maint-2-web-abcde-0123abcd")
    with pytest.raises(InvalidInput, match="behind a maintenance page"):
        switch.switchable(own)


def test_the_page_selector_keeps_the_original_keys_with_the_page_name_as_every_value():
    name = "maint-1-web-abcde-0123abcd"
    page = naming.page_selector(name=name, keys={"app": "web", "tier": "fe"})
    assert page == {"app": name, "tier": name}
    # A merge of the original over it (client-side apply) overwrites every key: the app's back.
    assert page | {"app": "web", "tier": "fe"} == {"app": "web", "tier": "fe"}
    assert naming.is_page_selector(page, original={"app": "web", "tier": "fe"}) == name


def test_an_older_releases_page_selector_still_counts_as_maints():
    """Windows switched before the page kept the original's keys are still given back."""
    name = "maint-1-web-abcde-0123abcd"
    legacy = {"app.kubernetes.io/managed-by": "maint", "maint.io/page": name}
    assert naming.legacy_page_selector(name=name) == legacy
    assert naming.is_page_selector(legacy, original={"app": "web"}) == name


@pytest.mark.parametrize(
    ("page", "original"),
    [
        ({"app": "maint-1-web-abcde-0123abcd"}, {"app": "web", "tier": "fe"}),  # keys differ
        ({"app": "maint-1-web-abcde-0123abcd", "tier": "x"}, {"app": "web", "tier": "fe"}),
        ({"app": "forged-page"}, {"app": "web"}),  # not maint's page-name form
        ({"app": "maint-1-web-abcde-0123abcd-"}, {"app": "web"}),
        ({"app": "db"}, {"app": "other"}),
        (  # maint's old shape with a name not of maint's page form
            {"app.kubernetes.io/managed-by": "maint", "maint.io/page": "db"},
            {"app": "web"},
        ),
        (  # the old shape's keys with another manager
            {
                "app.kubernetes.io/managed-by": "helm",
                "maint.io/page": "maint-1-web-abcde-0123abcd",
            },
            {"app": "web"},
        ),
        ({"maint.io/page": "maint-1-web-abcde-0123abcd"}, {"maint.io/page": "web"}),
        ({}, {}),
    ],
)
def test_only_maints_exact_page_shape_counts_as_its_page_selector(page, original):
    assert naming.is_page_selector(page, original=original) is None


START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
NOTICE = page.PageNotice(
    notice_id=7,
    title="Upgrade",
    reason="DB",
    lang="en",
    start=START,
    end=START + timedelta(hours=1),
)


def test_page_revision_follows_the_notice_content_only():
    base = page.revision(NOTICE, ports=[8080], base_image="nginx:1")
    assert page.revision(NOTICE, ports=[8080, 8080], base_image="nginx:1") == base
    for changed in (
        page.revision(
            replace(NOTICE, end=NOTICE.end + timedelta(minutes=1)),
            ports=[8080],
            base_image="nginx:1",
        ),
        page.revision(replace(NOTICE, title="Other"), ports=[8080], base_image="nginx:1"),
        page.revision(replace(NOTICE, lang="ko"), ports=[8080], base_image="nginx:1"),
        page.revision(NOTICE, ports=[8081], base_image="nginx:1"),
        page.revision(NOTICE, ports=[8080], base_image="nginx:2"),
    ):
        assert changed != base


@pytest.mark.parametrize(
    ("message", "permanent"),
    [
        ("GET https://r/v2/nginx/manifests/9: MANIFEST_UNKNOWN: manifest unknown", True),
        ("error building image: COPY failed: no such file", True),
        ("PUT https://r/v2/page/blobs/uploads/: UNAUTHORIZED: authentication required", True),
        (
            "PUT https://r/v2/page/manifests/x: unexpected status code 503 Service Unavailable",
            False,
        ),
        ("dial tcp 10.0.0.1:5000: connect: connection refused", False),
        ("DeadlineExceeded", False),
    ],
)
def test_a_failed_build_is_permanent_only_when_its_log_says_so(message, permanent):
    assert build.permanent(BuildFailed(message)) is permanent


DIGEST = "sha256:" + "a" * 64


def _cleanup(outcome: str, detail: str, target: str = "shop/web") -> Event:
    return Event(
        at=START, notice_id=1, target=target, step="cleanup", outcome=outcome, detail=detail
    )


def test_pending_cleanup_is_derived_from_the_event_log():
    image = f"r/page@{DIGEST}"
    refused = _cleanup("pending", f"image {image}: 405 unsupported; retrying in the background")
    assert pending_images([refused], target="shop/web") == [image]
    assert pending_images([refused], target="shop/api") == []
    assert (
        pending_images([refused, _cleanup("ok", f"deleted image {image}")], target="shop/web") == []
    )
    gave_up = _cleanup("gave-up", f"image {image}: 405; gave up after 8 retries")
    assert pending_images([refused, gave_up], target="shop/web") == []
