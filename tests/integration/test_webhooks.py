"""Webhook notifications of a window's milestones: real ``maint run`` processes, the real
control plane, SQLite and PostgreSQL, and a real HTTP server on a loopback port as the webhook.

Each milestone is told exactly once per webhook: with one replica, with two, and with a replica
SIGKILLed while it was sending (its restart sends it once the lease has passed). Webhooks that
answer 500 or never answer do not move the switch or the restore. The URLs carry tokens, which
no log line shows, not even with ``-v``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from maint.notices import Event, NoticeStore, TargetState, new_notice
from maint.runner import notify
from maint.runner.notify import Notifier, lease_for
from maint.runner.transitions import PREPARE_MARGIN
from maint.runner.webhooks import Webhook
from maint.settings import Settings
from tests.support.kubelet import JobResult
from tests.support.outbox import deliveries
from tests.support.processes import MaintRun, Stage, launcher, wait_until
from tests.support.webhooks import Receiver, kinds, receiver_running
from tests.support.window import ON_POSTGRESQL

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

TOKEN = "xoxb-S3CRET-T0KEN"  # in a webhook's path and query: must never be logged
SLACK_TOKEN = "T0000/B0000/SLACKS3CRET"
#: The bound the window's timings must keep with dead webhooks: maint's own switch lag is
#: ~0.3 s p50, ~0.7 s p95 on this machine (bench/README.md); 2 s leaves room for the load.
LAG_BOUND = 2.0
_LAG = re.compile(r"\(([+-]\d+\.\d+)s from (start|end)\)")


@pytest.fixture
def stage_database_url(database_url: str) -> str:
    """Both databases: the outbox is SQL on each."""
    return database_url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiver_running() as r:
        yield r


@pytest.fixture
def window_settings(receiver: Receiver) -> dict[str, Any]:
    """The shared window tells the receiver."""
    return {"webhook_urls": _json_url(receiver)}


def _json_url(receiver: Receiver, path: str = "/hook") -> str:
    return receiver.url(f"{path}/{TOKEN}?token={TOKEN}")


def _slack_url(receiver: Receiver) -> str:
    return "slack+" + receiver.url(f"/services/{SLACK_TOKEN}")


def run_verbose(stage: Stage, name: str = "maint", **overrides: Any) -> MaintRun:
    """``maint -v run``: debug logging, to show that not even that prints a token."""
    log = stage.workdir / f"{name}-{len(stage.runs)}.log"
    run = MaintRun(stage.env(**overrides), log=log, name=name)
    run.process = launcher().spawn(["-v", "run"], env=run.env, stdout=log, stderr=log)
    stage.runs.append(run)
    return run


def _state(stage: Stage, notice_id: int) -> TargetState:
    return stage.notice(notice_id).targets[0].state


def _wait_state(stage: Stage, notice_id: int, state: TargetState, timeout: float = 60) -> None:
    wait_until(
        lambda: _state(stage, notice_id) is state,
        timeout=timeout,
        what=f"notice {notice_id} to be {state.value}\n{stage.logs()}",
        interval=0.2,
    )


def _lags(stage: Stage, notice_id: int) -> dict[str, float]:
    """Switch and restore lag as the event log tells them (seconds after start / end)."""
    found = {}
    for e in stage.events(notice_id):
        if (e.step, e.outcome) in (("switch", "ok"), ("restore", "ok")):
            m = _LAG.search(e.detail)
            assert m is not None, e.detail
            found[e.step] = float(m.group(1))
    return found


def _no_secret(text: str) -> None:
    for secret in (TOKEN, SLACK_TOKEN, "S3CRET"):
        assert secret not in text, f"a webhook token was logged: {secret}"


def test_each_milestone_is_told_once_to_each_webhook_in_its_format(stage, receiver):
    target = f"{stage.namespace}/web"
    notice = stage.add(start_in=6, length=4)
    run = run_verbose(
        stage, webhook_urls=f"{_json_url(receiver)}, {_slack_url(receiver)}", webhook_timeout=2
    )
    _wait_state(stage, notice.id, TargetState.COMPLETED)
    wait_until(
        lambda: len(receiver.delivered()) >= 4,
        timeout=20,
        what=f"four notifications\n{run.tail()}",
    )
    time.sleep(3)  # several polls of the outbox: nothing more may come

    generic = receiver.delivered("/hook")
    assert kinds(generic) == [("switched", target), ("restored", target)]
    switched, restored = (r.body for r in generic)
    stored = stage.notice(notice.id)
    assert switched["notice_id"] == notice.id and switched["title"] == "Planned maintenance"
    assert switched["state"] == "ACTIVE" and restored["state"] == "COMPLETED"
    assert switched["planned_start"] == notice.start.isoformat()
    assert restored["planned_end"] == notice.end.isoformat()
    assert switched["actual_start"] is not None and switched["error"] is None
    assert restored["actual_end"] == restored["at"]
    assert restored["actual_start"] == stored.targets[0].actual_start.isoformat()
    assert switched["delivery"] != restored["delivery"]

    slack = receiver.delivered("/services")
    assert len(slack) == 2 and all(set(r.body) == {"text"} for r in slack)
    assert "switched to the maintenance page" in slack[0].body["text"]
    assert "given back to the app" in slack[1].body["text"]
    assert target in slack[0].body["text"]

    assert all(sent for *_, sent in deliveries(stage.database_url, notice.id))
    assert len(receiver.all()) == 4, "a notification was attempted more than once"
    log = run.output()
    assert f"webhook http://127.0.0.1:{receiver.port} told switched" in log
    assert " DEBUG " in log  # -v was on
    _no_secret(log)


@pytest.mark.postgres
@ON_POSTGRESQL  # replicas share PostgreSQL; SQLite is for one replica
def test_two_replicas_tell_each_milestone_once(stage, receiver):
    target = f"{stage.namespace}/web"
    notice = stage.add(start_in=8, length=5)
    urls = f"{_json_url(receiver)} {_slack_url(receiver)}"
    runs = [run_verbose(stage, name, webhook_urls=urls) for name in ("a", "b")]
    _wait_state(stage, notice.id, TargetState.COMPLETED)
    wait_until(lambda: len(receiver.delivered()) >= 4, timeout=20, what="four notifications")
    time.sleep(4)  # both replicas poll the outbox every 2 s: a duplicate would come now
    assert kinds(receiver.delivered("/hook")) == [("switched", target), ("restored", target)]
    assert len(receiver.delivered("/services")) == 2
    assert len(receiver.all()) == 4
    assert all(r.alive() for r in runs)
    for r in runs:
        _no_secret(r.output())


def test_a_replica_killed_while_sending_leaves_the_notification_to_its_restart(stage, receiver):
    """The webhook holds the `switched` POST unanswered; the replica is SIGKILLed meanwhile.
    The notification stays leased to the dead replica until the lease passes, then the restarted
    process sends it: one delivery of each milestone."""
    target = f"{stage.namespace}/web"
    timeout = 2.0
    receiver.modes["/hook"] = "hang"
    notice = stage.add(start_in=6, length=30)
    first = stage.run("first", webhook_urls=_json_url(receiver), webhook_timeout=timeout)
    wait_until(lambda: receiver.all("/hook"), timeout=60, what=f"the switched POST\n{first.tail()}")
    killed_at = first.kill()
    receiver.modes["/hook"] = "ok"
    receiver.released.set()
    # (The target may still be READY: the event is told before the move to ACTIVE, and the
    # restart then records `switch already`, which queues nothing new.)
    second = stage.run("second", webhook_urls=_json_url(receiver), webhook_timeout=timeout)
    wait_until(
        lambda: receiver.delivered("/hook"),
        timeout=lease_for(timeout) + 20,
        what=f"the restarted replica to send it\n{second.tail()}",
    )
    [told] = receiver.delivered("/hook")
    assert (told.body["event"], told.body["target"]) == ("switched", target)
    # Not before the dead replica's lease ran out: it might still have been sending.
    assert told.at >= killed_at + lease_for(timeout) - 3 - timeout
    _wait_state(stage, notice.id, TargetState.COMPLETED, timeout=60)
    wait_until(lambda: len(receiver.delivered("/hook")) >= 2, timeout=20, what="restored told")
    time.sleep(3)
    assert kinds(receiver.delivered("/hook")) == [("switched", target), ("restored", target)]
    unanswered = [r for r in receiver.all("/hook") if r.answer != 200]
    assert [r.body["event"] for r in unanswered] == ["switched"]  # held, then the kill
    _no_secret(first.output() + second.output())


def test_dead_webhooks_never_delay_the_window(stage, receiver):
    """One webhook answers 500, one never answers; a third, healthy one still hears both
    milestones, and the switch and the restore keep their usual lag."""
    target = f"{stage.namespace}/web"
    receiver.modes = {"/dead": "fail", "/hang": "hang"}
    urls = " ".join(
        [_json_url(receiver, "/dead"), _json_url(receiver, "/hang"), _json_url(receiver)]
    )
    notice = stage.add(start_in=6, length=4)
    run = run_verbose(stage, webhook_urls=urls)  # the default 5 s timeout for the hanging one
    _wait_state(stage, notice.id, TargetState.COMPLETED)
    lags = _lags(stage, notice.id)
    assert 0 <= lags["switch"] <= LAG_BOUND, lags
    assert 0 <= lags["restore"] <= LAG_BOUND, lags
    wait_until(lambda: len(receiver.delivered("/hook")) >= 2, timeout=20, what="live webhook")
    assert kinds(receiver.delivered("/hook")) == [("switched", target), ("restored", target)]
    wait_until(
        lambda: len(receiver.all("/dead")) >= 4,
        timeout=30,
        what="the failing webhook to be retried",
    )
    assert receiver.all("/hang")
    # Told once per milestone and dead webhook, not once per try; only scheme and host shown.
    wait_until(
        lambda: len([e for e in stage.events(notice.id) if e.step == "notify"]) >= 4,
        timeout=30,
        what="notify failed events",
    )
    failed = [e for e in stage.events(notice.id) if (e.step, e.outcome) == ("notify", "failed")]
    assert len(failed) == 4, [e.detail for e in failed]
    assert any("HTTP 500" in e.detail for e in failed)
    assert any("timed out" in e.detail for e in failed), [e.detail for e in failed]
    for e in failed:
        _no_secret(e.detail)
    status = stage.app.status()
    assert status.notifications["pending"] >= 2
    _no_secret(run.output())


def test_a_foreign_selector_is_told_as_drift_and_failure_once_and_status_fails(stage, receiver):
    from kubernetes.client import CoreV1Api

    target = f"{stage.namespace}/web"
    # Long enough to be observed before the restore is armed (runner.reconcile.ARM_AHEAD, 10 s
    # before the end): the armed restore then finds the foreign selector and fails the target.
    notice = stage.add(start_in=5, length=40)
    stage.run("maint", webhook_urls=_json_url(receiver))
    _wait_state(stage, notice.id, TargetState.ACTIVE)
    CoreV1Api(stage.k8s).patch_namespaced_service(
        "web", stage.namespace, [{"op": "replace", "path": "/spec/selector", "value": {"x": "y"}}]
    )
    _wait_state(stage, notice.id, TargetState.FAILED, timeout=60)
    wait_until(
        lambda: len(receiver.delivered("/hook")) >= 3,
        timeout=20,
        what="three notifications, told: "
        f"{kinds(receiver.delivered('/hook'))}, events: "
        f"{[(e.step, e.outcome) for e in stage.events(notice.id)]}",
    )
    time.sleep(3)  # the drift is seen on every poll: it is told once per foreign selector
    told = receiver.delivered("/hook")
    assert kinds(told) == [("switched", target), ("drift", target), ("failed", target)]
    failed = told[2].body
    assert failed["state"] == "FAILED" and "not overwritten" in failed["error"]
    assert "{'x': 'y'}" in told[1].body["error"]

    report = stage.app.status()
    assert not report.ok
    assert any(f"notice {notice.id} {target} is FAILED" in p for p in report.problems)


def test_a_rolled_back_window_tells_its_failed_preparation_once_and_the_rollback(
    window, k8s, kubelet, receiver
):
    """A build that keeps failing: many `prepare retry` events, one `prepare-failed`
    notification; then the rollback, told with the reason."""
    kubelet.default_job_result = JobResult(succeeded=False, message="error building image")
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.advance(60)
    window.step()
    retries = [e for e in window.app.store.events(notice.id) if e.outcome == "retry"]
    assert len([e for e in retries if e.step == "prepare"]) >= 2
    window.clock.at(notice.start + PREPARE_MARGIN)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    wait_until(lambda: len(receiver.delivered()) >= 2, timeout=20, what="two notifications")
    time.sleep(2.5)
    window.close()
    target = f"{window.namespace}/web"
    told = receiver.delivered()
    assert kinds(told) == [("prepare-failed", target), ("rolled-back", target)]
    assert "error building image" in told[0].body["error"]
    assert told[1].body["state"] == "ROLLED_BACK" and told[1].body["error"]


def test_an_idle_sender_reads_the_outbox_only_when_woken_or_a_retry_is_due(
    database_url, receiver, monkeypatch
):
    """In this process, against the real database and a real HTTP receiver: no look at the
    outbox every few seconds while there is nothing to send (it was one claim per 2 s per
    webhook per replica)."""
    hook = Webhook.parse(receiver.url("/idle"))
    store = NoticeStore(database_url, routing=notify.routing([hook]))
    store.upgrade()
    claims: list[float] = []
    claim = store.outbox.claim

    def counted(**kwargs: Any) -> Any:
        claims.append(time.monotonic())
        return claim(**kwargs)

    monkeypatch.setattr(store.outbox, "claim", counted)
    settings = Settings(database_url=database_url, poll_interval=60, step_retry_delay=1)
    now = datetime.now(UTC)
    notifier = Notifier([hook], store=store, settings=settings, owner="a", clock=lambda: now)
    try:
        time.sleep(5)
        assert len(claims) == 1, "an idle sender looked at the outbox again without a reason"

        new = new_notice(
            title="t",
            reason="r",
            start=(now + timedelta(hours=1)).isoformat(),
            end=(now + timedelta(hours=2)).isoformat(),
            targets=["shop/web"],
            lang="en",
            maintenance=True,
            now=now,
            start_tolerance=timedelta(minutes=5),
        )
        notice = store.add(new, now=now, due_at=None)
        receiver.modes["/idle"] = "fail"
        switched = Event(
            at=now, notice_id=notice.id, target="shop/web", step="switch", outcome="ok", detail=""
        )
        store.record(switched)
        notifier(switched)  # woken: sent at once, and fails
        wait_until(lambda: receiver.all("/idle"), timeout=5, what="the first try")
        receiver.modes["/idle"] = "ok"
        # The retry is due in about a second (step_retry_delay): the sender wakes for it.
        wait_until(lambda: receiver.delivered("/idle"), timeout=5, what="the retry")
        assert len(receiver.all("/idle")) == 2
    finally:
        notifier.close()
        store.close()
