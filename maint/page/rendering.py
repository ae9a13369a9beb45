"""Render a notice into the Kaniko build context: page, JSON twin, nginx.conf, Dockerfile.

Pure functions: no I/O beyond reading the templates that ship inside this package. Notice text
is operator input, so the HTML template is autoescaped and the JSON twin is written by
``json.dumps`` with ``<``, ``>`` and ``&`` escaped as well. The two plain-text templates
(nginx.conf, Dockerfile) are not escaped; everything put into them is validated here first.
Bad input raises ``InvalidInput`` with what to fix.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import jinja2

from maint.errors import InvalidInput
from maint.page import bypass, rules
from maint.page.model import SUPPORTED_LANGS, BuildContext, PageNotice
from maint.page.script import SCRIPT_BYTES, SCRIPT_FILE, SCRIPT_TYPE
from maint.page.texts import TEXTS
from maint.page.zones import DisplayZone, resolve

IMAGE_DOCROOT = "/usr/share/nginx/html"
"""Where the base image's nginx serves files from; the Dockerfile copies the page there."""

IMAGE_RUNDIR = "/tmp"  # noqa: S108 - the only writable path in the container (read-only root FS)
"""Where nginx writes its pid and temp files in the image: an emptyDir on the Pod."""

_PLAIN_TEXT_TEMPLATES = frozenset({"nginx.conf.j2", "Dockerfile.j2"})
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_JSON_HTML_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


@dataclass(frozen=True)
class _Moment:
    """A point in time as the page shows it: machine-readable and in the display zone."""

    iso: str
    display: str


def render(
    notice: PageNotice, *, ports: Sequence[int], zone: ZoneInfo, base_image: str
) -> BuildContext:
    """The build context for ``notice``: nginx on every port in ``ports`` serving the page.

    Times are shown in the notice's own zone, or in ``zone`` if it has none.
    """
    checked_ports = _checked_ports(ports)
    _check_notice(notice)
    shown = resolve(notice.display_zone, default=zone, start=notice.start, end=notice.end)
    if not _IMAGE_REFERENCE.fullmatch(base_image):
        raise InvalidInput(f"base image {base_image!r} is not an image reference (repo:tag)")
    retry_after = rules.http_date(notice.end)
    nginx_conf = render_nginx_conf(
        ports=checked_ports, retry_after=retry_after, docroot=IMAGE_DOCROOT, rundir=IMAGE_RUNDIR
    )
    dockerfile = _template("Dockerfile.j2").render(
        notice_id=notice.notice_id,
        base_image=base_image,
        ports=checked_ports,
        docroot=IMAGE_DOCROOT,
        script_file=SCRIPT_FILE,
    )
    files = {
        "Dockerfile": dockerfile.encode(),
        rules.HTML_FILE: _render_html(notice, zone=shown),
        rules.JSON_FILE: _render_json(notice, retry_after=retry_after),
        "nginx.conf": nginx_conf.encode(),
        SCRIPT_FILE: SCRIPT_BYTES,
    }
    return BuildContext(files=MappingProxyType(files), ports=checked_ports)


