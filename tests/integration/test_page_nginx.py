"""A real nginx serving the rendered page answers as DESIGN.md promises, like the preview.

nginx runs as a plain process with the config from ``render_nginx_conf`` (see
``tests/support/fixtures_nginx.py``); the request table is shared with the preview tests.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from maint.page import SCRIPT_FILE, render
from tests.support.fixtures_nginx import NginxPage, nginx_serving
from tests.support.page_cases import (
    CASES,
    SAMPLE_JSON,
    SAMPLE_NOTICE,
    SAMPLE_RETRY_AFTER,
    PageCase,
    check,
    fetch,
    running_preview,
    sample_context,
)

pytestmark = pytest.mark.nginx

CONTEXT = sample_context()
GET_PAGE = PageCase("get", "GET", "/", "html")
GET_JSON = PageCase("json", "GET", "/", "json", {"Accept": "application/json"})
GET_HEALTH = PageCase("health", "GET", "/healthz", "health")


@pytest.fixture(scope="module")
def served() -> Iterator[NginxPage]:
    """One nginx for the table (starting one per row would only add time)."""
    with nginx_serving(CONTEXT) as page:
        yield page


@pytest.fixture(scope="module")
def preview_url() -> Iterator[str]:
    with running_preview(CONTEXT) as url:
        yield url


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_nginx_answers_as_designed(served: NginxPage, case: PageCase) -> None:
    check(case, fetch(served.url, case), CONTEXT)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_preview_server_matches_nginx(served: NginxPage, preview_url: str, case: PageCase) -> None:
    assert fetch(preview_url, case).compared() == fetch(served.url, case).compared()


def test_nginx_page_shows_the_reason_escaped(served: NginxPage) -> None:
    reply = fetch(served.url, GET_PAGE)
    assert reply.status == 503
    assert reply.header("Retry-After") == SAMPLE_RETRY_AFTER
    assert b"<script>" not in reply.body
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in reply.body


def test_nginx_json_twin_has_the_documented_fields(served: NginxPage) -> None:
    reply = fetch(served.url, GET_JSON)
    assert reply.status == 503
    assert reply.header("Content-Type") == "application/json"
    assert json.loads(reply.body) == SAMPLE_JSON
    assert b"<" not in reply.body


def test_nginx_hides_its_version(served: NginxPage) -> None:
    assert fetch(served.url, GET_PAGE).header("Server") == "nginx"


def test_nginx_answers_page_and_healthz_on_every_port(
    nginx: Callable[..., NginxPage],
) -> None:
    page = nginx(CONTEXT, port_count=2)
    assert len(set(page.urls)) == 2
    for url in page.urls:
        check(GET_PAGE, fetch(url, GET_PAGE), CONTEXT)
        check(GET_HEALTH, fetch(url, GET_HEALTH), CONTEXT)


def test_nginx_serves_the_reload_script_the_page_references_under_its_csp(
    served: NginxPage,
) -> None:
    page = fetch(served.url, GET_PAGE)
    csp = page.header("Content-Security-Policy")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no other origin
    assert directives["connect-src"] == "'self'"  # the script re-checks the page's own URL
    assert "unsafe-inline" not in directives["script-src"]
    assert "unsafe-eval" not in csp
    sources = re.findall(r'<script src="([^"]+)"', page.body.decode())
    assert sources == [f"/{SCRIPT_FILE}"]
    assert "<script>" not in page.body.decode()  # nothing inline
    script = fetch(served.url, PageCase("script", "GET", sources[0], "script"))
    assert script.status == 200
    assert script.header("Content-Type") == "text/javascript"
    assert script.header("X-Content-Type-Options") == "nosniff"
    assert script.body == CONTEXT.files[SCRIPT_FILE]


def test_nginx_page_shows_the_notices_own_zone(nginx: Callable[..., NginxPage]) -> None:
    notice = dataclasses.replace(
        SAMPLE_NOTICE,
        start=datetime(2026, 12, 23, 17, 0, tzinfo=UTC),
        end=datetime(2026, 12, 23, 19, 0, tzinfo=UTC),
        display_zone="+09:00",
    )
    context = render(notice, ports=[8080], zone=ZoneInfo("UTC"), base_image="nginx:1.27")
    body = fetch(nginx(context).url, GET_PAGE).body.decode()
    assert "2026-12-24 02:00 (+09:00)" in body and "UTC+09:00" in body
