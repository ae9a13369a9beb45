"""`/metrics` of a real `maint run` process through a whole window on the real control plane."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maint.notices import TargetState
from tests.support.processes import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def stage_database_url(database_url: str) -> str:
    """Both databases: the metrics come from the runner, whichever store it uses."""
    return database_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    """Every sample as ``name{label="v",...}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def test_a_whole_window_shows_in_the_metrics(stage) -> None:
    port = _free_port()
    notice = stage.add(start_in=6, length=4)
    run = stage.run("maint", health_port=port)
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state is TargetState.COMPLETED,
        timeout=60,
        what=f"the window to complete\n{run.tail()}",
        interval=0.2,
    )
    first = _scrape(port)
    assert first["maint_switch_lag_seconds_count"] == 1
    assert first["maint_restore_lag_seconds_count"] == 1
    wait_until(
        lambda: _scrape(port).get('maint_targets{state="COMPLETED"}') == 1,
        timeout=15,
        what="maint_targets to count the COMPLETED target",
        interval=0.5,
    )
    swept = first["maint_sweep_last_success_timestamp_seconds"]
    assert swept > time.time() - 30
    wait_until(
        lambda: _scrape(port)["maint_sweep_last_success_timestamp_seconds"] > swept,
        timeout=15,
        what="the sweep timestamp to move",
        interval=0.5,
    )
    steps = [k for k in first if k.startswith("maint_step_duration_seconds_count")]
    assert any('step="switch"' in k for k in steps), steps
