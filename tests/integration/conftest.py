"""Fixtures shared by the integration modules (the real-process ``stage``)."""

from tests.support.processes import stage, stage_database_url, stage_kubeconfig, stage_settings

__all__ = ["stage", "stage_database_url", "stage_kubeconfig", "stage_settings"]
