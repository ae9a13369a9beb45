"""Where the time goes: cProfile for the in-process reconcile pass, py-spy for ``maint run``.

Only with ``python -m bench --profile``. py-spy is not a dependency of the project: the flag
looks for it on PATH (``pip install py-spy`` anywhere) and says so when it is absent. It samples
the ``maint run`` process from outside (ptrace), so maint runs unmodified; its "raw" output is
folded stacks, summarised here as the functions most often on the stack (inclusive) and on top
of it (self), restricted to maint's own code and to the libraries it calls.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path


def cprofile_top(fn: Callable[[], object], *, repeat: int, lines: int = 25) -> str:
    """Run ``fn`` ``repeat`` times under cProfile; the top ``lines`` by cumulative time."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeat):
        fn()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def pyspy() -> str | None:
    return shutil.which("py-spy")


class PySpy:
    """``py-spy record`` of one process for ``seconds``, folded stacks into ``out``."""

    def __init__(self, pid: int, *, seconds: float, out: Path, rate: int = 200) -> None:
        binary = pyspy()
        if binary is None:
            raise RuntimeError("--profile needs py-spy on PATH (pip install py-spy)")
        self.out = out
        self.process = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> str:
        self.process.wait(timeout=120)
        return summarise_folded(self.out)


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/module.py:LINE)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/maint/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{name}"


def summarise_folded(path: Path, *, lines: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(no samples)"
    out = [f"{total} samples (busy threads, all threads summed)", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(lines)]
    out.append("self:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(lines)]
    return "\n".join(out)
