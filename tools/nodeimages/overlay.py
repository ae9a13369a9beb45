"""Kustomizations for the real node, with the image references build.sh wrote.

manifests/overlays/local names the images by their ``local`` tags in the node's registry; the
digests are only known once build.sh has pushed them. This writes kustomizations that take the
overlay (and the sample app) as their base and pin every image by digest, in whatever registry
the references name:

    python3 -m tools.nodeimages.overlay --images IMAGES.json [--data /node/folder] --out DIR
    kubectl apply -k DIR/maint       # maint itself (manifests/overlays/local)
    kubectl apply -k DIR/sample-app  # the sample app on the local nginx image

``--data`` replaces the node folder behind maint's PersistentVolume (default: the overlay's,
/var/lib/maint/local-pv); it must exist, owned by UID 10001.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "manifests" / "overlays" / "local"
SAMPLE_APP = REPO / "manifests" / "sample-app"
#: maint's image as manifests/overlays/local names it (without its tag): what gets pinned.
LOCAL_MAINT_IMAGE = "10.88.0.1:5000/maint-node/maint"
_REF = re.compile(
    r"(?P<registry>[A-Za-z0-9.-]+:[0-9]+)/(?P<repo>[a-z0-9/._-]+)@(?P<digest>sha256:[0-9a-f]{64})"
)


class OverlayError(Exception):
    pass


def _split(refs: Mapping[str, str], name: str) -> re.Match[str]:
    ref = refs.get(name)
    match = _REF.fullmatch(ref or "")
    if match is None:
        raise OverlayError(f"image {name!r}: {ref!r} is not HOST:PORT/repo@sha256:<64 hex>")
    return match


def _write(directory: Path, base: Path, document: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # kustomize refuses absolute paths in a kustomization: a relative one to the base.
    document = {"resources": [os.path.relpath(base, directory)], **document}
    (directory / "kustomization.yaml").write_text(json.dumps(document, indent=2) + "\n")
    return directory


def maint_kustomization(
    directory: Path, refs: Mapping[str, str], *, data: Path | None = None
) -> Path:
    """``directory``/kustomization.yaml: overlays/local with every image pinned by digest."""
    maint = _split(refs, "maint")
    registry = maint["registry"]
    for name in ("kaniko", "nginx"):
        if _split(refs, name)["registry"] != registry:
            raise OverlayError(f"image {name!r} is not in the registry {registry} maint is in")
    if data is not None and not data.is_absolute():
        raise OverlayError(f"--data {data}: the PersistentVolume's folder must be absolute")
    repository = f"{registry}/maint-page"
    patches: list[dict[str, object]] = [
        _policy_patch("maint-page-pods", {"repository": repository}),
        _policy_patch(
            "maint-build-jobs", {"kanikoImage": refs["kaniko"], "repository": repository}
        ),
    ]
    if data is not None:
        volume = [{"op": "replace", "path": "/spec/hostPath/path", "value": str(data)}]
        patches.append(
            {
                "target": {"kind": "PersistentVolume", "name": "maint-data-local"},
                "patch": json.dumps(volume),
            }
        )
    return _write(
        directory,
        LOCAL,
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "images": [
                {
                    "name": LOCAL_MAINT_IMAGE,
                    "newName": f"{registry}/{maint['repo']}",
                    "digest": maint["digest"],
                }
            ],
            "configMapGenerator": [
                {
                    "name": "maint-settings",
                    "namespace": "maint-system",
                    "behavior": "merge",
                    "literals": [
                        f"MAINT_IMAGE_REPOSITORY={repository}",
                        f"MAINT_KANIKO_IMAGE={refs['kaniko']}",
                        f"MAINT_BASE_IMAGE={refs['nginx']}",
                    ],
                }
            ],
            "patches": patches,
        },
    )


def _policy_patch(policy: str, values: Mapping[str, str]) -> dict[str, object]:
    """Set the admission policy's variables (in the order admission.yaml declares them)."""
    ops: list[dict[str, str]] = []
    for index, (name, value) in enumerate(values.items()):
        ops.append({"op": "test", "path": f"/spec/variables/{index}/name", "value": name})
        ops.append(
            {"op": "replace", "path": f"/spec/variables/{index}/expression", "value": f"'{value}'"}
        )
    return {
        "target": {"kind": "ValidatingAdmissionPolicy", "name": policy},
        "patch": json.dumps(ops),
    }


def sample_app_kustomization(directory: Path, refs: Mapping[str, str]) -> Path:
    """``directory``/kustomization.yaml: manifests/sample-app on the local nginx image."""
    nginx = _split(refs, "nginx")
    return _write(
        directory,
        SAMPLE_APP,
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "images": [
                {
                    "name": "kind-registry:5000/nginxinc/nginx-unprivileged",
                    "newName": f"{nginx['registry']}/{nginx['repo']}",
                    "digest": nginx["digest"],
                }
            ],
        },
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tools.nodeimages.overlay", description=__doc__
    )
    parser.add_argument("--images", required=True, type=Path, help="build.sh's JSON")
    parser.add_argument("--data", type=Path, help="node folder for maint's PV (absolute)")
    parser.add_argument("--out", required=True, type=Path, help="folder for maint/, sample-app/")
    args = parser.parse_args(argv)
    try:
        refs = json.loads(args.images.read_text())
        if not isinstance(refs, dict):
            raise OverlayError(f"--images {args.images}: not a JSON object")
        # Check everything before writing anything.
        for name in ("maint", "kaniko", "nginx"):
            _split(refs, name)
        maint_kustomization(args.out / "maint", refs, data=args.data)
        sample_app_kustomization(args.out / "sample-app", refs)
    except (OSError, ValueError, OverlayError) as error:
        print(f"overlay: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
