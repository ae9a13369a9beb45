"""Build the real node's images, cache them, push them, write their references as JSON.

Run through tools/nodeimages/build.sh (which builds the pause program and the Kaniko executor
first). Every image is cached as an OCI layout in ``<cache>/images/<name>/<key>``; the key hashes
what went into it (this tool's code, the host's package versions, the image's own inputs), so a
warm run only pushes. Progress goes to stderr; the JSON file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.nodeimages import recipes
from tools.nodeimages.oci import Image, Layer, read_image, write_image, write_layer
from tools.nodeimages.rootfs import Rootfs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REPOSITORIES = {
    "pause": "maint-node/pause",
    "nginx": "maint-node/nginx-unprivileged",
    "kaniko": "maint-node/kaniko-executor",
    "python": "maint-node/python",
    "maint": "maint-node/maint",
}
#: Every image is pushed under this tag too (manifests/overlays/local names them so); the
#: references build.sh writes are by digest.
PUSH_TAG = "local"
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+:[0-9]{1,5}")


class UsageError(Exception):
    pass


def log(message: str) -> None:
    print(f"nodeimages: {message}", file=sys.stderr, flush=True)


def _hash_files(paths: list[Path], digest: Any) -> None:
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<none>")


def _tree_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _host_packages() -> bytes:
    """Every installed Debian package and version: a changed library changes the images."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.stdout if result.returncode == 0 else b"no dpkg"


@dataclass
class Context:
    cache: Path
    pause_binary: Path
    executor: Path
    base_key: str


def _key(context: Context, name: str, extra: list[Path], parent: str = "") -> str:
    digest = hashlib.sha256()
    digest.update(f"{name}\0{context.base_key}\0{parent}\0".encode())
    _hash_files(extra, digest)
    return digest.hexdigest()[:20]


def _cached(context: Context, name: str, key: str, build: Callable[[Path], Image]) -> Image:
    folder = context.cache / name / key
    if (folder / "index.json").exists():
        image = read_image(folder)
        log(f"{name}: cached ({image.size / 1e6:.1f} MB, {folder})")
        return image
    start = time.monotonic()
    log(f"{name}: building ...")
    work = context.cache / name / f".{key}.{os.getpid()}.work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        image = build(work)
        target = context.cache / name / key
        shutil.move(str(image.path), str(target))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in (context.cache / name).iterdir():
        if old.name != key and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)  # keep one version per image
    image = read_image(target)
    log(f"{name}: built in {time.monotonic() - start:.1f}s ({image.size / 1e6:.1f} MB)")
    return image


def _one_layer(
    name: str,
    key: str,
    recipe: Callable[[Rootfs], dict[str, Any]],
    owners: dict[str, tuple[int, int]] | None = None,
) -> Callable[[Path], Image]:
    def build(work: Path) -> Image:
        root = Rootfs(work / "rootfs")
        config = recipe(root)
        layer = write_layer(root.root, work / "blobs", owners=owners or {})
        shutil.rmtree(root.root)
        return write_image(
            work / "layout", [layer], config=config, tag=key, created_by=f"tools/nodeimages {name}"
        )

    return build


def _layers(image: Image) -> list[Layer]:
    blobs = image.path / "blobs" / "sha256"
    index = json.loads((image.path / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return [
        Layer(
            digest=entry["digest"],
            diff_id=diff_id,
            size=entry["size"],
            blob=blobs / entry["digest"][7:],
        )
        for entry, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)
    ]


def _pip(*args: str) -> None:
    command = [str(recipes.PYTHON), "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def _maint_sources() -> list[Path]:
    return [
        REPO / "pyproject.toml",
        REPO / "README.md",
        REPO / "Dockerfile",
        *_tree_files(REPO / "maint"),
    ]


def _wheels(context: Context, work: Path) -> tuple[Path, Path]:
    """(folder of dependency wheels, maint's own wheel), both built on the host."""
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "maint", source / "maint", ignore=shutil.ignore_patterns("__pycache__"))
    own = work / "own"
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(own), str(source))
    deps_key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:20]
    deps = context.cache / "wheels" / deps_key
    if not deps.is_dir():
        log("maint: downloading dependency wheels on the host (cold, once per pyproject.toml) ...")
        scratch = context.cache / "wheels" / f".{deps_key}.work"
        shutil.rmtree(scratch, ignore_errors=True)
        _pip("wheel", "--quiet", "--wheel-dir", str(scratch), str(source))
        for wheel in scratch.glob("maint-*.whl"):
            wheel.unlink()
        scratch.rename(deps)
    wheel = next(own.glob("maint-*.whl"))
    return deps, wheel


