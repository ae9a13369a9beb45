"""A tiny real OCI image, written by hand and pushed with skopeo: no Docker, no base image.

The image has one gzip layer holding ``/usr/share/nginx/html/index.html`` with random content,
so every call yields a new manifest digest and tests never collide on a shared registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class Layout:
    """An OCI image layout on disk holding one image under ``tag``."""

    path: Path
    tag: str
    manifest_digest: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(root: Path, data: bytes) -> dict[str, object]:
    digest = _sha256(data)
    (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = sorted(
            {"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)}
        )
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_layout(directory: Path, *, tag: str = "latest") -> Layout:
    """Write a one-layer OCI image layout into ``directory`` (created if needed)."""
    (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    page = f"<!doctype html><title>maintenance</title><p>{secrets.token_hex(16)}</p>\n"
    tar = _layer_tar({"usr/share/nginx/html/index.html": page.encode()})
    layer = _put_blob(directory, gzip.compress(tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_sha256(tar)]},
        "history": [{"created_by": "tests.support.oci_image"}],
    }
    config_blob = _put_blob(directory, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, **config_blob},
        "layers": [{"mediaType": LAYER_TYPE, **layer}],
    }
    manifest_blob = _put_blob(directory, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                **manifest_blob,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return Layout(path=directory, tag=tag, manifest_digest=str(manifest_blob["digest"]))


def push(layout: Layout, *, skopeo: str, destination: str) -> str:
    """Copy the layout to ``destination`` (``host:port/repo:tag``) over plain HTTP.

    Returns the digest the registry stored, as skopeo reports it (``--digestfile``).
    ``--insecure-policy`` because a test machine may lack /etc/containers/policy.json.
    """
    digest_file = layout.path.parent / f"{layout.path.name}.digest"
    result = subprocess.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digest_file),
            f"oci:{layout.path}:{layout.tag}",
            f"docker://{destination}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy to {destination} failed: {result.stderr.strip()}")
    return digest_file.read_text().strip()
