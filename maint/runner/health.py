"""``/healthz`` for ``maint run``'s liveness probe: 200 while reconcile passes keep completing.

A pass that has not finished for ``stale_after`` seconds (a deadlock, a hung API call outside
any deadline) answers 503, and so does a step still running past its deadline
(``MAINT_STEP_DEADLINE``, reported by ``wedged``): the kubelet restarts the container; the steps
are idempotent and the next replica or restart carries on. A database that is down does
neither: passes still complete (they fail fast and run the forced restore), and a step fails
fast too, so it never reaches its deadline. ``/metrics`` serves the Prometheus exposition
made by ``metrics`` (``maint.runner.metrics``: in memory only, so it answers at once even while
the database hangs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from maint.runner.metrics import CONTENT_TYPE


class Heartbeat:
    def __init__(
        self, *, stale_after: float, wedged: Callable[[], str | None] = lambda: None
    ) -> None:
        self.stale_after = stale_after
        self.wedged = wedged
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last

    def healthy(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the process should be restarted, or ``None`` while it is healthy."""
        age = self.age()
        if age >= self.stale_after:
            return f"stale: no pass completed for {age:.1f}s"
        return self.wedged()


def serve_health(
    heartbeat: Heartbeat,
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - probes come from the kubelet, not localhost
    metrics: Callable[[], bytes] | None = None,
) -> ThreadingHTTPServer:
    """Start the endpoints in a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                self._send(200, metrics(), CONTENT_TYPE)
                return
            if path != "/healthz":
                ok, text = False, "not found"
            else:
                problem = heartbeat.problem()
                ok, text = problem is None, problem or f"ok {heartbeat.age():.1f}s"
            code = 200 if ok else (503 if text != "not found" else 404)
            self._send(code, f"{text}\n".encode(), "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
