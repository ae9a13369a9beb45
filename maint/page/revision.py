"""Which revision of a page a notice asks for: a hash of what the page says, not of its bytes.

Only the notice's content (title, reason, language, start, end, its own display zone if it
has one), the ports the page answers on and the base image it is built from go in. The
templates, the reload script, maint's version and display settings (MAINT_DISPLAY_TIMEZONE)
do not: an upgraded maint, or a runner with other settings, never rebuilds a live window's
page; an extended end (a new ``Retry-After``) or a changed zone does. A notice without a zone
of its own hashes exactly as before zones were kept, so its page is not rebuilt either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from maint.page.model import PageNotice


def revision(notice: PageNotice, *, ports: Sequence[int], base_image: str) -> str:
    """Eight hex digits that change exactly when the page's content changes."""
    content: dict[str, object] = {
        "title": notice.title,
        "reason": notice.reason,
        "lang": notice.lang,
        "start": notice.start.isoformat(),
        "end": notice.end.isoformat(),
        "ports": sorted(set(ports)),
        "base_image": base_image,
    }
    if notice.display_zone is not None:
        content["display_zone"] = notice.display_zone
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:8]
