"""Fixture plugins, one module per real component, so each stays small and readable; and how
``make test`` spreads unit and integration tests over parallel workers (pytest-xdist).

Parallel runs are safe because every session fixture is per worker process: each worker starts
its own control plane, fake kubelet, registries, moto server and maint launcher on free loopback
ports, in temp dirs of its own, and makes uniquely named PostgreSQL databases; every test has its
own namespace. With ``--dist load`` each test goes to the next free worker, so a new long module
needs no bookkeeping to stay balanced; only the modules of ``TOGETHER`` go as one piece.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

pytest_plugins = [
    "tests.support.fixtures_k8s",
    "tests.support.fixtures_db",
    "tests.support.fixtures_nginx",
    "tests.support.fixtures_registry",
]

#: Modules whose tests share a fixture wider than one test (module or class scope): they run
#: whole on one worker, in file order, so that fixture is set up once instead of once per
#: worker. test_nodeimages would also make two workers build into the one image cache at once
#: (they would queue on its lock, and its warm-rebuild bound would measure the wait).
TOGETHER = frozenset(
    {
        "tests/integration/test_nodeimages.py",
        "tests/integration/test_page_browser.py",
        "tests/integration/test_page_bypass_nginx.py",
        "tests/integration/test_page_nginx.py",
        "tests/unit/test_preview_server.py",
    }
)
#: Modules with single tests of a minute or more: started first, so that none of them is the
#: last test still running while the other workers are done. Only the balance depends on it.
FIRST = (
    "tests/integration/test_reliability_crash.py",  # ~2.5 min: every crash point of a window
    "tests/integration/test_db_blackhole_health.py",  # ~1.5 min: an outage past /healthz's limit
    "tests/integration/test_bounded_waits.py",  # ~1 min: a window through black-holed watches
)
_SHARED_SCOPES = {"class", "module", "package"}


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist load``, but the tests of a ``TOGETHER`` module as one unit of work.

    xdist's ``loadgroup`` would do this from an ``xdist_group`` mark, but on pytest 9.2 it
    silently ignores the mark (it renames the test's node id, which pytest no longer lets it
    do; pytest-xdist issue 1386), so the grouping is by module path, read from the node id.
    Other ``--dist`` modes are left to xdist.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TogetherScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in TOGETHER else nodeid

    return TogetherScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker (whose collection order is the order tests are handed out): the
    modules of ``FIRST`` first; and warn about a module that shares a fixture but is not in
    ``TOGETHER`` (its fixture would be set up on every worker that gets one of its tests)."""
    if not hasattr(config, "workerinput"):
        return
    rank = {module: place for place, module in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
    if config.workerinput.get("workerid") != "gw0":
        return
    missing = sorted({item.nodeid.split("::", 1)[0] for item in items if _shares(item)} - TOGETHER)
    if missing:
        warnings.warn(
            f"tests/conftest.py: add {', '.join(missing)} to TOGETHER (a module-scoped fixture)",
            stacklevel=1,
        )


def _shares(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)  # pytest's record of the test's fixtures
    if info is None:
        return False
    return any(defs and defs[-1].scope in _SHARED_SCOPES for defs in info.name2fixturedefs.values())
