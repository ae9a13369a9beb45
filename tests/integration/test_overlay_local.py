"""manifests/overlays/local and the kustomization tools.nodeimages.overlay writes on top of it.

Rendered with real kustomize (tests.support.manifests) and validated by the real 1.36 API server
(strict fields, Pod Security admission): the twin of the kind overlay for the real node.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from maint.settings import Settings
from tests.support import manifests
from tools.nodeimages import overlay

LOCAL = manifests.MANIFESTS / "overlays" / "local"
REGISTRY = "10.88.0.1:5123"
REFS = {
    name: f"{REGISTRY}/maint-node/{repo}@sha256:{digit * 64}"
    for name, repo, digit in (
        ("maint", "maint", "a"),
        ("kaniko", "kaniko-executor", "b"),
        ("nginx", "nginx-unprivileged", "c"),
        ("pause", "pause", "d"),
        ("python", "python", "e"),
    )
}


def _settings(docs: list[manifests.Doc]) -> dict[str, str]:
    [configmap] = manifests.find(docs, "ConfigMap", "maint-settings")
    return dict(configmap["data"])


def _images(docs: list[manifests.Doc]) -> set[str]:
    [deployment] = manifests.find(docs, "Deployment", "maint")
    spec = deployment["spec"]["template"]["spec"]
    return {c["image"] for c in spec["initContainers"] + spec["containers"]}


@pytest.fixture
def generated(tmp_path: Path) -> list[manifests.Doc]:
    overlay.maint_kustomization(tmp_path / "maint", REFS, data=Path("/srv/maint-pv"))
    return manifests.render(tmp_path / "maint")


def _objects(docs: list[manifests.Doc]) -> list[str]:
    """What each object is, without the content hash kustomize appends to generated names."""
    return sorted(re.sub(r"-[a-z0-9]{10}$", "", manifests.describe(d)) for d in docs)


def test_local_is_kind_plus_a_volume_and_every_image_in_the_nodes_registry():
    kind = manifests.render(manifests.KUSTOMIZATIONS["kind"])
    local = manifests.render(LOCAL)
    assert _objects(local) == sorted([*_objects(kind), "PersistentVolume maint-data-local"])
    assert "kind-registry" not in json.dumps(local)
    node = "10.88.0.1:5000"  # tests/support/node.py: NODE_IP, REGISTRY_PORT
    assert _images(local) == {f"{node}/maint-node/maint:local"}
    settings = _settings(local)
    assert settings["MAINT_KANIKO_IMAGE"] == f"{node}/maint-node/kaniko-executor:local"
    assert settings["MAINT_BASE_IMAGE"] == f"{node}/maint-node/nginx-unprivileged:local"
    assert settings["MAINT_IMAGE_REPOSITORY"] == f"{node}/maint-page"
    kind_settings = _settings(kind)
    differs = {
        k for k in settings.keys() | kind_settings.keys() if settings.get(k) != kind_settings.get(k)
    }
    assert differs == {"MAINT_KANIKO_IMAGE", "MAINT_BASE_IMAGE", "MAINT_IMAGE_REPOSITORY"}
    # The Deployment is kind's but for the image (and the generated names' hashes).
    [deployment] = manifests.find(local, "Deployment", "maint")
    [kind_deployment] = manifests.find(kind, "Deployment", "maint")
    text = json.dumps(deployment).replace(f"{node}/maint-node/maint:local", "IMAGE")
    kind_text = json.dumps(kind_deployment).replace("kind-registry:5000/maint:dev", "IMAGE")
    hashes = re.compile(r"(maint-settings|maint-database)-[a-z0-9]{10}")
    assert hashes.sub(r"\1", text) == hashes.sub(r"\1", kind_text)


def test_generated_kustomization_sets_every_image_by_digest_and_the_volume(generated):
    assert _images(generated) == {REFS["maint"]}
    settings = _settings(generated)
    assert settings["MAINT_KANIKO_IMAGE"] == REFS["kaniko"]
    assert settings["MAINT_BASE_IMAGE"] == REFS["nginx"]
    assert settings["MAINT_IMAGE_REPOSITORY"] == f"{REGISTRY}/maint-page"
    assert settings["MAINT_REGISTRY_INSECURE"] == "true"
    assert "10.88.0.1:5000" not in json.dumps(generated)  # REFS name another registry
    assert ":local" not in json.dumps(generated)
    fields = {f"MAINT_{name.upper()}" for name in Settings.model_fields}
    assert set(settings) <= fields
    Settings(**{k.removeprefix("MAINT_").lower(): v for k, v in settings.items()})
    [volume] = manifests.find(generated, "PersistentVolume")
    [claim] = manifests.find(generated, "PersistentVolumeClaim")
    assert volume["spec"]["hostPath"] == {"path": "/srv/maint-pv", "type": "Directory"}
    assert volume["spec"]["claimRef"] == {"namespace": "maint-system", "name": "maint-data"}
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"]
    [secret] = manifests.find(generated, "Secret", "maint-database")
    [deployment] = manifests.find(generated, "Deployment", "maint")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1
    assert secret["metadata"]["namespace"] == "maint-system"


def test_sample_app_runs_on_the_local_nginx_image(tmp_path):
    overlay.sample_app_kustomization(tmp_path / "app", REFS)
    docs = manifests.render(tmp_path / "app")
    [deployment] = manifests.find(docs, "Deployment")
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert images == {REFS["nginx"]}


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        ({**REFS, "maint": "maint:dev"}, "is not HOST:PORT/repo@sha256"),
        ({**REFS, "kaniko": "10.0.0.9:5000/k@sha256:" + "b" * 64}, "is not in the registry"),
        ({k: v for k, v in REFS.items() if k != "nginx"}, "'nginx': None"),
    ],
)
def test_bad_references_exit_2_and_write_nothing(tmp_path, refs, message):
    images = tmp_path / "images.json"
    images.write_text(json.dumps(refs))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "tools.nodeimages.overlay", "--images", str(images),
         "--data", "/srv/pv", "--out", str(out)],
        cwd=manifests.REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_generated_manifests_validate_on_the_api_server_without_pod_security_warnings(
    control_plane, k8s, generated
):
    suffix = uuid.uuid4().hex[:6]
    names = {d["metadata"]["name"] for d in manifests.find(generated, "Namespace")}
    homes = {ns: f"t-{ns}-{suffix}"[:63] for ns in names}
    docs = manifests.rehome(generated, namespaces=homes, suffix=suffix)
    namespaces = manifests.find(docs, "Namespace")
    created = manifests.apply(k8s, namespaces)
    try:
        rest = [d for d in docs if d["kind"] != "Namespace"]
        results = manifests.apply(k8s, rest, dry_run=True)
        assert {r.what for r in results} == {manifests.describe(d) for d in rest}
        assert [(r.what, r.warnings) for r in results + created if r.warnings] == []
    finally:
        manifests.delete(k8s, namespaces)
