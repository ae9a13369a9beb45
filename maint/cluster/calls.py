"""Every API call goes through ``call``: bounded retries with jitter, errors made our own.

404 becomes ``NotFound``, 409 ``Conflict``, 401/403 ``Forbidden``, 422/400 ``InvalidInput``;
5xx, 429 and transport errors are retried a few times, then become ``ClusterUnavailable``.
Retrying writes is safe because every write maint makes is idempotent or guarded (create
tolerates 409, delete tolerates 404, selector patches carry a JSON Patch ``test``).

Every call is bounded in time: each attempt carries a (connect, read) timeout (the caller's
``_request_timeout``, else ``REQUEST_TIMEOUT``), and all attempts and pauses together fit in a
budget of connect + read seconds (or ``budget``): an API server that accepts connections and
then answers nothing (a black hole) fails the call within that budget, not four timeouts later.

Each failed attempt is told to the listeners of ``on_api_error`` (the runner's metrics) as its
verb (the first word of ``what``) and HTTP code (0: no answer); a listener never fails a call.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from maint.cluster.connection import REQUEST_TIMEOUT
from maint.errors import (
    ClusterUnavailable,
    Conflict,
    Forbidden,
    InvalidInput,
    MaintError,
    NotFound,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 4
BASE_DELAY = 0.2  # seconds; doubles each attempt, with full jitter
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
MIN_ATTEMPT = 0.5  # seconds: with less of the budget left, no further attempt is made

Timeout = tuple[float, float]
ErrorListener = Callable[[str, int], None]  # (verb, HTTP code or 0)
_listeners: list[ErrorListener] = []


def on_api_error(listener: ErrorListener) -> Callable[[], None]:
    """Call ``listener(verb, code)`` after every failed attempt; returns its remover."""
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove


def _failed(what: str, code: int) -> None:
    verb = what.split(" ", 1)[0] or "unknown"
    for listener in list(_listeners):
        try:
            listener(verb, code)
        except Exception:
            log.exception("API error listener failed")


def call(
    what: str, fn: Callable[..., T], *args: Any, budget: float | None = None, **kwargs: Any
) -> T:
    """Run one API call; ``what`` names it in errors (e.g. ``"get Service shop/web"``).

    ``_request_timeout`` (connect, read) bounds each attempt; ``budget`` (default: connect +
    read) bounds the whole call, retries and pauses included.
    """
    timeout: Timeout = kwargs.pop("_request_timeout", REQUEST_TIMEOUT)
    give_up = time.monotonic() + (budget if budget is not None else sum(timeout))
    for attempt in range(1, ATTEMPTS + 1):
        left = give_up - time.monotonic()
        try:
            return fn(*args, _request_timeout=capped(timeout, left), **kwargs)
        except ApiException as e:
            _failed(what, e.status or 0)
            if e.status in RETRIED_STATUS and _again(what, attempt, give_up, f"HTTP {e.status}"):
                continue
            raise translate(what, e) from e
        except (TransportError, OSError) as e:
            _failed(what, 0)
            if _again(what, attempt, give_up, type(e).__name__):
                continue
            raise ClusterUnavailable(f"{what}: API server unreachable ({e})") from e
    raise AssertionError("unreachable")


def capped(timeout: Timeout, left: float) -> Timeout:
    """``timeout`` with neither part longer than ``left`` seconds (but at least MIN_ATTEMPT)."""
    left = max(MIN_ATTEMPT, left)
    return (min(timeout[0], left), min(timeout[1], left))


def translate(what: str, e: ApiException) -> MaintError:
    message = f"{what}: {_reason(e)}"
    status = e.status or 0
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (401, 403):
        return Forbidden(message + " (check maint's RBAC, see manifests/base/rbac.yaml)")
    if status in (400, 422):
        if "test failed" in message or "testing value" in message:
            return Conflict(message)
        return InvalidInput(message)
    if status >= 500 and ("test failed" in message or "testing value" in message):
        return Conflict(message)
    return ClusterUnavailable(message)


def is_patch_test_failure(e: MaintError) -> bool:
    return isinstance(e, Conflict) and ("test failed" in str(e) or "testing value" in str(e))


def _reason(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "{}")
        return f"HTTP {e.status}: {body.get('message') or e.reason}"
    except (ValueError, AttributeError):
        return f"HTTP {e.status}: {e.reason}"


def _again(what: str, attempt: int, give_up: float, why: str) -> bool:
    """Pause before another attempt, if one is left and the budget allows it."""
    if attempt >= ATTEMPTS:
        return False
    delay = random.uniform(0, BASE_DELAY * 2 ** (attempt - 1))
    if give_up - time.monotonic() - delay < MIN_ATTEMPT:
        log.warning("%s failed (%s); its time budget is spent", what, why)
        return False
    log.warning("%s failed (%s); retry %d/%d in %.2fs", what, why, attempt, ATTEMPTS - 1, delay)
    time.sleep(delay)
    return True
