"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on a free loopback port.

Started as a plain process with a temp storage path and a one-receiver config, clustering off;
stopped by its own PID afterwards. ``stop`` and ``start`` on the same port and storage play an
Alertmanager that is down for a while and comes back with its silences.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.require import binary

CONFIG = "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n"
STARTUP_DEADLINE = 20.0  # seconds; it starts in about one, slower on a loaded machine
STOP_DEADLINE = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealAlertmanager:
    def __init__(self, workdir: Path) -> None:
        self.binary = binary("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "alertmanager.yml").write_text(CONFIG)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"alertmanager did not start: {self.log()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: it snapshots its silences and exits
        try:
            self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)

    def silences(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/silences", timeout=5) as r:
            return list(json.loads(r.read()))

    def log(self) -> str:
        path = self.workdir / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False


@contextlib.contextmanager
def alertmanager_running() -> Iterator[RealAlertmanager]:
    with tempfile.TemporaryDirectory(prefix="maint-am-") as tmp:
        am = RealAlertmanager(Path(tmp))
        am.start()
        try:
            yield am
        finally:
            am.stop()
