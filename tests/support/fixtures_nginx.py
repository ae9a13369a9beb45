"""nginx fixtures: the rendered page served by a real nginx, started as a plain process.

No Docker here: the page files go into a temp docroot, the config comes from the same
``render_nginx_conf`` that writes the image's nginx.conf (only docroot, run dir and ports
differ), and ``nginx -p PREFIX -c CONF -g 'daemon off;'`` runs it with pid, temp files and logs
in that temp dir. Each started nginx is stopped by its own process group afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from maint.page import BuildContext, render_nginx_conf
from tests.support.require import binary

STARTUP_DEADLINE = 10.0  # seconds; nginx starts in well under one
STOP_DEADLINE = 5.0
NOT_SERVED = frozenset({"Dockerfile", "nginx.conf"})  # build files; the rest go in the docroot


@dataclass(frozen=True)
class NginxPage:
    """A running nginx serving one build context; ``urls`` has one base URL per port."""

    urls: tuple[str, ...]
    log: Path

    @property
    def url(self) -> str:
        return self.urls[0]


def _free_ports(count: int) -> list[int]:
    # Hold all sockets until every port is chosen so the ports are distinct.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _answers_health(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # SIGTERM to the master: fast shutdown, it stops its own workers
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group started for this nginx only
        process.wait(timeout=STOP_DEADLINE)


@contextlib.contextmanager
def nginx_serving(
    context: BuildContext,
    *,
    port_count: int = 1,
    bypass: Callable[[Sequence[int]], str] | None = None,
) -> Iterator[NginxPage]:
    """Serve ``context`` with a real nginx on ``port_count`` free ports until the block ends;
    ``bypass(ports)`` gives the include a page Pod with a bypass mounts (``maint.page.bypass``)."""
    nginx = binary("nginx", "apt-get install nginx")
    # mkdtemp, not tmp_path: run as root, nginx's workers are "nobody" and must read the
    # docroot, while pytest's base temp dir is private to the user.
    prefix = Path(tempfile.mkdtemp(prefix="maint-nginx-"))
    try:
        prefix.chmod(0o755)
        docroot, rundir, included = prefix / "html", prefix / "run", prefix / "bypass"
        for folder in (docroot, rundir, included):
            folder.mkdir(mode=0o755)
        for name in sorted(set(context.files) - NOT_SERVED):
            (docroot / name).write_bytes(context.files[name])
            (docroot / name).chmod(0o644)
        ports = _free_ports(port_count)
        if bypass is not None:
            (included / "bypass.conf").write_text(bypass(ports))
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                ports=ports,
                retry_after=json.loads(context.files["index.json"])["retry_after"],
                docroot=str(docroot),
                rundir=str(rundir),
                bypass_dir=str(included),
            )
        )
        log = prefix / "nginx.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + STARTUP_DEADLINE
            waiting = list(ports)
            while waiting:
                if process.poll() is not None:
                    pytest.fail(f"nginx exited with {process.returncode}:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"nginx did not answer on {waiting} in time:\n{log.read_text()}")
                waiting = [port for port in waiting if not _answers_health(port)]
                if waiting:
                    time.sleep(0.05)
            yield NginxPage(urls=tuple(f"http://127.0.0.1:{port}" for port in ports), log=log)
        finally:
            _stop(process)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def nginx() -> Iterator[Callable[..., NginxPage]]:
    """Factory: ``nginx(context, port_count=1) -> NginxPage``; all are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(
            context: BuildContext,
            *,
            port_count: int = 1,
            bypass: Callable[[Sequence[int]], str] | None = None,
        ) -> NginxPage:
            return stack.enter_context(nginx_serving(context, port_count=port_count, bypass=bypass))

        yield start
