"""The metric definitions: names, labels, buckets, and what each recorder counts."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from maint.cluster import calls
from maint.notices import Event
from maint.runner.metrics import Metrics, event_lag


def families(metrics: Metrics) -> dict[str, object]:
    text = metrics.exposition().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def event(step: str, outcome: str, detail: str) -> Event:
    return Event(datetime.now(UTC), 1, "shop/web", step, outcome, detail)


def test_every_family_is_exposed_with_its_type():
    found = families(Metrics())
    kinds = {name: f.type for name, f in found.items()}  # type: ignore[attr-defined]
    assert kinds["maint_targets"] == "gauge"
    assert kinds["maint_switch_lag_seconds"] == "histogram"
    assert kinds["maint_restore_lag_seconds"] == "histogram"
    assert kinds["maint_step_duration_seconds"] == "histogram"
    assert kinds["maint_api_errors"] == "counter"
    assert kinds["maint_sweep_last_success_timestamp_seconds"] == "gauge"
    assert kinds["maint_claims_held"] == "gauge"


def test_two_registries_do_not_share_counts():
    a, b = Metrics(), Metrics()
    a.observe(event("switch", "ok", "selector {} -> page x (+0.250s from start)"))
    assert sample(a, "maint_switch_lag_seconds_count") == 1
    assert sample(b, "maint_switch_lag_seconds_count") == 0


def test_switch_and_restore_lag_come_from_the_event_detail():
    m = Metrics()
    m.observe(event("switch", "ok", "selector a -> page p (+0.120s from start)"))
    m.observe(event("restore", "ok", "selector a (+1.500s from end)"))
    m.observe(event("prepare", "ok", "(+9.000s from start)"))  # not a lagged milestone
    assert sample(m, "maint_switch_lag_seconds_sum") == 0.12
    assert sample(m, "maint_restore_lag_seconds_bucket", le="2.5") == 1
    assert sample(m, "maint_restore_lag_seconds_bucket", le="1.0") == 0
    assert event_lag(event("switch", "ok", "no lag here")) is None


def test_targets_gauge_has_every_state_and_its_count_time():
    m = Metrics()
    assert sample(m, "maint_targets", state="FAILED") == 0
    assert sample(m, "maint_targets_updated_timestamp_seconds") == 0
    m.count_targets({"ACTIVE": 2}, at=1234.0)
    assert sample(m, "maint_targets_updated_timestamp_seconds") == 1234.0
    assert sample(m, "maint_targets", state="ACTIVE") == 2
    assert sample(m, "maint_targets", state="FAILED") == 0


def test_api_errors_are_counted_through_the_cluster_listener():
    m = Metrics()
    remove = calls.on_api_error(m.api_error)
    try:
        calls._failed("get Service shop/web", 500)
        calls._failed("get Service shop/web", 500)
        calls._failed("patch Service shop/web", 0)
    finally:
        remove()
    calls._failed("get Service shop/web", 500)  # removed: not counted
    assert sample(m, "maint_api_errors_total", verb="get", code="500") == 2
    assert sample(m, "maint_api_errors_total", verb="patch", code="0") == 1


def test_step_duration_sweep_and_claims():
    m = Metrics()
    m.step_done("switch", "ok", 0.03)
    m.sweep_completed(at=99.0)
    m.claims_held.set_function(lambda: 3)
    assert sample(m, "maint_step_duration_seconds_count", step="switch", outcome="ok") == 1
    assert sample(m, "maint_sweep_last_success_timestamp_seconds") == 99.0
    assert sample(m, "maint_claims_held") == 3


def test_each_sweep_is_handed_on_and_a_failing_listener_never_raises_into_the_sweep():
    heard: list[None] = []
    Metrics(on_sweep=lambda: heard.append(None)).sweep_completed()
    assert heard == [None]

    def broken() -> None:
        raise RuntimeError("database gone")

    m = Metrics(on_sweep=broken)
    m.sweep_completed(at=7.0)
    assert sample(m, "maint_sweep_last_success_timestamp_seconds") == 7.0


def test_metrics_are_served_over_http_next_to_healthz():
    import urllib.request

    from maint.runner.health import Heartbeat, serve_health

    m = Metrics()
    m.sweep_completed(at=42.0)
    server = serve_health(Heartbeat(stale_after=60), port=0, host="127.0.0.1", metrics=m.exposition)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
            assert r.read().startswith(b"ok")
    finally:
        server.shutdown()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "maint_sweep_last_success_timestamp_seconds" in names
    assert "maint_sweep_last_success_timestamp_seconds 42.0" in text


def test_a_target_that_fails_is_counted_from_zero_and_notifications_by_outcome():
    """``increase()`` needs the 0 before the first failure: the counter exists from the start;
    only the event that precedes FAILED counts, not a restore."""
    m = Metrics()
    assert sample(m, "maint_target_failures_total") == 0
    assert sample(m, "maint_notifications_total", outcome="gave_up") == 0
    m.observe(event("restore", "conflict", "selector was changed"))
    m.observe(event("restore", "ok", "selector {} (+0.1s from end)"))
    m.notified("sent")
    assert sample(m, "maint_target_failures_total") == 1
    assert sample(m, "maint_switch_lag_seconds_count") == 0
    assert sample(m, "maint_restore_lag_seconds_count") == 1
    assert sample(m, "maint_notifications_total", outcome="sent") == 1
