"""Package names loaded on first use (PEP 562), so a command imports only what it runs.

A package lists ``name -> (module, name there)`` and sets ``__getattr__ = lazy.loader(__name__,
_NAMES)``: the first use of a name imports its module and binds the name in the package (an
ordinary global from then on). A submodule's name (``build.kaniko``) is that submodule, as after
an eager import; any other name is an ``AttributeError``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
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
