"""A maintenance window on the real control plane, driven pass by pass with a settable clock.

The clock is the only thing not real: it lets a test stand at start or end without sleeping.
Kaniko cannot run here (no container runtime), so the fake kubelet plays the Job's Pod and
reports the digest of an image the test really pushed to the registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api

from maint import naming
from maint.app import App
from maint.notices import Event, Notice, WorkItem
from maint.runner import PassResult, Runner, Steps, make_claims
from maint.runner.housekeeping import ImageJanitor
from maint.settings import Settings
from tests.support.kubelet import JobResult

APP_LABELS = {"app": "web"}


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def at(self, moment: datetime) -> None:
        self.now = moment


def make_build_namespace(k8s: ApiClient) -> str:
    """A build namespace at Pod Security ``baseline`` with the Kaniko ServiceAccount."""
    core = CoreV1Api(k8s)
    name = f"t-build-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        {
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "baseline", "maint-test": "true"},
            }
        }
    )
    core.create_namespaced_service_account(name, {"metadata": {"name": "maint-kaniko"}})
    return name


def make_app(
    k8s: ApiClient, namespace: str, *, replicas: int = 2, service: str = "web"
) -> list[str]:
    """A restricted namespace with a Service (named targetPort) and ``replicas`` app Pods."""
    core = CoreV1Api(k8s)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": service},
            "spec": {
                "selector": APP_LABELS,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "admin", "port": 9000, "targetPort": 9000},
                ],
            },
        },
    )
    pods = []
    for i in range(replicas):
        name = f"{service}-{i}"
        core.create_namespaced_pod(namespace, _app_pod(name))
        pods.append(name)
    return pods


def _app_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": APP_LABELS},
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
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"containerPort": 9000},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


@dataclass
class Window:
    """One App wired to the test's control plane, database and registry."""

    app: App
    clock: Clock
    namespace: str
    build_namespace: str
    lines: list[str] = field(default_factory=list)
    _runner: Runner | None = None
    _closed: bool = False

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = self.app.runner()
        return self._runner

    def rewire(
        self,
        *,
        observe: Callable[[Event], None] | None = None,
        janitor: ImageJanitor | None = None,
    ) -> Runner:
        """A runner whose steps get the ``observe`` or ``janitor`` a test swaps in, wired like
        ``App.runner`` (one set of claims for the runner and its steps)."""
        app = self.app
        claims = make_claims(app.store, app.settings)
        extra: dict[str, Any] = {}
        if observe is not None:
            extra["observe"] = observe
        if janitor is not None:
            extra["janitor"] = janitor
        steps = Steps(
            api=app.api,
            store=app.store,
            registry=app.registry(),
            settings=app.settings,
            clock=self.clock,
            say=self.lines.append,
            renew=claims.renew,
            **extra,
        )
        if self._runner is not None:
            self._runner.shutdown()
        self._runner = Runner(
            api=app.api,
            store=app.store,
            steps=steps,
            settings=app.settings,
            clock=self.clock,
            workers=app.settings.workers,
            claims=claims,
        )
        return self._runner

    def reconfigure(self, **changes: Any) -> Runner:
        """The same window seen by a runner with other settings (another maint version or
        shell): the App's settings take ``changes`` and a new runner replaces the one running."""
        self.app.settings = self.app.settings.model_copy(update=changes)
        if "kubeconfig" in changes and self.app._api is not None:
            self.app._api.close()  # the next App.api connects through the new kubeconfig
            self.app._api = None
        return self.rewire()

    def add(
        self,
        *,
        service: str = "web",
        start_in: float = 600,
        length: float = 600,
        reason: str = "DB upgrade",
        **options: Any,
    ) -> Notice:
        """A maintenance notice on ``service`` starting ``start_in`` s from the clock's now;
        ``options`` go to ``App.add_notice`` (``allow``, ``bypass``, ``pause_reconcilers``)."""
        start = self.clock() + timedelta(seconds=start_in)
        return self.app.add_notice(
            title="Planned maintenance",
            reason=reason,
            start=start.isoformat(),
            end=(start + timedelta(seconds=length)).isoformat(),
            targets=[f"{self.namespace}/{service}"],
            lang="en",
            maintenance=True,
            **options,
        )

    def step(self) -> PassResult:
        """One reconcile pass, waiting for every step it started."""
        result = self.runner.pass_once()
        self.runner.wait_idle()
        return result

    def notice(self, notice_id: int) -> Notice:
        return self.app.store.get(notice_id)

    def item(self, notice_id: int) -> WorkItem:
        notice = self.notice(notice_id)
        return WorkItem(notice=notice, target=notice.targets[0])

    def page_name(self, notice_id: int) -> str:
        """The name the page's Job and Pod will get (for kubelet instructions)."""
        return self.app.steps().plan_page(self.item(notice_id)).name

    def close(self) -> None:
        """Stop the runner and close the App (which sends what its observers queued); a
        test may call it before the fixture does."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.shutdown()
        self.app.close()


def settings_for(
    *, kubeconfig: str, database_url: str, build_namespace: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "database_url": database_url,
        "build_namespace": build_namespace,
        "pod_ready_timeout": 20,
        "endpoints_timeout": 20,
        "build_timeout": 30,
        "restore_grace": 120,
        "prepare_lead": 600,
    }
    values.update(overrides)
    return Settings(**values)


def managed_leftovers(k8s: ApiClient, notice_id: int) -> list[str]:
    """Every Pod, Job, ConfigMap, NetworkPolicy, Service or Secret labelled as maint's for this
    notice, anywhere."""
    from kubernetes.client import BatchV1Api, NetworkingV1Api

    selector = f"{naming.MANAGED_BY}={naming.MANAGER},{naming.NOTICE_LABEL}={notice_id}"
    core, batch = CoreV1Api(k8s), BatchV1Api(k8s)
    found = [
        f"Pod {p.metadata.namespace}/{p.metadata.name}"
        for p in core.list_pod_for_all_namespaces(label_selector=selector).items
    ]
    found += [
        f"Job {j.metadata.namespace}/{j.metadata.name}"
        for j in batch.list_job_for_all_namespaces(label_selector=selector).items
    ]
    found += [
        f"ConfigMap {c.metadata.namespace}/{c.metadata.name}"
        for c in core.list_config_map_for_all_namespaces(label_selector=selector).items
    ]
    found += [
        f"NetworkPolicy {n.metadata.namespace}/{n.metadata.name}"
        for n in NetworkingV1Api(k8s)
        .list_network_policy_for_all_namespaces(label_selector=selector)
        .items
    ]
    found += [  # a bypass's shadow Service and Secret
        f"{kind} {o.metadata.namespace}/{o.metadata.name}"
        for kind, listed in (
            ("Service", core.list_service_for_all_namespaces),
            ("Secret", core.list_secret_for_all_namespaces),
        )
        for o in listed(label_selector=selector).items
    ]
    return found


def as_older_release(k8s: ApiClient, namespace: str, *, pod: str) -> dict[str, str]:
    """Make the switched Service ``web`` look switched by a release before the page selector
    kept the app's keys: the page Pod and the selector carry ``naming.legacy_page_selector``
    (and the annotation says so). Returns that selector."""
    core = CoreV1Api(k8s)
    legacy = naming.legacy_page_selector(name=pod)
    core.patch_namespaced_pod(pod, namespace, {"metadata": {"labels": legacy}})
    core.patch_namespaced_service(
        "web",
        namespace,
        [
            {"op": "replace", "path": "/spec/selector", "value": legacy},
            {
                "op": "replace",
                "path": "/metadata/annotations/maint.io~1page-selector",
                "value": json.dumps(legacy, sort_keys=True),
            },
        ],
    )
    return legacy


def leftovers_after(k8s: ApiClient, notice_id: int, timeout: float = 15) -> list[str]:
    """``managed_leftovers`` once deletions settle: Pods terminate (and a Job's Pods are
    garbage-collected) asynchronously after a successful DELETE, on a real cluster too."""
    import time

    deadline = time.monotonic() + timeout
    found = managed_leftovers(k8s, notice_id)
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = managed_leftovers(k8s, notice_id)
    return found


@contextmanager
def open_window(
    *,
    control_plane: Any,
    k8s: ApiClient,
    namespace: str,
    database_url: str,
    registry: Any,
    **overrides: Any,
) -> Iterator[Window]:
    """A ``Window`` with its own build namespace and the sample app in ``namespace``, pushing to
    ``registry`` (the ``oci_registry`` fixture); removes the build namespace afterwards."""
    build_ns = make_build_namespace(k8s)
    make_app(k8s, namespace)
    settings = settings_for(
        kubeconfig=overrides.pop("kubeconfig", str(control_plane.kubeconfig)),
        database_url=database_url,
        build_namespace=build_ns,
        image_repository=f"{registry.host}/maint-page",
        registry_insecure=True,
        **overrides,
    )
    clock = Clock()
    lines: list[str] = []
    app = App(settings=settings, clock=clock, say=lines.append)
    app.store.upgrade()
    w = Window(app=app, clock=clock, namespace=namespace, build_namespace=build_ns, lines=lines)
    try:
        yield w
    finally:
        w.close()
        CoreV1Api(k8s).delete_namespace(build_ns)


# A test of the shared ``window`` on one database only (the fixture's default is both).
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def window_settings() -> dict[str, Any]:
    """Settings of this module's ``window`` (override the fixture in a module)."""
    return {}


@pytest.fixture
def window(
    control_plane: Any,
    k8s: ApiClient,
    namespace: str,
    database_url: str,
    oci_registry: Any,
    kubelet: Any,
    window_settings: dict[str, Any],
) -> Iterator[Window]:
    """One in-process ``Window`` per test on ``database_url`` (SQLite and PostgreSQL), whose
    Kaniko Jobs succeed with an image really in the registry, wired with ``window_settings``."""
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    with open_window(
        control_plane=control_plane,
        k8s=k8s,
        namespace=namespace,
        database_url=database_url,
        registry=oci_registry,
        **window_settings,
    ) as opened:
        yield opened
