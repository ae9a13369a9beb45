"""A fake kubelet (and scheduler) for the test control plane: pods get a node, an IP and a fate.

Why: the control plane has no nodes, so without this nothing would ever run. ``maint`` needs
pods that become Ready (the EndpointSlice controller only lists Ready pods on an existing Node)
and Jobs that finish with a termination message (Kaniko writes the pushed digest there). This
thread does just enough of a kubelet's and scheduler's work for that, and lets each test choose
the outcome: ``job_results`` per Job, ``never_ready`` per Pod, ``held_jobs`` to keep a Job
running.

It reacts to watch events rather than polling, because benchmarks measure latency through it.
The watch is read raw (JSON lines, no model classes): cheaper, and the thread can be woken by
shutting the socket down, so ``stop`` returns at once. A 410 Gone (expired resourceVersion) or
a broken connection leads to a fresh list and a new watch. A 404 on any write means the pod is
gone and is ignored; a 409 on binding means someone else bound it first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

log = logging.getLogger(__name__)

NODE_NAME = "fake-node"
NODE_IP = "127.0.0.1"
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

Pod = dict[str, Any]
#: What the API server sends on a watch whose resourceVersion has been compacted away.
EXPIRED_EVENT = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Expired",
        "code": 410,
        "message": "too old resource version",
    },
}


@dataclass(frozen=True)
class JobResult:
    """How the fake kubelet ends a Job's pods: the container's exit and termination message.

    ``message`` is what a container writes to ``/dev/termination-log`` (Kaniko: the digest) or,
    for a failure with ``FallbackToLogsOnError``, the tail of its log.
    """

    succeeded: bool
    message: str
    exit_code: int | None = None  # None: 0 when succeeded, 1 otherwise

    @property
    def code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return 0 if self.succeeded else 1


DEFAULT_JOB_RESULT = JobResult(succeeded=True, message="sha256:" + "0" * 64)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_name(pod: Pod) -> str | None:
    """The owning Job's name, from the controller reference or the labels the Job sets."""
    for owner in pod["metadata"].get("ownerReferences") or ():
        if owner.get("kind") == "Job" and owner.get("apiVersion", "").startswith("batch/"):
            return str(owner["name"])
    labels = pod["metadata"].get("labels") or {}
    for label in JOB_NAME_LABELS:
        if label in labels:
            return str(labels[label])
    return None


