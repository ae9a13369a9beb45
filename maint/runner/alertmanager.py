"""The few calls of Alertmanager's v2 API that silences need (``jsonhttp``).

``post`` creates a silence, or updates it when the body carries an ``id`` (Alertmanager
answers with the id it kept: a new one when the change could not be made in place). ``get``
answers None on 404. ``expire`` treats 404 as done (nothing left to silence). Every other
failure (refused, timed out, 5xx, an answer that is not JSON) is ``AlertmanagerUnavailable``,
which the caller retries. The base URL is never put in a message: it may carry credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maint.errors import MaintError
from maint.runner import jsonhttp


class AlertmanagerUnavailable(MaintError):
    """Alertmanager did not answer, or answered with an error: try again later."""


@dataclass(frozen=True)
class Silence:
    """A silence as Alertmanager reports it."""

    id: str
    matchers: tuple[tuple[str, str], ...]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    state: str  # active, pending or expired


class Alertmanager:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def post(
        self,
        *,
        matchers: tuple[tuple[str, str], ...],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        silence_id: str | None = None,
    ) -> str:
        """Create (or, with ``silence_id``, update) a silence; the id Alertmanager kept."""
        body: dict[str, Any] = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in matchers
            ],
            "startsAt": _timestamp(starts_at),
            "endsAt": _timestamp(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        if silence_id is not None:
            body["id"] = silence_id
        answer = self._call("POST", "/api/v2/silences", body)
        if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
            raise AlertmanagerUnavailable(f"unexpected answer to a new silence: {answer!r:.200}")
        kept: str = answer["silenceID"]
        return kept

    def get(self, silence_id: str) -> Silence | None:
        try:
            return _silence(self._call("GET", f"/api/v2/silence/{silence_id}"))
        except _NotFound:
            return None

    def silences(self) -> list[Silence]:
        answer = self._call("GET", "/api/v2/silences")
        if not isinstance(answer, list):
            raise AlertmanagerUnavailable(f"unexpected list of silences: {answer!r:.200}")
        return [_silence(s) for s in answer]

    def expire(self, silence_id: str) -> bool:
        """Expire it now; False when Alertmanager no longer knows it."""
        try:
            self._call("DELETE", f"/api/v2/silence/{silence_id}")
        except _NotFound:
            return False
        return True

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            raw = jsonhttp.request(
                method,
                self.base_url + path,
                body=body,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except jsonhttp.Refused as e:
            if e.code == 404:
                raise _NotFound(e.text) from None
            raise AlertmanagerUnavailable(f"{method} {path}: HTTP {e.code} {e.text}") from None
        except jsonhttp.Unreachable as e:
            raise AlertmanagerUnavailable(f"{method} {path}: {e}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise AlertmanagerUnavailable(f"{method} {path}: answer is not JSON ({e})") from None


class _NotFound(Exception):
    pass


def _timestamp(moment: datetime) -> str:
    # Milliseconds, as Alertmanager answers: a start posted back unchanged then compares equal.
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _silence(raw: Any) -> Silence:
    try:
        return Silence(
            id=raw["id"],
            matchers=tuple((m["name"], m["value"]) for m in raw["matchers"]),
            starts_at=raw["startsAt"],
            ends_at=raw["endsAt"],
            created_by=raw.get("createdBy", ""),
            comment=raw.get("comment", ""),
            state=raw["status"]["state"],
        )
    except (KeyError, TypeError) as e:
        raise AlertmanagerUnavailable(f"unexpected silence: {raw!r:.200}") from e
