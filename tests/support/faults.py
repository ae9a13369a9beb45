"""Faults between maint and what it depends on, injected by proxies the test controls.

``ApiProxy`` is a plain-HTTP listener on 127.0.0.1 that forwards every request to the real API
server over TLS with the admin token, so a ``maint`` process pointed at it (``kubeconfig``)
talks to the real control plane. Rules decide per request whether to answer an error instead
(500, 409, before or after the request took effect), to answer slowly, to break a watch
stream part-way (cut the connection, or end it early and cleanly), or to black-hole it: stop
answering without closing the connection, as a network partition, an API server that died
without a FIN or an evicted conntrack entry do (for a plain request, or for a watch after its
first events). Every request is recorded
in an ``Audit`` with its label (one proxy per ``maint`` process tells the processes apart),
its times and what was injected. Two hooks see every mutating request: ``before_forward``
before it goes upstream and ``before_answer`` once it has been applied, before the answer
goes back; either may return False to drop the connection (a crash test kills the process
right there).

``TcpProxy`` forwards a TCP port (PostgreSQL) and can refuse new connections, black-hole
everything (connections stay open, nothing gets through, as in a network partition) or cut
every open connection.

Randomness comes from one seeded ``random.Random`` per proxy. Which request draws which number
still depends on timing, so tests assert outcomes, not exact fault sequences.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from maint.naming import PAGE_LABEL

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
        "authorization",
        "accept-encoding",
    }
)
OWN_HEADERS = frozenset({"date", "server"})  # the proxy's own answer carries these
UPSTREAM_TIMEOUT = 60.0  # seconds for a non-watch request; the API server answers in ms


# --- the audit --------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request through an ``ApiProxy``. Times are ``time.time()`` (wall clock) so they
    compare with the event log's timestamps and with kill times."""

    label: str
    method: str
    path: str
    query: str
    started: float
    finished: float | None = None
    status: int | None = None
    fault: str = ""
    applied: bool = False  # forwarded to the API server (whatever the client was told)
    body: bytes = b""  # of a mutating request

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def watch(self) -> bool:
        return parse_qs(self.query).get("watch", [""])[0].lower() in ("true", "1")

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    @property
    def page_watch(self) -> bool:
        """The runner's long-lived watch of every page Pod (``runner.pages``): each replica
        keeps one open, claim or not, unlike the waits of a step."""
        labels = parse_qs(self.query).get("labelSelector", [""])[0]
        return self.watch and self.resource == "pods" and PAGE_LABEL in labels

    @property
    def resource(self) -> str:
        """``pods``, ``services``, ``jobs``… (the collection named in the path)."""
        parts = [p for p in self.path.split("/") if p]
        if "namespaces" in parts:
            i = parts.index("namespaces")
            rest = parts[i + 2 :]
            return rest[0] if rest else "namespaces"
        return parts[-1] if parts else ""

    @property
    def name(self) -> str | None:
        parts = [p for p in self.path.split("/") if p]
        if "namespaces" in parts:
            rest = parts[parts.index("namespaces") + 2 :]
            return rest[1] if len(rest) > 1 else None
        return None

    def __str__(self) -> str:
        fault = f" [{self.fault}]" if self.fault else ""
        return f"{self.label} {self.method} {self.path}?{self.query} -> {self.status}{fault}"


