"""Webhooks: which format a URL gets, the two message bodies, and one POST (``jsonhttp``).

A URL may carry a token (Slack's is the path itself): it is used only to send. What maint
logs, records or prints is ``Webhook.shown``, the scheme and host. The format comes from the
URL: ``slack+https://…`` or a ``hooks.slack.com`` host gets Slack's ``{"text": …}`` (which
Mattermost and Rocket.Chat take too); ``json+https://…`` and every other URL get maint's JSON.
Bodies are built from plain values (``Message``), so they are pure and tested as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from maint.errors import MaintError
from maint.notices.outbox import channel_key
from maint.runner import jsonhttp
from maint.settings import webhook_target

Format = Literal["slack", "json"]
SLACK_HOSTS = frozenset({"hooks.slack.com"})
USER_AGENT = "maint-webhook/1"


class WebhookFailed(MaintError):
    """The webhook did not answer 2xx in time: try again later. The message names the webhook
    by scheme and host only."""


@dataclass(frozen=True)
class Webhook:
    url: str  # where to POST (the format prefix removed): secret, never shown
    format: Format
    key: str  # the outbox's channel: a digest of the URL as configured
    shown: str  # scheme://host[:port], the only form that is logged

    @classmethod
    def parse(cls, configured: str) -> Webhook:
        chosen, url = webhook_target(configured)  # checked by Settings already
        parts = urlsplit(url)
        host = parts.hostname or ""
        shown = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
        fmt: Format = (
            "slack" if chosen == "slack" or (not chosen and host in SLACK_HOSTS) else "json"
        )
        return cls(url=url, format=fmt, key=channel_key(configured), shown=shown)

    def post(self, body: dict[str, Any], *, timeout: float) -> None:
        """POST ``body`` as JSON; ``WebhookFailed`` unless it answers 2xx within ``timeout``."""
        try:
            jsonhttp.request(
                "POST",
                self.url,
                body=body,
                headers={"User-Agent": USER_AGENT},
                timeout=timeout,
                limit=1024,
            )
        except jsonhttp.Refused as e:
            text = self.redact(e.text[:200])
            raise WebhookFailed(f"{self.shown}: HTTP {e.code} {text}".strip()) from None
        except jsonhttp.Unreachable as e:
            raise WebhookFailed(f"{self.shown}: {self.redact(str(e))}") from None

    def redact(self, text: str) -> str:
        """``text`` with anything of the URL beyond scheme and host replaced (an error page
        may echo the path, which may be the token)."""
        parts = urlsplit(self.url)
        for secret in (self.url, parts.path, parts.query, parts.username, parts.password):
            if secret and len(secret) > 1:
                text = text.replace(secret, "…")
        return text


@dataclass(frozen=True)
class Message:
    """What a notification tells, as plain values (``notify.Notifier`` fills it in)."""

    kind: str  # prepare-failed, switched, restored, rolled-back, failed, drift
    notice_id: int
    title: str
    target: str
    state: str  # the target's state this milestone leaves it in
    planned_start: datetime
    planned_end: datetime
    actual_start: datetime | None
    actual_end: datetime | None
    at: datetime  # when maint recorded the milestone
    error: str | None  # why, for a failure, a rollback or a drift
    detail: str  # the event log's line
    delivery: str  # the same for every retry of this notification: a receiver may dedupe on it


#: The sentence for each kind, after the target ("shop/web was switched to the page").
SAYS = {
    "prepare-failed": "could not be prepared (retrying)",
    "switched": "was switched to the maintenance page",
    "restored": "was given back to the app",
    "rolled-back": "was rolled back before the switch (the Service was not touched)",
    "failed": "FAILED: maint could not give it back",
    "drift": "drifted: someone else changed its selector during the window",
}
_ICONS = {
    "switched": ":construction:",
    "restored": ":white_check_mark:",
    "prepare-failed": ":warning:",
    "rolled-back": ":warning:",
    "failed": ":rotating_light:",
    "drift": ":warning:",
}


def generic_body(m: Message) -> dict[str, Any]:
    return {
        "source": "maint",
        "delivery": m.delivery,
        "event": m.kind,
        "notice_id": m.notice_id,
        "title": m.title,
        "target": m.target,
        "state": m.state,
        "planned_start": m.planned_start.isoformat(),
        "planned_end": m.planned_end.isoformat(),
        "actual_start": m.actual_start.isoformat() if m.actual_start else None,
        "actual_end": m.actual_end.isoformat() if m.actual_end else None,
        "at": m.at.isoformat(),
        "error": m.error,
        "detail": m.detail,
        "summary": summary(m),
    }


def slack_body(m: Message) -> dict[str, Any]:
    lines = [
        f"{_ICONS.get(m.kind, ':information_source:')} *{_slack(m.target)}* "
        f"{SAYS.get(m.kind, m.kind)}",
        f'notice {m.notice_id} "{_slack(m.title)}", planned {_hm(m.planned_start)} to '
        f"{_hm(m.planned_end)} UTC, state {m.state}",
    ]
    actual = [
        f"{what} {_hm(t, seconds=True)}"
        for what, t in (("switched", m.actual_start), ("restored", m.actual_end))
        if t is not None
    ]
    if actual:
        lines.append("actual: " + ", ".join(actual))
    if m.error:
        lines.append(f"> {_slack(m.error)}")
    return {"text": "\n".join(lines)}


def body(fmt: Format, m: Message) -> dict[str, Any]:
    return slack_body(m) if fmt == "slack" else generic_body(m)


def summary(m: Message) -> str:
    return f"maint: {m.target} {SAYS.get(m.kind, m.kind)} (notice {m.notice_id}: {m.title})"


def _hm(moment: datetime, *, seconds: bool = False) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _slack(text: str) -> str:
    """Slack's mrkdwn escapes: the three characters it gives a meaning."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
