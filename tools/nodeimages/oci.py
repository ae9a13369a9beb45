"""OCI image layouts from folders on disk: reproducible layers, no Docker, no base image.

A layer is a folder turned into a gzip tar with fixed timestamps (Python sources keep theirs, for
their .pyc files) and sorted entries, so the same folder always gives the same digest. File
owners come from a map of path prefixes to ``(uid, gid)``; everything else belongs to root.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class Layer:
    """A gzip tar blob already stored in some layout: its digests and size."""

    digest: str  # of the gzip blob
    diff_id: str  # of the uncompressed tar
    size: int
    blob: Path


@dataclass(frozen=True)
class Image:
    path: Path
    tag: str
    manifest_digest: str
    size: int  # the sum of the layer blobs (compressed), what a pull transfers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _owner(relative: str, owners: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    best = ""
    for prefix in owners:
        if (relative == prefix or relative.startswith(prefix.rstrip("/") + "/")) and len(
            prefix
        ) > len(best):
            best = prefix
    return owners[best] if best else (0, 0)


def _entries(root: Path) -> list[str]:
    names: list[str] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        base = Path(directory).relative_to(root)
        for name in sorted(subdirectories + files):
            names.append(str(base / name) if str(base) != "." else name)
    return sorted(names)


def _tarinfo(root: Path, name: str, owners: Mapping[str, tuple[int, int]]) -> tarfile.TarInfo:
    path = root / name
    info = tarfile.TarInfo(name)
    mode = path.lstat().st_mode
    info.mode = stat.S_IMODE(mode)
    # Fixed timestamps keep layers reproducible, except on Python sources: a .pyc is only used
    # when its source's mtime matches, and a read-only image could never rewrite a stale one
    # (every start would compile the whole standard library and maint's dependencies again).
    info.mtime = int(path.lstat().st_mtime) if name.endswith(".py") else 0
    info.uid, info.gid = _owner(name, owners)
    if stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = str(path.readlink())
        info.mode = 0o777
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(mode):
        info.size = path.stat().st_size
    else:
        raise ValueError(f"{path}: only files, folders and symlinks go into an image layer")
    return info


def write_layer(root: Path, blobs: Path, *, owners: Mapping[str, tuple[int, int]]) -> Layer:
    """Store ``root``'s contents as one gzip tar layer in the ``blobs`` folder."""
    blobs.mkdir(parents=True, exist_ok=True)
    tar_path = blobs / "layer.tar.tmp"
    with tarfile.open(tar_path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in _entries(root):
            info = _tarinfo(root, name, owners)
            if info.isreg():
                with (root / name).open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    diff_id = sha256_file(tar_path)
    gz_path = blobs / "layer.tar.gz.tmp"
    with (
        tar_path.open("rb") as source,
        gz_path.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out,
    ):
        shutil.copyfileobj(source, out, 1 << 20)
    tar_path.unlink()
    digest = sha256_file(gz_path)
    blob = blobs / digest.removeprefix("sha256:")
    gz_path.replace(blob)
    return Layer(digest=digest, diff_id=diff_id, size=blob.stat().st_size, blob=blob)


def _put_json(blobs: Path, document: Mapping[str, Any]) -> dict[str, Any]:
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def write_image(
    directory: Path,
    layers: Sequence[Layer],
    *,
    config: Mapping[str, Any],
    tag: str,
    created_by: str,
) -> Image:
    """An OCI layout in ``directory`` (replaced) holding one image: ``layers`` in order.

    ``config`` is the image config's ``config`` object (Env, User, Entrypoint, Cmd, ...).
    Layer blobs stored elsewhere are hard-linked (or copied) into the layout.
    """
    if directory.exists():
        shutil.rmtree(directory)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for layer in layers:
        target = blobs / layer.digest.removeprefix("sha256:")
        if not target.exists():
            try:
                os.link(layer.blob, target)
            except OSError:
                shutil.copyfile(layer.blob, target)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": created_by}],
    }
    config_blob = _put_json(blobs, image_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, **config_blob},
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_blob = _put_json(blobs, manifest)
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
    return Image(
        path=directory,
        tag=tag,
        manifest_digest=manifest_blob["digest"],
        size=sum(layer.size for layer in layers),
    )


def read_image(directory: Path) -> Image:
    """The image a layout written by :func:`write_image` holds."""
    index = json.loads((directory / "index.json").read_text())
    entry = index["manifests"][0]
    blobs = directory / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_text())
    return Image(
        path=directory,
        tag=entry["annotations"]["org.opencontainers.image.ref.name"],
        manifest_digest=entry["digest"],
        size=sum(int(layer["size"]) for layer in manifest["layers"]),
    )


def unpack(image: Image, target: Path) -> None:
    """Extract the image's layers in order into ``target`` (what a runtime's root would hold).

    For checks on the host (``chroot``): the layers written here hold no whiteouts.
    """
    blobs = image.path / "blobs" / "sha256"
    manifest = json.loads((blobs / image.manifest_digest.removeprefix("sha256:")).read_text())
    target.mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].removeprefix("sha256:"), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise ValueError(f"{image.path}: layer entry {member.name!r} leaves the root")
            tar.extractall(target, numeric_owner=True)  # noqa: S202 - checked just above
