"""Time: offsets, daylight saving and late wake-ups.

Start and end typed with any UTC offset are the same instants and are stored as UTC (checked in
the raw columns of SQLite and PostgreSQL). The page shows them in the display time zone, right
across daylight-saving changes, including the hour that happens twice. A scheduler that wakes
up late, even after ``end + grace``, still ends the window: in-process with the settable clock,
and a real ``maint run`` that is frozen (SIGSTOP) across its end.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from sqlalchemy import create_engine

from maint.app import App, notice_json
from maint.notices import Notice, TargetState
from maint.settings import Settings
from tests.support.processes import wait_until
from tests.support.window import (
    APP_LABELS,
    ON_POSTGRESQL,
)

# --- offsets ----------------------------------------------------------------------------------

SAME_START = [
    "2030-12-01T02:00:00+09:00",  # Seoul
    "2030-11-30T12:30:00-04:30",  # an odd negative offset
    "2030-11-30T17:00:00Z",
    "2030-11-30T22:45:00+05:45",  # Kathmandu
    "2030-11-30T17:00:00.000+00:00",
]
UTC_START = datetime(2030, 11, 30, 17, 0)


def test_start_and_end_given_with_any_offset_are_stored_in_utc(database_url):
    app = App(settings=Settings(database_url=database_url), say=lambda _line: None)
    app.store.upgrade()
    try:
        ids = []
        for start in SAME_START:
            end = datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(hours=2)
            notice = app.add_notice(
                title="Offsets",
                reason="stored in UTC",
                start=start,
                end=end.isoformat(),
                targets=[],
                lang="en",
                maintenance=False,
            )
            ids.append(notice.id)
            shown = notice_json(app.store.get(notice.id), now=datetime.now(UTC))
            assert shown["start"] == "2030-11-30T17:00:00+00:00"
            assert shown["end"] == "2030-11-30T19:00:00+00:00"
        engine = create_engine(database_url)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT start_at, end_at FROM notices").all()
        engine.dispose()
    finally:
        app.close()
    assert len(rows) == len(ids)
    for start_at, end_at in rows:
        # SQLite hands back text, PostgreSQL a naive timestamp: both the UTC wall time.
        if isinstance(start_at, str):
            start_at, end_at = datetime.fromisoformat(start_at), datetime.fromisoformat(end_at)
        assert (start_at, end_at) == (UTC_START, UTC_START + timedelta(hours=2))


# --- daylight saving --------------------------------------------------------------------------


def _notice(start: datetime, end: datetime) -> Notice:
    now = datetime.now(UTC)
    return Notice(
        id=7,
        title="DST",
        reason="clocks change tonight",
        lang="en",
        maintenance=True,
        start=start,
        end=end,
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize(
    ("zone", "start", "end", "shown_start", "shown_end"),
    [
        # Berlin springs forward at 01:00 UTC: 02:00 CET becomes 03:00 CEST.
        (
            "Europe/Berlin",
            datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
            "2026-03-29 01:30 (CET)",
            "2026-03-29 03:30 (CEST)",
        ),
        # New York falls back at 06:00 UTC: 01:30 happens twice, told apart by the zone.
        (
            "America/New_York",
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
            "2026-11-01 01:30 (EDT)",
            "2026-11-01 01:30 (EST)",
        ),
        # Seoul has no daylight saving: the control case.
        (
            "Asia/Seoul",
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
            "2026-11-01 14:30 (KST)",
            "2026-11-01 15:30 (KST)",
        ),
    ],
)
def test_the_page_shows_local_times_across_daylight_saving_changes(
    zone, start, end, shown_start, shown_end
):
    app = App(settings=Settings(display_timezone=zone))
    context = app.render_preview(_notice(start, end))
    html = context.files["index.html"].decode()
    assert shown_start in html and shown_end in html
    assert zone in html
    # What machines read stays UTC, whatever the display zone.
    data = json.loads(context.files["index.json"])
    assert data["end"] == end.isoformat()
    assert data["retry_after"] == end.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert f'Retry-After "{data["retry_after"]}"' in context.files["nginx.conf"].decode()


# --- late wake-ups ----------------------------------------------------------------------------


@pytest.mark.k8s
@pytest.mark.registry
@pytest.mark.postgres
@pytest.mark.parametrize("wakes", ["after end", "after end + grace"])
@ON_POSTGRESQL
def test_a_scheduler_that_wakes_late_still_performs_the_end(window, k8s, wakes):
    notice = window.add(start_in=600, length=600)
    window.step()
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    late = timedelta(hours=3) if wakes == "after end + grace" else timedelta(seconds=30)
    window.clock.at(notice.end + late)  # nothing ran in between: the process slept
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED
    assert target.forced is (wakes == "after end + grace")
    assert CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == (
        APP_LABELS
    )


@pytest.mark.k8s
@pytest.mark.registry
@pytest.mark.postgres
@ON_POSTGRESQL
def test_a_window_whose_whole_time_was_slept_through_is_rolled_back_untouched(window, k8s):
    notice = window.add(start_in=600, length=600)
    window.clock.at(notice.end + timedelta(minutes=1))
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ROLLED_BACK
    steps = [e.step for e in window.app.store.events(notice.id)]
    assert "switch" not in steps and "prepare" not in steps
    assert CoreV1Api(k8s).read_namespaced_service("web", window.namespace).spec.selector == (
        APP_LABELS
    )


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    return {"restore_grace": 4}


@pytest.mark.k8s
@pytest.mark.registry
@pytest.mark.postgres
def test_a_real_maint_run_frozen_across_its_end_restores_as_soon_as_it_wakes(stage, capsys):
    notice = stage.add(start_in=5, length=3)
    run = stage.run("maint")
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.ACTIVE,
        timeout=40,
        what=f"the window to be active\n{run.tail()}",
        interval=0.2,
    )
    run.freeze()  # a stalled node, a long GC pause, a suspended VM
    wake = notice.end + timedelta(seconds=stage.values()["restore_grace"] + 2)
    time.sleep(max(0.0, wake.timestamp() - time.time()))
    assert not stage.restored()  # nobody else ends it
    run.thaw()
    woke = time.time()
    wait_until(stage.restored, timeout=15, what=f"the late end\n{run.tail()}", interval=0.05)
    took = time.time() - woke
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.COMPLETED,
        timeout=20,
        what="the window to complete",
    )
    assert took < 3, f"restored {took:.1f}s after waking up"
    assert stage.settled_leftovers(notice.id) == []
    with capsys.disabled():
        print(
            f"\nlate wake-up: maint run frozen past end + grace restored {took:.2f}s after waking"
        )
