"""CLI start-up: how long ``maint notice list``, ``notice show`` and ``status`` take, end to end.

Each command runs as the console script (a fresh interpreter, as an operator or a readiness
probe runs it) against the benchmark's PostgreSQL database, which by then holds every window
of the run. The kubeconfig points at a closed port: these commands must not need the API server.
Wall time from ``fork`` to exit, ``RUNS`` times each after one warm-up (the page cache holds the
interpreter and the libraries then, as on a node that runs them often).

Bytecode is cached, as in maint's image (pip compiles the wheel's modules when it installs it),
even where ``PYTHONDONTWRITEBYTECODE`` is set: an editable checkout would otherwise compile
maint's own modules at every run (some 40 ms). The warm-up writes it, under the work dir.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.process import MAINT
from bench.stats import summary

RUNS = 10
COMMANDS = {
    "notice list": ["notice", "list"],
    "notice show": ["notice", "show", "{id}"],
    "status": ["status"],
}
UNREACHABLE = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: nobody}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def _once(args: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run([MAINT, *args], env=env, capture_output=True, timeout=120, check=False)
    took = time.monotonic() - began
    # Only status may exit 1 (a target FAILED, or no sweep lately): a command that failed is
    # not a fast start-up.
    if done.returncode not in ((0, 1) if args[0] == "status" else (0,)):
        raise RuntimeError(f"maint {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return took


def cli_startup(env: dict[str, str], *, notice_id: int | None, workdir: Path) -> dict[str, object]:
    """``{command: {p50, p95, max, n}}`` in seconds (``notice show`` only with a notice)."""
    kubeconfig = workdir / "kubeconfig-unreachable"
    kubeconfig.write_text(UNREACHABLE)
    env = {
        **{k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
        "MAINT_KUBECONFIG": str(kubeconfig),
    }
    out: dict[str, object] = {}
    for name, template in COMMANDS.items():
        if notice_id is None and "{id}" in template:
            continue
        args = [a.format(id=notice_id) for a in template]
        _once(args, env)
        out[name] = summary([_once(args, env) for _ in range(RUNS)])
    return out
