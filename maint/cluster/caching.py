"""A watch-fed cache of what the runner reads again and again (shared informers).

A window used to read the same objects many times: its Service at the preflight, to plan the
page, to arm the switch and to arm the restore; its page Pod before each step; its Job and Pods
by a watch each; its EndpointSlices after each switch; every kind it made at the cleanup. With
``Cache`` those reads come from one list + watch per kind and namespace (an ``Informer``),
shared by every window there, so the requests of a window are its writes and little else.

Only reads that may be a few milliseconds old use it, each marked ``cached=True`` where it is
made (``reading``, ``inspecting``; the waits of ``watching`` always, as a wait on a watch was
a watch already). Why that is safe:

- A write is never decided on a cached read alone: every selector PATCH carries a ``test`` of
  what it replaces, so a Service that changed since it was read fails the PATCH, and the step
  reads it again directly.
- A miss is confirmed: an object the cache does not know is read directly before anyone is
  told it is gone (``Cache.get`` answers None), so a Service created a moment ago never ends a
  window.
- maint's own creates enter the cache when the API server answers them (``Cache.wrote``), so a
  clean-up right after a create finds what it made. An object deleted meanwhile is remembered
  by its UID and never put back.
- A cache that could not list yet answers nothing: readers wait for the first list (bounded)
  and get its error (``ClusterUnavailable``) as a direct read would. A cache whose watch has
  failed for ``STALE_AFTER`` seconds is not read either (``ClusterUnavailable``): it may be
  missing changes.
- Where maint may not list or watch a kind (RBAC from an older release), the cache says so once
  (a warning naming the missing verbs) and the reads there are requests again, as without it;
  it asks again after ``REFUSED_RETRY`` seconds.

Each informer lists, then watches from the list's resourceVersion with bookmarks, in chunks
of ``CHUNK`` seconds, each resumed where the last one ended: a stream that went silent without
closing (a black hole, a failover) is noticed ``WATCH_SLACK`` after its chunk, as the waits'
own watches were before. A wait that reaches its deadline asks the API server once more
directly (``confirm``): what the cache missed counts, and the cache's stream is opened again.
While a volley of armed PATCHes fires (``Cache.quiet``, ``runner.instant``) the informers
apply nothing: parsing 1,500 events while 500 PATCHes leave would take the CPU (and the GIL)
they need; the events wait in the socket and are applied in order right after, or after
``QUIET_MAX`` seconds at most. A watch too old to resume (410) lists again; an error pauses
it (jittered, doubling up to ``RETRY_MAX``). An informer nobody read for ``IDLE_AFTER``
seconds stops at the end of its chunk (a namespace whose windows are over costs nothing); the
next read starts it again. The objects are kept as the API's JSON, without ``managedFields``
(except Services: the ownership hand-back reads them) and without a ConfigMap's data.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from maint.cluster.calls import call, translate
from maint.cluster.connection import CONNECT_TIMEOUT, REQUEST_TIMEOUT, Cluster
from maint.cluster.types import Progress
from maint.errors import ClusterUnavailable, Forbidden, MaintError, StepTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
Object = dict[str, Any]

CHUNK = 30  # seconds per watch request: the API server ends it, and it is resumed
WATCH_SLACK = 2.0  # seconds of silence past a chunk's end: the stream is dead
SYNC_TIMEOUT = float(sum(REQUEST_TIMEOUT))  # seconds a reader waits for the first list
RETRY_DELAY = 0.2  # seconds before watching again after a failure; doubles, full jitter
RETRY_MAX = 10.0
QUIET_MAX = 5.0  # seconds an informer holds its events for a volley, at most
IDLE_AFTER = 600.0  # seconds without a read after which an informer stops
STALE_AFTER = 30.0  # seconds of a failing watch after which the cache is not read
REFUSED_RETRY = 300.0  # seconds before a kind maint may not watch somewhere is tried again
TOMBSTONE_SECONDS = 120.0  # a deleted object's UID is remembered this long (``wrote``)
PROGRESS_EVERY = 10.0

_LISTERS = {  # kind -> (API group of ``Cluster``, namespaced list)
    "Service": ("core", "list_namespaced_service"),
    "Pod": ("core", "list_namespaced_pod"),
    "EndpointSlice": ("discovery", "list_namespaced_endpoint_slice"),
    "NetworkPolicy": ("networking", "list_namespaced_network_policy"),
    "Job": ("batch", "list_namespaced_job"),
    "ConfigMap": ("core", "list_namespaced_config_map"),
}
INDEXED = {  # kind -> the label its objects are also found by (``Informer.wait``'s ``label``)
    "EndpointSlice": "kubernetes.io/service-name",
    "Pod": "job-name",  # a Job's Pods
}


class Informer:
    """The objects of one kind in one namespace, kept current by a list and a watch on a
    thread of their own.

    A change wakes only the waits it concerns (those for its name, or for its ``INDEXED``
    label's value): when 500 Services switch at once, 500 EndpointSlice waits each look at
    their own Service's slices on their own Service's changes, not at every slice on every
    change."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        kind: str,
        namespace: str,
        retired: Callable[[Informer], None] = lambda _informer: None,
        calm: threading.Event | None = None,
    ) -> None:
        """``retired(self)`` is called from its thread when it stops for being idle; events are
        applied while ``calm`` is set (``Cache.quiet`` clears it)."""
        self.kind = kind
        self.namespace = namespace
        group, method = _LISTERS[kind]
        self._list = getattr(getattr(cluster, group), method)
        self.changed = threading.Condition()  # the lock; notified when synced, failing, stopped
        self._objects: dict[str, Object] = {}
        self._label = INDEXED.get(kind)
        self._index: dict[str, set[str]] = {}  # the label's value -> names
        self._waits: dict[tuple[str, str], set[threading.Event]] = {}  # ("name"|"label", value)
        self._deleted: dict[str, float] = {}  # uid -> monotonic time its deletion was seen
        self._version: str | None = None  # resume the watch here (None: list first)
        self._synced = False
        self._error: MaintError | None = None  # of the latest list or watch, until one works
        self._down_since: float | None = None  # monotonic time the list or watch began failing
        self.refused: Forbidden | None = None  # RBAC: the thread ended, the cache says so
        self._stop = threading.Event()
        self._response: Any = None  # the watch being read (``stop`` and ``restart`` cut it)
        self._restart = False
        self._retired = retired
        self._calm = calm if calm is not None else _ALWAYS
        self._held_since: float | None = None  # since when it holds events for a volley
        self.used = time.monotonic()  # the latest read
        self._thread = threading.Thread(
            target=self._run, name=f"cache-{kind}-{namespace}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching: the stream being read is cut, and readers waiting are woken."""
        self._stop.set()
        self._cut()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def restart(self) -> None:
        """The stream missed something (a wait's direct read saw it): open it again, from
        the last resourceVersion it delivered."""
        self._restart = True
        self._cut()

    def _cut(self) -> None:
        with self.changed:
            response = self._response
            self._wake_all()
        if response is not None:
            response.shutdown()

    @property
    def what(self) -> str:
        return f"{self.kind}s in {self.namespace}"

    # --- reading ---------------------------------------------------------------------------
    def synced(self, timeout: float = SYNC_TIMEOUT) -> None:
        """Return once the first list is in and the watch is not failing for long; else raise
        ``Forbidden`` (RBAC) or ``ClusterUnavailable``."""
        deadline = time.monotonic() + timeout
        self.used = time.monotonic()
        with self.changed:
            while True:
                if self.refused is not None:
                    raise self.refused
                now = time.monotonic()
                if self._synced:
                    down = self._down_since
                    if down is not None and now - down > STALE_AFTER:
                        raise ClusterUnavailable(
                            f"the watch of {self.what} has failed for {now - down:.0f}s "
                            f"({self._error}); not reading what may be stale"
                        )
                    return
                if now >= deadline or self._stop.is_set():
                    raise self._error or ClusterUnavailable(f"could not list {self.what} yet")
                self.changed.wait(min(deadline - now, 1.0))

    def get(self, name: str) -> Object | None:
        self.synced()
        with self.changed:
            return self._objects.get(name)

    def items(self, labels: Mapping[str, str] | None = None) -> list[Object]:
        """Every object, or those carrying all ``labels``."""
        self.synced()
        with self.changed:
            objects = list(self._objects.values())
        if not labels:
            return objects
        return [o for o in objects if _has_labels(o, labels)]

    def wait(
        self,
        check: Callable[[dict[str, Object]], T | None],
        *,
        name: str | None = None,
        label: str | None = None,
        timeout: float,
        what: str,
        progress: Progress | None = None,
        confirm: Callable[[], T | None] | None = None,
    ) -> T:
        """Until ``check(objects by name)`` returns something (not None), re-checked on every
        change of the object ``name`` or, with ``label``, of the objects whose ``INDEXED``
        label has that value (and only those are given to ``check``). At ``timeout``:
        ``confirm()`` (a direct read, bounded), in case the stream missed it; then
        ``StepTimeout``, or ``ClusterUnavailable`` when the watch is failing (the API server did
        not answer, so nothing is known)."""
        started = time.monotonic()
        deadline = started + timeout
        reported = started
        self.synced(timeout=max(0.1, timeout))
        key = ("label", label) if label is not None else ("name", name or "")
        woken = threading.Event()
        with self.changed:
            self._waits.setdefault(key, set()).add(woken)
        try:
            while True:
                woken.clear()  # before the check: a change after it wakes the wait below
                with self.changed:
                    found = check(self._view(label))
                    error = self._error
                if found is not None:
                    return found
                now = time.monotonic()
                if now >= deadline or self._stop.is_set():
                    break
                if progress is not None and now - reported >= PROGRESS_EVERY:
                    reported = now
                    progress(
                        f"waiting for {what}: {now - started:.0f}s, {deadline - now:.0f}s left"
                    )
                woken.wait(min(deadline - now, PROGRESS_EVERY))
        finally:
            with self.changed:
                self._waits[key].discard(woken)
                if not self._waits[key]:
                    del self._waits[key]
        found = confirm() if confirm is not None else None  # outside the lock: a request
        if found is not None:
            log.warning("the cache of %s missed what a direct read saw; watching again", self.what)
            self.restart()
            return found
        if error is not None:
            raise ClusterUnavailable(f"waiting for {what}: {error}")
        raise StepTimeout(f"gave up waiting for {what}")

    def wrote(self, obj: Object) -> None:
        """maint created ``obj`` (the API server's answer): known from now on, unless the watch
        has told of it already (newer) or of its deletion."""
        meta = obj.get("metadata") or {}
        name, uid = meta.get("name"), meta.get("uid")
        with self.changed:
            if not name or not self._synced or name in self._objects or uid in self._deleted:
                return
            self._put(name, _trimmed(self.kind, obj))

    # --- keeping it current ----------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if time.monotonic() - self.used > IDLE_AFTER:
                self._stop.set()
                self._retired(self)
                return
            began = time.monotonic()
            try:
                if self._version is None:
                    self._relist()
                self._watch()
            except _Expired:
                self._version = None
                continue
            except MaintError as e:
                self._failed(e)
                failures += 1
            except (ApiException, TransportError, OSError, ValueError) as e:
                error = translate(f"watching {self.what}", e) if isinstance(e, ApiException) else e
                self._failed(
                    error
                    if isinstance(error, MaintError)
                    else ClusterUnavailable(f"watching {self.what}: {type(e).__name__}: {e}")
                )
                failures += 1
            else:
                failures = failures + 1 if time.monotonic() - began < 0.9 * CHUNK else 0
            if self._restart:  # cut on purpose: resume at once
                self._restart, failures = False, 0
                continue
            if failures:
                cap = min(RETRY_MAX, RETRY_DELAY * 2 ** (failures - 1))
                self._stop.wait(random.uniform(cap / 2, cap))

    def _failed(self, error: MaintError) -> None:
        if self._stop.is_set() or self._restart:
            return  # cut by ``stop`` or ``restart``
        with self.changed:
            self._error = error
            if self._down_since is None:
                self._down_since = time.monotonic()
            if isinstance(error, Forbidden):
                self.refused = error
                self._stop.set()
            self.changed.notify_all()
            self._wake_all()
        if not isinstance(error, Forbidden):  # told by ``Cache``, once
            log.warning("%s; the cache of %s tries again shortly", error, self.what)

    def _relist(self) -> None:
        listed = _raw(f"list {self.what}", self._list, self.namespace)
        with self.changed:
            self._objects, self._index = {}, {}
            for item in listed.get("items") or []:
                self._put(item["metadata"]["name"], _trimmed(self.kind, item), wake=False)
            self._version = (listed.get("metadata") or {}).get("resourceVersion")
            self._synced, self._error, self._down_since = True, None, None
            self.changed.notify_all()
            self._wake_all()

    def _watch(self) -> None:
        """One chunk of the watch, applied event by event."""
        response = self._list(
            self.namespace,
            watch=True,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=CHUNK,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT, CHUNK + WATCH_SLACK),
        )
        with self.changed:
            self._response = response
            self._error, self._down_since = None, None  # watching again
        try:
            if not self._stop.is_set():
                for line in _lines(response, stop=self._stop):
                    self._hold()
                    self._apply(json.loads(line))
        finally:
            with self.changed:
                self._response = None
            response.close()  # a stream cut or ended early is never put back in the pool
            response.release_conn()

    def _hold(self) -> None:
        """While a volley fires: wait until it is through, ``QUIET_MAX`` at most in all."""
        if self._calm.is_set():
            self._held_since = None
            return
        if self._held_since is None:
            self._held_since = time.monotonic()
        left = QUIET_MAX - (time.monotonic() - self._held_since)
        if left > 0:
            self._calm.wait(left)

    def _apply(self, event: Object) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired()
            raise ClusterUnavailable(f"watching {self.what}: {obj.get('message', obj)}")
        meta = obj.get("metadata") or {}
        with self.changed:
            self._version = meta.get("resourceVersion", self._version)
            self._error = None
            if kind in ("ADDED", "MODIFIED"):
                self._put(meta["name"], _trimmed(self.kind, obj))
            elif kind == "DELETED":
                self._drop(meta["name"])
                now = time.monotonic()
                self._deleted[meta.get("uid", "")] = now
                for uid, at in list(self._deleted.items()):
                    if now - at > TOMBSTONE_SECONDS:
                        del self._deleted[uid]
            # BOOKMARK: only the version moves

    # --- the objects, their index and the waits on them (under ``changed``) -----------------
    def _view(self, label: str | None) -> dict[str, Object]:
        if label is None:
            return self._objects
        return {n: self._objects[n] for n in self._index.get(label, ())}

    def _labelled(self, obj: Object | None) -> str | None:
        if obj is None or self._label is None:
            return None
        value = ((obj.get("metadata") or {}).get("labels") or {}).get(self._label)
        return str(value) if value is not None else None

    def _put(self, name: str, obj: Object, *, wake: bool = True) -> None:
        before = self._labelled(self._objects.get(name))
        self._objects[name] = obj
        after = self._labelled(obj)
        if before != after and before is not None:
            self._unindex(name, before)
        if after is not None:
            self._index.setdefault(after, set()).add(name)
        if wake:
            self._wake(name, before, after)

    def _drop(self, name: str) -> None:
        label = self._labelled(self._objects.pop(name, None))
        if label is not None:
            self._unindex(name, label)
        self._wake(name, label)

    def _unindex(self, name: str, label: str) -> None:
        names = self._index.get(label, set())
        names.discard(name)
        if not names:
            self._index.pop(label, None)

    def _wake(self, name: str, *labels: str | None) -> None:
        keys = [("name", name)] + [("label", label) for label in labels if label is not None]
        for key in keys:
            for woken in self._waits.get(key, ()):
                woken.set()

    def _wake_all(self) -> None:
        for waits in self._waits.values():
            for woken in waits:
                woken.set()


