"""Everything a benchmark window runs against, started once and stopped in reverse order.

The local control plane (etcd, kube-apiserver, kube-controller-manager) and the fake kubelet
from ``tests.support``; Debian's docker-registry holding real images; a fresh PostgreSQL
database; the counting proxy (``bench.proxy``) in its own process. Each Kaniko Job gets its own
freshly pushed image (``FreshImages``), so the cleanup after a window deletes a real manifest
from a real registry, as it would on kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from kubernetes.client import ApiClient, CoreV1Api
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.support.controlplane import ControlPlane
from tests.support.fixtures_db import DEFAULT_POSTGRES_URL, _conninfo
from tests.support.fixtures_registry import OciRegistryServer, running_registry
from tests.support.kubelet import FakeKubelet, JobResult
from tests.support.window import make_build_namespace

REPOSITORY = "maint-page"


def log(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


class FreshImages(dict[str, JobResult]):
    """The fake kubelet's ``job_results``: each new Job reports its own, real, pushed image.

    The kubelet asks ``job_results.get(job, default)`` whenever it reports a Job's Pod; the
    first ask takes a digest from the pre-pushed supply (or pushes one there and then).
    """

    def __init__(self, registry: OciRegistryServer) -> None:
        super().__init__()
        self.registry = registry
        self.supply: deque[str] = deque()
        self.handed_out: list[str] = []
        self.lock = threading.Lock()

    def prepush(self, count: int, *, threads: int = 4) -> None:
        with ThreadPoolExecutor(threads) as pool:
            self.supply.extend(
                pool.map(lambda _: self.registry.push_image(REPOSITORY), range(count))
            )

    def get(self, job: str, default: Any = None) -> JobResult:  # type: ignore[override]
        with self.lock:
            if job not in self:
                digest = self.supply.popleft() if self.supply else None
                if digest is None:
                    digest = self.registry.push_image(REPOSITORY)
                self.handed_out.append(digest)
                self[job] = JobResult(succeeded=True, message=digest)
            return self[job]

    def still_stored(self) -> list[str]:
        return [d for d in self.handed_out if self.registry.has_manifest(REPOSITORY, d)]


@dataclass
class Lab:
    """Handles to the running pieces; build one with ``running_lab``."""

    workdir: Path
    plane: ControlPlane
    k8s: ApiClient
    kubelet: FakeKubelet
    registry: OciRegistryServer
    images: FreshImages
    database_url: str
    build_namespace: str
    proxy_port: int
    proxy_kubeconfig: Path
    namespaces: list[str] = field(default_factory=list)

    # --- maint's view ---------------------------------------------------------------------
    @property
    def image_repository(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}"

    def maint_env(self, *, via_proxy: bool, **settings: float | str) -> dict[str, str]:
        """Environment for a ``maint`` subprocess; ``settings`` become ``MAINT_<NAME>``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
        env.update(
            {
                "MAINT_KUBECONFIG": str(
                    self.proxy_kubeconfig if via_proxy else self.plane.kubeconfig
                ),
                "MAINT_DATABASE_URL": self.database_url,
                "MAINT_BUILD_NAMESPACE": self.build_namespace,
                "MAINT_IMAGE_REPOSITORY": self.image_repository,
                "MAINT_REGISTRY_INSECURE": "true",
                # Off: a fixed port would collide with other sessions' maint runs.
                "MAINT_HEALTH_PORT": "0",
            }
        )
        env.update({f"MAINT_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    # --- the counting proxy ---------------------------------------------------------------
    def proxy_counts(self) -> dict[str, dict[str, int]]:
        url = f"http://127.0.0.1:{self.proxy_port}/__bench/counts"
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.load(response))

    def reset_proxy_counts(self) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.proxy_port}/__bench/reset", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    # --- applications behind Services -----------------------------------------------------
    def make_services(self, namespace: str, names: list[str], *, timeout: float = 60) -> None:
        """A Pod Security ``restricted`` namespace; per name a Service and one app Pod.

        Each Service selects only its own Pod (``app: NAME``) and targets a named port, like
        the integration tests' app. Returns once every Service has its Pod as a ready endpoint.
        """
        core = CoreV1Api(self.k8s)
        core.create_namespace(
            {
                "metadata": {
                    "name": namespace,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                }
            }
        )
        self.namespaces.append(namespace)
        for name in names:
            core.create_namespaced_service(
                namespace,
                {
                    "metadata": {"name": name},
                    "spec": {
                        "selector": {"app": name},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                    },
                },
            )
            core.create_namespaced_pod(namespace, _app_pod(name))
        self._wait_endpoints(namespace, set(names), timeout=timeout)

    def _wait_endpoints(self, namespace: str, names: set[str], *, timeout: float) -> None:
        from kubernetes.client import DiscoveryV1Api

        discovery = DiscoveryV1Api(self.k8s)
        deadline = time.monotonic() + timeout
        while True:
            ready = set()
            for s in discovery.list_namespaced_endpoint_slice(namespace).items:
                service = (s.metadata.labels or {}).get("kubernetes.io/service-name")
                if any(e.conditions is None or e.conditions.ready for e in s.endpoints or []):
                    ready.add(service)
            if names <= ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(names - ready)} Services in {namespace} got no endpoint")
            time.sleep(0.5)


def _app_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}-app", "labels": {"app": name}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


@contextlib.contextmanager
def postgres_database(prefix: str = "maint_bench") -> Iterator[str]:
    """A new PostgreSQL database (role maint, as in the tests), dropped afterwards."""
    admin = make_url(os.environ.get("MAINT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def _proxy(plane: ControlPlane, workdir: Path) -> Iterator[tuple[int, Path]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.proxy",
            plane.server,
            str(plane.ca_file),
            str(workdir / "proxy-requests.log"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        config = json.loads(plane.kubeconfig.read_text())
        config["clusters"][0]["cluster"] = {"server": f"http://127.0.0.1:{port}"}
        kubeconfig = workdir / "kubeconfig-proxy"
        kubeconfig.write_text(json.dumps(config))
        kubeconfig.chmod(0o600)
        yield port, kubeconfig
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_lab(assets: Path, *, images: int) -> Iterator[Lab]:
    """Start everything (images are pushed while the control plane starts), stop it after."""
    workdir = Path(tempfile.mkdtemp(prefix="maint-bench-"))
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(running_registry(workdir / "registry", delete_enabled=True))
        fresh = FreshImages(registry)
        pushing: Future[None] = ThreadPoolExecutor(1).submit(fresh.prepush, images)
        began = time.monotonic()
        plane = stack.enter_context(ControlPlane(assets))
        log(f"control plane up in {time.monotonic() - began:.1f}s ({plane.server})")
        k8s = plane.api_client()
        stack.callback(k8s.close)
        kubelet = FakeKubelet(k8s)
        kubelet.start()
        stack.callback(kubelet.stop)
        kubelet.job_results = fresh
        database_url = stack.enter_context(postgres_database())
        port, proxy_kubeconfig = stack.enter_context(_proxy(plane, workdir))
        build_namespace = make_build_namespace(k8s)
        pushing.result()
        log(f"{images} images pushed to {registry.host}/{REPOSITORY}")
        yield Lab(
            workdir=workdir,
            plane=plane,
            k8s=k8s,
            kubelet=kubelet,
            registry=registry,
            images=fresh,
            database_url=database_url,
            build_namespace=build_namespace,
            proxy_port=port,
            proxy_kubeconfig=proxy_kubeconfig,
        )


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(every)
