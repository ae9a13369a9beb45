"""Page Pods are watched, not only polled: one deleted or evicted in a window is back at once.

The poll (``poll_interval``, 15 s by default) finds a missing page Pod too, but up to a whole
interval late, and a Service whose page Pod is gone serves nothing meanwhile. ``PageWatch``
follows maint's Pods in the target namespaces (one watch across all namespaces when
``MAINT_TARGET_NAMESPACES`` is empty, else one per listed namespace, which is all the
per-namespace RBAC allows) and tells of each page Pod that is deleted or has failed (evicted).
The scheduler then has the runner observe that Pod's target at once (``Runner.page_gone``),
and the observe recreates it (``Preparing.ensure_pod``).

Only telling, never acting: a missed event costs at most one poll interval. The watches are
bounded and survive any API error (``cluster.follow_pods``); they run on daemon threads and
end within one watch chunk of ``stop``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from maint import cluster, naming
from maint.cluster import Cluster, PodInfo

MANAGED = f"{naming.MANAGED_BY}={naming.MANAGER},{naming.PAGE_LABEL}"


class PageWatch:
    def __init__(
        self, api: Cluster, *, namespaces: frozenset[str], gone: Callable[[str], None]
    ) -> None:
        """``namespaces``: where targets may be (empty: everywhere); ``gone(pod name)`` is
        called on a watch thread for each page Pod deleted or failed, and must not block."""
        self.api = api
        self.namespaces = namespaces
        self.gone = gone
        self._stop = threading.Event()

    def start(self) -> None:
        scopes: list[str | None] = [*sorted(self.namespaces)] or [None]
        for namespace in scopes:
            threading.Thread(
                target=cluster.follow_pods,
                args=(self.api,),
                kwargs={
                    "namespace": namespace,
                    "label_selector": MANAGED,
                    "seen": self._seen,
                    "stop": self._stop,
                },
                name=f"pages-{namespace or 'all'}",
                daemon=True,
            ).start()

    def stop(self) -> None:
        self._stop.set()

    def _seen(self, change: str, pod: PodInfo) -> None:
        # A page Pod is named after its page (a Kaniko Job's Pods carry the label too).
        if pod.labels.get(naming.PAGE_LABEL) != pod.name:
            return
        if change == "DELETED" or pod.phase == "Failed":
            self.gone(pod.name)
