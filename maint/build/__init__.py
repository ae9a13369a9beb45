"""Building the page image (ConfigMap + Kaniko Job) and deleting it from the registry.

The only package that uses boto3.

Names are loaded on first use (``__getattr__``): a command that builds nothing never imports
boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maint import lazy

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


__getattr__ = lazy.loader(__name__, _NAMES)
