"""``maint`` as a subprocess (the console script, as an operator runs it), with its memory.

Peak RSS is the kernel's high-water mark ``VmHWM`` from ``/proc/PID/status`` (psutil is not
installed), read just before the process is asked to stop; ``VmRSS`` is sampled meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

MAINT = os.environ.get("BENCH_MAINT") or str(Path(sys.executable).parent / "maint")
"""The console script; ``BENCH_MAINT`` names another executable (to try a fix before it lands,
e.g. a launcher that patches maint and calls ``maint.cli.main``)."""


def proc_status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class MaintRun:
    """``maint run`` (or any ``maint`` command) in the background, logging to a file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_kb = 0
        self.max_rss_kb = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> MaintRun:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [MAINT, *self.args], env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        self._sampler.start()
        return self

    def _sample(self) -> None:
        assert self.process is not None
        while not self._stop.wait(0.25):
            rss = proc_status_kb(self.process.pid, "VmRSS")
            if rss is not None:
                self.max_rss_kb = max(self.max_rss_kb, rss)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (maint's clean stop), SIGKILL after ``timeout``; returns the exit code."""
        assert self.process is not None
        self.peak_kb = proc_status_kb(self.process.pid, "VmHWM") or self.max_rss_kb
        self._stop.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_once(env: dict[str, str], log: Path, timeout: float = 300) -> float:
    """``maint run --once``; returns how long it took (seconds)."""
    began = time.monotonic()
    with log.open("ab") as sink:
        subprocess.run(
            [MAINT, "run", "--once"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    return time.monotonic() - began
