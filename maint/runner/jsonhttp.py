"""One JSON request over the standard library: what webhooks and Alertmanager share.

Failures come out as two exceptions of this module, never urllib's: ``Refused`` when the
server answered with an error status (with the start of its answer), ``Unreachable`` when it
did not answer at all (refused, reset, timed out, TLS, a bad URL). Each caller turns them into
its own error and decides what of the URL may be shown: this module never puts the URL in a
message, as it may carry a token or credentials.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

ERROR_CHARS = 300  # of an error answer kept for the message: enough for the reason, not a page


class Refused(Exception):
    """An answer with an error status (4xx, 5xx)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"HTTP {code} {text}".strip())
        self.code = code
        self.text = text


class Unreachable(Exception):
    """No answer: refused, reset, timed out, TLS, or a URL urllib cannot use."""


def request(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str],
    timeout: float,
    limit: int = -1,
) -> bytes:
    """Send ``body`` (if any) as JSON; the answer's first ``limit`` bytes (-1: all of it)."""
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    # The scheme is http(s): Settings refuses any other webhook or Alertmanager URL.
    prepared = urllib.request.Request(  # noqa: S310
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as answer:  # noqa: S310
            raw: bytes = answer.read(limit)
            return raw
    except urllib.error.HTTPError as e:
        raise Refused(e.code, e.read(ERROR_CHARS).decode(errors="replace").strip()) from None
    except (OSError, ValueError) as e:  # refused, reset, timed out, TLS, bad URL
        raise Unreachable(str(getattr(e, "reason", None) or e)) from None