class Audit:
    """Every exchange of one or more proxies, in the order they started."""

    def __init__(self) -> None:
        self._items: list[Exchange] = []
        self._lock = threading.Lock()

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self._items.append(exchange)

    def all(self) -> list[Exchange]:
        with self._lock:
            return list(self._items)

    def faults(self) -> list[Exchange]:
        return [e for e in self.all() if e.fault]


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What to do to one request. Build with the class methods."""

    kind: str  # "status" | "delay" | "cut" | "end" | "blackhole"
    status: int = 500
    after_apply: bool = False
    seconds: float = 0.0
    after_events: int = 0
    answered: bool = False  # blackhole: the watch's headers (and after_events events) get out

    @classmethod
    def error(cls, status: int = 500, *, after_apply: bool = False) -> Fault:
        """Answer ``status``; with ``after_apply`` the request reaches the API server first
        (the change happened, the client is told it failed)."""
        return cls(kind="status", status=status, after_apply=after_apply)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls(kind="delay", seconds=seconds)

    @classmethod
    def cut_watch(cls, *, after_events: int = 1) -> Fault:
        """Break the connection (no final chunk) after forwarding ``after_events`` events."""
        return cls(kind="cut", after_events=after_events)

    @classmethod
    def end_watch(cls, *, after_events: int = 1) -> Fault:
        """End the stream cleanly after ``after_events`` events, long before its timeout."""
        return cls(kind="end", after_events=after_events)

    @classmethod
    def blackhole(cls, *, after_apply: bool = False, after_events: int | None = None) -> Fault:
        """Send nothing more and keep the connection open until the client gives up.

        By default the request is swallowed whole (not forwarded, no answer); ``after_apply``
        forwards it first (the change happens, its answer is lost in silence). For a watch,
        ``after_events`` lets its headers and that many events through, then goes silent; for
        a plain request, any ``after_events`` lets its headers through and no byte of the
        body."""
        return cls(
            kind="blackhole",
            after_apply=after_apply or after_events is not None,
            after_events=after_events or 0,
            answered=after_events is not None,
        )

    def describe(self) -> str:
        if self.kind == "status":
            return f"{self.status}{' after apply' if self.after_apply else ''}"
        if self.kind == "blackhole":
            if self.answered:
                return f"blackhole watch after {self.after_events} event(s)"
            return f"blackhole{' after apply' if self.after_apply else ''}"
        if self.kind == "delay":
            return f"delay {self.seconds:.2f}s"
        return f"{self.kind} watch after {self.after_events} event(s)"


@dataclass
class Rule:
    fault: Fault
    when: Callable[[Exchange], bool] = lambda _e: True
    probability: float = 1.0
    limit: int | None = None
    hits: int = 0


def is_create(exchange: Exchange) -> bool:
    return exchange.method == "POST"


def is_plain_request(exchange: Exchange) -> bool:
    return not exchange.watch


def is_watch(exchange: Exchange) -> bool:
    return exchange.watch


# --- the API proxy ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ApiProxy


class ApiProxy:
    """``http://127.0.0.1:PORT`` in front of the API server; see the module docstring."""

    def __init__(
        self,
        *,
        upstream: str,
        ca_file: Path,
        token: str,
        label: str = "api",
        audit: Audit | None = None,
        seed: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "https" and parts.hostname and parts.port
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.token = token
        self.label = label
        self.audit = audit if audit is not None else Audit()
        self.rules: list[Rule] = []
        self.before_forward: Callable[[Exchange], bool] | None = None
        self.before_answer: Callable[[Exchange], bool] | None = None
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._clients: set[socket.socket] = set()
        self._stopped = threading.Event()

    # lifecycle
    def start(self) -> ApiProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()  # black-holed requests let go of their clients
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def __enter__(self) -> ApiProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for ``maint`` pointing at this proxy (the proxy adds the credentials)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {"token": "via-proxy"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(json.dumps(config))
        return path

    # rules
    def inject(
        self,
        fault: Fault,
        *,
        when: Callable[[Exchange], bool] = lambda _e: True,
        probability: float = 1.0,
        limit: int | None = None,
    ) -> Rule:
        rule = Rule(fault=fault, when=when, probability=probability, limit=limit)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _choose(self, exchange: Exchange) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.limit is not None and rule.hits >= rule.limit:
                    continue
                if not rule.when(exchange):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule.fault
        return None

    def _connect(self, *, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, context=self._context, timeout=timeout
        )

    @contextlib.contextmanager
    def _client(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            self._clients.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._clients.discard(sock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _upstream: http.client.HTTPSConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with self.server.proxy._client(self.connection):
            try:
                super().handle()
            finally:
                if self._upstream is not None:
                    self._upstream.close()

    def do_GET(self) -> None:
        self._relay()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # --- one request ----------------------------------------------------------------------
    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path, _, query = self.path.partition("?")
        exchange = Exchange(
            label=proxy.label, method=self.command, path=path, query=query, started=time.time()
        )
        if self.command in MUTATING and body:
            exchange.body = body
        proxy.audit.add(exchange)
        fault = proxy._choose(exchange)
        if fault is not None:
            exchange.fault = fault.describe()
        try:
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            if fault is not None and fault.kind == "status" and not fault.after_apply:
                self._answer_error(exchange, fault.status)
                return
            if fault is not None and fault.kind == "blackhole" and not fault.after_apply:
                self._hold(exchange)
                return
            hook = proxy.before_forward
            if exchange.mutating and hook is not None and not hook(exchange):
                exchange.fault = exchange.fault or "dropped before forwarding"
                self._drop()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Authorization"] = f"Bearer {proxy.token}"
            if body is not None:
                headers["Content-Length"] = str(len(body))
            if exchange.watch:
                conn = proxy._connect(timeout=None)
            else:
                if self._upstream is None:
                    self._upstream = proxy._connect(timeout=UPSTREAM_TIMEOUT)
                conn = self._upstream
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException):
                # A stale keep-alive connection upstream: one fresh try, as a client would.
                conn.close()
                if exchange.watch:
                    conn = proxy._connect(timeout=None)
                else:
                    conn = self._upstream = proxy._connect(timeout=UPSTREAM_TIMEOUT)
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            exchange.applied = True
            if fault is not None and fault.kind == "status":  # after_apply
                response.read()
                self._answer_error(exchange, fault.status)
                return
            if fault is not None and fault.kind == "blackhole" and not exchange.watch:
                data = response.read()
                if fault.answered:  # the headers promise a body that never comes
                    exchange.status = response.status
                    self._answer(response.status, response.getheaders(), data, body=False)
                self._hold(exchange)
                return
            if fault is not None and fault.kind == "blackhole" and not fault.answered:
                conn.close()  # a watch never ends on its own: stop it upstream
                self._hold(exchange)
                return
            exchange.status = response.status
            hook = proxy.before_answer
            if exchange.mutating and hook is not None and not hook(exchange):
                exchange.fault = exchange.fault or "dropped"
                self._drop()
                return
            if exchange.watch:
                try:
                    self._stream(response, conn, exchange, fault)
                finally:
                    conn.close()
            else:
                data = response.read()
                self._answer(response.status, response.getheaders(), data)
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            if exchange.finished is None:
                exchange.finished = time.time()

    def _answer(
        self, status: int, headers: list[tuple[str, str]], data: bytes, *, body: bool = True
    ) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in HOP_BY_HOP | OWN_HEADERS:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)
        self.wfile.flush()

    def _answer_error(self, exchange: Exchange, status: int) -> None:
        reason = {409: "AlreadyExists", 500: "InternalError", 503: "ServiceUnavailable"}.get(
            status, "InternalError"
        )
        if status == 409:
            body_meta = (exchange.json_body() or {}).get("metadata") or {}
            name = exchange.name or body_meta.get("name")
            message = f'{exchange.resource} "{name}" already exists'
        else:
            message = "injected by the test's fault proxy"
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": status,
        }
        exchange.status = status
        self._answer(status, [("Content-Type", "application/json")], json.dumps(body).encode())

    def _hold(self, exchange: Exchange) -> None:
        """The black hole: send nothing, swallow whatever the client sends, keep the connection
        open until the client closes it (its timeout) or the proxy stops. ``finished`` is when
        the client gave up."""
        client = self.connection
        proxy = self.server.proxy
        while not proxy._stopped.is_set():
            try:
                readable, _, _ = select.select([client], [], [], 0.1)
                if readable and not client.recv(65536):
                    break
            except (OSError, ValueError):
                break
        if exchange.finished is None:
            exchange.finished = time.time()
        self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stream(
        self,
        response: http.client.HTTPResponse,
        conn: http.client.HTTPSConnection,
        exchange: Exchange,
        fault: Fault | None,
    ) -> None:
        """Forward a watch chunk by chunk; stop when the client hangs up or a fault says so."""
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP | OWN_HEADERS:
                self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        done = threading.Event()
        wake_r, wake_w = socket.socketpair()
        watcher = threading.Thread(
            target=self._watch_client, args=(conn, exchange, done, wake_r), daemon=True
        )
        watcher.start()
        partial = fault is not None and (fault.kind in ("cut", "end") or fault.answered)
        limit = fault.after_events if fault is not None and partial else None
        events = 0
        try:
            while True:
                data = response.read1(65536)
                if not data:
                    break
                if limit is not None:
                    keep, ended = _take_events(data, limit - events)
                    events += keep.count(b"\n")
                    if keep:
                        self._chunk(keep)
                    if ended:
                        if fault is not None and fault.kind == "cut":
                            self._drop()
                            return
                        if fault is not None and fault.kind == "blackhole":
                            conn.close()
                            self._hold(exchange)
                            return
                        break
                else:
                    self._chunk(data)
            if fault is not None and fault.kind == "blackhole":  # silent, even past its end
                self._hold(exchange)
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            done.set()
            with contextlib.suppress(OSError):
                wake_w.send(b"x")
            watcher.join(1)
            wake_r.close()
            wake_w.close()
            if exchange.finished is None:
                exchange.finished = time.time()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch_client(
        self,
        conn: http.client.HTTPSConnection,
        exchange: Exchange,
        done: threading.Event,
        wake: socket.socket,
    ) -> None:
        """A client that closes its watch (maint got what it waited for) ends the upstream
        request too, so the audit shows when the watch really ended (to the millisecond:
        two replicas' requests are compared by time)."""
        client = self.connection
        while not done.is_set():
            try:
                readable, _, _ = select.select([client, wake], [], [])
            except (OSError, ValueError):
                return
            if wake in readable or client not in readable:
                return
            try:
                peek = client.recv(1, socket.MSG_PEEK)
            except OSError:
                peek = b""
            if not peek:
                exchange.finished = time.time()
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)
            return


