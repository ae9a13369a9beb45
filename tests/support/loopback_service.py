"""A Service and its app on loopback, for tests that watch a browser come back to the app.

In production the page's URL is a Service: during the window its selector picks the page Pod,
at restore maint puts the app's selector back and then deletes the page Pod. ``SwitchedService``
models exactly that at the TCP level, as kube-proxy does: each new connection goes to the
current endpoint, and ``switch`` points new connections at another one and closes those still
open to the old one (the deleted Pod's). ``app_serving`` is the app: any GET answers 200.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.serving import in_thread

Address = tuple[str, int]
JOIN_DEADLINE = 5.0  # seconds for a copying thread to notice its sockets closed


class SwitchedService:
    """A loopback listener forwarding each connection to the endpoint of the moment."""

    def __init__(self, endpoint: Address) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._open: dict[socket.socket, Address] = {}  # client side -> the endpoint it reaches
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept, "service-accept")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/"

    def switch(self, endpoint: Address) -> None:
        """New connections reach ``endpoint``; those open to the old one are closed."""
        with self._lock:
            old, self._endpoint = self._endpoint, endpoint
            stale = [client for client, reached in self._open.items() if reached == old]
        for client in stale:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = list(self._open)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=JOIN_DEADLINE)

    def _start(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    client.close()
                    return
                endpoint = self._endpoint
                self._open[client] = endpoint
            self._start(self._forward, "service-forward", client, endpoint)

    def _forward(self, client: socket.socket, endpoint: Address) -> None:
        try:
            upstream = socket.create_connection(endpoint, timeout=JOIN_DEADLINE)
        except OSError:
            self._forget(client)  # the endpoint is not listening: the connection is refused
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
        back.start()
        _copy(client, upstream)
        back.join(timeout=JOIN_DEADLINE)
        upstream.close()
        self._forget(client)

    def _forget(self, client: socket.socket) -> None:
        with self._lock:
            self._open.pop(client, None)
        client.close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    # Until either side ends; then both directions are shut so the other copier stops too.
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    for sock in (source, target):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def switched_service(endpoint: Address) -> Iterator[SwitchedService]:
    service = SwitchedService(endpoint)
    try:
        yield service
    finally:
        service.close()


class _App(ThreadingHTTPServer):
    daemon_threads = True
    body: bytes
    requests: list[str]


class _AppHandler(BaseHTTPRequestHandler):
    server: _App

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test asserts on ``requests``; stderr stays quiet


@dataclass(frozen=True)
class App:
    """The running app: its address (an endpoint for the Service) and the paths it was asked."""

    address: Address
    requests: list[str]


@contextlib.contextmanager
def app_serving(body: bytes) -> Iterator[App]:
    """The app on a free loopback port, answering every GET with 200 and ``body``."""
    server = _App(("127.0.0.1", 0), _AppHandler)
    server.body, server.requests = body, []
    with in_thread(server, name="app", join=JOIN_DEADLINE):
        yield App(address=("127.0.0.1", server.server_port), requests=server.requests)
