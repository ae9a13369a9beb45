"""The maintenance Pod: built purely from the Service's ports, admitted by Pod Security
``restricted`` (non-root, read-only root FS, all capabilities dropped, RuntimeDefault seccomp)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from maint.cluster import Manifest, ServiceInfo
from maint.errors import InvalidInput
from maint.page.bypass import INCLUDE_DIR

FIRST_FREE_PORT = 8080  # where named targetPorts are placed: nginx-unprivileged's own port
PAGE_UID = 101  # the nginx user of nginxinc/nginx-unprivileged


@dataclass(frozen=True)
class ContainerPort:
    number: int
    name: str | None = None


def plan_ports(service: ServiceInfo) -> tuple[ContainerPort, ...]:
    """A container port for every TCP ``targetPort`` of the Service.

    Numeric targets are kept; named ones get a free number from 8080 up and carry the name, so
    the Service resolves them on the page Pod exactly as on the app Pods. Ports below 1024 need
    a runtime that allows unprivileged low ports (containerd 2 and Docker 20.10+ do by default).
    """
    tcp = [p for p in service.ports if p.protocol == "TCP"]
    if not tcp:
        raise InvalidInput(
            f"Service {service.namespace}/{service.name} has no TCP port for a page to answer on"
        )
    numbers = sorted({p.target_port for p in tcp if isinstance(p.target_port, int)})
    names = sorted({p.target_port for p in tcp if isinstance(p.target_port, str)})
    planned = [ContainerPort(number=n) for n in numbers]
    used = set(numbers)
    candidate = FIRST_FREE_PORT
    for name in names:
        while candidate in used:
            candidate += 1
        planned.append(ContainerPort(number=candidate, name=name))
        used.add(candidate)
    return tuple(planned)


def page_pod(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    image: str,
    ports: Sequence[ContainerPort],
    drain: int,
    bypass_secret: str | None = None,
) -> Manifest:
    """The page Pod; once deleted it keeps serving for ``drain`` seconds (Settings.page_drain)
    so clients whose kube-proxy still routes to it get the page, not a refused connection.
    With ``bypass_secret`` it mounts that Secret's nginx include read-only (``page.bypass``);
    the kubelet starts it once the Secret exists."""
    mounts: list[dict[str, object]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    volumes: list[dict[str, object]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    ]
    if bypass_secret is not None:
        mounts.append({"name": "bypass", "mountPath": INCLUDE_DIR, "readOnly": True})
        volumes.append(
            {"name": "bypass", "secret": {"secretName": bypass_secret, "defaultMode": 0o444}}
        )
    probe = {
        "httpGet": {"path": "/healthz", "port": ports[0].number},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            # The drain, then nginx's own shutdown.
            "terminationGracePeriodSeconds": drain + 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": PAGE_UID,
                "runAsGroup": PAGE_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            | _low_ports(ports),
            "containers": [
                {
                    "name": "page",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [
                        {"containerPort": p.number, "protocol": "TCP"}
                        | ({"name": p.name} if p.name else {})
                        for p in ports
                    ],
                    "readinessProbe": probe,
                    "livenessProbe": probe | {"periodSeconds": 10},
                    "lifecycle": {"preStop": {"sleep": {"seconds": drain}}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "200m", "memory": "64Mi"},
                    },
                    # nginx writes its pid and temp files under /tmp; the root FS stays read-only.
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def _low_ports(ports: Sequence[ContainerPort]) -> dict[str, object]:
    """Let UID 101 without capabilities bind ports below 1024 (a "safe" sysctl, allowed by
    Pod Security ``restricted``) only when the Service targets one."""
    if min(p.number for p in ports) >= 1024:
        return {}
    return {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}