def _take_events(data: bytes, remaining: int) -> tuple[bytes, bool]:
    """The prefix of ``data`` holding at most ``remaining`` whole events (newline-terminated),
    and whether the limit was reached."""
    if remaining <= 0:
        return b"", True
    end = 0
    for _ in range(remaining):
        found = data.find(b"\n", end)
        if found == -1:
            return data, False
        end = found + 1
    return data[:end], True


# --- the TCP proxy ----------------------------------------------------------------------------


@dataclass
class _Pipe:
    client: socket.socket
    upstream: socket.socket | None
    closed: bool = False


@dataclass
class TcpProxy:
    """``127.0.0.1:port`` forwarding to ``upstream``; ``refuse``, ``blackhole``, ``heal``."""

    upstream_host: str
    upstream_port: int
    mode: str = "pass"  # "pass" | "refuse" | "blackhole"
    port: int = 0
    _listener: socket.socket | None = None
    _pipes: list[_Pipe] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        self.cut()
        for thread in self._threads:
            thread.join(2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def refuse(self) -> None:
        """Nothing listens any more and open connections are cut: 'connection refused'."""
        self.mode = "refuse"
        self._close_listener()
        self.cut()

    def blackhole(self) -> None:
        """Connections are accepted and kept, but no byte gets through in either direction."""
        self.mode = "blackhole"

    def heal(self) -> None:
        self.cut()  # black-holed connections are useless now; clients reconnect
        self.mode = "pass"
        if self._listener is None:
            self._listen()

    def cut(self) -> None:
        with self._lock:
            pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            _close(pipe)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = None
            if self.mode == "pass":
                try:
                    upstream = socket.create_connection(
                        (self.upstream_host, self.upstream_port), timeout=5
                    )
                except OSError:
                    client.close()
                    continue
            pipe = _Pipe(client=client, upstream=upstream)
            with self._lock:
                self._pipes.append(pipe)
            thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
            thread.start()

    def _pump(self, pipe: _Pipe) -> None:
        while not pipe.closed and not self._stopping.is_set():
            if self.mode != "pass":
                time.sleep(0.05)  # black hole: read nothing, send nothing
                continue
            if pipe.upstream is None:  # accepted while black-holed, and then healed
                try:
                    pipe.upstream = socket.create_connection(
                        (self.upstream_host, self.upstream_port), timeout=5
                    )
                except OSError:
                    _close(pipe)
                    return
            try:
                readable, _, _ = select.select([pipe.client, pipe.upstream], [], [], 0.1)
                for source in readable:
                    target = pipe.upstream if source is pipe.client else pipe.client
                    data = source.recv(65536)
                    if not data:
                        _close(pipe)
                        return
                    target.sendall(data)
            except (OSError, ValueError):
                _close(pipe)
                return


def _close(pipe: _Pipe) -> None:
    pipe.closed = True
    for sock in (pipe.client, pipe.upstream):
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy(control_plane: Any) -> Iterator[ApiProxy]:
    """An ``ApiProxy`` in front of the test's control plane; route maint through it with
    ``proxy.kubeconfig(path)`` (``window_settings``' ``kubeconfig``)."""
    with ApiProxy(
        upstream=control_plane.server, ca_file=control_plane.ca_file, token=control_plane.token
    ) as running:
        yield running
