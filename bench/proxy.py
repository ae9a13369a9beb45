"""A counting reverse proxy between ``maint`` and the API server, run as its own process.

Why: ``api_requests_per_window`` must count maint's requests only. The fake kubelet and the
benchmark's own watch talk to the API server directly; maint gets a kubeconfig pointing here.
Plain HTTP towards maint, TLS (verified against the control plane's CA) towards the API server.
A separate process so the proxy's threads do not compete for the benchmark's GIL, whose Service
watch timestamps the switches.

Each request is counted by verb and resource before it is forwarded: GET becomes ``watch``
(``watch=true`` in the query or a ``/watch/`` path), ``get`` (a named object) or ``list``; POST
``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete`` (or ``deletecollection``).
Streaming answers (watches) are relayed chunk by chunk as they arrive.

Control endpoints, answered here and never forwarded or counted:
``GET /__bench/counts`` (JSON ``{verb: {resource: n}}``) and ``POST /__bench/reset``.

Usage: ``python -m bench.proxy UPSTREAM_URL CA_FILE [LOG]`` prints ``PORT`` on its first stdout
line; with ``LOG``, every counted request is also appended there as ``unix-time METHOD PATH`` (to
see which step sent what, next to ``maint run``'s log).
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
CHUNK = 64 * 1024


def classify(method: str, target: str) -> tuple[str, str]:
    """(verb, resource) of one API request, the way the API server's audit log names them.

    ``resource`` carries the API group (``jobs.batch``) and a subresource (``pods/status``).
    """
    parts = urlsplit(target)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    watch = query.get("watch", ["false"])[0].lower() in ("true", "1")
    group = ""
    if segments[:1] == ["api"]:
        segments = segments[2:]
    elif segments[:1] == ["apis"]:
        group = segments[1] if len(segments) > 1 else ""
        segments = segments[3:]
    else:
        return method.lower(), parts.path  # /version, /readyz, ...
    if segments[:1] == ["watch"]:
        watch = True
        segments = segments[1:]
    if len(segments) >= 3 and segments[0] == "namespaces":
        segments = segments[2:]  # namespaced: drop "namespaces/NAME"
    resource = segments[0] if segments else ""
    named = len(segments) > 1
    if len(segments) > 2:
        resource += "/" + segments[2]
    if group:
        resource += "." + group
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if verb is None and method == "DELETE":
        verb = "delete" if named else "deletecollection"
    if verb is None:
        verb = "watch" if watch else ("get" if named else "list")
    return verb, resource


class Counts:
    def __init__(self, log: str | None = None) -> None:
        self.lock = threading.Lock()
        self.counter: Counter[tuple[str, str]] = Counter()
        self.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 (open while the proxy runs)

    def add(self, method: str, target: str) -> None:
        verb, resource = classify(method, target)
        with self.lock:
            self.counter[(verb, resource)] += 1
            if self.log is not None:
                self.log.write(f"{time.time():.3f} {method} {target}\n")

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self.lock:
            out: dict[str, dict[str, int]] = {}
            for (verb, resource), n in sorted(self.counter.items()):
                out.setdefault(verb, {})[resource] = n
            return out

    def reset(self) -> None:
        with self.lock:
            self.counter.clear()


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, ca_file: str, log: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        split = urlsplit(upstream)
        self.upstream_host = split.hostname or "127.0.0.1"
        self.upstream_port = split.port or 443
        self.context = ssl.create_default_context(cafile=ca_file)
        self.counts = Counts(log)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy
    _upstream: http.client.HTTPSConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would cost more than the forwarding

    def _connection(self) -> http.client.HTTPSConnection:
        if self._upstream is None:
            self._upstream = http.client.HTTPSConnection(
                self.server.upstream_host,
                self.server.upstream_port,
                context=self.server.context,
                timeout=900,
            )
        return self._upstream

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _control(self) -> None:
        if self.command == "POST" and self.path == "/__bench/reset":
            self.server.counts.reset()
            body = b"{}"
        else:
            body = json.dumps(self.server.counts.snapshot()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        if self.path.startswith("/__bench/"):
            self._control()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.server.counts.add(self.command, self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        response = None
        for attempt in (1, 2):  # an idle upstream keep-alive connection may have been closed
            try:
                connection = self._connection()
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                break
            except (http.client.HTTPException, OSError):
                self._drop_upstream()
                if attempt == 2:
                    self.send_error(502, "API server unreachable")
                    return
        assert response is not None
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        try:
            if response.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while True:
                    data = response.read1(CHUNK)
                    if not data:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                data = response.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            # maint closed a watch early (or the API server dropped it): start clean.
            self._drop_upstream()
            self.close_connection = True
            return
        if response.will_close:
            self._drop_upstream()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    def finish(self) -> None:
        super().finish()
        self._drop_upstream()


def main() -> None:
    upstream, ca_file = sys.argv[1], sys.argv[2]
    proxy = Proxy(upstream, ca_file, sys.argv[3] if len(sys.argv) > 3 else None)
    print(proxy.server_address[1], flush=True)
    proxy.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