def _condition(kind: str, ok: bool, now: str, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    return condition


@dataclass
class _Fate:
    """What a pod should look like; ``key`` identifies it so no status is written twice."""

    key: str
    status: dict[str, Any] = field(default_factory=dict)


class _WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class FakeKubelet:
    """Runs in a daemon thread; ``start`` returns once the Node exists and pods are listed."""

    def __init__(self, api_client: ApiClient, *, node_name: str = NODE_NAME) -> None:
        self.node_name = node_name
        self.job_results: dict[str, JobResult] = {}
        self.default_job_result = DEFAULT_JOB_RESULT
        self.never_ready: set[str] = set()
        self.held_jobs: set[str] = set()
        # Pods whose deletion is not finished (a real kubelet running their preStop drain).
        self.draining: set[str] = set()
        self.watch_expiries = 0
        self._api = CoreV1Api(api_client)
        self._stopping = threading.Event()
        self._listed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self._response: Any = None
        self._resource_version = ""
        self._written: dict[str, str] = {}  # pod uid -> key of the status last written
        self._ips: dict[str, str] = {}  # pod uid -> pod IP
        self._free_ips: Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address] = iter(
            POD_NETWORK.hosts()
        )
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # finish_held_job() acts from the test's thread too
        self._expire = False  # set by expire_watch()
        self._interrupted = False  # the current watch was cut on purpose

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self.ensure_node()
        self._thread.start()
        if not self._listed.wait(timeout):
            self.stop()
            raise RuntimeError(f"fake kubelet did not list pods within {timeout}s: {self._error}")

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._interrupt_watch()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def reset(self) -> None:
        """Forget what earlier tests chose (the kubelet itself lives for the whole session)."""
        self.job_results.clear()
        self.default_job_result = DEFAULT_JOB_RESULT
        self.never_ready.clear()
        self.held_jobs.clear()
        self.draining.clear()

    def expire_watch(self) -> None:
        """Test hook: cut the watch and feed the thread the API server's 410 Gone event.

        A fresh API server cannot be made to send it on demand: its watch cache still holds
        every event since start-up, so no resourceVersion is too old yet. The kubelet must list
        again (counted in ``watch_expiries``) and carry on.
        """
        self._expire = True
        self._interrupt_watch()

    def finish_drain(self, namespace: str, name: str) -> None:
        """Finish the deletion of a Pod kept terminating by ``draining`` (its drain is over)."""
        self.draining.discard(name)
        response = self._api.read_namespaced_pod(name, namespace, _preload_content=False)
        pod = json.loads(response.data)
        _done(response)
        self._handle("MODIFIED", pod)

    def finish_held_job(self, job: str, result: JobResult | None = None) -> None:
        """End a Job kept running by ``held_jobs``: its pods terminate now, with ``result``."""
        if result is not None:
            self.job_results[job] = result
        self.held_jobs.discard(job)
        response = self._api.list_pod_for_all_namespaces(
            label_selector=f"{JOB_NAME_LABELS[0]}={job}", _preload_content=False
        )
        pods = json.loads(response.data)["items"]
        _done(response)
        for pod in pods:  # no watch event is coming for them: act now
            self._handle("MODIFIED", pod)

    def ensure_node(self) -> None:
        """Create the Node if absent and report it Ready (the node controller is not running)."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        try:
            _done(self._api.create_node(node, _preload_content=False))
        except ApiException as error:
            if error.status != 409:
                raise
        capacity = {"cpu": "8", "memory": "16Gi", "pods": "250"}
        now = _now()
        status = {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": NODE_IP},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "v1.36.3",
                    "kubeProxyVersion": "",
                    "containerRuntimeVersion": "fake://1.0",
                    "osImage": "fake",
                    "kernelVersion": "fake",
                    "machineID": "fake",
                    "systemUUID": "fake",
                    "bootID": "fake",
                },
            }
        }
        _done(self._api.patch_node_status(self.node_name, status, _preload_content=False))

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                if not self._resource_version:
                    self._list()
                if self._expire:
                    self._expire = False
                    self._on_event(EXPIRED_EVENT)
                backoff = 0.1
                self._watch()
            except _WatchExpired:
                log.info("fake kubelet: watch expired, listing pods again")
                self.watch_expiries += 1
                self._resource_version = ""
            except Exception as error:  # keep serving: a test must not hang on a dead kubelet
                if self._stopping.is_set():
                    return
                self._error = error
                log.warning("fake kubelet: %s; reconnecting in %.1fs", error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                self._resource_version = ""

    def _list(self) -> None:
        response = self._api.list_pod_for_all_namespaces(_preload_content=False)
        body = json.loads(response.data)
        _done(response)
        for pod in body.get("items") or ():
            self._handle("ADDED", pod)
        self._resource_version = body["metadata"]["resourceVersion"]
        self._listed.set()

    def _watch(self) -> None:
        try:
            response = self._api.list_pod_for_all_namespaces(
                watch=True,
                resource_version=self._resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=600,
                _preload_content=False,
            )
        except ApiException as error:
            if error.status == 410:
                raise _WatchExpired from error
            raise
        self._interrupted = False
        self._response = response
        try:
            if self._stopping.is_set() or self._expire:
                return
            for line in _lines(response):
                self._on_event(json.loads(line))
                if self._stopping.is_set():
                    return
        except (ProtocolError, OSError):
            if not self._interrupted:
                raise
        finally:
            self._response = None
            # Closed, not returned to the pool as is: after a shutdown() or a half-read stream
            # the connection would poison the next request that picks it up.
            response.close()
            response.release_conn()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _WatchExpired
            raise RuntimeError(f"watch error: {obj.get('message')}")
        self._resource_version = obj["metadata"]["resourceVersion"]
        if kind != "BOOKMARK":
            self._handle(kind, obj)

    def _interrupt_watch(self) -> None:
        response = self._response
        if response is not None:
            self._interrupted = True
            with contextlib.suppress(Exception):
                response.shutdown()

    # -- what a kubelet does with one pod ------------------------------------------------------

    def _handle(self, kind: str, pod: Pod) -> None:
        """Act on one pod; an API error about this pod must not cost the others their watch."""
        try:
            with self._lock:
                self._act(kind, pod)
        except ApiException as error:
            meta = pod["metadata"]
            log.warning(
                "fake kubelet: pod %s/%s: %s %s",
                meta.get("namespace"),
                meta.get("name"),
                error.status,
                error.reason,
            )

    def _act(self, kind: str, pod: Pod) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if kind == "DELETED":
            self._written.pop(uid, None)
            self._ips.pop(uid, None)
            return
        if meta.get("deletionTimestamp"):
            if meta["name"] not in self.draining:
                self._force_delete(pod)
            return
        node = spec.get("nodeName")
        if not node:
            if pod.get("status", {}).get("phase", "Pending") == "Pending" and self._bind(pod):
                self._report(pod)
            return
        if node == self.node_name:
            self._report(pod)

    def _bind(self, pod: Pod) -> bool:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            # _preload_content=False: the client otherwise raises a spurious ValueError
            # (kubernetes-client/python #825) although the binding succeeded.
            _done(
                self._api.create_namespaced_pod_binding(
                    meta["name"], meta["namespace"], binding, _preload_content=False
                )
            )
        except ApiException as error:
            # Gone, already bound, or its namespace is terminating: nothing to run.
            if error.status in (403, 404, 409):
                return False
            raise
        return True

    def _force_delete(self, pod: Pod) -> None:
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") == 0:
            return  # already forced; only finalizers keep it now
        try:
            _done(
                self._api.delete_namespaced_pod(
                    meta["name"],
                    meta["namespace"],
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                    _preload_content=False,
                )
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def _report(self, pod: Pod) -> None:
        meta = pod["metadata"]
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return  # terminal: a kubelet never revives a pod
        fate = self._fate(pod)
        if self._written.get(meta["uid"]) == fate.key:
            return
        try:
            _done(
                self._api.patch_namespaced_pod_status(
                    meta["name"], meta["namespace"], {"status": fate.status}, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise
        self._written[meta["uid"]] = fate.key

    def _fate(self, pod: Pod) -> _Fate:
        meta, spec = pod["metadata"], pod["spec"]
        now = _now()
        ip = self._ip_for(pod)
        base: dict[str, Any] = {
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": pod.get("status", {}).get("startTime") or now,
            "initContainerStatuses": [
                _terminated(container, meta["uid"], now, 0, "Completed", "")
                for container in spec.get("initContainers") or ()
            ],
        }
        job = _job_name(pod)
        if job is None or job in self.held_jobs:
            ready = meta["name"] not in self.never_ready
            return _Fate(key=f"running:{ready}", status=base | _running(spec, meta, now, ready))
        result = self.job_results.get(job, self.default_job_result)
        reason = "Completed" if result.succeeded else "Error"
        containers = [
            _terminated(container, meta["uid"], now, result.code, reason, result.message)
            for container in spec.get("containers") or ()
        ]
        status = base | {
            "phase": "Succeeded" if result.succeeded else "Failed",
            "conditions": [
                _condition("PodScheduled", True, now),
                _condition("Initialized", True, now),
                _condition("ContainersReady", False, now, "PodCompleted"),
                _condition("Ready", False, now, "PodCompleted"),
            ],
            "containerStatuses": containers,
        }
        return _Fate(key=f"terminated:{result.succeeded}", status=status)

    def _ip_for(self, pod: Pod) -> str:
        uid = pod["metadata"]["uid"]
        if uid not in self._ips:
            self._ips[uid] = pod.get("status", {}).get("podIP") or str(next(self._free_ips))
        return self._ips[uid]


def _running(spec: dict[str, Any], meta: dict[str, Any], now: str, ready: bool) -> dict[str, Any]:
    reason = None if ready else "ContainersNotReady"
    return {
        "phase": "Running",
        "conditions": [
            _condition("PodReadyToStartContainers", True, now),
            _condition("PodScheduled", True, now),
            _condition("Initialized", True, now),
            _condition("ContainersReady", ready, now, reason),
            _condition("Ready", ready, now, reason),
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": container.get("image", ""),
                "containerID": f"fake://{meta['uid']}/{container['name']}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for container in spec.get("containers") or ()
        ],
    }


def _terminated(
    container: dict[str, Any], uid: str, now: str, code: int, reason: str, message: str
) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": now,
        "finishedAt": now,
        "containerID": f"fake://{uid}/{container['name']}",
    }
    if message:
        terminated["message"] = message
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": container.get("image", ""),
        "containerID": terminated["containerID"],
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"terminated": terminated},
    }


def _done(response: Any) -> None:
    """Finish a ``_preload_content=False`` call: read the rest so the connection is reusable."""
    response.drain_conn()
    response.release_conn()


def _lines(response: Any) -> Iterator[bytes]:
    """Split a chunked watch response into its JSON lines as soon as each one is complete."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending
