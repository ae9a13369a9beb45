"""Package names loaded on first use (PEP 562), so a command imports only what it runs.

A package lists ``name -> (module, name there)`` and sets ``__getattr__ = lazy.loader(__name__,
_NAMES)``: the first use of a name imports its module and binds the name in the package (an
ordinary global from then on). A submodule's name (``build.kaniko``) is that submodule, as after
an eager import; any other name is an ``AttributeError``.

What a command does import loads under ``loading()``, without the garbage collector's passes.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def loader(package: str, names: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name not in names:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, attribute = names[name]
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


@contextmanager
def loading() -> Iterator[None]:
    """The garbage collector paused while the block imports modules; what it loaded is then out
    of the collector's sight (``gc.freeze``), and the collector as it was before.

    A command's libraries (SQLAlchemy, pydantic, their models) make some 100,000 objects as they
    load, alive as long as the process: the collector's passes over them, during the imports and
    at the next collection, found nothing to free and took a tenth of ``maint status``'s
    start-up. Frozen with them is whatever else lives at that moment, never collected after.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
