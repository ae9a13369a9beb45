"""maint and the sample app on the real node, deployed as an operator would: ``kubectl apply -k``.

The images come from ``tools/nodeimages/build.sh`` (pause, nginx-unprivileged-like, Kaniko,
maint; cached, so a warm run only pushes) as ``host:port/repo@sha256:…``. A kustomization in a
temp folder takes ``manifests/overlays/local`` (or ``manifests/sample-app``) as its base and
only pins those digests, so what is applied is the overlay itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from tests.support.node import Node

REPO = Path(__file__).resolve().parents[2]
#: The image builder; MAINT_NODEIMAGES_BUILD may name another copy of it (a helper's worktree).
BUILD_SCRIPT = Path(
    os.environ.get("MAINT_NODEIMAGES_BUILD") or REPO / "tools" / "nodeimages" / "build.sh"
)
SAMPLE_APP_IMAGE = "kind-registry:5000/nginxinc/nginx-unprivileged"  # as manifests/sample-app says


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


def _image_entry(name: str, reference: str) -> str:
    repository, digest = reference.split("@", 1)
    return f"  - name: {name}\n    newName: {repository}\n    digest: {digest}\n"


def apply_kustomization(node: Node, base: Path, images: dict[str, str], extra: str = "") -> None:
    """``kubectl apply -k`` of a kustomization whose only resource is ``base``, digests pinned."""
    with tempfile.TemporaryDirectory(prefix="maint-kustomize-") as folder:
        text = (
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            # kustomize refuses an absolute base; a relative one may leave the folder.
            f"resources:\n  - {os.path.relpath(base, folder)}\nimages:\n"
            + "".join(_image_entry(name, ref) for name, ref in images.items())
            + extra
        )
        (Path(folder) / "kustomization.yaml").write_text(text)
        node.kubectl("apply", "-k", folder)


LOCAL_OVERLAY = REPO / "manifests" / "overlays" / "local"


def deploy_maint(node: Node, refs: dict[str, str]) -> None:
    """maint from ``manifests/overlays/local``, rolled out; Kaniko and the page's base by digest."""
    if not (LOCAL_OVERLAY / "kustomization.yaml").exists():
        raise AssertionError(f"{LOCAL_OVERLAY} is missing (the real node's overlay)")
    settings = (
        "configMapGenerator:\n  - name: maint-settings\n    namespace: maint-system\n"
        "    behavior: merge\n    literals:\n"
        f"      - MAINT_KANIKO_IMAGE={refs['kaniko']}\n"
        f"      - MAINT_BASE_IMAGE={refs['nginx']}\n"
    )
    apply_kustomization(node, LOCAL_OVERLAY, {"maint": refs["maint"]}, settings)
    node.kubectl("-n", "maint-system", "rollout", "status", "deploy/maint", "--timeout=300s")


def deploy_sample_app(node: Node, refs: dict[str, str]) -> None:
    """shop/web (two nginx replicas behind a Service), rolled out."""
    apply_kustomization(node, REPO / "manifests" / "sample-app", {SAMPLE_APP_IMAGE: refs["nginx"]})
    node.kubectl("-n", "shop", "rollout", "status", "deploy/web", "--timeout=180s")


def maint(node: Node, *args: str) -> str:
    """A maint command inside the deployed controller, as an operator runs it."""
    return node.kubectl(
        "-n", "maint-system", "exec", "deploy/maint", "-c", "maint", "--", "maint", *args
    )


def cluster_ip(node: Node, namespace: str, service: str) -> str:
    return node.kubectl(
        "-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}"
    )
