"""Waits with deadlines, driven by watches (no polling storms).

Each wait lists-then-watches one object (a field selector on its name) or one Service's
EndpointSlices, re-checks on every event, and restarts the watch when it expires (410 Gone or
the server's timeout). A stream that breaks or ends early (a proxy or the API server cut it, a
5xx) is restarted after a jittered, doubling pause, never in a tight loop. ``progress`` is called
at most every ``PROGRESS_EVERY`` seconds so the CLI can say what it is waiting for. Past the
deadline: ``StepTimeout``; the object deleted while we wait: ``NotFound``.

Bounded: each watch asks the server to end it after a chunk (``timeout_seconds``, at most
``WATCH_CHUNK`` and never past the deadline) and reads with a client-side timeout ``WATCH_SLACK``
above that, so a stream that goes silent without closing (a dropped connection, a black hole)
is noticed and watched again on a fresh connection. A wait therefore returns or raises at most
``WATCH_SLACK`` seconds after its deadline. If the API server was not answering when the
deadline came (the last request timed out or could not connect), the wait raises
``ClusterUnavailable`` (a step retries it) rather than ``StepTimeout`` (which says the object
never got there, and rolls a window back before its switch).

``follow_pods`` is the one watch without a deadline: it tells of every change of some Pods until
it is stopped. Its watches are bounded the same way, resume from the last resourceVersion (410
Gone: afresh), and whatever ends one (an error, Forbidden, a dead stream) only pauses it.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import TimeoutError as TransportTimeout

from maint.cluster import convert
from maint.cluster.caching import Informer
from maint.cluster.calls import RETRIED_STATUS, call, translate
from maint.cluster.connection import CONNECT_TIMEOUT, REQUEST_TIMEOUT, Cluster
from maint.cluster.types import JobInfo, PodInfo, Progress
from maint.errors import ClusterUnavailable, NotFound, StepTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
PROGRESS_EVERY = 10.0  # seconds between "still waiting" lines
WATCH_CHUNK = 30  # seconds per watch request (the server ends it): a bounded, fresh stream
WATCH_SLACK = 2.0  # seconds of silence past a chunk's end (or the deadline): the stream is dead
RESTART_DELAY = 0.2  # seconds before re-watching after an early end; doubles, full jitter
RESTART_DELAY_MAX = 5.0
FOLLOW_DELAY_MAX = 30.0  # seconds: the cap of a follow's pause after failures in a row
SERVICE_NAME = "kubernetes.io/service-name"  # the label on a Service's EndpointSlices
_DEAD = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED})


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
    return _wait_named(
        cluster,
        "Pod",
        (convert.pod_from_dict, convert.pod, cluster.core.list_namespaced_pod),
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
    return _wait_named(
        cluster,
        "Job",
        (convert.job_from_dict, convert.job, cluster.batch.list_namespaced_job),
        namespace=namespace,
        name=name,
        done=_finished,
        timeout=timeout,
        what=f"Job {namespace}/{name} to finish",
        progress=progress,
    )


def _wait_named(
    cluster: Cluster,
    kind: str,
    kinds: tuple[Callable[[dict[str, Any]], T], Callable[[Any], T], Callable[..., Any]],
    *,
    namespace: str,
    name: str,
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    progress: Progress | None,
) -> T:
    """One object until ``done``: on the runner's watch cache when it has one (and may watch
    ``kind`` there), else on a watch of its own. ``kinds``: as ``_wait_cached``'s."""
    informer = cluster.cache.informer(kind, namespace, timeout=timeout) if cluster.cache else None
    if informer is not None:
        return _wait_cached(
            informer, kinds, name=name, done=done, timeout=timeout, what=what, progress=progress
        )
    _, from_model, list_fn = kinds
    return _wait_object(
        list_fn,
        from_model,
        namespace=namespace,
        name=name,
        done=done,
        timeout=timeout,
        what=what,
        progress=progress,
    )


