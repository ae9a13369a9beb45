"""``maint status`` as a check command, from its own process as ``kubectl exec`` runs it:
exit 0 while all is well, 1 when a target FAILED or no forced-restore sweep completed for more
than twice the poll interval (read from the database, written by every ``maint run``)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from prometheus_client.parser import text_string_to_metric_families

from maint.notices import Event, Notice, NoticeStore, TargetState, new_notice
from maint.runner.status import status
from tests.support.controlplane import free_port
from tests.support.processes import FAST_SETTINGS, Stage, maint, maint_env, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

POLL = float(FAST_SETTINGS["poll_interval"])


@pytest.fixture
def stage_database_url(database_url: str) -> str:
    return database_url


def _status(stage: Stage) -> tuple[int, dict[str, Any]]:
    done = maint("status", "-o", "json", env=stage.env())
    return done.returncode, json.loads(done.stdout)


def test_status_is_well_while_maint_runs_and_fails_once_its_sweep_stopped(stage):
    notice = stage.add(start_in=600, length=60)
    code, report = _status(stage)
    assert code == 1 and "no forced-restore sweep has ever completed" in report["problems"][0]

    run = stage.run("maint")
    wait_until(lambda: _status(stage)[0] == 0, timeout=30, what=f"status ok\n{run.tail()}")
    code, report = _status(stage)
    assert code == 0 and report["ok"] and report["problems"] == []
    assert report["sweep"]["age_seconds"] <= 2 * POLL
    assert report["sweep"]["stale_after_seconds"] == 2 * POLL
    [window] = report["windows"]
    assert window["id"] == notice.id and window["targets"][0]["state"] == "SCHEDULED"
    assert window["targets"][0]["last_error"] is None

    run.kill()
    time.sleep(2 * POLL + 1)
    code, report = _status(stage)
    assert code == 1 and not report["ok"]
    [problem] = report["problems"]
    assert "forced-restore sweep last completed" in problem and "twice the poll interval" in problem


def _failures(port: int) -> float:
    """``maint_target_failures_total`` as ``/metrics`` of the process on ``port`` says."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "maint_target_failures_total":
                return float(sample.value)
    raise AssertionError("no maint_target_failures_total")


def test_status_fails_on_a_failed_target_and_says_why(stage):
    """...and the alert's counter moves from 0 to 1 (``MaintTargetFailed``: ``increase()``)."""
    port = free_port()
    notice = stage.add(start_in=5, length=6)
    run = stage.run("maint", health_port=port)
    wait_until(lambda: run.up(), timeout=30, what=f"maint run up\n{run.tail()}")
    wait_until(lambda: _reachable(port), timeout=15, what="/metrics")
    assert _failures(port) == 0
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.ACTIVE,
        timeout=60,
        what=f"the switch\n{run.tail()}",
    )
    CoreV1Api(stage.k8s).patch_namespaced_service(
        "web", stage.namespace, [{"op": "replace", "path": "/spec/selector", "value": {"x": "y"}}]
    )
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.FAILED,
        timeout=60,
        what=f"FAILED\n{run.tail()}",
    )
    assert _failures(port) == 1
    code, report = _status(stage)
    assert code == 1
    target = f"{stage.namespace}/web"
    [problem] = report["problems"]  # the sweep is fine: maint run still runs
    assert problem.startswith(f"notice {notice.id} {target} is FAILED")
    [window] = [w for w in report["windows"] if w["id"] == notice.id]
    last = window["targets"][0]["last_error"]
    assert (last["step"], last["outcome"]) == ("restore", "conflict")
    table = maint("status", env=stage.env())
    assert table.returncode == 1 and "is FAILED" in table.stderr and target in table.stdout


def _reachable(port: int) -> bool:
    try:
        _failures(port)
    except OSError:
        return False
    return True


def test_db_ping_answers_for_the_readiness_probe(stage):
    assert maint("db", "ping", env=stage.env()).returncode == 0
    broken = maint("db", "ping", env=stage.env(database_url="postgresql+psycopg://x@127.0.0.1:1/x"))
    assert broken.returncode == 1 and "database unavailable" in broken.stderr


# --- from the database alone: no cluster, no `maint run` -------------------------------------
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store(database_url: str) -> Iterator[NoticeStore]:
    s = NoticeStore(database_url)
    s.upgrade()
    s.sweeps.completed("replica-a")  # the sweep is well: only the targets can fail status
    try:
        yield s
    finally:
        s.close()


def _notice(store: NoticeStore, *, start: datetime, targets: list[str]) -> Notice:
    new = new_notice(
        title="t",
        reason="r",
        start=start.isoformat(),
        end=(start + timedelta(minutes=30)).isoformat(),
        targets=targets,
        lang="en",
        maintenance=bool(targets),
        now=start - timedelta(minutes=1),
        start_tolerance=timedelta(minutes=5),
    )
    return store.add(new, now=start - timedelta(minutes=1), due_at=None)


def _failed(store: NoticeStore, *, start: datetime) -> Notice:
    """A window of shop/web that FAILED at its end (restore conflict), ``start`` long ago."""
    notice = _notice(store, start=start, targets=["shop/web"])
    store.transition(
        notice.targets[0].id,
        expect={TargetState.SCHEDULED},
        to=TargetState.FAILED,
        due_at=None,
        record=Event(
            at=notice.end,
            notice_id=notice.id,
            target="shop/web",
            step="restore",
            outcome="conflict",
            detail="the selector was changed by someone else",
        ),
    )
    return notice


def _status_of(database_url: str) -> tuple[int, dict[str, Any]]:
    done = maint("status", "-o", "json", env=maint_env(database_url=database_url))
    return done.returncode, json.loads(done.stdout)


def test_a_failed_target_behind_201_newer_notices_still_fails_status(store, database_url):
    failed = _failed(store, start=NOW - timedelta(hours=6))
    for n in range(201):  # newer windows, all over (announcements that ended)
        _notice(store, start=NOW - timedelta(hours=5) + timedelta(seconds=n), targets=[])
    code, report = _status_of(database_url)
    assert code == 1, report
    [problem] = report["problems"]
    assert problem.startswith(f"notice {failed.id} shop/web is FAILED: the selector was changed")
    assert [w["id"] for w in report["windows"]] == [failed.id]


def test_a_failed_target_s_last_error_is_why_it_failed_not_a_webhook_or_silence_failure(store):
    failed = _failed(store, start=NOW - timedelta(hours=6))
    for step in ("notify", "silence"):  # after the FAILED, with the target set
        store.record(
            Event(
                at=failed.end + timedelta(seconds=1),
                notice_id=failed.id,
                target="shop/web",
                step=step,
                outcome="failed",
                detail=f"{step}: HTTP 500",
            )
        )
    report = status(store, now=NOW, poll_interval=60)
    [window] = report.windows
    last = window["targets"][0]["last_error"]
    assert (last["step"], last["outcome"]) == ("restore", "conflict")
    assert report.problems == [
        f"notice {failed.id} shop/web is FAILED: the selector was changed by someone else"
    ]
