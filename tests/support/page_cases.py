"""One table of requests for the maintenance page, checked against nginx and the preview server.

Both servers must answer every row the same way (status, headers, body), so the nginx config
in the image and ``maint preview --serve`` cannot drift apart. Expected values are written out
literally here, not taken from ``maint.page.rules``, so a wrong rule fails the tests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from maint.page import SCRIPT_FILE, BuildContext, PageNotice, make_server, render
from tests.support.serving import in_thread

HOSTILE_REASON = 'DB upgrade <script>alert(1)</script> & "quotes"\n두 번째 줄'

SAMPLE_NOTICE = PageNotice(
    notice_id=42,
    title="정기 점검 <b>bold</b>",
    reason=HOSTILE_REASON,
    lang="ko",
    start=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
    end=datetime(2026, 11, 28, 13, 30, tzinfo=UTC),
)
SAMPLE_RETRY_AFTER = "Sat, 28 Nov 2026 13:30:00 GMT"
SAMPLE_JSON = {
    "status": "maintenance",
    "title": "정기 점검 <b>bold</b>",
    "reason": HOSTILE_REASON,
    "start": "2026-11-28T10:00:00+00:00",
    "end": "2026-11-28T13:30:00+00:00",
    "retry_after": SAMPLE_RETRY_AFTER,
}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)
SCRIPT_PATH = "/" + SCRIPT_FILE
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# Headers both servers must send; Server, Date, Connection, Last-Modified may differ.
COMPARED_HEADERS = (
    "content-type",
    "content-length",
    "retry-after",
    "cache-control",
    "vary",
    "x-content-type-options",
    "content-security-policy",
    "x-maint-page",
)


def sample_context() -> BuildContext:
    return render(
        SAMPLE_NOTICE,
        ports=[8080, 8081],
        zone=ZoneInfo("Asia/Seoul"),
        base_image="nginxinc/nginx-unprivileged:1.27-alpine",
    )


@dataclass(frozen=True)
class PageCase:
    """One request and what kind of answer it must get."""

    name: str
    method: str
    target: str
    expect: Literal["html", "json", "health", "script"]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def has_body(self) -> bool:
        return self.method != "HEAD"


CASES: tuple[PageCase, ...] = (
    PageCase("get-root-gets-page", "GET", "/", "html"),
    PageCase("get-deep-path-with-query-gets-page", "GET", "/api/v1/orders?id=7", "html"),
    PageCase("browser-accept-gets-html", "GET", "/", "html", {"Accept": BROWSER_ACCEPT}),
    PageCase("wildcard-accept-gets-html", "GET", "/", "html", {"Accept": "*/*"}),
    PageCase("json-accept-gets-json", "GET", "/", "json", {"Accept": "application/json"}),
    PageCase(
        "json-accept-matches-case-insensitively",
        "GET",
        "/x",
        "json",
        {"Accept": "Application/JSON; charset=utf-8"},
    ),
    PageCase(
        "html-wins-over-json-when-both-accepted",
        "GET",
        "/",
        "html",
        {"Accept": "application/json, text/html;q=0.1"},
    ),
    PageCase("head-gets-page-headers-without-body", "HEAD", "/", "html"),
    PageCase("post-gets-page-not-405", "POST", "/x", "html", body=b"a=1&b=2"),
    PageCase(
        "post-json-gets-json",
        "POST",
        "/api",
        "json",
        {"Accept": "application/json", "Content-Type": "application/json"},
        b'{"a": 1}',
    ),
    PageCase("put-gets-page", "PUT", "/x", "html", body=b"data"),
    PageCase("delete-gets-page", "DELETE", "/x/1", "html"),
    PageCase("patch-gets-page", "PATCH", "/x/1", "html", body=b"{}"),
    PageCase("options-gets-page", "OPTIONS", "/", "html"),
    PageCase("trace-gets-page-not-405", "TRACE", "/", "html"),
    PageCase("unknown-method-gets-page", "PROPFIND", "/dav", "html"),
    PageCase("page-file-by-name-gets-page-not-404", "GET", "/index.html", "html"),
    PageCase("json-file-by-name-follows-accept", "GET", "/index.json", "html"),
    PageCase("healthz-answers-200", "GET", "/healthz", "health"),
    PageCase("healthz-ignores-query", "GET", "/healthz?probe=1", "health"),
    PageCase("healthz-with-merged-slashes", "GET", "//healthz", "health"),
    PageCase("healthz-percent-encoded", "GET", "/%68ealthz", "health"),
    PageCase("healthz-head-has-no-body", "HEAD", "/healthz", "health"),
    PageCase("healthz-post-answers-200", "POST", "/healthz", "health", body=b"x"),
    PageCase("healthz-with-trailing-slash-gets-page", "GET", "/healthz/", "html"),
    PageCase("healthz-prefix-gets-page", "GET", "/healthzz", "html"),
    PageCase("script-is-served", "GET", SCRIPT_PATH, "script"),
    PageCase("script-ignores-query", "GET", SCRIPT_PATH + "?v=1", "script"),
    PageCase("script-head-has-no-body", "HEAD", SCRIPT_PATH, "script"),
    PageCase("script-post-gets-page", "POST", SCRIPT_PATH, "html", body=b"x"),
    PageCase("script-prefix-gets-page", "GET", SCRIPT_PATH + "x", "html"),
    PageCase("script-with-merged-slashes", "GET", "/" + SCRIPT_PATH, "script"),
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order received
    body: bytes

    def header(self, name: str) -> str:
        values = [value for key, value in self.headers if key == name.lower()]
        assert len(values) == 1, f"expected one {name} header, got {values}"
        return values[0]

    def compared(self) -> dict[str, object]:
        present = {key for key, _ in self.headers}
        return {
            "status": self.status,
            "body": self.body,
            **{name: self.header(name) for name in COMPARED_HEADERS if name in present},
        }


def fetch(base_url: str, case: PageCase) -> Reply:
    """Send ``case`` as a raw request (target untouched, any method) and read the reply."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(case.method, case.target, body=case.body, headers=case.headers)
        response = connection.getresponse()
        body = response.read()
        headers = tuple((key.lower(), value) for key, value in response.getheaders())
        return Reply(status=response.status, headers=headers, body=body)
    finally:
        connection.close()


