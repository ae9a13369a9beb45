"""Images the node itself needs, built here without any outside registry.

Only the pause image, the sandbox every Pod starts with: a static C program that waits for a
signal and reaps children, compiled with the host's gcc, written as a one-layer OCI layout and
pushed with skopeo. The application images (nginx-like, Kaniko, maint) come from
``tools/nodeimages/build.sh``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

PAUSE_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
"""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(root: Path, data: bytes) -> dict[str, object]:
    digest = _sha256(data)
    (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def write_layout(root: Path, files: dict[str, tuple[bytes, int]], entrypoint: list[str]) -> None:
    """A one-layer OCI image layout tagged ``latest``: ``files`` maps path -> (content, mode)."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "blobs" / "sha256").mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    layer_tar = buffer.getvalue()
    layer = _blob(root, gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(root, json.dumps(config, sort_keys=True).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    descriptor = {
        "mediaType": manifest["mediaType"],
        **_blob(root, json.dumps(manifest, sort_keys=True).encode()),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))


def pause_layout(cache: Path) -> Path:
    """The pause image's OCI layout, built once into ``cache`` (gcc -static)."""
    root = cache / "pause-oci"
    if (root / "index.json").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    source, binary = cache / "pause.c", cache / "pause"
    source.write_text(PAUSE_C)
    subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    write_layout(root, {"pause": (binary.read_bytes(), 0o755)}, ["/pause"])
    return root


def push(layout: Path, destination: str) -> str:
    """skopeo copy the layout to ``destination`` over plain HTTP; returns ``repo@sha256:…``."""
    digest_file = layout.with_suffix(".digest")
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digest_file),
            f"oci:{layout}:latest",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    repository = destination.rsplit(":", 1)[0] if "/" in destination else destination
    return f"{repository}@{digest_file.read_text().strip()}"
