"""What the page is rendered from and what rendering produces.

Plain frozen data, so the build side can put a ``BuildContext`` in a ConfigMap and the preview
server can serve it without knowing anything about notices, databases or Jinja2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from maint.page.script import SCRIPT_FILE

SUPPORTED_LANGS: tuple[str, ...] = ("ko", "en")
"""Languages the page has texts for; a notice's ``lang`` picks the primary one."""

CONTEXT_FILES: tuple[str, ...] = tuple(
    sorted(("Dockerfile", "index.html", "index.json", "nginx.conf", SCRIPT_FILE))
)
"""The files of every build context, in the order the tarball holds them."""


@dataclass(frozen=True)
class PageNotice:
    """The parts of a maintenance notice the page shows. Times are timezone-aware (UTC).

    ``display_zone``: the notice's own zone, an IANA name (``Asia/Seoul``) or a fixed offset
    (``+09:00``); None shows times in the renderer's default zone (MAINT_DISPLAY_TIMEZONE).
    """

    notice_id: int
    title: str
    reason: str
    lang: str
    start: datetime
    end: datetime
    display_zone: str | None = None


@dataclass(frozen=True)
class BuildContext:
    """The Kaniko build context: exactly the files named in ``CONTEXT_FILES``.

    ``ports`` are the container ports nginx listens on (sorted, no duplicates); the
    maintenance Pod declares the same ones.
    """

    files: Mapping[str, bytes]
    ports: tuple[int, ...]