def render_nginx_conf(
    *,
    ports: Sequence[int],
    retry_after: str,
    docroot: str,
    rundir: str,
    bypass_dir: str = bypass.INCLUDE_DIR,
) -> str:
    """A complete nginx main config answering every request with the page, 503.

    It includes ``bypass_dir``/*.conf, where a page Pod with a bypass mounts its Secret
    (``bypass``); without one the directory is empty and nothing changes. Tests run the same
    text with a plain nginx process (own ``docroot``, ``rundir`` and ``bypass_dir``).
    """
    checked_ports = _checked_ports(ports)
    if not _HTTP_DATE.fullmatch(retry_after):
        raise InvalidInput(f"Retry-After {retry_after!r} is not an HTTP date")
    for name, path in (("docroot", docroot), ("rundir", rundir), ("bypass_dir", bypass_dir)):
        if not _SAFE_PATH.fullmatch(path):
            raise InvalidInput(
                f"{name} {path!r} must be an absolute path of letters, digits and ._/+-"
            )
    return _template("nginx.conf.j2").render(
        ports=checked_ports,
        docroot=docroot.rstrip("/") or "/",
        rundir=rundir.rstrip("/") or "/",
        bypass_dir=bypass_dir.rstrip("/") or "/",
        bypass_cookie=bypass.COOKIE,
        accept_rules=rules.ACCEPT_RULES,
        default_file=rules.HTML_FILE,
        page_headers=rules.page_headers(retry_after=retry_after),
        health_headers=rules.health_headers(),
        script_file=SCRIPT_FILE,
        script_type=SCRIPT_TYPE,
        script_headers=rules.script_headers(),
        health_path=rules.HEALTH_PATH,
        health_body=rules.HEALTH_BODY,
        html_file=rules.HTML_FILE,
        json_file=rules.JSON_FILE,
        status=rules.MAINTENANCE_STATUS,
    )


def _render_html(notice: PageNotice, *, zone: DisplayZone) -> bytes:
    other = next(lang for lang in SUPPORTED_LANGS if lang != notice.lang)
    html = _template("page.html.j2").render(
        title=notice.title,
        reason=notice.reason,
        primary=TEXTS[notice.lang],
        secondary=TEXTS[other],
        start=_moment(notice.start, zone=zone),
        end=_moment(notice.end, zone=zone),
        zone_name=zone.label,
        script_src="/" + SCRIPT_FILE,
    )
    return html.encode()


def _render_json(notice: PageNotice, *, retry_after: str) -> bytes:
    document = {
        "status": "maintenance",
        "title": notice.title,
        "reason": notice.reason,
        "start": _iso_utc(notice.start),
        "end": _iso_utc(notice.end),
        "retry_after": retry_after,
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    # Only string contents can hold these characters, so the result stays valid JSON; escaped,
    # it stays inert even if a client sniffs it as HTML or pastes it into a <script>.
    for raw, escaped in _JSON_HTML_ESCAPES:
        text = text.replace(raw, escaped)
    return (text + "\n").encode()


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _moment(moment: datetime, *, zone: DisplayZone) -> _Moment:
    local = moment.astimezone(zone.tz)
    return _Moment(iso=_iso_utc(moment), display=local.strftime("%Y-%m-%d %H:%M (%Z)"))


def _checked_ports(ports: Sequence[int]) -> tuple[int, ...]:
    if isinstance(ports, str | bytes) or not ports:
        raise InvalidInput("a page needs at least one port to listen on")
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidInput(f"port {port!r} is not a TCP port (1..65535)")
    return tuple(sorted(set(ports)))


def _check_notice(notice: PageNotice) -> None:
    if notice.lang not in SUPPORTED_LANGS:
        raise InvalidInput(
            f"language {notice.lang!r} has no page texts; use one of {', '.join(SUPPORTED_LANGS)}"
        )
    if not notice.title.strip():
        raise InvalidInput("the page needs a title")
    for name, moment in (("start", notice.start), ("end", notice.end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidInput(f"{name} {moment.isoformat()} has no time zone; give an offset")
    if notice.end <= notice.start:
        raise InvalidInput(
            f"end {notice.end.isoformat()} must be after start {notice.start.isoformat()}"
        )


def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def _autoescape(name: str | None) -> bool:
    # Escaping is the default; only the templates known to be plain text opt out.
    return name not in _PLAIN_TEXT_TEMPLATES


def _nginx_string(value: object) -> str:
    """``value`` as a double-quoted nginx string; ``$`` would be read as a variable."""
    text = str(value)
    if any(char in text for char in '"\\$\r'):
        raise InvalidInput(f"{text!r} cannot be written into nginx.conf as a string")
    return '"' + text.replace("\n", "\\n") + '"'


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("maint.page", "templates"),
        autoescape=_autoescape,  # noqa: S701 - on for all but the two plain-text templates
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["nginx_string"] = _nginx_string
    return environment
