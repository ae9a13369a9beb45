"""Every wait on the API server is bounded (issue 10, item 2).

A proxy in front of the real API server black-holes requests: it stops forwarding without
closing the connection, as an API server failover or an evicted conntrack entry does. Then:

- a 5 s wait for a Pod, a Job or EndpointSlices whose watch went silent after its first event
  ends within its bound (the wait's timeout plus ``WATCH_SLACK``) as ``ClusterUnavailable``,
  not ``StepTimeout`` (which would roll a window back) and never as a hang;
- a plain GET that is never answered fails within its request timeout (connect + read),
  retries included;
- the client's pooled sockets carry TCP keepalive and ``TCP_USER_TIMEOUT``;
- a real ``maint run`` whose first Job and Pod watches and first EndpointSlice list are
  black-holed (its watch cache's, ``maint.cluster.caching``) completes the window normally (no
  rollback, no forced restore): a wait that reaches its deadline reads directly, and the cache
  opens its stream again; a step that could not read is retried as ``ClusterUnavailable``.

Every wait runs in a thread the test only waits for a bounded time, so an unbounded wait
fails the test instead of hanging it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from kubernetes.client import BatchV1Api, CoreV1Api

from maint import cluster
from maint.cluster import caching, calls, connection, watching
from maint.errors import ClusterUnavailable, MaintError
from maint.notices import TargetState
from tests.support.faults import ApiProxy, Exchange, Fault
from tests.support.processes import wait_until
from tests.support.window import make_app

pytestmark = [pytest.mark.k8s]

WAIT = 5.0  # seconds: the waits under test
MARGIN = 1.5  # seconds on top of a bound: thread start, the proxy, two loaded cores


@pytest.fixture
def proxy(control_plane) -> Iterator[ApiProxy]:
    with ApiProxy(
        upstream=control_plane.server,
        ca_file=control_plane.ca_file,
        token=control_plane.token,
        seed=20261202,
    ) as running:
        yield running


@pytest.fixture
def api(proxy, tmp_path) -> Iterator[cluster.Cluster]:
    made = cluster.connect(kubeconfig=str(proxy.kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield made
    finally:
        made.close()


def _watch_of(resource: str) -> Callable[[Exchange], bool]:
    """A step's wait, not the runner's long-lived watch of every page Pod (``runner.pages``,
    selected by the page label and bounded by its own chunk)."""
    return lambda e: e.watch and e.resource == resource and not e.page_watch


def _bounded(fn: Callable[[], Any], *, limit: float) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a daemon thread; (what it raised, seconds it took). Fails the test if it
    is still running after ``limit`` seconds (the proxy's stop then releases it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - began
    assert not thread.is_alive(), f"still waiting after {elapsed:.1f}s (bound {limit:.1f}s)"
    return outcome[0], elapsed


def _pod_wait(api: cluster.Cluster, namespace: str, kubelet: Any, k8s: Any) -> Callable[[], Any]:
    kubelet.never_ready.add("never-ready")
    CoreV1Api(k8s).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "never-ready"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]},
        },
    )
    return lambda: cluster.wait_pod(
        api,
        namespace=namespace,
        name="never-ready",
        done=lambda p: p.ready,
        timeout=WAIT,
        what="a Pod that never becomes Ready",
    )


def _job_wait(api: cluster.Cluster, namespace: str, kubelet: Any, k8s: Any) -> Callable[[], Any]:
    kubelet.held_jobs.add("held")
    BatchV1Api(k8s).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "held"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "registry.example/build:1"}],
                    }
                },
            },
        },
    )
    return lambda: cluster.wait_job(api, namespace=namespace, name="held", timeout=WAIT)


def _endpoints_wait(
    api: cluster.Cluster, namespace: str, kubelet: Any, k8s: Any
) -> Callable[[], Any]:
    make_app(k8s, namespace)
    wait_until(
        lambda: cluster.ready_endpoint_pods(api, namespace=namespace, service="web"),
        timeout=30,
        what="the app's EndpointSlice",
    )
    return lambda: cluster.wait_endpoints(
        api,
        namespace=namespace,
        service="web",
        done=lambda pods: "absent-pod" in pods,
        timeout=WAIT,
        what="a Pod that is never listed",
    )


@pytest.mark.parametrize(
    ("resource", "arrange"),
    [("pods", _pod_wait), ("jobs", _job_wait), ("endpointslices", _endpoints_wait)],
)
def test_a_wait_through_a_black_holed_watch_fails_within_its_bound_as_unavailable(
    proxy, api, namespace, kubelet, k8s, resource, arrange
):
    wait = arrange(api, namespace, kubelet, k8s)
    # The stream's headers and first event (the object as it is) get through, then silence.
    proxy.inject(Fault.blackhole(after_events=1), when=_watch_of(resource))
    bound = WAIT + watching.WATCH_SLACK
    error, elapsed = _bounded(wait, limit=bound + MARGIN + 10)

    assert isinstance(error, ClusterUnavailable), repr(error)
    assert "stopped answering" in str(error), str(error)
    assert elapsed < bound + MARGIN, f"{elapsed:.1f}s for a {WAIT:.0f}s wait"
    watches = [e for e in proxy.audit.all() if e.watch and e.resource == resource]
    assert watches and all(e.fault.startswith("blackhole") for e in watches)
    # maint hung up on the silent stream itself (the proxy never closed it); the proxy's
    # thread notices the hang-up a moment after maint's wait has returned.
    settle = time.monotonic() + 5
    while not all(e.finished is not None for e in watches) and time.monotonic() < settle:
        time.sleep(0.05)
    assert all(e.finished is not None for e in watches), [str(e) for e in watches]
    print(f"\n{resource}: {WAIT:.0f}s wait through a black hole ended after {elapsed:.2f}s")


def test_a_quiet_but_healthy_watch_is_not_mistaken_for_a_dead_one(
    proxy, api, namespace, kubelet, k8s
):
    """No event for a whole wait longer than a plain request's read timeout (the Pod never
    changes): each watch reads past its chunk, the server ends it, and the wait ends as a
    plain ``StepTimeout``, not as "stopped answering"."""
    from maint.errors import StepTimeout

    wait = connection.READ_TIMEOUT + 5
    kubelet.never_ready.add("quiet")
    CoreV1Api(k8s).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "quiet"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]},
        },
    )
    error, elapsed = _bounded(
        lambda: cluster.wait_pod(
            api, namespace=namespace, name="quiet", done=lambda p: p.ready, timeout=wait, what="x"
        ),
        limit=wait + watching.WATCH_SLACK + MARGIN + 10,
    )
    assert isinstance(error, StepTimeout), repr(error)
    assert elapsed < wait + watching.WATCH_SLACK + MARGIN
    watches = [e for e in proxy.audit.all() if e.watch and e.resource == "pods"]
    # The proxy notes the end of a stream a moment after forwarding it.
    wait_until(lambda: all(e.finished for e in watches), timeout=5, what="the streams' ends")
    for exchange in watches:  # each ran its whole chunk: the server ended it, not maint
        chunk = float(parse_qs(exchange.query)["timeoutSeconds"][0])
        assert exchange.finished is not None
        assert exchange.finished - exchange.started >= chunk - 0.5, (str(exchange), chunk)


def test_a_plain_get_through_a_black_hole_fails_within_its_request_timeout(
    proxy, api, namespace, k8s
):
    make_app(k8s, namespace)
    proxy.inject(Fault.blackhole(), when=lambda e: not e.watch and e.name == "web")
    budget = sum(connection.REQUEST_TIMEOUT)
    error, elapsed = _bounded(
        lambda: cluster.get_service(api, namespace=namespace, name="web"),
        limit=budget + MARGIN + 30,
    )

    assert isinstance(error, ClusterUnavailable), repr(error)
    assert elapsed < budget + MARGIN, f"{elapsed:.1f}s for a {budget:.0f}s budget"
    attempts = [e for e in proxy.audit.all() if e.name == "web"]
    assert 1 <= len(attempts) <= calls.ATTEMPTS
    first = attempts[0]
    assert first.finished is not None
    # The first attempt waited its whole read timeout (no early give-up), no longer.
    held = first.finished - first.started
    assert connection.READ_TIMEOUT - 0.5 <= held < connection.READ_TIMEOUT + MARGIN, held
    print(f"\nblack-holed GET: {len(attempts)} attempt(s), failed after {elapsed:.2f}s")


def test_a_black_holed_write_fails_within_its_bound_too(proxy, api, namespace):
    proxy.inject(Fault.blackhole(), when=lambda e: e.method == "POST")
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "never-answered", "namespace": namespace},
        "data": {},
    }
    budget = sum(connection.REQUEST_TIMEOUT)
    error, elapsed = _bounded(lambda: cluster.create(api, manifest), limit=budget + MARGIN + 30)
    assert isinstance(error, MaintError), repr(error)
    assert elapsed < budget + MARGIN


def test_the_clients_sockets_keep_alive_and_time_out_unacknowledged_data(control_plane):
    api = cluster.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        cluster.list_services(api, namespace="default")
        pools = api.api.rest_client.pool_manager.pools
        keys = pools.keys()  # the container refuses plain iteration
        sockets = [
            conn.sock
            for key in keys
            for conn in list(pools[key].pool.queue)
            if conn is not None and conn.sock is not None
        ]
        assert sockets, "no pooled connection after a request"
        for sock in sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            tcp = socket.IPPROTO_TCP
            assert sock.getsockopt(tcp, socket.TCP_KEEPIDLE) == connection.KEEPALIVE_IDLE
            assert sock.getsockopt(tcp, socket.TCP_KEEPINTVL) == connection.KEEPALIVE_INTERVAL
            assert sock.getsockopt(tcp, socket.TCP_KEEPCNT) == connection.KEEPALIVE_COUNT
            assert sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT) == connection.USER_TIMEOUT_MS
            assert sock.getsockopt(tcp, socket.TCP_NODELAY) == 1
    finally:
        api.close()


# --- the runner retries -------------------------------------------------------------------


@pytest.fixture
def stage_kubeconfig(proxy, tmp_path) -> Path:
    """``maint run`` reaches the API server through the proxy that black-holes its watches."""
    return proxy.kubeconfig(tmp_path / "kubeconfig-proxy")


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    return {"pod_ready_timeout": WAIT, "endpoints_timeout": WAIT, "build_timeout": 10}


@pytest.mark.registry
@pytest.mark.postgres
def test_maint_run_completes_a_window_whose_watches_were_black_holed(stage, proxy):
    # The first watch of the build's Job and of the page Pod: headers, then silence (their
    # first event would often be the end of the wait already). EndpointSlices: the first
    # request, the list that starts the wait, is swallowed whole.
    for resource in ("jobs", "pods"):
        proxy.inject(Fault.blackhole(after_events=0), when=_watch_of(resource), limit=1)
    proxy.inject(Fault.blackhole(), when=lambda e: e.resource == "endpointslices", limit=1)
    notice = stage.add(start_in=45, length=5)
    run = stage.run()
    wait_until(
        lambda: stage.notice(notice.id).targets[0].state.terminal,
        timeout=110,
        what=f"the window to finish\n{stage.logs()}",
        interval=0.3,
    )
    target = stage.notice(notice.id).targets[0]
    assert target.state is TargetState.COMPLETED and not target.forced, run.tail()
    assert stage.restored()

    holes = [e for e in proxy.audit.all() if e.fault.startswith("blackhole")]
    assert sorted(e.resource for e in holes) == ["endpointslices", "jobs", "pods"], holes
    # A cache's silent watch is cut at the deadline of the first wait on it (its direct read
    # saw what the stream withheld), else at the end of its chunk; the swallowed list at its
    # read timeout.
    bounds = {
        "jobs": caching.CHUNK + caching.WATCH_SLACK,
        "pods": caching.CHUNK + caching.WATCH_SLACK,
        "endpointslices": connection.READ_TIMEOUT,
    }
    for hole in holes:
        assert hole.finished is not None, str(hole)
        held = hole.finished - hole.started
        assert held < bounds[hole.resource] + MARGIN, (str(hole), held)

    events = [(e.step, e.outcome, e.detail) for e in stage.events(notice.id)]
    retries = [e for e in events if e[1] == "retry"]
    assert all("ClusterUnavailable" in detail for _, _, detail in retries), retries
    assert ("switch", "ok") in [(s, o) for s, o, _ in events]
    assert not any(step in ("rollback", "force-restore") for step, _, _ in events), events
    print(f"\n{len(holes)} black-holed requests, {len(retries)} retried steps: {retries}")


def test_a_raw_list_whose_body_never_comes_fails_as_unavailable_within_its_bound(
    proxy, api, namespace
):
    """The sweep's raw Service list reads its body itself: a body that stalls after the
    headers is part of the call (retried, bounded, our error), not a stray urllib3 error."""
    proxy.inject(Fault.blackhole(after_events=0), when=lambda e: e.path == "/api/v1/services")
    budget = sum(connection.REQUEST_TIMEOUT)
    error, elapsed = _bounded(
        lambda: cluster.list_annotated_services(api, annotation="maint.io/restore-by"),
        limit=budget + MARGIN + 30,
    )
    assert isinstance(error, ClusterUnavailable), repr(error)
    assert elapsed < budget + MARGIN, f"{elapsed:.1f}s for a {budget:.0f}s budget"
    lists = [e for e in proxy.audit.all() if e.path == "/api/v1/services"]
    assert len(lists) >= 2 and all(e.status == 200 for e in lists)  # headers came, retried
