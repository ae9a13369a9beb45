"""Fixtures shared by the integration modules: the real-process ``stage`` and the in-process
``window`` (each with a ``*_settings`` fixture a module overrides)."""

from tests.support.faults import proxy
from tests.support.processes import stage, stage_database_url, stage_kubeconfig, stage_settings
from tests.support.window import window, window_settings

__all__ = [
    "proxy",
    "stage",
    "stage_database_url",
    "stage_kubeconfig",
    "stage_settings",
    "window",
    "window_settings",
]
