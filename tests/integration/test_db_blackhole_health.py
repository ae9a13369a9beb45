"""A black-holed PostgreSQL while a window is overdue (issue 10, item 3).

A real ``maint run`` reaches PostgreSQL through a TCP proxy that the test turns into a black
hole (connections accepted and kept, no byte through: a network partition, not a refusal)
while a window is active. For longer than the liveness probe's staleness limit:

- every reconcile pass fails fast as "database unavailable" (it does not hang on the socket);
- the forced-restore sweep, on its own job and without the database, puts the Service back at
  ``end + grace`` from its annotations;
- ``/healthz``, polled over HTTP the whole time, answers 200 every time: a database outage
  never gets maint restarted (the README's promise).

Then the network heals and maint finishes the window from its records, as a forced restore.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from maint.notices import TargetState
from tests.support.faults import TcpProxy
from tests.support.processes import FAST_SETTINGS, MaintRun, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

GRACE = 6.0
POLL = float(FAST_SETTINGS["poll_interval"])
STALE_AFTER = max(60.0, 4 * POLL)  # maint.runner.scheduler: when /healthz would turn 503
PASS_BOUND = 20.0  # seconds: a pass against a black hole fails within (settings.py: ~15 s)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ERROR maint\.runner\.reconcile: ")


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    return {"restore_grace": GRACE}


@pytest.fixture
def database_proxy(postgres_url) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    with TcpProxy(upstream_host=url.host or "127.0.0.1", upstream_port=url.port or 5432) as p:
        yield p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HealthPoller:
    """GET /healthz every half second from a thread; every answer (or error) with its time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def get(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            return f"{response.status} {response.read().decode().strip()}"
        except OSError as e:
            return f"error {type(e).__name__}: {e}"
        finally:
            conn.close()

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join(5)
        return self.answers

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.answers.append((time.time(), self.get()))


def _pass_failures(run: MaintRun, *, after: float) -> list[float]:
    """When each reconcile pass logged "database unavailable" (wall clock), after ``after``."""
    times = []
    for line in run.output().splitlines():
        found = LOG_TIME.match(line)
        if found and "database unavailable" in line:
            at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                times.append(at)
    return times


def test_a_black_holed_database_fails_passes_fast_restores_on_time_and_stays_healthy(
    stage, database_proxy, capsys
):
    via_proxy = (
        make_url(stage.database_url)
        .set(host="127.0.0.1", port=database_proxy.port)
        .render_as_string(hide_password=False)
    )
    port = _free_port()
    notice = stage.add(start_in=6, length=4)
    run = stage.run("maint", database_url=via_proxy, health_port=port)
    health = HealthPoller(port)
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.ACTIVE,
        timeout=40,
        what=f"the window to be active\n{stage.logs()}",
        interval=0.2,
    )
    assert health.get().startswith("200 ok"), health.get()
    page = stage.selector()

    database_proxy.blackhole()
    lost_at = time.time()
    health.start()
    try:
        deadline = (notice.end + timedelta(seconds=GRACE)).timestamp()
        while time.time() < deadline - 0.5:
            assert stage.selector() == page, "the Service was restored before end + grace"
            time.sleep(0.25)
        wait_until(stage.restored, timeout=POLL + 10, what=f"the forced restore\n{run.tail()}")
        lag = time.time() - deadline
        # Stay black-holed past the point where hung passes would have made /healthz stale.
        hold_until = lost_at + STALE_AFTER + PASS_BOUND
        while time.time() < hold_until:
            assert run.alive(), run.tail()
            time.sleep(0.5)
    finally:
        answers = health.stop()
    held = time.time() - lost_at

    assert lag <= POLL + 3, f"forced restore {lag:.1f}s after end + grace"
    bad = [(round(at - lost_at, 1), got) for at, got in answers if not got.startswith("200")]
    assert not bad, f"/healthz not 200 while the database was black-holed: {bad[:5]}"
    assert len(answers) >= held / 0.5 / 2, f"only {len(answers)} probes in {held:.0f}s"
    failures = _pass_failures(run, after=lost_at)
    gaps = [b - a for a, b in zip([lost_at, *failures], failures, strict=False)]
    assert len(failures) >= held / PASS_BOUND - 1, (failures, run.tail())
    assert max(gaps) <= PASS_BOUND + POLL, f"a pass took {max(gaps):.1f}s to fail\n{run.tail()}"

    database_proxy.heal()
    try:
        wait_until(
            lambda: stage.notice(notice.id).targets[0].state.terminal,
            timeout=60,
            what="the window to finish",
            interval=0.3,
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{run.dump()}") from None
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED and target.forced, run.tail()
    assert health.get().startswith("200 ok")
    with capsys.disabled():
        print(
            f"\nblack-holed database for {held:.0f}s: forced restore {lag:+.2f}s after"
            f" end + grace; {len(failures)} passes failed, slowest in {max(gaps):.1f}s;"
            f" {len(answers)} /healthz probes, all 200"
        )
