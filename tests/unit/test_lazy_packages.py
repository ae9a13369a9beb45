"""The packages that load their names on first use behave as if they had imported them all.

Each check runs in a fresh interpreter, so nothing a test imported before can hide a name that
only resolves once its module happens to be loaded (``build.kaniko`` failed that way in
``maint run --once``, where nothing had imported the Kaniko module yet).
"""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from maint import lazy

PACKAGES = ["maint.cluster", "maint.build", "maint.runner", "maint.page", "maint.switch"]
PROBE = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.iter_modules(package.__path__):
    if info.name in package.__all__:  # page.revision: the function, as it always was
        continue
    assert getattr(package, info.name) is importlib.import_module(
        f"{package.__name__}.{info.name}"
    ), info.name
for name in package.__all__:
    module, attribute = getattr(package, "_NAMES", {}).get(name, (None, name))
    value = getattr(package, name)
    if module is not None:
        assert value is getattr(importlib.import_module(f"{package.__name__}.{module}"), attribute)
try:
    package.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError("an unknown name resolved")
"""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_and_submodule_resolves_in_a_fresh_interpreter(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, package], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_page_revision_is_the_function_even_after_its_module_was_imported() -> None:
    probe = "import maint.page.revision, maint.page as p; assert callable(p.revision)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("collecting", [True, False])
def test_loading_pauses_the_collector_then_restores_it_and_freezes_what_loaded(collecting):
    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        with lazy.loading():
            assert not gc.isenabled()
            loaded = [object()]
        assert gc.isenabled() is collecting
        assert not any(o is loaded for o in gc.get_objects())  # frozen: no collection walks it
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
