"""Waits with deadlines, driven by watches (no polling storms).

Each wait lists-then-watches one object (a field selector on its name) or one Service's
EndpointSlices, re-checks on every event, and restarts the watch when it expires (410 Gone or
the server's timeout). A stream that breaks or ends early (a proxy or the API server cut it, a
5xx) is restarted after a jittered, doubling pause, never in a tight loop. ``progress`` is called
at most every ``PROGRESS_EVERY`` seconds so the CLI can say what it is waiting for. Past the
deadline: ``StepTimeout``; the object deleted while we wait: ``NotFound``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from maint.cluster import convert
from maint.cluster.calls import RETRIED_STATUS, call, translate
from maint.cluster.connection import Cluster
from maint.cluster.types import JobInfo, PodInfo
from maint.errors import ClusterUnavailable, NotFound, StepTimeout

T = TypeVar("T")
Progress = Callable[[str], None]
PROGRESS_EVERY = 10.0  # seconds between "still waiting" lines
WATCH_CHUNK = 30  # seconds per watch request: bounds how long a silently dead stream can hang
RESTART_DELAY = 0.2  # seconds before re-watching after an early end; doubles, full jitter
RESTART_DELAY_MAX = 5.0


def wait_pod(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    done: Callable[[PodInfo], bool],
    timeout: float,
    what: str,
    progress: Progress | None = None,
) -> PodInfo:
    return _wait_object(
        cluster.core.list_namespaced_pod,
        convert.pod,
        namespace=namespace,
        name=name,
        done=done,
        timeout=timeout,
        what=what,
        progress=progress,
    )


def wait_job(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    timeout: float,
    progress: Progress | None = None,
) -> JobInfo:
    """Until the Job is Complete or Failed."""
    return _wait_object(
        cluster.batch.list_namespaced_job,
        convert.job,
        namespace=namespace,
        name=name,
        done=lambda j: j.succeeded or j.failed,
        timeout=timeout,
        what=f"Job {namespace}/{name} to finish",
        progress=progress,
    )


def wait_endpoints(
    cluster: Cluster,
    *,
    namespace: str,
    service: str,
    done: Callable[[set[str]], bool],
    timeout: float,
    what: str,
    progress: Progress | None = None,
) -> set[str]:
    """Until ``done(ready Pod names in the Service's EndpointSlices)`` holds."""
    deadline = time.monotonic() + timeout
    slices: dict[str, list[str]] = {}
    reporter = _Reporter(what, progress)

    def current() -> set[str]:
        return {pod for pods in slices.values() for pod in pods}

    restarts = _Restarts()
    while True:
        slices.clear()
        listed = call(
            f"list EndpointSlices of {namespace}/{service}",
            cluster.discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=f"kubernetes.io/service-name={service}",
        )
        for item in listed.items:
            slices[item.metadata.name] = convert.ready_pods(item)
        if done(current()):
            return current()
        stream = watch.Watch()
        chunk, began = _chunk(deadline), time.monotonic()
        try:
            for event in _guard(
                what,
                stream.stream,
                cluster.discovery.list_namespaced_endpoint_slice,
                namespace,
                label_selector=f"kubernetes.io/service-name={service}",
                timeout_seconds=chunk,
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    slices.pop(obj.metadata.name, None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    slices[obj.metadata.name] = convert.ready_pods(obj)
                if done(current()):
                    return current()
                reporter.tick(deadline)
        except ApiException as e:
            if e.status != 410 and e.status not in RETRIED_STATUS:
                raise translate(what, e) from e
        except (TransportError, OSError):
            pass  # the stream broke: list again and watch again
        finally:
            stream.stop()
        reporter.tick(deadline)
        _check_deadline(what, deadline, detail=f"ready endpoints: {sorted(current()) or 'none'}")
        restarts.pause(began=began, chunk=chunk, deadline=deadline)


def _wait_object(
    list_fn: Callable[..., Any],
    to_info: Callable[[Any], T],
    *,
    namespace: str,
    name: str,
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    progress: Progress | None,
) -> T:
    deadline = time.monotonic() + timeout
    reporter = _Reporter(what, progress)
    last: T | None = None
    selector = f"metadata.name={name}"
    restarts = _Restarts()
    while True:
        stream = watch.Watch()
        chunk, began = _chunk(deadline), time.monotonic()
        try:
            # A watch without resourceVersion starts with the current object as ADDED.
            for event in _guard(
                what,
                stream.stream,
                list_fn,
                namespace,
                field_selector=selector,
                timeout_seconds=chunk,
            ):
                if event["type"] == "DELETED":
                    raise NotFound(f"{namespace}/{name} was deleted while waiting for {what}")
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                last = to_info(event["object"])
                if done(last):
                    return last
                reporter.tick(deadline)
        except ApiException as e:
            if e.status != 410 and e.status not in RETRIED_STATUS:
                raise translate(what, e) from e
        except (TransportError, OSError):
            pass
        finally:
            stream.stop()
        reporter.tick(deadline)
        _check_deadline(what, deadline, detail=f"last seen: {last}" if last else "never seen")
        restarts.pause(began=began, chunk=chunk, deadline=deadline)


def _guard(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        if e.status == 410:
            raise
        raise translate(what, e) from e
    except (TransportError, OSError) as e:
        raise ClusterUnavailable(f"waiting for {what}: {e}") from e


def _chunk(deadline: float) -> int:
    return max(1, min(WATCH_CHUNK, int(deadline - time.monotonic()) + 1))


def _check_deadline(what: str, deadline: float, *, detail: str) -> None:
    if time.monotonic() >= deadline:
        raise StepTimeout(f"gave up waiting for {what} ({detail})")


class _Restarts:
    """The pause before the next watch: none after a stream that ran its full chunk, a
    jittered, doubling one after each stream that broke or ended early in a row."""

    def __init__(self) -> None:
        self.early = 0

    def pause(self, *, began: float, chunk: int, deadline: float) -> None:
        if time.monotonic() - began >= 0.9 * chunk:  # the server's timeout ended it
            self.early = 0
            return
        self.early += 1
        cap = min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (self.early - 1))
        time.sleep(max(0.0, min(random.uniform(0, cap), deadline - time.monotonic())))


class _Reporter:
    def __init__(self, what: str, progress: Progress | None) -> None:
        self.what = what
        self.progress = progress
        self.started = time.monotonic()
        self.last = self.started

    def tick(self, deadline: float) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.progress(
                f"waiting for {self.what}: {now - self.started:.0f}s, "
                f"{max(0.0, deadline - now):.0f}s left"
            )
