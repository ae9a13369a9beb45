"""Building the page image (ConfigMap + Kaniko Job) and deleting it from the registry.

The only package that uses boto3.
"""

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
