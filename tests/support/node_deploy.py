"""maint and the sample app on the real node, deployed as an operator would: ``kubectl apply -k``.

The images come from ``tools/nodeimages/build.sh`` (pause, nginx-unprivileged-like, Kaniko,
maint; cached, so a warm run only pushes) as ``host:port/repo@sha256:…``;
``tools.nodeimages.overlay`` writes kustomizations that take ``manifests/overlays/local`` and
``manifests/sample-app`` as their bases and only pin those digests and maint's data folder, so
what is applied is the overlay itself.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests.support.node import Node

REPO = Path(__file__).resolve().parents[2]
#: The image builder; MAINT_NODEIMAGES_BUILD may name another copy of it (a helper's worktree).
BUILD_SCRIPT = Path(
    os.environ.get("MAINT_NODEIMAGES_BUILD") or REPO / "tools" / "nodeimages" / "build.sh"
)
#: The checkout that holds that script (and its ``tools.nodeimages.overlay``).
TOOLS_REPO = BUILD_SCRIPT.resolve().parents[2]
MAINT_UID = 10001  # the Dockerfile's and the manifests' user
MAINT_DATA = "maint-data"  # under the node's folder: survives a restart of the maint Pod


def build_images(node: Node) -> dict[str, str]:
    """Push the node's images to its registry; returns {"nginx": "host:port/repo@sha256:…", …}."""
    out = node.workdir / "images.json"
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--registry", node.registry, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{BUILD_SCRIPT} failed: {result.stderr[-3000:]}")
    refs: dict[str, str] = json.loads(out.read_text())
    return refs


def _kustomizations(node: Node, refs: dict[str, str]) -> Path:
    """``tools.nodeimages.overlay``: kustomizations (``maint/``, ``sample-app/``) over
    ``manifests/overlays/local`` and ``manifests/sample-app`` that pin these digests."""
    images, out, data = node.workdir / "images.json", node.workdir / "kustomize", MAINT_DATA
    images.write_text(json.dumps(refs))
    # The SQLite folder behind maint's PersistentVolume, on the node, owned by maint's UID.
    (node.workdir / data).mkdir(exist_ok=True)
    os.chown(node.workdir / data, MAINT_UID, MAINT_UID)
    command = [sys.executable, "-m", "tools.nodeimages.overlay", "--images", str(images)]
    command += ["--data", str(node.workdir / data), "--out", str(out)]
    result = subprocess.run(
        command,
        cwd=TOOLS_REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"tools.nodeimages.overlay failed: {result.stderr.strip()}")
    return out


def deploy(node: Node, refs: dict[str, str]) -> None:
    """maint (``manifests/overlays/local``) and the sample app, applied and rolled out."""
    out = _kustomizations(node, refs)
    # The bypass key (README, Bypass) exists before maint starts: its env reads it once.
    node.kubectl("create", "namespace", "maint-system")
    node.kubectl(
        "-n", "maint-system", "create", "secret", "generic", "maint-bypass-key",
        f"--from-literal=key={secrets.token_urlsafe(48)}",
    )  # fmt: skip
    node.kubectl("apply", "-k", str(out / "maint"))
    node.kubectl("apply", "-k", str(out / "sample-app"))
    try:
        node.kubectl("-n", "maint-system", "rollout", "status", "deploy/maint", "--timeout=240s")
        node.kubectl("-n", "shop", "rollout", "status", "deploy/web", "--timeout=180s")
    except (AssertionError, subprocess.TimeoutExpired) as error:
        raise AssertionError(f"{error}\n{describe(node)}") from None


def describe(node: Node) -> str:
    """Pods, claims and the latest events of every namespace: why a rollout did not finish."""
    return "\n".join(
        node.kubectl(*args)
        for args in (
            ("get", "pods,pvc,pv", "-A", "-o", "wide"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        )
    )[-6000:]


def maint(node: Node, *args: str) -> str:
    """A maint command inside the deployed controller, as an operator runs it."""
    return node.kubectl(
        "-n", "maint-system", "exec", "deploy/maint", "-c", "maint", "--", "maint", *args
    )


def cluster_ip(node: Node, namespace: str, service: str) -> str:
    return node.kubectl(
        "-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}"
    )
