"""How the page answers requests, in one place for nginx and the preview server.

The nginx config template and the Python preview server (``maint preview --serve``) both read
these rules, so the image and the preview cannot drift apart: the same status codes, headers,
``Accept`` rule and health path. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import unquote

from maint.page.script import SCRIPT_CACHE_CONTROL, SCRIPT_FILE

MAINTENANCE_STATUS = 503
HEALTH_PATH = "/healthz"
HEALTH_BODY = "ok\n"
HTML_FILE = "index.html"
JSON_FILE = "index.json"
HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"
HEALTH_TYPE = "text/plain; charset=utf-8"
MARKER_HEADER = "X-Maint-Page"
"""On every 503 page answer: the reload script tells maint's page from the app's own 503."""

ACCEPT_RULES: tuple[tuple[str, str], ...] = (
    ("text/html", HTML_FILE),
    ("application/json", JSON_FILE),
)
"""(substring of ``Accept``, file) checked in order, case-insensitively; no match: HTML.

A browser's ``Accept`` names ``text/html``, so it gets the page even when it also names JSON;
an API client asking for ``application/json`` gets the JSON twin. nginx cannot weigh
q-values in a ``map``, so neither server does: first match wins in both.
"""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)
"""Inline CSS and data: images; the one script is a file of the image (``'self'``) that may
fetch the page's own origin. Never inline script: should an escaping bug ever let markup
through, the browser still runs nothing that maint did not ship."""


@dataclass(frozen=True)
class Answer:
    """Status, headers and body of one response, before the server writes it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def http_date(moment: datetime) -> str:
    """``moment`` as an RFC 9110 HTTP date, rounded up so clients never retry before it."""
    utc = moment.astimezone(UTC)
    whole = utc.replace(microsecond=0)
    if utc.microsecond:
        whole += timedelta(seconds=1)
    return format_datetime(whole, usegmt=True)


def page_headers(*, retry_after: str) -> tuple[tuple[str, str], ...]:
    """Headers of every 503 answer (HTML and JSON alike), besides ``Content-Type``."""
    return (
        ("Retry-After", retry_after),
        ("Cache-Control", "no-store"),
        ("Vary", "Accept"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        (MARKER_HEADER, "maintenance"),
    )


def script_headers() -> tuple[tuple[str, str], ...]:
    """Headers of the reload script's answer (200), besides ``Content-Type``."""
    return (("Cache-Control", SCRIPT_CACHE_CONTROL), ("X-Content-Type-Options", "nosniff"))


def health_headers() -> tuple[tuple[str, str], ...]:
    """Headers of the ``/healthz`` answer, besides ``Content-Type``."""
    return (("Cache-Control", "no-store"),)


def chosen_file(accept: str | None) -> str:
    """The file a request with this ``Accept`` header gets: the same rule as nginx's ``map``."""
    lowered = (accept or "").lower()
    for needle, file in ACCEPT_RULES:
        if needle in lowered:
            return file
    return HTML_FILE


_SLASHES = re.compile(r"/{2,}")
SCRIPT_PATH = "/" + SCRIPT_FILE


def _location_path(target: str) -> str:
    # nginx ignores the query, decodes percent-escapes and merges slashes before matching.
    path = target.split("?", 1)[0].split("#", 1)[0]
    return _SLASHES.sub("/", unquote(path))


def is_health_path(target: str) -> bool:
    """Whether a request target is ``/healthz`` as nginx's exact-match location sees it."""
    return _location_path(target) == HEALTH_PATH


def is_script_path(target: str) -> bool:
    """Whether a request target is the reload script as nginx's exact-match location sees it."""
    return _location_path(target) == SCRIPT_PATH
