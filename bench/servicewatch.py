"""The benchmark's own witness: a watch on every Service, stamping when selectors change.

Why: lags are measured from facts outside maint. maint's event log stamps the switch with its
own clock after its PATCH returned; this watch stamps the moment the API server's change reached
an independent client. Both are reported; this one is the measure.

The watch is read raw (JSON lines, no client models), like the fake kubelet's, so a change is
stamped as soon as its line arrives. A selector "is the page" when every value is one page name
of maint's form (``naming.page_name``: the page selector keeps the app's keys), or, from older
releases, when it carries ``maint.io/page``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from maint.naming import PAGE_LABEL, page_name


@dataclass
class Selectors:
    """Wall-clock times (``time.time()``) at which one Service went to the page and back."""

    switched: list[float] = field(default_factory=list)
    restored: list[float] = field(default_factory=list)
    on_page: bool = False


class ServiceWatch:
    def __init__(self, api_client: ApiClient) -> None:
        self.api = CoreV1Api(api_client)
        self.services: dict[tuple[str, str], Selectors] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._response: Any = None
        self._version = ""
        self._thread = threading.Thread(target=self._run, name="service-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Service watch did not start")

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        self._thread.join(10)

    def of(self, namespace: str, name: str) -> Selectors:
        with self.lock:
            return self.services.get((namespace, name), Selectors())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._version:
                    self._list()
                self._watch()
            except ApiException as e:
                if e.status != 410:
                    time.sleep(0.2)
                self._version = ""
            except (ProtocolError, OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.2)
                self._version = ""

    def _list(self) -> None:
        response = self.api.list_service_for_all_namespaces(_preload_content=False)
        body = json.loads(response.data)
        for item in body["items"]:
            self._seen(item, at=time.time())
        self._version = body["metadata"]["resourceVersion"]
        self._ready.set()

    def _watch(self) -> None:
        response = self.api.list_service_for_all_namespaces(
            watch=True,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=300,
            _preload_content=False,
        )
        self._response = response
        pending = b""
        try:
            for chunk in response.stream(amt=None, decode_content=False):
                at = time.time()
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        self._event(json.loads(line), at=at)
                if self._stop.is_set():
                    return
        finally:
            self._response = None
            response.close()
            response.release_conn()

    def _event(self, event: dict[str, Any], *, at: float) -> None:
        obj = event["object"]
        if event["type"] == "ERROR":
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
        self._version = obj["metadata"]["resourceVersion"]
        if event["type"] in ("ADDED", "MODIFIED"):
            self._seen(obj, at=at)

    def _seen(self, obj: dict[str, Any], *, at: float) -> None:
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector") or {}
        on_page = page_name(selector) is not None or PAGE_LABEL in selector
        with self.lock:
            record = self.services.setdefault((meta["namespace"], meta["name"]), Selectors())
            if on_page and not record.on_page:
                record.switched.append(at)
            elif record.on_page and not on_page:
                record.restored.append(at)
            record.on_page = on_page
