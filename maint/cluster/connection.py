"""The one place that configures the Kubernetes client; every verb module takes a ``Cluster``.

Bounded waits: every request carries a client-side (connect, read) timeout (``calls`` adds
``REQUEST_TIMEOUT`` when a caller gives none, ``watching`` sizes each watch's read timeout to
its chunk), urllib3's own silent retries are off (``calls`` retries, with backoff, within a
time budget), and the client's sockets use TCP keepalive and ``TCP_USER_TIMEOUT`` so a peer
that vanished without a FIN or RST (an API server failover, a conntrack eviction) is noticed
by the kernel even on a connection that is idle in the pool.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maint.errors import MaintError

if TYPE_CHECKING:
    from maint.cluster.caching import Cache

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection (TCP and TLS) to the API server."""
READ_TIMEOUT = 15.0
"""Seconds of silence from the API server, once asked, before a request counts as failed. The
API server answers in milliseconds; a large list streams, and the timeout is per read."""
REQUEST_TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
"""(connect, read) seconds for every non-watch request: a hung API server must not hang a step."""

KEEPALIVE_IDLE = 10  # seconds idle before the first probe
KEEPALIVE_INTERVAL = 5  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is dropped
USER_TIMEOUT_MS = 20_000  # sent data unacknowledged this long: the connection is dropped


def socket_options() -> list[tuple[int, int, int]]:
    """Options for every socket of the client's pool (urllib3 ``socket_options``).

    They replace urllib3's defaults, so its ``TCP_NODELAY`` is repeated here. The per-probe
    options exist on Linux (and most others); ``TCP_USER_TIMEOUT`` on Linux only.
    """
    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            options.append((socket.IPPROTO_TCP, option, value))
    return options


@dataclass(frozen=True)
class Cluster:
    """Typed API groups over one ``ApiClient``; ``cache``: the runner's watch cache
    (``caching``), which reads marked ``cached=True`` use (None: every read is a request)."""

    api: Any
    core: Any
    batch: Any
    discovery: Any
    events: Any
    networking: Any
    cache: Cache | None = None

    def close(self) -> None:
        self.api.close()

    def clone(self) -> Cluster:
        """Another client with the same configuration and headers (impersonation), and a
        connection pool of its own."""
        from kubernetes import client

        api = client.ApiClient(self.api.configuration)
        for name, value in self.api.default_headers.items():
            api.set_default_header(name, value)
        return _groups(api)


def connect(*, kubeconfig: str | None = None, impersonate: str | None = None) -> Cluster:
    """Build a client from a kubeconfig path, else in-cluster credentials, else ~/.kube/config."""
    # Imported here: the client takes a third of a second to import, which commands that never
    # connect (``notice list``, ``status``) should not pay.
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

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
    configuration.socket_options = socket_options()
    # urllib3 would otherwise retry a timed-out GET three times on its own, silently
    # multiplying every timeout by four; ``calls`` retries within a budget instead.
    configuration.retries = False
    api = client.ApiClient(configuration)
    if impersonate:
        api.set_default_header("Impersonate-User", impersonate)
    return _groups(api)


def _groups(api: Any) -> Cluster:
    from kubernetes import client

    return Cluster(
        api=api,
        core=client.CoreV1Api(api),
        batch=client.BatchV1Api(api),
        discovery=client.DiscoveryV1Api(api),
        events=client.EventsV1Api(api),
        networking=client.NetworkingV1Api(api),
    )
