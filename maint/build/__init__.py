"""Building the page image (ConfigMap + Kaniko Job) and deleting it from the registry.

The only package that uses boto3.

Names are loaded on first use (``__getattr__``): a command that builds nothing never imports
boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maint.build.failures import permanent
    from maint.build.kaniko import BuildPlan, remove, start, wait_digest
    from maint.build.manifests import KanikoSpec
    from maint.build.registry import (
        EcrRegistry,
        ImageRef,
        OciRegistry,
        Registry,
        parse_repository,
    )

_NAMES = {  # name -> (module, name there)
    "BuildPlan": ("kaniko", "BuildPlan"),
    "EcrRegistry": ("registry", "EcrRegistry"),
    "ImageRef": ("registry", "ImageRef"),
    "KanikoSpec": ("manifests", "KanikoSpec"),
    "OciRegistry": ("registry", "OciRegistry"),
    "Registry": ("registry", "Registry"),
    "parse_repository": ("registry", "parse_repository"),
    "permanent": ("failures", "permanent"),
    "remove": ("kaniko", "remove"),
    "start": ("kaniko", "start"),
    "wait_digest": ("kaniko", "wait_digest"),
}

__all__ = [
    "BuildPlan",
    "EcrRegistry",
    "ImageRef",
    "KanikoSpec",
    "OciRegistry",
    "Registry",
    "parse_repository",
    "permanent",
    "remove",
    "start",
    "wait_digest",
]


def __getattr__(name: str) -> Any:
    """Import the module behind ``name`` on first use (then it is an ordinary global); a
    submodule's name (``build.kaniko``) is that submodule, as after an eager import."""
    if name not in _NAMES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module, attribute = _NAMES[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value