def check(case: PageCase, reply: Reply, context: BuildContext) -> None:
    """Assert the reply is what DESIGN.md promises for this kind of request."""
    if case.expect == "health":
        assert reply.status == 200
        assert reply.header("Content-Type") == "text/plain; charset=utf-8"
        assert reply.header("Cache-Control") == "no-store"
        assert reply.body == (b"ok\n" if case.has_body else b"")
        return
    if case.expect == "script":
        script = context.files[SCRIPT_FILE]
        assert reply.status == 200
        assert reply.header("Content-Type") == "text/javascript"
        assert reply.header("Cache-Control") == "public, max-age=31536000, immutable"
        assert reply.header("X-Content-Type-Options") == "nosniff"
        assert reply.header("Content-Length") == str(len(script))
        assert reply.body == (script if case.has_body else b"")
        assert "x-maint-page" not in {name for name, _ in reply.headers}
        return
    assert reply.status == 503
    assert reply.header("Retry-After") == json.loads(context.files["index.json"])["retry_after"]
    assert reply.header("Cache-Control") == "no-store"
    assert reply.header("Vary") == "Accept"
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert reply.header("Content-Security-Policy") == PAGE_CSP
    assert reply.header("X-Maint-Page") == "maintenance"
    if case.expect == "json":
        expected_type, file = "application/json", context.files["index.json"]
    else:
        expected_type, file = "text/html; charset=utf-8", context.files["index.html"]
    assert reply.header("Content-Type") == expected_type
    assert reply.header("Content-Length") == str(len(file))
    assert reply.body == (file if case.has_body else b"")


@contextlib.contextmanager
def running_preview(context: BuildContext) -> Iterator[str]:
    """The preview server on a free loopback port, in a thread; yields its base URL."""
    with in_thread(make_server(context, port=0), name="page-preview") as server:
        yield f"http://127.0.0.1:{server.server_port}"
