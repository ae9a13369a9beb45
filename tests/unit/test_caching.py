"""The watch cache's parsing and bookkeeping, without a server: how a watch stream is cut into
events, how each event changes the cache, and what maint's own creates may put in it.

The informer's thread is never started here (the test calls what it would call); its list,
watch, resume and refusal run against the real API server in
``tests/integration/test_watch_cache.py``.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from maint.cluster import caching
from maint.errors import ClusterUnavailable


class _Chunks:
    """What ``urllib3``'s ``stream()`` yields: bytes cut anywhere."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        yield from self.chunks


def _informer() -> caching.Informer:
    unused = SimpleNamespace(list_namespaced_config_map=lambda *a, **k: None)
    return caching.Informer(SimpleNamespace(core=unused), kind="ConfigMap", namespace="ns")


def _object(name: str, uid: str, version: str, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": version}
    return {"metadata": meta | extra.pop("metadata", {}), **extra}


def test_lines_are_whole_events_however_the_stream_is_cut():
    stream = _Chunks(b'{"a":', b'1}\n{"b":2}\n', b"\n", b'{"c"', b":3}")
    lines = list(caching._lines(stream, stop=threading.Event()))
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_events_add_change_and_delete_and_bookmarks_only_move_the_version():
    informer = _informer()
    informer._apply({"type": "ADDED", "object": _object("a", "u1", "5", data={"x": "1"})})
    informer._apply({"type": "MODIFIED", "object": _object("a", "u1", "6", data={"x": "2"})})
    assert informer._objects["a"]["metadata"]["resourceVersion"] == "6"
    assert "data" not in informer._objects["a"]  # a ConfigMap's data is never kept
    informer._apply({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    assert informer._version == "9" and set(informer._objects) == {"a"}
    informer._apply({"type": "DELETED", "object": _object("a", "u1", "10")})
    assert informer._objects == {} and informer._version == "10"


def test_managed_fields_are_kept_for_services_only():
    fields = {"managedFields": [{"manager": "argocd-controller"}]}
    pod = caching._trimmed("Pod", _object("p", "u", "1", metadata=fields))
    service = caching._trimmed("Service", _object("s", "u", "1", metadata=fields))
    assert "managedFields" not in pod["metadata"]
    assert service["metadata"]["managedFields"] == fields["managedFields"]


def test_an_expired_watch_lists_again_and_another_error_is_unavailable():
    informer = _informer()
    with pytest.raises(caching._Expired):
        informer._apply({"type": "ERROR", "object": {"code": 410, "message": "too old"}})
    with pytest.raises(ClusterUnavailable, match="etcd is down"):
        informer._apply({"type": "ERROR", "object": {"code": 500, "message": "etcd is down"}})


def test_an_own_create_is_known_unless_newer_news_or_its_deletion_came_first():
    informer = _informer()
    informer.wrote(_object("early", "u0", "1"))
    assert informer._objects == {}  # before the first list: the list will have it
    informer._synced = True
    informer.wrote(_object("mine", "u1", "3"))
    assert informer._objects["mine"]["metadata"]["uid"] == "u1"
    informer._apply({"type": "MODIFIED", "object": _object("mine", "u1", "4")})
    informer.wrote(_object("mine", "u1", "3"))  # a late answer: the watch's is newer
    assert informer._objects["mine"]["metadata"]["resourceVersion"] == "4"
    informer._apply({"type": "DELETED", "object": _object("mine", "u1", "5")})
    informer.wrote(_object("mine", "u1", "3"))  # deleted meanwhile: never put back
    assert informer._objects == {}


def _slice(name: str, service: str, version: str, *pods: str) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": service}
    endpoints = [{"targetRef": {"kind": "Pod", "name": pod}} for pod in pods]
    return _object(name, f"uid-{name}", version, metadata={"labels": labels}, endpoints=endpoints)


def test_a_wait_sees_and_is_woken_by_its_own_services_slices_only():
    """500 Services switching at once must not make each of 500 waits look at every slice on
    every change: a wait by label gets its own slices, and other slices' changes leave it be."""
    informer = caching.Informer(
        SimpleNamespace(discovery=SimpleNamespace(list_namespaced_endpoint_slice=None)),
        kind="EndpointSlice",
        namespace="ns",
    )
    informer._synced = True
    informer._apply({"type": "ADDED", "object": _slice("a-1", "a", "1", "app-a")})
    informer._apply({"type": "ADDED", "object": _slice("b-1", "b", "2", "app-b")})
    seen: list[set[str]] = []

    def check(slices: dict[str, Any]) -> str | None:
        seen.append(set(slices))
        pods = {e["targetRef"]["name"] for s in slices.values() for e in s["endpoints"]}
        return "switched" if pods == {"page-a"} else None

    result: list[str] = []
    waiting = threading.Thread(
        target=lambda: result.append(informer.wait(check, label="a", timeout=10, what="a"))
    )
    waiting.start()
    _until(lambda: len(seen) == 1)
    for version in range(3, 13):  # another Service's slice changes ten times
        informer._apply({"type": "MODIFIED", "object": _slice("b-1", "b", str(version), "x")})
    assert len(seen) == 1 and seen[0] == {"a-1"}
    informer._apply({"type": "MODIFIED", "object": _slice("a-1", "a", "13", "page-a")})
    waiting.join(timeout=5)
    assert result == ["switched"] and len(seen) == 2
    informer._apply({"type": "MODIFIED", "object": _slice("a-1", "b", "14")})  # moved away
    assert informer._view("a") == {} and set(informer._view("b")) == {"a-1", "b-1"}


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)