def _finished(job: JobInfo) -> bool:
    return job.succeeded or job.failed


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
    selector = f"{SERVICE_NAME}={service}"
    list_fn = cluster.discovery.list_namespaced_endpoint_slice
    informer = (
        cluster.cache.informer("EndpointSlice", namespace, timeout=timeout)
        if cluster.cache
        else None
    )
    if informer is not None:

        def ready(slices: dict[str, dict[str, Any]]) -> set[str] | None:
            """``slices``: the Service's (the cache's index by ``SERVICE_NAME``)."""
            pods = {pod for s in slices.values() for pod in convert.ready_pods_from_dict(s)}
            return pods if done(pods) else None

        def confirm() -> set[str] | None:
            listed = call(
                f"list EndpointSlices of {namespace}/{service}",
                list_fn,
                namespace,
                label_selector=selector,
                budget=WATCH_SLACK,
            )
            pods = {pod for s in listed.items for pod in convert.ready_pods(s)}
            return pods if done(pods) else None

        return informer.wait(
            ready, label=service, timeout=timeout, what=what, progress=progress, confirm=confirm
        )
    streams = _Streams(what, deadline=time.monotonic() + timeout, progress=progress)
    slices: dict[str, list[str]] = {}

    def current() -> set[str]:
        return {pod for pods in slices.values() for pod in pods}

    while True:
        left = min(sum(REQUEST_TIMEOUT), streams.left() + WATCH_SLACK)
        listed = call(
            f"list EndpointSlices of {namespace}/{service}",
            cluster.discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=selector,
            budget=left,  # call caps each attempt's timeout to what is left of it
        )
        slices = {item.metadata.name: convert.ready_pods(item) for item in listed.items}
        if done(current()):
            return current()
        with closing(streams.watch(list_fn, namespace, label_selector=selector)) as events:
            for event in events:
                obj = event["object"]
                if event["type"] == "DELETED":
                    slices.pop(obj.metadata.name, None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    slices[obj.metadata.name] = convert.ready_pods(obj)
                if done(current()):
                    return current()
                streams.tick()
        streams.next(detail=f"ready endpoints: {sorted(current()) or 'none'}")


def follow_pods(
    cluster: Cluster,
    *,
    namespace: str | None,
    label_selector: str,
    seen: Callable[[str, PodInfo], None],
    stop: threading.Event,
) -> None:
    """Until ``stop`` is set: ``seen(event type, Pod)`` for every change (ADDED, MODIFIED,
    DELETED) of the Pods matching ``label_selector`` in ``namespace`` (None: every namespace).

    Never raises: an error, a refusal or a stream that ends early is logged and the watch
    starts again after a jittered pause that doubles up to ``FOLLOW_DELAY_MAX``; ``seen``
    raising counts as such an error. Returns at most ``WATCH_CHUNK + WATCH_SLACK`` seconds
    after ``stop`` is set.
    """
    where = f"namespace {namespace}" if namespace is not None else "all namespaces"
    what = f"Pods {label_selector} in {where}"
    list_fn = cluster.core.list_pod_for_all_namespaces
    args: tuple[str, ...] = ()
    if namespace is not None:
        list_fn, args = cluster.core.list_namespaced_pod, (namespace,)
    version: str | None = None  # resume here: nothing that changed between watches is lost
    failures = 0
    while not stop.is_set():
        began = time.monotonic()
        stream = watch.Watch()
        try:
            for event in stream.stream(
                list_fn,
                *args,
                label_selector=label_selector,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_CHUNK,
                _request_timeout=(CONNECT_TIMEOUT, WATCH_CHUNK + WATCH_SLACK),
                **({"resource_version": version} if version else {}),
            ):
                version = stream.resource_version
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    seen(event["type"], convert.pod(event["object"]))
                if stop.is_set():
                    return
        except ApiException as e:
            if e.status == 410:  # too old to resume: the current Pods come again, as ADDED
                version = None
                continue
            failures += 1
            log.warning("%s; watching again shortly", translate(f"watching {what}", e))
        except Exception as e:  # transport errors, and ``seen``: following never ends on one
            failures += 1
            log.warning("watching %s: %s: %s; again shortly", what, type(e).__name__, e)
        else:
            ended_early = time.monotonic() - began < 0.9 * WATCH_CHUNK
            failures = failures + 1 if ended_early else 0
        finally:
            stream.stop()
        if failures:
            cap = min(FOLLOW_DELAY_MAX, RESTART_DELAY * 2 ** (failures - 1))
            stop.wait(random.uniform(cap / 2, cap))


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
    streams = _Streams(what, deadline=time.monotonic() + timeout, progress=progress)
    last: T | None = None
    while True:
        # A watch without resourceVersion starts with the current object as ADDED.
        selector = f"metadata.name={name}"
        with closing(streams.watch(list_fn, namespace, field_selector=selector)) as events:
            for event in events:
                if event["type"] == "DELETED":
                    raise NotFound(f"{namespace}/{name} was deleted while waiting for {what}")
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                last = to_info(event["object"])
                if done(last):
                    return last
                streams.tick()
        streams.next(detail=f"last seen: {last}" if last else "never seen")


def _wait_cached(
    informer: Informer,
    kinds: tuple[Callable[[dict[str, Any]], T], Callable[[Any], T], Callable[..., Any]],
    *,
    name: str,
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    progress: Progress | None,
) -> T:
    """``_wait_object`` on the watch cache: the object deleted once seen is ``NotFound``, as
    a DELETED event was; never seen yet, it is waited for (it may be on its way). At the
    deadline it is read directly once (``Informer.wait``'s ``confirm``). ``kinds``: the
    snapshot from the cache's JSON, from a client model, and the kind's namespaced list."""
    from_json, from_model, list_fn = kinds
    namespace = informer.namespace
    seen = False

    def check(objects: dict[str, dict[str, Any]]) -> T | None:
        nonlocal seen
        obj = objects.get(name)
        if obj is None:
            if seen:
                raise NotFound(f"{namespace}/{name} was deleted while waiting for {what}")
            return None
        seen = True
        info = from_json(obj)
        return info if done(info) else None

    def confirm() -> T | None:
        listed = call(
            f"read {namespace}/{name} ({what})",
            list_fn,
            namespace,
            field_selector=f"metadata.name={name}",
            budget=WATCH_SLACK,
        )
        if not listed.items:
            raise NotFound(f"{namespace}/{name} is gone (waiting for {what})")
        info = from_model(listed.items[0])
        return info if done(info) else None

    return informer.wait(
        check, name=name, timeout=timeout, what=what, progress=progress, confirm=confirm
    )


class _Streams:
    """The watch requests of one wait: each one's chunk and timeouts, the pause before the
    next, why the last one ended, progress lines and the deadline."""

    def __init__(self, what: str, *, deadline: float, progress: Progress | None) -> None:
        self.what = what
        self.deadline = deadline
        self.progress = progress
        self.started = self.last_report = time.monotonic()
        self.early = 0  # streams in a row that ended before their chunk
        self.chunk, self.began = WATCH_CHUNK, self.started  # of the latest stream
        self.silent: str | None = None  # why the last request got no answer, if it did not

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def watch(self, list_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Any]:
        """The events of one watch request; a stream that breaks or expires just ends."""
        chunk = max(1, min(WATCH_CHUNK, int(self.left()) + 1))
        read = min(float(chunk), self.left()) + WATCH_SLACK
        self.chunk, self.began, self.silent = chunk, time.monotonic(), None
        stream = watch.Watch()
        try:
            yield from stream.stream(
                list_fn,
                *args,
                timeout_seconds=chunk,
                _request_timeout=(min(CONNECT_TIMEOUT, read), read),
                **kwargs,
            )
        except ApiException as e:
            if e.status != 410 and e.status not in RETRIED_STATUS:
                raise translate(self.what, e) from e
        except (TransportError, OSError) as e:
            if _unanswered(e):
                self.silent = f"no answer within {read:.0f}s: {type(e).__name__}"
        finally:
            stream.stop()

    def next(self, *, detail: str) -> None:
        """After a stream ended: raise past the deadline, else pause if it ended early."""
        self.tick()
        if time.monotonic() >= self.deadline:
            if self.silent is not None:
                raise ClusterUnavailable(
                    f"waiting for {self.what}: the API server stopped answering "
                    f"({self.silent}; {detail})"
                )
            raise StepTimeout(f"gave up waiting for {self.what} ({detail})")
        if time.monotonic() - self.began >= 0.9 * self.chunk:  # the server's timeout ended it
            self.early = 0
            return
        self.early += 1
        cap = min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (self.early - 1))
        time.sleep(min(random.uniform(0, cap), self.left()))

    def tick(self) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self.last_report >= PROGRESS_EVERY:
            self.last_report = now
            self.progress(
                f"waiting for {self.what}: {now - self.started:.0f}s, "
                f"{max(0.0, self.deadline - now):.0f}s left"
            )


def _unanswered(error: BaseException) -> bool:
    """The request timed out or never connected (not: the server cut a stream it was sending)."""
    if isinstance(error, (TransportTimeout, TimeoutError)):
        return True
    if isinstance(error, ProtocolError):
        reasons = [a for a in error.args if isinstance(a, OSError)]
        return any(isinstance(a, TimeoutError) or a.errno in _DEAD for a in reasons)
    return isinstance(error, OSError) and error.errno in _DEAD
