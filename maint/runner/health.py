"""``/healthz`` for ``maint run``'s liveness probe: 200 while reconcile passes keep completing.

A pass that has not finished for ``stale_after`` seconds (a deadlock, a hung API call outside
any deadline) answers 503, so the kubelet restarts the container; the steps are idempotent and
the next replica or restart carries on. Standard library only: one tiny endpoint.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Heartbeat:
    def __init__(self, *, stale_after: float) -> None:
        self.stale_after = stale_after
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last

    def healthy(self) -> bool:
        return self.age() < self.stale_after


def serve_health(heartbeat: Heartbeat, *, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - probes come from the kubelet, not localhost
    """Start the endpoint in a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?", 1)[0] == "/healthz" and heartbeat.healthy()
            body = f"{'ok' if ok else 'stale'} {heartbeat.age():.1f}s\n".encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