class Cache:
    """The informers of one runner, started on first use, one per kind and namespace."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._informers: dict[tuple[str, str], Informer] = {}
        self._refused: dict[tuple[str, str], float] = {}  # -> monotonic time it was refused
        self._lock = threading.Lock()
        self._closed = False
        self._quiet = 0  # volleys firing now
        self._calm = threading.Event()  # no volley fires: the informers apply their events
        self._calm.set()

    def informer(
        self, kind: str, namespace: str, *, timeout: float = SYNC_TIMEOUT
    ) -> Informer | None:
        """The informer of ``kind`` in ``namespace``, synced (its first list in, waited for up
        to ``timeout``); None when maint may not list or watch that kind there: the caller
        makes its read a request."""
        key = (kind, namespace)
        with self._lock:
            if self._closed:
                raise ClusterUnavailable("the runner is stopping")
            refused = self._refused.get(key)
            if refused is not None and time.monotonic() - refused < REFUSED_RETRY:
                return None
            informer = self._informers.get(key)
            if informer is None or informer.stopped:
                informer = self._informers[key] = Informer(
                    self.cluster,
                    kind=kind,
                    namespace=namespace,
                    retired=self._retire,
                    calm=self._calm,
                )
                informer.start()
        try:
            informer.synced(timeout=timeout)
        except Forbidden as e:
            with self._lock:
                if self._informers.get(key) is informer:
                    del self._informers[key]
                self._refused[key] = time.monotonic()
            informer.stop()
            log.warning(
                "%s: maint may not list and watch %s there, so it reads them with a request "
                "each time (grant list and watch: manifests/base/rbac.yaml)",
                e,
                informer.what,
            )
            return None
        return informer

    def get(self, kind: str, namespace: str, name: str) -> Object | None:
        """One object; None when the cache does not know it (a miss: read it directly, it may
        be new, or gone) or may not watch it there."""
        informer = self.informer(kind, namespace)
        return informer.get(name) if informer is not None else None

    def items(
        self, kind: str, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[Object] | None:
        """The objects carrying ``labels``; None when the cache may not watch them there."""
        informer = self.informer(kind, namespace)
        return informer.items(labels) if informer is not None else None

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """While a volley of PATCHes fires: the informers hold their events (``QUIET_MAX`` at
        most), then apply them in order."""
        with self._lock:
            self._quiet += 1
            self._calm.clear()
        try:
            yield
        finally:
            with self._lock:
                self._quiet -= 1
                if self._quiet == 0:
                    self._calm.set()

    def _retire(self, informer: Informer) -> None:
        with self._lock:
            key = (informer.kind, informer.namespace)
            if self._informers.get(key) is informer:
                del self._informers[key]

    def wrote(self, kind: str, namespace: str, created: Any) -> None:
        """maint created ``created`` (the client's model of the answer): an informer of its
        kind and namespace, if any, knows it now (converted to JSON only then)."""
        with self._lock:
            informer = self._informers.get((kind, namespace))
        if informer is not None:
            informer.wrote(self.cluster.api.sanitize_for_serialization(created))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            informers, self._informers = list(self._informers.values()), {}
        for informer in informers:
            informer.stop()


_ALWAYS = threading.Event()
_ALWAYS.set()


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _raw(what: str, fn: Callable[..., Any], *args: Any) -> Object:
    def read(**options: Any) -> bytes:
        response = fn(*args, _preload_content=False, **options)
        try:
            return bytes(response.data)
        finally:
            response.release_conn()

    decoded: Object = json.loads(call(what, read))
    return decoded


def _lines(response: Any, *, stop: threading.Event) -> Iterator[bytes]:
    """The lines of a watch response as they arrive (one JSON event each)."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
        if stop.is_set():
            return
    if pending.strip():
        yield pending


def _trimmed(kind: str, obj: Object) -> Object:
    """What maint reads of ``obj``: no managedFields (but a Service's), no ConfigMap data."""
    meta = obj.get("metadata") or {}
    if kind != "Service" and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if kind == "ConfigMap":
        obj = {k: v for k, v in obj.items() if k not in ("data", "binaryData")}
    return obj


def _has_labels(obj: Object, labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())
