"""Webhooks, purely: which format a URL gets, what is shown of it, the two bodies, which events
become notifications, and the setting."""

from __future__ import annotations

import http.server
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from maint.notices import Event
from maint.runner.notify import KINDS, STATES, route
from maint.runner.webhooks import Message, Webhook, WebhookFailed, generic_body, slack_body
from maint.settings import Settings
from tests.support.serving import in_thread

AT = datetime(2026, 12, 5, 10, 0, 0, 250000, tzinfo=UTC)


def _event(step: str, outcome: str, detail: str = "") -> Event:
    return Event(AT, 7, "shop/web", step, outcome, detail)


@pytest.mark.parametrize(
    ("configured", "fmt", "url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T0/B0/SECRET",
            "slack",
            "https://hooks.slack.com/services/T0/B0/SECRET",
            "https://hooks.slack.com",
        ),
        (
            "slack+https://chat.example:8065/hooks/SECRET",
            "slack",
            "https://chat.example:8065/hooks/SECRET",
            "https://chat.example:8065",
        ),
        ("https://ops.example/maint?token=SECRET", "json", None, "https://ops.example"),
        ("json+https://hooks.slack.com/x/SECRET", "json", "https://hooks.slack.com/x/SECRET", None),
        ("http://user:SECRET@10.0.0.1/hook", "json", None, "http://10.0.0.1"),
    ],
)
def test_a_url_picks_its_format_and_shows_only_scheme_and_host(configured, fmt, url, shown):
    hook = Webhook.parse(configured)
    assert hook.format == fmt
    assert hook.url == (url or configured)
    if shown:
        assert hook.shown == shown
    assert "SECRET" not in hook.shown and "SECRET" not in hook.key
    assert hook.key == Webhook.parse(configured).key != Webhook.parse(configured + "x").key
    assert "SECRET" not in hook.redact(f"404 no route for {hook.url} ({configured})")


def _message(kind: str, error: str | None = None) -> Message:
    return Message(
        kind=kind,
        notice_id=7,
        title="DB <upgrade> & more",
        target="shop/web",
        state="ACTIVE",
        planned_start=AT,
        planned_end=AT.replace(hour=11),
        actual_start=AT,
        actual_end=None,
        at=AT,
        error=error,
        detail="selector {'app': 'web'} -> page p (+0.250s from start)",
        delivery="maint-41-switched",
    )


def test_the_generic_body_has_every_field_a_receiver_needs():
    body = generic_body(_message("switched"))
    assert body == {
        "source": "maint",
        "delivery": "maint-41-switched",
        "event": "switched",
        "notice_id": 7,
        "title": "DB <upgrade> & more",
        "target": "shop/web",
        "state": "ACTIVE",
        "planned_start": "2026-12-05T10:00:00.250000+00:00",
        "planned_end": "2026-12-05T11:00:00.250000+00:00",
        "actual_start": "2026-12-05T10:00:00.250000+00:00",
        "actual_end": None,
        "at": "2026-12-05T10:00:00.250000+00:00",
        "error": None,
        "detail": "selector {'app': 'web'} -> page p (+0.250s from start)",
        "summary": "maint: shop/web was switched to the maintenance page "
        "(notice 7: DB <upgrade> & more)",
    }


def test_the_slack_body_is_text_with_mrkdwn_escaped_and_the_error_quoted():
    body = slack_body(_message("failed", error="selector was changed to {'x': 'y'}"))
    assert set(body) == {"text"}
    text = body["text"]
    assert "*shop/web* FAILED" in text
    assert "DB &lt;upgrade&gt; &amp; more" in text and "<upgrade>" not in text
    assert "planned 2026-12-05 10:00 to 2026-12-05 11:00 UTC" in text
    assert "\n> selector was changed to {'x': 'y'}" in text


def test_every_kind_of_notification_says_the_state_it_leaves_its_target_in():
    assert set(KINDS.values()) == set(STATES)


def test_milestones_become_notifications_once_per_target_and_drift_per_selector():
    assert route(_event("switch", "ok")) == ("switched", "")
    assert route(_event("switch", "already")) == ("switched", "")
    assert route(_event("force-restore", "ok")) == ("restored", "")
    assert route(_event("restore", "conflict")) == ("failed", "")
    assert route(_event("prepare", "retry")) == ("prepare-failed", "")
    assert route(_event("rollback", "ok")) == ("rolled-back", "")
    for no in [("switch", "retry"), ("endpoints", "ok"), ("notify", "failed"), ("cancel", "ok")]:
        assert route(_event(*no)) is None
    a = route(_event("drift", "foreign", "selector is {'x': 'y'}, not the page's {...}; left"))
    b = route(_event("drift", "foreign", "selector is {'x': 'y'}, not a page of this window"))
    c = route(_event("drift", "foreign", "selector is {'x': 'z'}, not the page's {...}; left"))
    assert a is not None and a == b and a != c and a[0] == "drift"


def test_webhook_urls_are_split_kept_secret_and_checked_without_echoing_them():
    settings = Settings(
        webhook_urls="https://a.example/T0KEN,\n slack+https://b.example/x  json+http://c/y"
    )
    assert settings.webhooks() == [
        "https://a.example/T0KEN",
        "slack+https://b.example/x",
        "json+http://c/y",
    ]
    assert "T0KEN" not in repr(settings) and "T0KEN" not in str(settings)
    assert Settings(webhook_urls='["https://a/1", "https://b/2"]').webhooks() == [
        "https://a/1",
        "https://b/2",
    ]
    assert Settings().webhooks() == []
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_urls="https://ok.example/ ftp://T0KEN@files.example/")
    assert "URL number 2" in str(refused.value) and "T0KEN" not in str(refused.value)


@pytest.mark.parametrize(
    ("urls", "why"),
    [
        ("https://hooks.example:T0KEN/x", "URL number 1 has a port that is not a number"),
        ("https://ok.example/ https:///T0KEN", "URL number 2 has no host"),
        ("slack+ftp://T0KEN@files.example/", "URL number 1 does not start with http(s)://"),
    ],
)
def test_a_webhook_url_without_host_or_with_a_bad_port_is_refused_without_echoing_it(
    urls: str, why: str
):
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_urls=urls)
    assert why in str(refused.value) and "T0KEN" not in str(refused.value)


class _Echo500(http.server.BaseHTTPRequestHandler):
    """Answers every POST 500 with the path it was sent to, as some error pages do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = f"no hook at {self.path}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def echo_500() -> Iterator[int]:
    with in_thread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo500)) as server:
        yield server.server_address[1]


def test_a_failed_post_says_the_status_and_host_and_never_the_token(echo_500):
    hook = Webhook.parse(f"http://127.0.0.1:{echo_500}/hooks/T0KEN-secret")
    with pytest.raises(WebhookFailed) as failed:
        hook.post({"text": "x"}, timeout=5)
    said = str(failed.value)
    assert said.startswith(f"http://127.0.0.1:{echo_500}: HTTP 500 no hook at")
    assert "T0KEN" not in said


def test_an_unreachable_webhook_is_a_webhook_failure_naming_the_host_only():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = Webhook.parse(f"http://127.0.0.1:{port}/hooks/T0KEN-secret")
    with pytest.raises(WebhookFailed) as failed:
        hook.post({"text": "x"}, timeout=5)
    assert str(failed.value).startswith(f"http://127.0.0.1:{port}: ")
    assert "T0KEN" not in str(failed.value)
