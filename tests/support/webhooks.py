"""A real webhook receiver for the tests: the stdlib's HTTP server on a free loopback port.

It records every POST (path, JSON body, the answer it gave) and answers as the test says:
``ok`` (200), ``fail`` (500) or ``hang`` (never answers until ``release`` or the client gives
up). Only what it answered 200 counts as delivered.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    answer: int  # 200, 500, or 0: never answered
    at: float


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.modes: dict[str, str] = {}  # path prefix -> ok | fail | hang
        self.default = "ok"
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                mode = receiver.mode(self.path)
                if mode == "hang":
                    receiver.record(self.path, body, 0)
                    receiver.released.wait(120)
                    return  # close without an answer
                code = 500 if mode == "fail" else 200
                receiver.record(self.path, body, code)
                text = b"ok" if code == 200 else b"no_service"
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def mode(self, path: str) -> str:
        with self.lock:
            for prefix, mode in self.modes.items():
                if path.startswith(prefix):
                    return mode
            return self.default

    def record(self, path: str, body: dict[str, Any], answer: int) -> None:
        with self.lock:
            self.received.append(Received(path, body, answer, time.time()))

    def delivered(self, prefix: str = "/") -> list[Received]:
        """What was answered 200, on paths starting with ``prefix``."""
        with self.lock:
            return [r for r in self.received if r.answer == 200 and r.path.startswith(prefix)]

    def all(self, prefix: str = "/") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.startswith(prefix)]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver_running() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


def kinds(received: list[Received]) -> list[tuple[str, str]]:
    """(event, target) of each generic JSON body, in arrival order."""
    return [(r.body["event"], r.body["target"]) for r in received if "event" in r.body]
