"""The bypass's objects next to a page Pod (``page.bypass``): a shadow Service with the app's
original selector, and the Secret holding the nginx include the page Pod mounts.

Both are named after the page Pod (``<page>-bypass``) and owned by it (``ownerReferences``):
the garbage collector deletes them once the Pod is gone, after its drain, at every ending (the
forced restore included) and even if maint stops. A refresh's new page has its own pair.

The shadow Service listens on the page's own port numbers and targets the app's ports as the
original Service does (a named targetPort resolves on the app's Pods as before), so the page's
nginx proxies a request that came in on port P to the shadow's port P. It is ClusterIP only:
reachable inside the cluster, never exposed. Pure manifest builders.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from maint.cluster import Manifest, PodInfo
from maint.page import bypass
from maint.switch.pod import ContainerPort

SUFFIX = "-bypass"


def name_for(page: str) -> str:
    return page + SUFFIX


def owned_by(pod: PodInfo) -> list[dict[str, object]]:
    return [{"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}]


def shadow_service(
    *,
    pod: PodInfo,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    ports: Sequence[ContainerPort],
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name_for(pod.name),
            "namespace": pod.namespace,
            "labels": dict(labels),
            "ownerReferences": owned_by(pod),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "name": f"p{p.number}",
                    "port": p.number,
                    "targetPort": p.name or p.number,
                    "protocol": "TCP",
                }
                for p in ports
            ],
        },
    }


def bypass_secret(*, pod: PodInfo, labels: Mapping[str, str], include: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name_for(pod.name),
            "namespace": pod.namespace,
            "labels": dict(labels),
            "ownerReferences": owned_by(pod),
        },
        "data": {bypass.INCLUDE_FILE: base64.b64encode(include.encode()).decode()},
    }
