"""maint's kustomize manifests as plain data: render them, re-home them, send them to a cluster.

Why: the RBAC and schema tests (tests/integration/test_manifests.py) and ``make demo`` apply the
very files an operator applies, not a copy. Rendering needs kustomize; in order of preference:
``$KUSTOMIZE``, ``kustomize`` on PATH, a copy cached in ``~/.cache/maint/kustomize/<version>``,
``kubectl kustomize``, else that cached copy is built once with ``go install`` (Go module proxy,
about a minute).

``rehome`` renames namespaces and suffixes cluster-scoped names, so a test can apply the real
objects to a shared control plane without clashing with another test or a later run. ``apply``
creates objects through the dynamic client, for real or as a server-side dry run with strict field
validation (unknown or duplicate fields are errors), and returns the API server's warnings
(Pod Security ``warn`` findings arrive that way).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

from tests.support.require import missing

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZE_VERSION = "v5.7.1"  # v5.8 needs Go 1.27; this one builds with the Go 1.26 we have
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"

#: What each kustomization is for; the tests render and validate every one.
KUSTOMIZATIONS = {
    "base": MANIFESTS / "base",
    "kind": MANIFESTS / "overlays" / "kind",
    "eks": MANIFESTS / "overlays" / "eks",
    "sample-app": MANIFESTS / "sample-app",
}
#: Kustomize components an overlay may add; rendered on top of the base by ``compose``.
COMPONENTS = {"per-namespace": MANIFESTS / "components" / "per-namespace"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

Doc = dict[str, Any]


def _cached_kustomize() -> Path:
    cache = os.environ.get("MAINT_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maint"
    )
    return Path(cache) / "kustomize" / KUSTOMIZE_VERSION / "kustomize"


def _build_kustomize(target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        missing("kustomize", "install kustomize or kubectl, or Go to build it once")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"GOBIN": str(target.parent), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building kustomize failed: {result.stderr[-2000:]}")


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory given as its last argument."""
    if os.environ.get("KUSTOMIZE"):
        return [os.environ["KUSTOMIZE"], "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    cached = _cached_kustomize()
    if os.access(cached, os.X_OK):
        return [str(cached), "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    _build_kustomize(cached)
    return [str(cached), "build"]


def render(directory: Path) -> list[Doc]:
    """``kustomize build DIR`` as a list of objects."""
    result = subprocess.run(
        [*kustomize_command(), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def compose(base: Path, components: list[Path]) -> list[Doc]:
    """Render ``base`` with ``components``, as an overlay using them would be rendered."""
    with tempfile.TemporaryDirectory(prefix="maint-kustomize-") as directory:
        # kustomize refuses absolute paths in a kustomization: write relative ones.
        here = Path(directory)
        relative = [os.path.relpath(path, here) for path in (base, *components)]
        (here / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": relative[:1], "components": relative[1:]})
        )
        return render(here)


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Objects of ``kind`` (and, if given, a name starting with ``name``: generated names)."""
    return [
        d
        for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"].startswith(name))
    ]


def rehome(docs: list[Doc], *, namespaces: dict[str, str], suffix: str) -> list[Doc]:
    """A copy with namespaces renamed per ``namespaces`` and cluster-scoped names suffixed.

    References follow: binding subjects and roleRefs, and setting values naming a namespace
    (``MAINT_BUILD_NAMESPACE``).
    """
    out = []
    for original in docs:
        doc = copy.deepcopy(original)
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = namespaces.get(meta["name"], meta["name"])
        elif doc["kind"] in CLUSTER_SCOPED:
            meta["name"] = f"{meta['name']}-{suffix}"
        if "namespace" in meta:
            meta["namespace"] = namespaces.get(meta["namespace"], meta["namespace"])
        for subject in doc.get("subjects") or ():
            if "namespace" in subject:
                subject["namespace"] = namespaces.get(subject["namespace"], subject["namespace"])
        role_ref = doc.get("roleRef")
        if role_ref and role_ref["kind"] == "ClusterRole":
            role_ref["name"] = f"{role_ref['name']}-{suffix}"
        if doc["kind"] == "ConfigMap":
            doc["data"] = {k: namespaces.get(v, v) for k, v in (doc.get("data") or {}).items()}
        out.append(doc)
    return out


@dataclass(frozen=True)
class Applied:
    what: str
    warnings: tuple[str, ...]


def describe(doc: Doc) -> str:
    meta = doc["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc['kind']} {where}{meta['name']}"


def apply(api_client: ApiClient, docs: list[Doc], *, dry_run: bool = False) -> list[Applied]:
    """Create each object (server-side dry run if asked), strict field validation on.

    Namespaces go first. An object that already exists (409) is left as it is, so applying
    twice is harmless; every other API error is raised (``DynamicApiError``).
    """
    dynamic = DynamicClient(api_client)
    ordered = sorted(docs, key=lambda d: d["kind"] != "Namespace")
    applied = []
    for doc in ordered:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        namespace = doc["metadata"].get("namespace")
        params: dict[str, Any] = {"query_params": [("fieldValidation", "Strict")]}
        if dry_run:
            params["dry_run"] = "All"
        try:
            response = dynamic.request(
                "post",
                resource.path(namespace=namespace),
                body=doc,
                serialize=False,
                **params,
            )
        except Exception as error:
            if getattr(error, "status", None) == 409 and not dry_run:
                applied.append(Applied(what=describe(doc) + " (exists)", warnings=()))
                continue
            raise
        response.read()  # read it all: the connection goes back to the pool
        warnings = tuple(response.headers.getlist("Warning"))
        applied.append(Applied(what=describe(doc), warnings=warnings))
    return applied


def delete(api_client: ApiClient, docs: list[Doc]) -> None:
    """Delete cluster-scoped objects and namespaces of ``docs`` (namespaced ones go with them)."""
    dynamic = DynamicClient(api_client)
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            continue
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            resource.delete(name=doc["metadata"]["name"], propagation_policy="Background")
        except Exception as error:
            if getattr(error, "status", None) != 404:
                raise
