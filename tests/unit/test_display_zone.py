"""A notice's display zone: validated at ``notice add``, shown on the page, part of the revision."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from maint.errors import InvalidInput
from maint.notices import new_notice
from maint.page import PageNotice, render, revision

NOW = datetime(2026, 12, 1, tzinfo=UTC)
BASE_IMAGE = "nginxinc/nginx-unprivileged:1.27-alpine"
NOTICE = PageNotice(
    notice_id=7,
    title="정기 점검",
    reason="DB",
    lang="ko",
    start=datetime(2026, 12, 23, 17, 0, tzinfo=UTC),
    end=datetime(2026, 12, 23, 19, 0, tzinfo=UTC),
)


def _new(start: str = "2026-12-24T02:00:00+09:00", **extra: object):  # type: ignore[no-untyped-def]
    return new_notice(
        title="t",
        reason="r",
        start=start,
        end="2026-12-24T04:00:00+09:00",
        targets=[],
        lang="ko",
        maintenance=False,
        now=NOW,
        start_tolerance=timedelta(minutes=5),
        **extra,  # type: ignore[arg-type]
    )


def _page(notice: PageNotice, zone: str = "UTC") -> str:
    context = render(notice, ports=[8080], zone=ZoneInfo(zone), base_image=BASE_IMAGE)
    return context.files["index.html"].decode()


def test_the_offset_start_was_written_with_is_kept() -> None:
    assert _new().display_zone == "+09:00"
    assert _new(start="2026-12-23T12:30:00-04:30").display_zone == "-04:30"


@pytest.mark.parametrize("start", ["2026-12-23T17:00:00Z", "2026-12-23T17:00:00+00:00"])
def test_a_utc_start_without_timezone_keeps_no_zone_so_the_default_applies(start: str) -> None:
    assert _new(start=start).display_zone is None


def test_an_explicit_timezone_wins_over_the_offset() -> None:
    assert _new(timezone="Asia/Seoul").display_zone == "Asia/Seoul"
    assert _new(start="2026-12-23T17:00:00Z", timezone="Europe/Berlin").display_zone == (
        "Europe/Berlin"
    )


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus",
        "",
        "  ",
        "asia/seoul",
        "../../etc/passwd",
        "/etc/localtime",
        "KST\x1b[2J",
        "A" * 65,
        "+09:00",
    ],
)
def test_a_bad_timezone_is_one_clear_error(zone: str) -> None:
    with pytest.raises(InvalidInput, match="--timezone") as caught:
        _new(timezone=zone)
    assert "\n" not in str(caught.value)


def test_the_page_shows_a_korean_offset_notice_at_02_00_with_the_offset_named() -> None:
    page = _page(dataclasses.replace(NOTICE, display_zone="+09:00"))
    assert '<time datetime="2026-12-23T17:00:00+00:00">2026-12-24 02:00 (+09:00)</time>' in page
    assert "<dd>UTC+09:00</dd>" in page
    assert "17:00" not in page.replace("T17:00:00", "")


def test_the_page_names_an_iana_zone_with_its_abbreviation() -> None:
    page = _page(dataclasses.replace(NOTICE, display_zone="Asia/Seoul"))
    assert "2026-12-24 02:00 (KST)" in page and "2026-12-24 04:00 (KST)" in page
    assert "<dd>Asia/Seoul (KST)</dd>" in page


def test_a_window_across_a_dst_change_names_both_abbreviations() -> None:
    notice = dataclasses.replace(
        NOTICE,
        start=datetime(2026, 3, 8, 6, 0, tzinfo=UTC),
        end=datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
        display_zone="America/New_York",
    )
    page = _page(notice)
    assert "2026-03-08 01:00 (EST)" in page and "2026-03-08 04:00 (EDT)" in page
    assert "<dd>America/New_York (EST/EDT)</dd>" in page


def test_without_a_zone_of_its_own_the_default_zone_is_used() -> None:
    page = _page(NOTICE, zone="Asia/Seoul")
    assert "2026-12-24 02:00 (KST)" in page and "<dd>Asia/Seoul (KST)</dd>" in page
    assert "<dd>UTC</dd>" in _page(NOTICE)


def test_the_renderer_refuses_a_zone_that_is_not_one() -> None:
    # Stored zones are validated; the page checks again, so no markup can reach its zone line.
    with pytest.raises(InvalidInput, match="not a known IANA zone"):
        _page(dataclasses.replace(NOTICE, display_zone="<b>x</b>"))


def test_the_revision_changes_with_the_zone_and_only_then() -> None:
    base = revision(NOTICE, ports=[8080], base_image=BASE_IMAGE)
    seoul = revision(
        dataclasses.replace(NOTICE, display_zone="Asia/Seoul"), ports=[8080], base_image=BASE_IMAGE
    )
    offset = revision(
        dataclasses.replace(NOTICE, display_zone="+09:00"), ports=[8080], base_image=BASE_IMAGE
    )
    assert len({base, seoul, offset}) == 3
    # Same zone, same revision; the default display zone is not part of it.
    assert seoul == revision(
        dataclasses.replace(NOTICE, display_zone="Asia/Seoul"), ports=[8080], base_image=BASE_IMAGE
    )


def test_a_notice_without_a_zone_keeps_the_revision_it_had_before_zones() -> None:
    # The value main computed for NOTICE before this change: live pages are not rebuilt.
    assert revision(NOTICE, ports=[8080], base_image=BASE_IMAGE) == PRE_ZONE_REVISION


PRE_ZONE_REVISION = "701ca964"  # main before migration 0004
