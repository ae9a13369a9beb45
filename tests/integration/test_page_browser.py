"""The maintenance page in a real browser: Debian's Chromium, headless, against real nginx.

What only a browser proves: the page, served by nginx with maint's config and CSP, lays out at
phone widths (320 and 390 CSS px) and a desktop's in both languages, start, end and zone shown
in the zone the notice was written in (the browser itself runs in another zone), no time split
at a hyphen or sticking out of the card; its reload script runs under that CSP without a
violation; and a reader left on the page ends up on the app after the planned end, once the
Service answers with the app again, within the backoff the script promises. The Service is
modelled by ``tests.support.loopback_service`` (connections go to the page's nginx until maint
restores the selector, then to a local app server).

Screenshots are written to the test's temp dir (``page-LANG-DEVICE.png``) and, when
``MAINT_SCREENSHOT_DIR`` is set, copied there too (CI can keep that folder).
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from maint.notices.validation import parse_time
from maint.page import PageNotice, render
from tests.support.browser import Browser, Event, LogEntry, Tab, chromium
from tests.support.fixtures_nginx import nginx_serving
from tests.support.loopback_service import app_serving, switched_service
from tests.support.page_cases import PAGE_CSP
from tests.support.require import binary, missing

pytestmark = [pytest.mark.nginx, pytest.mark.browser]

RENDER_ZONE = ZoneInfo("UTC")  # MAINT_DISPLAY_TIMEZONE: what the page would show by mistake
BROWSER_ZONE = "Pacific/Auckland"  # the reader's machine: neither the notice's zone nor UTC
BASE_IMAGE = "nginxinc/nginx-unprivileged:1.27-alpine"
SCREENSHOT_DIR_ENV = "MAINT_SCREENSHOT_DIR"

# What the reload script promises (README "The page reloads itself"), written out here so a
# changed script fails this test: the first check within 5 s after the planned end, and after
# an answer that is still the page, the next one 5 to 10 s later (5 s doubling, jittered).
FIRST_CHECK_WITHIN = 5.0
SECOND_CHECK_BETWEEN = (5.0, 10.0)
TIMER_SLACK = 3.0  # seconds a timer or a request may lag on a busy 2-core machine
CLOCK_SKEW = 0.1  # seconds: DevTools' wallTime is derived from a monotonic clock, not read
APP_BODY = b"<!DOCTYPE html><title>shop</title><p id=app>the app is back</p>\n"


@dataclass(frozen=True)
class Device:
    name: str
    width: int
    height: int
    scale: float
    mobile: bool


SMALL_PHONE = Device("small-phone", 320, 568, 2, mobile=True)  # the narrowest still in use
PHONE = Device("phone", 390, 844, 2, mobile=True)
DESKTOP = Device("desktop", 1366, 900, 1, mobile=False)


@dataclass(frozen=True)
class Written:
    """A notice as an operator wrote it, and what its page must and must not show."""

    notice: PageNotice
    heading: str
    shows: tuple[str, str, str]  # start, end, zone: as the page's definition list has them
    hides: tuple[str, ...]  # the same moments in UTC
    korean: str  # a selector whose text is Korean (must be drawn with a Hangul font)


KO = Written(
    notice=PageNotice(
        notice_id=14,
        title="정기 점검: 결제 데이터베이스 업그레이드",
        reason=(
            "결제 데이터베이스를 새 버전으로 올립니다.\n"
            "자세한 내용: https://status.example.com/incidents/2026-12-24-payments-database"
        ),
        lang="ko",
        start=parse_time("2026-12-24T02:00:00+09:00", what="--start"),
        end=parse_time("2026-12-24T06:00:00+09:00", what="--end"),
        display_zone="+09:00",
    ),
    heading="서비스 점검 중",
    shows=("2026-12-24 02:00 (+09:00)", "2026-12-24 06:00 (+09:00)", "UTC+09:00"),
    hides=("17:00", "21:00", "(UTC)"),
    korean="h1",
)
EN = Written(
    notice=PageNotice(
        notice_id=15,
        title="Payments database upgrade",
        reason="We are moving the payments database to a new major version.",
        lang="en",
        start=parse_time("2026-12-23T22:00:00-05:00", what="--start"),
        end=parse_time("2026-12-24T01:30:00-05:00", what="--end"),
        display_zone="America/New_York",
    ),
    heading="Scheduled maintenance",
    shows=("2026-12-23 22:00 (EST)", "2026-12-24 01:30 (EST)", "America/New_York (EST)"),
    hides=("03:00", "06:30", "(UTC)"),
    korean=".other h2",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the module (each test opens its own tab)."""
    with chromium(tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    opened = browser.new_tab()
    opened.call("Emulation.setTimezoneOverride", timezoneId=BROWSER_ZONE)
    try:
        yield opened
    finally:
        browser.close_tab(opened)


@pytest.mark.parametrize("device", [SMALL_PHONE, PHONE, DESKTOP], ids=lambda device: device.name)
@pytest.mark.parametrize("written", [KO, EN], ids=lambda written: written.notice.lang)
def test_page_shows_the_notice_in_its_own_zone(
    tab: Tab, written: Written, device: Device, tmp_path: Path
) -> None:
    context = render(written.notice, ports=[8080], zone=RENDER_ZONE, base_image=BASE_IMAGE)
    with nginx_serving(context) as page:
        tab.emulate(
            width=device.width, height=device.height, scale=device.scale, mobile=device.mobile
        )
        tab.open(page.url + "/")
        shown = tab.evaluate(SHOWN)
        png = tab.screenshot()
    name = f"page-{written.notice.lang}-{device.name}.png"
    _keep(png, tmp_path / name)

    (document,) = _responses(tab, "Document")
    assert document["params"]["response"]["status"] == 503  # maint's page, as nginx answers it
    assert _header(document, "Content-Security-Policy") == PAGE_CSP  # what "no violation" means
    (script,) = _responses(tab, "Script")
    assert script["params"]["response"]["status"] == 200  # allowed by script-src 'self'
    assert shown["zone"] == BROWSER_ZONE
    assert shown["lang"] == written.notice.lang
    assert shown["heading"] == written.heading
    assert shown["title"] == written.notice.title
    assert tuple(shown["times"]) == written.shows
    for hidden in written.hides:
        assert hidden not in shown["text"]
    assert shown["outside"] == [], "a time or the zone sticks out of the page's card"
    assert shown["scrollWidth"] <= device.width, "the page scrolls sideways"
    for lines in shown["timeLines"]:  # a time breaks only between its date, clock and zone
        assert " ".join(lines) in written.shows, f"a time is broken as {lines}"
        assert len(lines) == 1 or device.width < PHONE.width, f"{lines} fit on one line"
    assert _hangul_fonts() & set(tab.fonts_of(written.korean)), "Korean drawn without a font"
    assert _problems(tab.log()) == []

    width, height, distinct_rows = _png_facts(png)
    assert width == device.width * device.scale  # the page's full width, nothing beyond it
    assert height == round(shown["scrollHeight"] * device.scale)  # and its full height
    assert height >= device.height * device.scale * 0.5  # a whole page, not a strip
    assert distinct_rows >= height // 5, f"{name} is (almost) blank"


def test_a_csp_violation_on_the_page_would_be_reported(tab: Tab) -> None:
    """The log the tests above find clean does show a violation of the page's CSP."""
    context = render(KO.notice, ports=[8080], zone=RENDER_ZONE, base_image=BASE_IMAGE)
    with nginx_serving(context) as page:
        tab.open(page.url + "/")
        assert _problems(tab.log()) == []
        mark = len(tab.events)
        tab.evaluate(INJECT_INLINE_SCRIPT)
        tab.wait_for(
            "Log.entryAdded",
            after=mark,
            match=lambda params: params["entry"]["source"] == "security",
        )
        tab.wait_for("Audits.issueAdded", after=mark)
        assert tab.evaluate("window.inlineRan === undefined")  # blocked, not run
    problems = _problems(tab.log())
    assert problems, "an inline script ran or was blocked without a word"
    assert all(entry.is_csp_violation for entry in problems)
    assert {entry.kind for entry in problems} == {"log", "issue"}


def test_page_reloads_to_the_app_once_the_service_answers_after_the_end(tab: Tab) -> None:
    # The end a few seconds ahead (the page has whole seconds), so the reader opens the page
    # during the window and stays on it past the end.
    end = datetime.fromtimestamp(math.ceil(time.time()) + 4, tz=UTC)
    notice = PageNotice(
        notice_id=16,
        title="Payments database upgrade",
        reason="",
        lang="en",
        start=end - timedelta(hours=1),
        end=end,
        display_zone="+09:00",
    )
    context = render(notice, ports=[8080], zone=RENDER_ZONE, base_image=BASE_IMAGE)
    with (
        app_serving(APP_BODY) as app,
        nginx_serving(context) as page,
        switched_service(_address(page.url)) as service,
    ):
        is_check = _check_of(service.url)
        tab.emulate(width=PHONE.width, height=PHONE.height, scale=PHONE.scale, mobile=True)
        tab.open(service.url)
        assert tab.evaluate("document.querySelector('h1').textContent") == notice.title
        assert time.time() < end.timestamp(), "the page loaded after its end: machine too slow?"

        # The script's first check after the end still gets the page: maint has not restored.
        first = tab.wait_for(
            "Network.responseReceived",
            match=is_check,
            timeout=end.timestamp() - time.time() + FIRST_CHECK_WITHIN + TIMER_SLACK,
        )
        assert first["params"]["response"]["status"] == 503
        assert _header(first, "X-Maint-Page") == "maintenance"
        service.switch(app.address)  # maint restores the selector, then deletes the page Pod
        second = tab.wait_for(
            "Network.responseReceived",
            match=is_check,
            after=tab.events.index(first) + 1,
            timeout=SECOND_CHECK_BETWEEN[1] + TIMER_SLACK,
        )
        assert second["params"]["response"]["status"] == 200
        tab.wait_for("Page.loadEventFired", after=tab.events.index(second), timeout=TIMER_SLACK)
        assert tab.evaluate("document.getElementById('app').textContent") == "the app is back"

    checks = [
        event["params"]
        for event in tab.events
        if event["method"] == "Network.requestWillBeSent" and is_check(event["params"])
    ]
    assert len(checks) == 2  # none before the end; one answered by the page, one by the app
    first_sent = checks[0]["wallTime"] - end.timestamp()  # the browser's clock is the machine's
    assert -CLOCK_SKEW <= first_sent <= FIRST_CHECK_WITHIN + TIMER_SLACK
    waited = checks[1]["timestamp"] - checks[0]["timestamp"]
    assert SECOND_CHECK_BETWEEN[0] <= waited <= SECOND_CHECK_BETWEEN[1] + TIMER_SLACK
    assert [path for path in app.requests if path != "/favicon.ico"] == ["/", "/"]  # check, reload
    assert _problems(tab.log()) == []


# What the page shows, read from the laid-out DOM (innerText: only what is rendered).
SHOWN = """(() => {
  const card = document.querySelector("main").getBoundingClientRect();
  const inCard = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.left >= card.left && r.right <= card.right;
  };
  // The text of each line an element's text is laid out on, measured character by character.
  const lines = (el) => {
    const text = el.firstChild;
    const found = [];
    let top = null;
    for (let i = 0; i < text.length; i++) {
      const range = document.createRange();
      range.setStart(text, i);
      range.setEnd(text, i + 1);
      const rect = range.getClientRects()[0];
      if (!rect) continue; // a space the line broke at
      if (top === null || rect.top > top + 1) {
        found.push("");
        top = rect.top;
      }
      found[found.length - 1] += text.data[i];
    }
    return found.map((line) => line.trim());
  };
  const dds = [...document.querySelectorAll("dl dd")];
  const times = [...document.querySelectorAll("time")];
  const root = document.scrollingElement;
  return {
    lang: document.documentElement.lang,
    zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    heading: document.querySelector(".badge").innerText.trim(),
    title: document.querySelector("h1").innerText.trim(),
    times: dds.map((dd) => dd.innerText.trim()),
    text: document.body.innerText,
    outside: [...dds, ...times].filter((el) => !inCard(el)).map((el) => el.outerHTML),
    timeLines: times.map(lines),
    scrollWidth: root.scrollWidth,
    scrollHeight: root.scrollHeight,
  };
})()"""

INJECT_INLINE_SCRIPT = """(() => {
  const script = document.createElement("script");
  script.textContent = "window.inlineRan = true;";
  document.body.append(script);
  return true;
})()"""


def _keep(png: bytes, path: Path) -> None:
    path.write_bytes(png)
    if kept := os.environ.get(SCREENSHOT_DIR_ENV):
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(kept) / path.name)


