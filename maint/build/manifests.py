"""Pure builders of the build ConfigMap and the Kaniko Job.

The build context travels as one ``tar.gz`` in ``binaryData``: a ConfigMap volume holds symlinks
(``file -> ..data/file``) and Kaniko's COPY would copy the link, not the file (kaniko #1382);
``--context=tar://`` reads the archive through the link instead. The readable files go into
``data`` too, so the page can be reviewed with kubectl before the window.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from maint.cluster import Manifest

CONTEXT_KEY = "context.tar.gz"
CONTEXT_DIR = "/context"


@dataclass(frozen=True)
class KanikoSpec:
    """What the Job needs from settings; kept apart so the builder stays pure and small."""

    image: str
    service_account: str
    insecure: bool
    timeout_seconds: int
    aws_region: str | None = None


def build_configmap(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    files: Mapping[str, bytes],
    tarball: bytes,
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {key: value.decode("utf-8") for key, value in sorted(files.items())},
        "binaryData": {CONTEXT_KEY: base64.b64encode(tarball).decode("ascii")},
        "immutable": True,
    }


def kaniko_job(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    destination: str,
    spec: KanikoSpec,
) -> Manifest:
    """One try (``backoffLimit: 0``): a failed build rolls the window back instead of looping."""
    args = [
        f"--context=tar://{CONTEXT_DIR}/{CONTEXT_KEY}",
        "--dockerfile=Dockerfile",
        f"--destination={destination}",
        # Kaniko writes the pushed digest here; the kubelet turns it into the termination
        # message, which is how maint learns the digest without reading logs.
        "--digest-file=/dev/termination-log",
        "--cache=false",
        "--verbosity=info",
        "--log-format=text",  # no ANSI colours: the log tail goes into the event log
    ]
    if spec.insecure:
        args += ["--insecure", "--insecure-pull", "--skip-tls-verify", "--skip-tls-verify-pull"]
    env = [{"name": "AWS_REGION", "value": spec.aws_region}] if spec.aws_region else []
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.timeout_seconds,
            # A safety net if maint itself is gone: finished Jobs disappear after a day.
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": spec.service_account,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "kaniko",
                            "image": spec.image,
                            "args": args,
                            "env": env,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {"allowPrivilegeEscalation": False},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "volumeMounts": [
                                {"name": "context", "mountPath": CONTEXT_DIR, "readOnly": True}
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "context",
                            "configMap": {
                                "name": name,
                                "items": [{"key": CONTEXT_KEY, "path": CONTEXT_KEY}],
                            },
                        }
                    ],
                },
            },
        },
    }