def _maint_build(context: Context, python_image: Image, key: str) -> Callable[[Path], Image]:
    def build(work: Path) -> Image:
        deps, wheel = _wheels(context, work)
        site = work / "site"
        _pip(
            "install", "--quiet", "--no-index", "--no-compile", "--find-links", str(deps),
            "--target", str(site), str(wheel),
        )  # fmt: skip
        subprocess.run(
            [
                str(recipes.PYTHON),
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "-d",
                recipes.SITE,
                str(site),
            ],
            check=True,
            timeout=600,
        )
        root = Rootfs(work / "rootfs")
        config = recipes.maint(root, site, REPO / "Dockerfile")
        layer = write_layer(root.root, work / "blobs", owners=recipes.maint_owners(config))
        return write_image(
            work / "layout",
            [*_layers(python_image), layer],
            config=config,
            tag=key,
            created_by="tools/nodeimages maint (Dockerfile's runtime settings, host wheels)",
        )

    return build


def build_all(context: Context) -> dict[str, Image]:
    images: dict[str, Image] = {}
    pause_key = _key(context, "pause", [context.pause_binary])
    images["pause"] = _cached(
        context, "pause", pause_key,
        _one_layer("pause", pause_key, lambda r: recipes.pause(r, context.pause_binary)),
    )  # fmt: skip
    nginx_key = _key(context, "nginx", [])
    images["nginx"] = _cached(
        context, "nginx", nginx_key,
        _one_layer("nginx", nginx_key, recipes.nginx, recipes.NGINX_OWNERS),
    )  # fmt: skip
    kaniko_key = _key(context, "kaniko", [context.executor])
    images["kaniko"] = _cached(
        context, "kaniko", kaniko_key,
        _one_layer("kaniko", kaniko_key, lambda r: recipes.kaniko(r, context.executor)),
    )  # fmt: skip
    python_key = _key(context, "python", [])
    images["python"] = _cached(
        context, "python", python_key, _one_layer("python", python_key, recipes.python)
    )
    maint_key = _key(context, "maint", _maint_sources(), parent=python_key)
    images["maint"] = _cached(
        context, "maint", maint_key, _maint_build(context, images["python"], maint_key)
    )
    return images


def push(image: Image, *, registry: str, repository: str) -> str:
    """``skopeo copy`` to the registry over plain HTTP; the reference by the pushed digest."""
    with tempfile.TemporaryDirectory(prefix="maint-nodeimages-") as scratch:
        digest_file = Path(scratch) / "digest"
        destination = f"{registry}/{repository}:{PUSH_TAG}"
        result = subprocess.run(
            [
                "skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                "--digestfile", str(digest_file), f"oci:{image.path}:{image.tag}",
                f"docker://{destination}",
            ],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"skopeo copy to {destination} failed: {result.stderr.strip()}")
        digest = digest_file.read_text().strip()
    return f"{registry}/{repository}@{digest}"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/nodeimages/build.sh", description=__doc__)
    parser.add_argument("--registry", help="HOST:PORT of a plain-HTTP registry")
    parser.add_argument("--out", type=Path, help="JSON file of image references")
    parser.add_argument("--build-only", action="store_true", help="fill the cache, push nothing")
    parser.add_argument("--pause-binary", required=True, type=Path)
    parser.add_argument("--kaniko-executor", required=True, type=Path)
    parser.add_argument("--cache", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.build_only:
        if args.registry or args.out:
            raise UsageError("--build-only pushes nothing: give neither --registry nor --out")
        return args
    if not args.registry or not args.out:
        raise UsageError("--registry and --out are required (or --build-only)")
    if not _REGISTRY.fullmatch(args.registry):
        raise UsageError(f"--registry {args.registry!r} is not HOST:PORT")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    return args


def main(argv: list[str]) -> int:
    try:
        args = _parse(argv)
    except UsageError as error:
        print(f"nodeimages: {error}", file=sys.stderr)
        return 2
    start = time.monotonic()
    code = b"".join(p.read_bytes() for p in sorted(HERE.glob("*.py")))
    context = Context(
        cache=args.cache / "images",
        pause_binary=args.pause_binary,
        executor=args.kaniko_executor,
        base_key=hashlib.sha256(code + _host_packages()).hexdigest(),
    )
    images = build_all(context)
    built = time.monotonic()
    if args.build_only:
        log(f"built or found in the cache in {built - start:.1f}s; nothing pushed (--build-only)")
        return 0
    refs = {
        name: push(image, registry=args.registry, repository=REPOSITORIES[name])
        for name, image in images.items()
    }
    log(
        f"pushed to {args.registry} in {time.monotonic() - built:.1f}s; "
        f"total {time.monotonic() - start:.1f}s"
    )
    scratch = args.out.with_name(f".{args.out.name}.tmp")
    scratch.write_text(json.dumps(refs, indent=2, sort_keys=True) + "\n")
    scratch.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
