"""Missing test dependencies: a failure in CI, a skip elsewhere, always with how to get them."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str, how: str) -> NoReturn:
    """Stop the test: ``pytest.fail`` under CI=true (integration tests must run there)."""
    message = f"{what} is missing: {how}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def binary(name: str, how: str) -> str:
    """Path of an executable on PATH (or /usr/sbin), or stop the test with ``how``."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        missing(f"the {name} binary", how)
    return path
