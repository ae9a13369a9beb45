"""The kustomize manifests on the real API server: valid, admitted, and RBAC that is just enough.

"Enough" is proven by running a whole window as maint's ServiceAccount (impersonation) with the
rendered RBAC applied; "not more than enough" by real 403s (reading a Secret, patching a
Deployment) and by SubjectAccessReviews for calls maint never makes. The rules themselves are
compared with the table of calls maint makes (maint/cluster/*.py), so a rule added "just in case"
fails here. Schema validation is a server-side dry run with strict field validation against the
1.36 API server the tests run: that server's OpenAPI is the 1.36 schema.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from kubernetes.client import AppsV1Api, AuthorizationV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from maint import cluster
from maint.app import App
from maint.build.manifests import KanikoSpec, kaniko_job
from maint.notices import TargetState
from maint.runner import restore_overdue
from maint.settings import Settings
from tests.support import manifests
from tests.support.kubelet import JobResult
from tests.support.window import Clock, Window, leftovers_after, make_app, settings_for

SYSTEM, BUILD = "maint-system", "maint-build"
RBAC_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
}

# Every call maint makes, as (verb, API group, resource, where), from maint/cluster/*.py.
# where: "target" = a namespace holding a target Service, "build" = the build namespace,
# "all" = across all namespaces.
MAINT_CALLS = [
    ("get", "", "services", "target"),  # reading.get_service
    ("list", "", "services", "all"),  # reading.list_services: the forced-restore sweep
    ("patch", "", "services", "target"),  # patching.json_patch_service
    ("create", "", "pods", "target"),  # creating: the page Pod
    ("get", "", "pods", "target"),  # reading.get_pod (drift check)
    ("list", "", "pods", "target"),  # watching.wait_pod, reading.list_managed
    ("watch", "", "pods", "target"),  # watching.wait_pod
    ("delete", "", "pods", "target"),  # deleting: cleanup, forced restore
    ("list", "discovery.k8s.io", "endpointslices", "target"),  # watching.wait_endpoints
    ("watch", "discovery.k8s.io", "endpointslices", "target"),
    ("create", "batch", "jobs", "build"),  # creating: the Kaniko Job
    ("list", "batch", "jobs", "build"),  # watching.wait_job, reading.list_managed
    ("watch", "batch", "jobs", "build"),
    ("delete", "batch", "jobs", "build"),
    ("create", "", "configmaps", "build"),  # creating: build context, preview
    ("list", "", "configmaps", "build"),  # reading.list_managed
    ("delete", "", "configmaps", "build"),
    ("list", "", "pods", "build"),  # reading.job_termination (the digest)
    ("delete", "", "pods", "build"),  # cleanup of the Job's Pods
    ("get", "", "pods/log", "build"),  # reading.pod_log_tail (failed build)
]

# Calls maint never makes; each must be refused. "system" = maint's own namespace.
NEVER_ALLOWED = [
    ("get", "", "secrets", "target"),
    ("get", "", "secrets", "build"),
    ("get", "", "secrets", "system"),
    ("list", "", "secrets", "all"),
    ("watch", "", "secrets", "all"),
    ("patch", "apps", "deployments", "target"),
    ("create", "", "services", "target"),
    ("update", "", "services", "target"),
    ("delete", "", "services", "target"),
    ("create", "", "pods/exec", "target"),
    ("get", "", "pods/log", "target"),
    ("create", "", "configmaps", "target"),
    ("create", "batch", "jobs", "target"),
    ("create", "", "events", "target"),
    ("create", "coordination.k8s.io", "leases", "system"),
    ("create", "", "serviceaccounts/token", "build"),
    ("impersonate", "", "serviceaccounts", "all"),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "build"),
    ("list", "", "nodes", "all"),
    ("delete", "", "namespaces", "all"),
]


RBAC_MODES = ["cluster-wide", "per-namespace"]


def _rendered(mode: str) -> list[manifests.Doc]:
    """The base as applied in ``mode``: as it is, or with the per-namespace component."""
    base = manifests.KUSTOMIZATIONS["base"]
    if mode == "cluster-wide":
        return manifests.render(base)
    return manifests.compose(base, [manifests.COMPONENTS[mode]])


def _namespaces(docs: list[manifests.Doc]) -> set[str]:
    found = {d["metadata"]["name"] for d in manifests.find(docs, "Namespace")}
    return found | {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}


def _settings_data(docs: list[manifests.Doc]) -> dict[str, str]:
    [configmap] = manifests.find(docs, "ConfigMap", "maint-settings")
    return dict(configmap["data"])


# --- the files themselves (no cluster) ---------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", "kind", "eks"])
def test_every_setting_in_the_manifests_is_a_valid_maint_setting(overlay):
    docs = manifests.render(manifests.KUSTOMIZATIONS[overlay])
    data = _settings_data(docs)
    fields = {f"MAINT_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= fields, f"unknown settings: {set(data) - fields}"
    settings = Settings(
        **{key.removeprefix("MAINT_").lower(): value for key, value in data.items()}
    )
    [role] = manifests.find(docs, "Role", "maint-build")
    assert settings.build_namespace == role["metadata"]["namespace"]
    kaniko = manifests.find(docs, "ServiceAccount", settings.kaniko_service_account)
    assert [sa["metadata"]["namespace"] for sa in kaniko] == [settings.build_namespace]


@pytest.mark.parametrize("mode", RBAC_MODES)
def test_rbac_rules_are_exactly_the_calls_maint_makes(mode):
    docs = _rendered(mode)
    granted = {
        (verb, group, resource)
        for role in manifests.find(docs, "ClusterRole") + manifests.find(docs, "Role")
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {(verb, group, resource) for verb, group, resource, _ in MAINT_CALLS}
    assert not any(
        "secrets" in resource or "*" in (verb + resource) for verb, _, resource in granted
    )


@pytest.mark.parametrize("mode", RBAC_MODES)
def test_kaniko_service_account_is_bound_to_nothing_and_gets_no_token(mode):
    docs = _rendered(mode)
    subjects = [
        s["name"]
        for b in manifests.find(docs, "RoleBinding") + manifests.find(docs, "ClusterRoleBinding")
        for s in b["subjects"]
    ]
    assert subjects and set(subjects) == {"maint"}
    [kaniko] = manifests.find(docs, "ServiceAccount", "maint-kaniko")
    assert kaniko["automountServiceAccountToken"] is False


def test_build_namespace_enforces_baseline_and_maint_system_restricted():
    docs = manifests.render(manifests.KUSTOMIZATIONS["base"])
    levels = {
        ns["metadata"]["name"]: ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for ns in manifests.find(docs, "Namespace")
    }
    assert levels == {SYSTEM: "restricted", BUILD: "baseline"}


# --- on the API server --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(manifests.KUSTOMIZATIONS))
def test_every_rendered_manifest_validates_on_the_1_36_api_server(control_plane, k8s, overlay):
    docs = manifests.render(manifests.KUSTOMIZATIONS[overlay])
    suffix = uuid.uuid4().hex[:6]
    homes = {ns: f"t-{ns}-{suffix}"[:63] for ns in _namespaces(docs)}
    docs = manifests.rehome(docs, namespaces=homes, suffix=suffix)
    namespaces = manifests.find(docs, "Namespace")
    # Namespaced objects need their namespace to exist, even in a dry run: create them for real.
    missing = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in homes.values()
        if name not in {n["metadata"]["name"] for n in namespaces}
    ]
    created = manifests.apply(k8s, namespaces + missing)
    try:
        rest = [d for d in docs if d["kind"] != "Namespace"]
        results = manifests.apply(k8s, rest, dry_run=True)
        assert {r.what for r in results} == {manifests.describe(d) for d in rest}
        # Pod Security `warn` labels report template violations as warnings: there are none.
        assert [(r.what, r.warnings) for r in results + created if r.warnings] == []
    finally:
        manifests.delete(k8s, namespaces + missing)


@dataclass(frozen=True)
class Installed:
    """The base's namespaces, ServiceAccounts and RBAC, applied for real under unique names.

    ``mode`` per-namespace binds maint only in the test's namespace (and lists Services
    everywhere for the sweep); cluster-wide is the base as it is.
    """

    mode: str
    system: str
    build: str
    user: str
    docs: list[manifests.Doc]

    @property
    def groups(self) -> list[str]:
        return ["system:serviceaccounts", f"system:serviceaccounts:{self.system}"]


@pytest.fixture(params=RBAC_MODES)
def installed(k8s, namespace, request) -> Iterator[Installed]:
    suffix = uuid.uuid4().hex[:6]
    system, build = f"t-maint-system-{suffix}", f"t-maint-build-{suffix}"
    docs = manifests.rehome(
        _rendered(request.param),
        # "shop" is the example target namespace of the per-namespace component.
        namespaces={SYSTEM: system, BUILD: build, "shop": namespace},
        suffix=suffix,
    )
    docs = [d for d in docs if d["kind"] in RBAC_KINDS]
    manifests.apply(k8s, docs)
    try:
        yield Installed(
            mode=request.param,
            system=system,
            build=build,
            user=f"system:serviceaccount:{system}:maint",
            docs=docs,
        )
    finally:
        manifests.delete(k8s, docs)


@pytest.mark.parametrize("installed", ["cluster-wide"], indirect=True)
def test_maint_pod_passes_restricted_and_kaniko_pod_only_baseline(k8s, installed):
    base = manifests.render(manifests.KUSTOMIZATIONS["base"])
    [deployment] = manifests.find(base, "Deployment", "maint")
    controller = _pod_from(deployment["spec"]["template"], namespace=installed.system)
    manifests.apply(k8s, [controller], dry_run=True)  # restricted namespace: admitted

    job = kaniko_job(
        name="kaniko-probe",
        namespace=installed.build,
        labels={"maint-test": "true"},
        destination="registry.example/maint-page:t",
        spec=KanikoSpec(
            image="ghcr.io/osscontainertools/kaniko:v1.25.2",
            service_account="maint-kaniko",
            insecure=False,
            timeout_seconds=60,
        ),
    )
    kaniko = _pod_from(job["spec"]["template"], namespace=installed.build)
    manifests.apply(k8s, [kaniko], dry_run=True)  # baseline: admitted
    kaniko["metadata"]["namespace"] = installed.system
    kaniko["spec"]["serviceAccountName"] = "maint"
    with pytest.raises(Exception, match="violates PodSecurity") as refused:
        manifests.apply(k8s, [kaniko], dry_run=True)
    assert getattr(refused.value, "status", None) == 403


def _pod_from(template: dict, *, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "admission-probe", "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
    }


@pytest.mark.registry
def test_whole_window_runs_as_maint_service_account_with_only_the_manifests_rbac(
    control_plane, k8s, kubelet, namespace, database_url, oci_registry, installed, caplog
):
    digest = oci_registry.push_image("maint-page")
    kubelet.default_job_result = JobResult(succeeded=True, message=digest)
    make_app(k8s, namespace)
    settings = settings_for(
        kubeconfig=str(control_plane.kubeconfig),
        database_url=database_url,
        build_namespace=installed.build,
        kaniko_service_account="maint-kaniko",
        image_repository=f"{oci_registry.host}/maint-page",
        registry_insecure=True,
    )
    clock = Clock()
    lines: list[str] = []
    app = App(settings=settings, clock=clock, say=lines.append)
    app._api = cluster.connect(kubeconfig=settings.kubeconfig, impersonate=installed.user)
    app.store.upgrade()
    window = Window(
        app=app, clock=clock, namespace=namespace, build_namespace=installed.build, lines=lines
    )
    caplog.set_level(logging.WARNING)
    try:
        notice = window.add(start_in=600, length=600)
        context = app.render_preview(notice)
        assert app.preview_configmap(notice, context) == f"{installed.build}/maint-preview-1"
        window.step()
        assert window.notice(notice.id).targets[0].state is TargetState.READY
        clock.at(notice.start)
        window.step()
        assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
        clock.at(notice.end)
        window.step()
        assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
        # The sweep lists Services in all namespaces on every pass; as a direct call too.
        assert restore_overdue(app.api, now=clock() + timedelta(days=1)) == []
        cluster.delete(app.api, kind="ConfigMap", namespace=installed.build, name="maint-preview-1")
        outcomes = [(e.step, e.outcome, e.detail) for e in app.store.events(notice.id)]
    finally:
        window.close()
    assert [o for o in outcomes if o[1] in ("retry", "failed")] == []
    assert [r.getMessage() for r in caplog.records if "RBAC" in r.getMessage()] == []
    assert leftovers_after(k8s, notice.id) == []
    assert not oci_registry.has_manifest("maint-page", digest)


def test_maint_service_account_may_make_every_call_maint_makes(k8s, namespace, installed):
    denied = [
        call for call in MAINT_CALLS if not _allowed(k8s, installed, call, namespace=namespace)
    ]
    assert denied == []


def test_maint_service_account_is_refused_everything_else(k8s, namespace, installed):
    allowed = [
        call for call in NEVER_ALLOWED if _allowed(k8s, installed, call, namespace=namespace)
    ]
    assert allowed == []


@pytest.mark.parametrize("installed", ["per-namespace"], indirect=True)
def test_per_namespace_rbac_reaches_no_other_namespace(k8s, namespace, installed):
    elsewhere = [(verb, group, resource, "system") for verb, group, resource, where in MAINT_CALLS]
    allowed = [call for call in elsewhere if _allowed(k8s, installed, call, namespace=namespace)]
    assert allowed == [("list", "", "services", "system")]  # the sweep's list, everywhere


def test_kaniko_service_account_may_do_nothing_at_all(k8s, namespace, installed):
    kaniko = Installed(
        mode=installed.mode,
        system=installed.build,
        build=installed.build,
        user=f"system:serviceaccount:{installed.build}:maint-kaniko",
        docs=installed.docs,
    )
    allowed = [
        call
        for call in MAINT_CALLS + NEVER_ALLOWED
        if _allowed(k8s, kaniko, call, namespace=namespace)
    ]
    assert allowed == []


def test_reading_a_secret_or_patching_a_deployment_as_maint_is_forbidden(
    control_plane, k8s, namespace, installed
):
    CoreV1Api(k8s).create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}
    )
    AppsV1Api(k8s).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]},
                },
            },
        },
    )
    as_maint = control_plane.api_client(impersonate=installed.user)
    try:
        with pytest.raises(ApiException) as secret:
            CoreV1Api(as_maint).read_namespaced_secret("db", namespace)
        with pytest.raises(ApiException) as secrets:
            CoreV1Api(as_maint).list_secret_for_all_namespaces()
        with pytest.raises(ApiException) as deployment:
            AppsV1Api(as_maint).patch_namespaced_deployment(
                "web", namespace, {"spec": {"replicas": 3}}
            )
        # ...while maint's own calls in the same namespace work with the same identity.
        CoreV1Api(as_maint).list_namespaced_pod(namespace)
    finally:
        as_maint.close()
    assert (secret.value.status, secrets.value.status, deployment.value.status) == (403, 403, 403)


def _allowed(k8s, who: Installed, call: tuple[str, str, str, str], *, namespace: str) -> bool:
    verb, group, resource, where = call
    resource, _, subresource = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    target_ns = {"target": namespace, "build": who.build, "system": who.system}.get(where)
    if target_ns is not None:
        attributes["namespace"] = target_ns
    review = AuthorizationV1Api(k8s).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": who.user,
                "groups": [*who.groups, "system:authenticated"],
                "resourceAttributes": attributes,
            },
        }
    )
    return bool(review.status.allowed)
