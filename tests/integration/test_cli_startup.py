"""The commands that only read the database load neither the Kubernetes client nor the rest.

``notice list``, ``notice show`` and ``status`` (the readiness probe) run often and must start
fast: importing ``kubernetes`` alone took about a third of a second of their 1.5-3 s, and the
runner's modules with prometheus_client, and psycopg on SQLite, a quarter of what was left.
Each runs here in a fresh interpreter on a real SQLite database, which then reports the modules
it imported. How fast they start is measured by ``make bench``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maint.notices import NoticeStore

# psycopg: the database is SQLite here, and the driver is PostgreSQL's only.
HEAVY = (
    *("kubernetes", "boto3", "botocore", "apscheduler", "jinja2", "alembic"),
    *("prometheus_client", "psycopg"),
)
# The runner's wiring, the switch and the page builder: loaded by the commands that act.
UNNEEDED = (
    *("maint.runner.reconcile", "maint.runner.steps", "maint.runner.metrics"),
    *("maint.runner.notify", "maint.runner.webhooks", "maint.runner.silences"),
    *("maint.switch.selector", "maint.switch.preflight", "maint.page.rendering"),
)
PROBE = """
import json, sys
from maint.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'maint.db'}"
    NoticeStore(url).upgrade()
    return url


def _run(database: str, *args: str) -> tuple[int, list[str], str]:
    env = {
        **os.environ,
        "MAINT_DATABASE_URL": database,
        # A kubeconfig that would fail any connection: none of these commands may need one.
        "MAINT_KUBECONFIG": "/nonexistent/kubeconfig",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["loaded"], done.stdout


def _add(database: str) -> int:
    """An announcement (no Service, so no Kubernetes call) through the CLI itself."""
    env = {**os.environ, "MAINT_DATABASE_URL": database}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "maint", "notice", "add", "--title", "T", "--reason", "R"),
            *("--start", "2099-01-01T10:00:00+00:00", "--end", "2099-01-01T11:00:00+00:00"),
            *("--no-maintenance", "-o", "json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(json.loads(done.stdout)["id"])


@pytest.mark.parametrize(
    "args", [["notice", "list"], ["notice", "show", "{id}"], ["status"]], ids=" ".join
)
def test_read_only_commands_import_no_kubernetes_client(database: str, args: list[str]) -> None:
    notice_id = _add(database)
    code, loaded, out = _run(database, *(a.format(id=notice_id) for a in args))
    if args == ["status"]:  # 1: this database has never seen a sweep, and says so
        assert code == 1 and "sweep" in out, out
    else:
        assert code == 0 and "T" in out, out
    packages = {name.split(".")[0] for name in loaded}
    assert [name for name in HEAVY if name in packages] == []
    assert [name for name in UNNEEDED if name in loaded] == []
