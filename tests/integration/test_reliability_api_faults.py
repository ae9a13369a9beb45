"""API faults: a proxy in front of the real API server answers 500s and 409s, answers slowly and
breaks watches, and a real ``maint run`` still completes the window on time. Retries of one
API call are bounded, with exponential backoff and full jitter; a wait whose watch keeps
breaking backs off instead of hammering the API server; a selector patch whose answer was lost
is retried, fails its own ``test`` and is recognised as done (not as bad input).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maint import cluster, naming, switch
from maint.cluster import calls
from maint.errors import ClusterUnavailable, StepTimeout
from maint.notices import ServiceRef, TargetState
from tests.support.faults import ApiProxy, Exchange, Fault, is_create, is_plain_request, is_watch
from tests.support.processes import wait_until
from tests.support.window import APP_LABELS, make_app

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]


@pytest.fixture
def proxy(control_plane) -> Iterator[ApiProxy]:
    with ApiProxy(
        upstream=control_plane.server,
        ca_file=control_plane.ca_file,
        token=control_plane.token,
        seed=20261128,
    ) as running:
        yield running


@pytest.fixture
def stage_kubeconfig(proxy, tmp_path) -> Path:
    """The ``maint`` processes reach the API server through the fault-injecting proxy."""
    return proxy.kubeconfig(tmp_path / "kubeconfig-proxy")


def _mutating(exchange: Exchange) -> bool:
    return exchange.mutating


def test_window_completes_through_500s_conflicts_slow_answers_and_broken_watches(stage, proxy):
    # First matching rule wins. Creates are told "already exists" after they did exist (the
    # answer a retried create gets); mutations fail before or after they took effect; reads
    # fail or are slow; watches break mid-stream or end early.
    proxy.inject(Fault.error(409, after_apply=True), when=is_create, limit=2)
    proxy.inject(Fault.error(500), when=_mutating, probability=0.2)
    proxy.inject(Fault.error(500, after_apply=True), when=_mutating, probability=0.2)
    proxy.inject(Fault.error(409, after_apply=True), when=is_create, probability=0.4)
    proxy.inject(Fault.error(500), when=is_plain_request, probability=0.1)
    proxy.inject(Fault.delay(0.6), when=is_plain_request, probability=0.2)
    proxy.inject(Fault.cut_watch(after_events=0), when=is_watch, limit=2)
    proxy.inject(Fault.end_watch(after_events=0), when=is_watch, limit=2)
    proxy.inject(Fault.cut_watch(after_events=1), when=is_watch, probability=0.3)
    proxy.inject(Fault.end_watch(after_events=0), when=is_watch, probability=0.2)
    proxy.inject(Fault.delay(0.5), when=is_watch, probability=0.2)

    notice = stage.add(start_in=10, length=6)
    stage.run()
    grace = timedelta(seconds=stage.values()["restore_grace"])
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state.terminal,
        timeout=60,
        what=f"the window to finish\n{stage.logs()}",
        interval=0.3,
    )
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED, stage.logs()
    assert target.actual_end is not None and target.actual_end <= notice.end + grace
    assert stage.restored()
    assert stage.settled_leftovers(notice.id) == []
    assert stage.image_deleted(notice.id)

    injected = proxy.audit.faults()
    kinds = {e.fault.split(" ")[0] for e in injected}
    assert {"500", "409", "delay", "cut", "end"} <= kinds, sorted(kinds)
    counts = {kind: sum(e.fault.startswith(kind) for e in injected) for kind in sorted(kinds)}
    print(f"{len(injected)} faults in {len(proxy.audit.all())} API requests: {counts}")


def test_one_api_call_is_retried_a_bounded_number_of_times_with_backoff_and_jitter(
    proxy, namespace, tmp_path, monkeypatch
):
    proxy.inject(Fault.error(500), when=lambda e: e.path.endswith("/services/missing"))
    api = cluster.connect(kubeconfig=str(proxy.kubeconfig(tmp_path / "kubeconfig")))
    pauses: list[tuple[float, float]] = []  # (cap, chosen delay)

    class Recording:
        @staticmethod
        def uniform(low: float, high: float) -> float:
            chosen = random_uniform(low, high)
            pauses.append((high, chosen))
            return chosen

    import random

    random_uniform = random.Random(7).uniform
    monkeypatch.setattr(calls, "random", Recording)
    try:
        for _ in range(3):
            with pytest.raises(ClusterUnavailable):
                cluster.get_service(api, namespace=namespace, name="missing")
    finally:
        api.close()

    attempts = [e for e in proxy.audit.all() if e.path.endswith("/services/missing")]
    assert len(attempts) == 3 * calls.ATTEMPTS  # bounded: 4 tries per call, then an error
    caps = [cap for cap, _ in pauses]
    base = calls.BASE_DELAY
    assert caps == [base, 2 * base, 4 * base] * 3  # exponential backoff between tries
    delays = [chosen for _, chosen in pauses]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # full jitter: no two replicas retry in lockstep
    for call_attempts, call_pauses in zip(
        (attempts[i : i + 4] for i in range(0, len(attempts), 4)),
        (pauses[i : i + 3] for i in range(0, len(pauses), 3)),
        strict=True,
    ):
        pairs = zip(call_attempts, call_attempts[1:], call_pauses, strict=False)
        for earlier, later, (_, chosen) in pairs:
            gap = later.started - (earlier.finished or earlier.started)
            assert chosen - 0.05 <= gap <= chosen + 0.5


def test_a_wait_whose_watch_keeps_breaking_backs_off_instead_of_spinning(
    proxy, k8s, kubelet, namespace, tmp_path
):
    from kubernetes.client import CoreV1Api

    pod = {
        "metadata": {"name": "never-ready"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]},
    }
    kubelet.never_ready.add("never-ready")
    CoreV1Api(k8s).create_namespaced_pod(namespace, pod)
    proxy.inject(Fault.cut_watch(after_events=1), when=is_watch)
    api = cluster.connect(kubeconfig=str(proxy.kubeconfig(tmp_path / "kubeconfig")))
    started = time.monotonic()
    try:
        with pytest.raises(StepTimeout):
            cluster.wait_pod(
                api,
                namespace=namespace,
                name="never-ready",
                done=lambda p: p.ready,
                timeout=4,
                what="a pod that never becomes Ready",
            )
    finally:
        api.close()
    elapsed = time.monotonic() - started
    watches = [e for e in proxy.audit.all() if e.watch]
    assert elapsed < 8
    # Every stream broke after one event; re-watching at once would mean hundreds of requests.
    assert 2 <= len(watches) <= 20, f"{len(watches)} watch requests in {elapsed:.1f}s"
    print(f"{len(watches)} watches in {elapsed:.1f}s, each cut after its first event")


def _patch(exchange: Exchange) -> bool:
    return exchange.method == "PATCH"


def test_a_selector_patch_whose_answer_was_lost_is_found_done_on_retry(
    proxy, k8s, namespace, tmp_path
):
    make_app(k8s, namespace)
    api = cluster.connect(kubeconfig=str(proxy.kubeconfig(tmp_path / "kubeconfig")))
    ref = ServiceRef(namespace=namespace, name="web")
    name = "maint-1-web-abcde-0123abcd"
    page = naming.page_selector(name=name, keys=APP_LABELS)
    try:
        # The switch is applied, the answer is a 500: the retry's `test` op fails (422).
        proxy.inject(Fault.error(500, after_apply=True), when=_patch, limit=1)
        switched = switch.switch(
            api,
            ref=ref,
            page=page | {naming.PAGE_LABEL: name},
            notice_id=1,
            restore_by=datetime.now(UTC) + timedelta(hours=1),
        )
        assert switched.already and switched.original == APP_LABELS
        assert cluster.get_service(api, namespace=namespace, name="web").selector == page

        proxy.inject(Fault.error(500, after_apply=True), when=_patch, limit=1)
        restored = switch.restore(api, ref=ref, page=page, original=APP_LABELS)
        assert restored.outcome is switch.RestoreOutcome.ALREADY
        service = cluster.get_service(api, namespace=namespace, name="web")
        assert service.selector == APP_LABELS
        assert not any(key.startswith("maint.io/") for key in service.annotations)
    finally:
        api.close()
    statuses = [e.status for e in proxy.audit.all() if e.method == "PATCH"]
    assert statuses[:2] == [500, 422], statuses  # lost answer, then the failed `test`
