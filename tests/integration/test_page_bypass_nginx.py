"""The engineers' bypass through real nginx: the page's own nginx.conf with the include a page Pod
mounts (``maint.page.bypass``), in front of a real HTTP server standing in for the shadow Service.

Without a valid cookie every request gets 503 and the page; the secret link sets the cookie and
redirects to ``/``; with the cookie requests reach the app (any method, path and query). An
altered or expired cookie, one made for another notice, and forged ``X-Forwarded-For`` /
``X-Real-IP`` headers get the page. The link's token is never written to nginx's log.
"""

from __future__ import annotations

import http.client
import http.server
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from maint.page import bypass
from tests.support.fixtures_nginx import NginxPage, nginx_serving
from tests.support.page_cases import sample_context
from tests.support.serving import in_thread

pytestmark = pytest.mark.nginx

KEY = "k" * 40  # MAINT_BYPASS_KEY of this installation
NOTICE = 7
SECRETS = bypass.derive(KEY, notice_id=NOTICE, salt="0123456789abcdef")
END = datetime.now(UTC) + timedelta(hours=1)


class _App(http.server.BaseHTTPRequestHandler):
    """The app behind the shadow Service: answers 200 with what it was asked."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        text = f"the app: {self.command} {self.path} {body.decode()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    with in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App), name="app") as server:
        yield server.server_address[1]


@pytest.fixture(scope="module")
def page(app: int) -> Iterator[NginxPage]:
    def include(ports: Sequence[int]) -> str:
        return bypass.include(
            SECRETS,
            notice_id=NOTICE,
            expires=END,
            upstream="127.0.0.1",
            ports={port: app for port in ports},
        )

    with nginx_serving(sample_context(), port_count=2, bypass=include) as served:
        yield served


def _request(
    url: str, path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request(
            method, path, body=b"x=1" if method == "POST" else None, headers=headers or {}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{bypass.COOKIE}={value}"}


def test_without_a_cookie_every_request_gets_the_page(page: NginxPage) -> None:
    for path in ("/", "/orders?id=3", "/.maint/bypass/guessed"):
        status, headers, body = _request(page.url, path)
        assert status == 503 and "x-maint-page" in headers and b"the app" not in body, path


def test_the_secret_link_sets_the_cookie_and_the_cookie_reaches_the_app(page: NginxPage) -> None:
    status, headers, body = _request(page.url, SECRETS.link)
    assert status == 302 and headers["location"].endswith("/")
    cookie = headers["set-cookie"]
    value = cookie.split(";")[0].removeprefix(f"{bypass.COOKIE}=")
    assert value == bypass.cookie_value(SECRETS, notice_id=NOTICE, expires=END)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert headers["cache-control"] == "no-store"
    for url in page.urls:  # every port of the page, each to the app's port behind it
        status, _headers, body = _request(url, "/orders?id=3", headers=_cookie(value))
        assert (status, body) == (200, b"the app: GET /orders?id=3 "), url
    status, _headers, body = _request(page.url, "/cart", method="POST", headers=_cookie(value))
    assert (status, body) == (200, b"the app: POST /cart x=1")
    assert SECRETS.token not in page.log.read_text()  # the link is not in the access log


def test_altered_expired_and_foreign_cookies_and_forged_headers_get_the_page(
    page: NginxPage,
) -> None:
    good = bypass.cookie_value(SECRETS, notice_id=NOTICE, expires=END)
    signature, expiry = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    other = bypass.derive(KEY, notice_id=NOTICE + 1, salt="0123456789abcdef")
    past = datetime.now(UTC) - timedelta(seconds=5)
    refused = {
        "altered signature": _cookie(f"{flipped}.{expiry}"),
        "moved expiry": _cookie(f"{signature}.{int(expiry) + 3600}"),
        "expired": _cookie(bypass.cookie_value(SECRETS, notice_id=NOTICE, expires=past)),
        "another notice's": _cookie(bypass.cookie_value(other, notice_id=NOTICE + 1, expires=END)),
        "another notice's, this id": _cookie(
            bypass.cookie_value(other, notice_id=NOTICE, expires=END)
        ),
        "garbage": _cookie("x" * 30),
        "forged X-Forwarded-For": {"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "127.0.0.1"},
    }
    for what, headers in refused.items():
        status, answer, body = _request(page.url, "/", headers=headers)
        assert status == 503 and "x-maint-page" in answer and b"the app" not in body, what


def test_without_the_include_a_valid_cookie_gets_the_page(app: int) -> None:
    """A page Pod without a bypass mounts nothing: the same image serves only the page."""
    good = bypass.cookie_value(SECRETS, notice_id=NOTICE, expires=END)
    with nginx_serving(sample_context()) as plain:
        status, headers, _body = _request(plain.url, "/", headers=_cookie(good))
        assert status == 503 and "x-maint-page" in headers
        assert _request(plain.url, SECRETS.link)[0] == 503