def _problems(entries: list[LogEntry]) -> list[LogEntry]:
    """Everything the browser logged except the 503s of maint's page (document, favicon)."""
    return [
        entry
        for entry in entries
        if not (entry.source == "network" and "status of 503" in entry.text)
    ]


def _responses(tab: Tab, kind: str) -> list[Event]:
    return [
        event
        for event in tab.events
        if event["method"] == "Network.responseReceived" and event["params"]["type"] == kind
    ]


def _check_of(url: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the reload script's ``fetch`` of the page's own URL (request or response)."""

    def matches(params: dict[str, Any]) -> bool:
        message = params.get("request") or params.get("response") or {}
        return params.get("type") == "Fetch" and message.get("url") == url

    return matches


def _header(event: Event, name: str) -> str | None:
    headers = event["params"]["response"]["headers"]
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "127.0.0.1", parts.port or 80)


def _hangul_fonts() -> set[str]:
    """Families fontconfig knows to cover Korean (Chromium draws text with these on Linux)."""
    fc_list = binary("fc-list", "apt-get install fontconfig")
    listed = subprocess.run(
        [fc_list, ":lang=ko", "family"], capture_output=True, text=True, check=True
    ).stdout
    families = {name.strip() for line in listed.splitlines() for name in line.split(",")}
    families.discard("")
    if not families:
        missing(
            "a font with Hangul (Korean screenshots would show boxes)",
            "apt-get install fonts-nanum",
        )
    return families


def _png_facts(png: bytes) -> tuple[int, int, int]:
    """Width, height and how many distinct rows the PNG has (1 or 2 for a blank image).

    Rows are compared as stored (filtered): identical pixel rows filter identically, so a
    one-colour image has at most two distinct rows whatever filters the encoder chose.
    """
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    position, header, data = 8, b"", bytearray()
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0) and colour in PIXEL_BYTES, "an unexpected PNG layout"
    pixels = zlib.decompress(bytes(data))
    stride = 1 + width * PIXEL_BYTES[colour]
    assert len(pixels) == stride * height
    rows = {pixels[offset : offset + stride] for offset in range(0, len(pixels), stride)}
    return width, height, len(rows)


PIXEL_BYTES = {2: 3, 6: 4}  # truecolour, truecolour with alpha (8 bits per sample)
