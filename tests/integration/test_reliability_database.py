"""Database loss: the Service stays switched while the database is gone, maint keeps trying,
and the forced restore still happens at ``end + grace`` from the Service's annotations alone.

A real ``maint run`` reaches PostgreSQL through a TCP proxy that the test turns into a refused
port or into a black hole (connections accepted, nothing answered: a hung server or a network
partition, the case where a client waits forever). ``maint restore --overdue``, the CronJob
form, needs no database at all and restores only Services whose deadline has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from sqlalchemy.engine import make_url

from maint import naming
from maint.notices import TargetState
from tests.support.faults import TcpProxy
from tests.support.processes import FAST_SETTINGS, Stage, maint, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

GRACE = 6.0
POLL = float(FAST_SETTINGS["poll_interval"])
NO_DATABASE = "postgresql+psycopg://nobody:nothing@127.0.0.1:9/none"


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    return {"restore_grace": GRACE}


@pytest.fixture
def database_proxy(postgres_url) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    proxy = TcpProxy(upstream_host=url.host or "127.0.0.1", upstream_port=url.port or 5432)
    with proxy:
        yield proxy


def _page_pods(stage: Stage) -> list[str]:
    pods = CoreV1Api(stage.k8s).list_namespaced_pod(
        stage.namespace, label_selector=f"{naming.MANAGED_BY}={naming.MANAGER}"
    )
    return [p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp]


def _active(stage: Stage, notice_id: int) -> Any:
    return wait_until(
        lambda: stage.notice(notice_id).targets[0].state is TargetState.ACTIVE,
        timeout=40,
        what=f"the window to be active\n{stage.logs()}",
        interval=0.2,
    )


@pytest.mark.parametrize("failure", ["refused", "hung"])
def test_without_its_database_maint_keeps_the_page_up_and_forces_the_restore_at_end_plus_grace(
    stage, database_proxy, failure, capsys
):
    via_proxy = (
        make_url(stage.database_url)
        .set(host="127.0.0.1", port=database_proxy.port)
        .render_as_string(hide_password=False)
    )
    notice = stage.add(start_in=6, length=4)
    run = stage.run("maint", database_url=via_proxy)
    _active(stage, notice.id)
    page = stage.selector()
    assert naming.is_page_selector(page, original={"app": "web"}) is not None

    if failure == "refused":
        database_proxy.refuse()
    else:
        database_proxy.blackhole()
    lost_at = time.time()
    deadline = (notice.end + timedelta(seconds=GRACE)).timestamp()
    # The end passes without the database: nothing may touch the Service before the deadline.
    while time.time() < deadline - 0.5:
        assert stage.selector() == page, "the Service was restored before end + grace"
        assert run.alive(), run.tail()
        time.sleep(0.25)
    wait_until(stage.restored, timeout=POLL + 10, what=f"the forced restore\n{run.tail()}")
    lag = time.time() - deadline
    assert lag <= POLL + 3, f"forced restore {lag:.1f}s after end + grace"
    wait_until(lambda: not _page_pods(stage), timeout=15, what="the page Pod to go")
    if failure == "refused":
        # maint kept trying the database on every pass (and said so), it did not give up.
        errors = run.output().count("database unavailable")
        assert errors >= (deadline - lost_at) / POLL / 2, run.tail()

    # The database is back: maint finishes the window from its records, as a forced restore.
    database_proxy.heal()
    try:
        wait_until(
            lambda: stage.notice(notice.id).targets[0].state.terminal,
            timeout=40,
            what="the window to finish",
            interval=0.3,
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{run.dump()}") from None
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED and target.forced, run.tail()
    steps = [(e.step, e.outcome) for e in stage.events(notice.id)]
    assert ("force-restore", "already") in steps and steps[-1] == ("complete", "ok")
    assert stage.settled_leftovers(notice.id) == []
    assert stage.image_deleted(notice.id)
    with capsys.disabled():
        print(f"\ndatabase {failure}: forced restore {lag:+.2f}s after end + grace")


def test_restore_overdue_needs_no_database_and_waits_for_the_deadline(stage):
    from maint import runner
    from maint.runner import overdue, reconcile

    # `maint run` (its sweep job) and `maint restore --overdue` (App.restore_overdue, which
    # imports it from maint.runner when called) call the one function.
    assert reconcile.restore_overdue is overdue.restore_overdue
    assert runner.restore_overdue is overdue.restore_overdue

    notice = stage.add(start_in=6, length=3)
    run = stage.run("maint")
    _active(stage, notice.id)
    page = stage.selector()
    run.kill()  # nothing left that could end the window

    env = stage.env(database_url=NO_DATABASE)
    early = maint("restore", "--overdue", env=env)
    assert early.returncode == 0, early.stderr
    assert f"{stage.namespace}/web" not in early.stdout  # not overdue yet: left alone
    assert stage.selector() == page

    deadline = (notice.end + timedelta(seconds=GRACE)).timestamp()
    time.sleep(max(0.0, deadline - time.time()))
    done = maint("restore", "--overdue", env=env, fork=False)  # as a CronJob runs it
    assert done.returncode == 0, done.stderr
    assert f"{stage.namespace}/web: restored" in done.stdout, done.stdout
    assert stage.restored()
    wait_until(lambda: not _page_pods(stage), timeout=15, what="the page Pod to go")
