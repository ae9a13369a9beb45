"""The one place that configures the Kubernetes client; every verb module takes a ``Cluster``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from maint.errors import MaintError

REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for every non-watch request: a hung API server must not hang a step."""


@dataclass(frozen=True)
class Cluster:
    """Typed API groups over one ``ApiClient``."""

    api: Any
    core: Any
    batch: Any
    discovery: Any

    def close(self) -> None:
        self.api.close()


def connect(*, kubeconfig: str | None = None, impersonate: str | None = None) -> Cluster:
    """Build a client from a kubeconfig path, else in-cluster credentials, else ~/.kube/config."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError) as e:
        raise MaintError(
            f"no Kubernetes credentials ({e}); set MAINT_KUBECONFIG or run inside the cluster"
        ) from e
    # One pooled connection per concurrent step (50 Services may switch at once).
    configuration.connection_pool_maxsize = 64
    api = client.ApiClient(configuration)
    if impersonate:
        api.set_default_header("Impersonate-User", impersonate)
    return Cluster(
        api=api,
        core=client.CoreV1Api(api),
        batch=client.BatchV1Api(api),
        discovery=client.DiscoveryV1Api(api),
    )
