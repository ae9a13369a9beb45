"""The kustomize manifests on the real API server: valid, admitted, and RBAC that is just enough.

"Enough" is proven by running a whole window as maint's ServiceAccount (impersonation) with the
rendered RBAC applied; "not more than enough" by real 403s (reading a Secret, patching a
Deployment) and by SubjectAccessReviews for calls maint never makes. The rules themselves are
compared with the table of calls maint makes (maint/cluster/*.py), so a rule added "just in case"
fails here. Schema validation is a server-side dry run with strict field validation against the
1.36 API server the tests run: that server's OpenAPI is the 1.36 schema.

The admission policy (manifests/base/admission.yaml) is applied for real, re-homed to the test's
namespaces: each Pod shape maint never builds is refused as maint's ServiceAccount with the
policy's own message (so neither RBAC nor Pod Security is what refused it), the Pod maint
builds is admitted, and the whole window above runs with the policy enforced.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from kubernetes.client import (
    AppsV1Api,
    AuthorizationV1Api,
    BatchV1Api,
    CoreV1Api,
    NetworkingV1Api,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from maint import cluster, naming
from maint.app import App
from maint.build.manifests import KanikoSpec, kaniko_job
from maint.cluster import PodInfo
from maint.notices import TargetState
from maint.runner import restore_overdue
from maint.settings import SYSTEM_NAMESPACES, Settings
from maint.switch.pod import ContainerPort, page_pod
from maint.switch.shadow import bypass_secret, shadow_service
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
    ("watch", "", "services", "target"),  # caching: the runner's watch cache
    ("patch", "", "services", "target"),  # patching.json_patch_service
    ("create", "", "services", "target"),  # creating: a bypass's shadow Service
    ("delete", "", "services", "target"),  # creating.create_replacing
    ("create", "", "secrets", "target"),  # creating: a bypass's nginx include
    ("delete", "", "secrets", "target"),  # creating.create_replacing
    ("create", "", "pods", "target"),  # creating: the page Pod
    ("get", "", "pods", "target"),  # reading.get_pod (drift check)
    ("list", "", "pods", "target"),  # watching.wait_pod, reading.list_managed, caching
    ("watch", "", "pods", "target"),  # watching.wait_pod, caching
    ("delete", "", "pods", "target"),  # deleting: cleanup, forced restore
    ("list", "discovery.k8s.io", "endpointslices", "target"),  # watching.wait_endpoints
    ("watch", "discovery.k8s.io", "endpointslices", "target"),
    ("list", "networking.k8s.io", "networkpolicies", "target"),  # inspecting, list_managed
    ("watch", "networking.k8s.io", "networkpolicies", "target"),  # caching
    ("create", "networking.k8s.io", "networkpolicies", "target"),  # creating: the page's policy
    ("delete", "networking.k8s.io", "networkpolicies", "target"),  # deleting: cleanup, sweep
    ("patch", "networking.k8s.io", "networkpolicies", "target"),  # netpol.retire: owned by Pods
    ("create", "events.k8s.io", "events", "target"),  # events.emit
    ("create", "batch", "jobs", "build"),  # creating: the Kaniko Job
    ("list", "batch", "jobs", "build"),  # watching.wait_job, reading.list_managed
    ("watch", "batch", "jobs", "build"),
    ("delete", "batch", "jobs", "build"),
    ("create", "", "configmaps", "build"),  # creating: build context, preview
    ("list", "", "configmaps", "build"),  # reading.list_managed, caching
    ("watch", "", "configmaps", "build"),  # caching
    ("delete", "", "configmaps", "build"),
    ("list", "", "pods", "build"),  # reading.job_termination (the digest), caching
    ("watch", "", "pods", "build"),  # caching
    ("delete", "", "pods", "build"),  # cleanup of a Pod whose Job is gone
    ("get", "", "pods/log", "build"),  # reading.pod_log_tail (failed build)
]

# Calls maint never makes; each must be refused. "system" = maint's own namespace.
NEVER_ALLOWED = [
    ("get", "", "secrets", "target"),
    ("get", "", "secrets", "build"),
    ("get", "", "secrets", "system"),
    ("list", "", "secrets", "all"),
    ("watch", "", "secrets", "all"),
    ("update", "", "secrets", "target"),
    ("patch", "", "secrets", "target"),
    ("patch", "apps", "deployments", "target"),
    ("update", "", "services", "target"),
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
POLICY, BINDING = "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"
ADMISSION_KINDS = {POLICY, BINDING}
KANIKO_IMAGE = Settings.model_fields["kaniko_image"].default
# Every overlay in the tree, not a fixed list: a new overlay must set the policies' values too.
OVERLAYS = {"base": manifests.MANIFESTS / "base"} | {
    path.name: path
    for path in sorted((manifests.MANIFESTS / "overlays").iterdir())
    if (path / "kustomization.yaml").is_file()
}


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
    # Secrets: created and deleted (a bypass's include), never read, listed or changed.
    assert {verb for verb, _, resource in granted if "secrets" in resource} == {"create", "delete"}
    assert not any("*" in (verb + resource) for verb, _, resource in granted)


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


def _policy_repository(policy: manifests.Doc, variable: str = "repository") -> str:
    """The value a policy admits (its page repository by default): a CEL string literal."""
    [found] = [v for v in policy["spec"]["variables"] if v["name"] == variable]
    literal = found["expression"]
    assert literal[0] == literal[-1] == "'" and not {"'", "\\"} & set(literal[1:-1]), literal
    return str(literal[1:-1])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_admission_policy_agrees_with_the_overlays_settings_and_service_account(overlay):
    docs = manifests.render(OVERLAYS[overlay])
    data = _settings_data(docs)
    settings = Settings(
        **{key.removeprefix("MAINT_").lower(): value for key, value in data.items()}
    )
    [policy] = manifests.find(docs, POLICY, "maint-page-pods")
    [binding] = manifests.find(docs, BINDING, "maint-page-pods")
    assert _policy_repository(policy) == settings.image_repository
    [account] = [
        a for a in manifests.find(docs, "ServiceAccount") if a["metadata"]["name"] == "maint"
    ]
    home = account["metadata"]["namespace"]
    [deployment] = manifests.find(docs, "Deployment", "maint")
    assert deployment["metadata"]["namespace"] == home
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "maint"
    assert policy["spec"]["matchConditions"] == [
        {
            "name": "requested-by-maint",
            "expression": f"request.userInfo.username == 'system:serviceaccount:{home}:maint'",
        }
    ]
    [where] = [
        v["expression"]
        for v in policy["spec"]["validations"]
        if "request.namespace" in v["expression"]
    ]
    for namespace in (*SYSTEM_NAMESPACES, home, settings.build_namespace):
        assert f"'{namespace}'" in where
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_build_job_policy_agrees_with_the_overlays_settings(overlay):
    docs = manifests.render(OVERLAYS[overlay])
    data = _settings_data(docs)
    settings = Settings(
        **{key.removeprefix("MAINT_").lower(): value for key, value in data.items()}
    )
    [jobs] = manifests.find(docs, POLICY, "maint-build-jobs")
    [pods] = manifests.find(docs, POLICY, "maint-page-pods")
    [binding] = manifests.find(docs, BINDING, "maint-build-jobs")
    assert _policy_repository(jobs) == settings.image_repository
    assert _policy_repository(jobs, "kanikoImage") == settings.kaniko_image
    assert _policy_repository(jobs, "serviceAccount") == settings.kaniko_service_account
    assert jobs["spec"]["matchConditions"] == pods["spec"]["matchConditions"]
    assert jobs["spec"]["validations"][0]["expression"] == (
        f"request.namespace == '{settings.build_namespace}'"
    )
    assert binding["spec"] == {"policyName": "maint-build-jobs", "validationActions": ["Deny"]}


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
    installed = Installed(
        mode=request.param,
        system=system,
        build=build,
        user=f"system:serviceaccount:{system}:maint",
        docs=docs,
    )
    try:
        _settle(k8s, installed, namespace=namespace)
        yield installed
    finally:
        manifests.delete(k8s, docs)


def _settle(k8s, installed: Installed, *, namespace: str, within: float = 5) -> None:
    """Until the RBAC authorizer allows every call of maint's, for at most ``within`` s: it
    reads roles and bindings from its informers, so one applied a moment ago can be missing for
    a few milliseconds (a first SubjectAccessReview was denied so, once). A call still denied
    after that is the test's to report."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_allowed(k8s, installed, call, namespace=namespace) for call in MAINT_CALLS):
            return
        time.sleep(0.1)


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
def test_whole_window_runs_as_maint_service_account_under_the_manifests_rbac_and_policy(
    control_plane, k8s, kubelet, namespace, database_url, oci_registry, installed, caplog
):
    digest = oci_registry.push_image("maint-page")
    kubelet.default_job_result = JobResult(succeeded=True, message=digest)
    make_app(k8s, namespace)
    _deny_all_but_the_app(k8s, namespace)  # the page's NetworkPolicy: created, then deleted
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
    admission = _admission(
        control_plane, k8s, installed, repository=settings.image_repository, probe_in=namespace
    )
    try:
        with admission:
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
            # At the real now: a day ahead it force-restored other tests' live windows (they
            # run in parallel), and per namespace it may not touch them anyway.
            swept = restore_overdue(app.api, now=datetime.now(UTC))
            assert [r for r in swept if r.service.startswith(f"{namespace}/")] == []
            cluster.delete(
                app.api, kind="ConfigMap", namespace=installed.build, name="maint-preview-1"
            )
            outcomes = [(e.step, e.outcome, e.detail) for e in app.store.events(notice.id)]
    finally:
        window.close()
    assert [o for o in outcomes if o[1] in ("retry", "failed")] == []
    assert [o[:2] for o in outcomes if o[0] == "network-policy"] == [("network-policy", "created")]
    assert [r.getMessage() for r in caplog.records if "RBAC" in r.getMessage()] == []
    assert leftovers_after(k8s, notice.id) == []
    assert not oci_registry.has_manifest("maint-page", digest)


def _deny_all_but_the_app(k8s, namespace: str) -> None:
    net = NetworkingV1Api(k8s)
    net.create_namespaced_network_policy(
        namespace,
        {"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    )
    net.create_namespaced_network_policy(
        namespace,
        {
            "metadata": {"name": "allow-web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]},
        },
    )


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


# --- the admission policy on the API server ------------------------------------------------


@dataclass(frozen=True)
class Policies:
    """Names of the two policies as applied by ``_admission``."""

    pods: str
    jobs: str
    bypass: str


def _literal(policy: manifests.Doc, variable: str, value: str) -> None:
    [found] = [v for v in policy["spec"]["variables"] if v["name"] == variable]
    found["expression"] = f"'{value}'"


@contextmanager
def _admission(
    control_plane,
    k8s,
    installed: Installed,
    *,
    repository: str,
    probe_in: str,
    kaniko_image: str = KANIKO_IMAGE,
) -> Iterator[Policies]:
    """The base's admission policies and bindings, re-homed to ``installed``, admitting
    ``repository`` and ``kaniko_image``, applied for real; yields their names once the API
    server enforces both (probes, dry run as maint, are refused by each)."""
    suffix = installed.system.rsplit("-", 1)[1]
    names = Policies(
        pods=f"maint-page-pods-{suffix}",
        jobs=f"maint-jobs-{suffix}",
        bypass=f"maint-bypass-{suffix}",
    )
    docs = [d for d in _rendered(installed.mode) if d["kind"] in ADMISSION_KINDS]
    text = json.dumps(docs)
    for old, new in (  # policy names first: "maint-build-jobs" contains "maint-build"
        ("maint-page-pods", names.pods),
        ("maint-build-jobs", names.jobs),
        ("maint-bypass-objects", names.bypass),
        (SYSTEM, installed.system),
        (BUILD, installed.build),
    ):
        text = text.replace(old, new)
    docs = json.loads(text)
    [pods] = manifests.find(docs, POLICY, names.pods)
    [jobs] = manifests.find(docs, POLICY, names.jobs)
    _literal(pods, "repository", repository)
    _literal(jobs, "repository", repository)
    _literal(jobs, "kanikoImage", kaniko_image)
    manifests.apply(k8s, docs)
    dynamic = DynamicClient(k8s)
    try:
        # Images from elsewhere: Pod Security admits them, only the policies refuse them.
        probes = {
            names.pods: _maint_pod(probe_in, repository=f"{repository}-probe"),
            names.jobs: _maint_job(
                installed.build, repository=repository, kaniko_image=f"{kaniko_image}-probe"
            ),
            names.bypass: _renamed(_bypass_objects(probe_in)[0], "probe"),
        }
        deadline = time.monotonic() + 60
        for name, probe in probes.items():
            while name not in (_refusal(control_plane, installed, probe) or ""):
                assert time.monotonic() < deadline, f"{name} was never enforced"
                time.sleep(0.5)
        yield names
    finally:
        for doc in docs:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            resource.delete(name=doc["metadata"]["name"])


def _maint_job(
    namespace: str, *, repository: str, kaniko_image: str = KANIKO_IMAGE
) -> manifests.Doc:
    """The Kaniko Job exactly as maint builds it (maint/build/manifests.py)."""
    return kaniko_job(
        name="maint-7-web-36f5e-0123abcd",
        namespace=namespace,
        labels={naming.MANAGED_BY: naming.MANAGER, naming.NOTICE_LABEL: "7"},
        destination=f"{repository}:maint-7-web-36f5e-0123abcd",
        spec=KanikoSpec(
            image=kaniko_image, service_account="maint-kaniko", insecure=True, timeout_seconds=60
        ),
    )


def _maint_pod(namespace: str, *, repository: str) -> dict:
    """The page Pod exactly as maint builds it (maint/switch/pod.py), with maint's labels."""
    target = naming.target_name(notice_id=7, namespace=namespace, service="web")
    name = naming.object_name(target=target, revision="0123abcd")
    return page_pod(
        name=name,
        namespace=namespace,
        labels=naming.page_labels(
            name=name, keys=["app"], base=naming.labels(notice_id=7, target=target)
        ),
        image=f"{repository}@sha256:{'ab' * 32}",
        ports=[ContainerPort(number=8080, name="http")],
        drain=10,
    )


def _bypass_objects(namespace: str) -> tuple[dict, dict]:
    """A page Pod's shadow Service and bypass Secret exactly as maint builds them
    (maint/switch/shadow.py), owned by the page Pod of ``_maint_pod``."""
    page = _maint_pod(namespace, repository=REPOSITORY)
    meta = page["metadata"]
    pod = PodInfo(
        namespace=namespace,
        name=meta["name"],
        phase="Running",
        ready=True,
        ip=None,
        labels=meta["labels"],
        uid=str(uuid.uuid4()),
    )
    labels = {k: v for k, v in meta["labels"].items() if k != "app"}
    ports = [ContainerPort(number=8080, name="http")]
    return (
        shadow_service(pod=pod, labels=labels, selector={"app": "web"}, ports=ports),
        bypass_secret(pod=pod, labels=labels, include="# include\n"),
    )


def _renamed(obj: dict, name: str) -> dict:
    copied = json.loads(json.dumps(obj))
    copied["metadata"]["name"] = name
    return copied


def _refusal(control_plane, installed: Installed, obj: dict) -> str | None:
    """The API server's message if ``obj`` (a Pod, Job, Service or Secret; dry run, as maint)
    is refused."""
    as_maint = control_plane.api_client(impersonate=installed.user)
    namespace = obj["metadata"]["namespace"]
    create = {
        "Job": BatchV1Api(as_maint).create_namespaced_job,
        "Pod": CoreV1Api(as_maint).create_namespaced_pod,
        "Service": CoreV1Api(as_maint).create_namespaced_service,
        "Secret": CoreV1Api(as_maint).create_namespaced_secret,
    }[obj["kind"]]
    try:
        create(namespace, obj, dry_run="All")
    except ApiException as error:
        assert error.status in (403, 422), error
        return str(json.loads(error.body)["message"])
    finally:
        as_maint.close()
    return None


def _with(path: str, value: object):
    """A change to a manifest: set the dotted ``path`` (list indexes as numbers)."""

    def change(pod: dict) -> None:
        *parents, last = path.split(".")
        node = pod
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[int(last) if last.isdigit() else last] = value

    return change


def _host_path(pod: dict) -> None:
    pod["spec"]["volumes"].append({"name": "node", "hostPath": {"path": "/"}})


def _other_secret(pod: dict) -> None:
    pod["spec"]["volumes"].append({"name": "db", "secret": {"secretName": "db"}})


def _without_managed_by(pod: dict) -> None:
    del pod["metadata"]["labels"][naming.MANAGED_BY]


REPOSITORY = "registry.example/maint-page"
REFUSED_PODS = {
    "another ServiceAccount": (
        _with("spec.serviceAccountName", "builder"),
        "runs as the namespace's default ServiceAccount",
    ),
    "a hostPath volume": (_host_path, "emptyDir volumes only"),
    "another Secret": (_other_secret, "its own bypass Secret"),
    "an image outside the repository": (
        _with("spec.containers.0.image", f"registry.example/tools@sha256:{'cd' * 32}"),
        "only images of the page repository, pinned by digest",
    ),
    "a look-alike repository": (
        _with("spec.containers.0.image", f"{REPOSITORY}-x@sha256:{'cd' * 32}"),
        "only images of the page repository, pinned by digest",
    ),
    "the repository by tag": (
        _with("spec.containers.0.image", f"{REPOSITORY}:latest"),
        "only images of the page repository, pinned by digest",
    ),
    "a service account token": (
        _with("spec.automountServiceAccountToken", True),
        "automountServiceAccountToken to false",
    ),
    "no managed-by label": (_without_managed_by, "carries maint's labels"),
    "the host network": (_with("spec.hostNetwork", True), "no host network"),
    "an added capability": (
        _with("spec.containers.0.securityContext.capabilities.add", ["SYS_ADMIN"]),
        "drops all capabilities",
    ),
    "root": (_with("spec.securityContext.runAsUser", 0), "runs as non-root"),
}


@pytest.mark.parametrize("installed", ["cluster-wide"], indirect=True)
def test_admission_policy_refuses_every_pod_maint_would_not_build(
    control_plane, k8s, namespace, installed
):
    CoreV1Api(k8s).create_namespaced_service_account(namespace, {"metadata": {"name": "builder"}})
    with _admission(
        control_plane, k8s, installed, repository=REPOSITORY, probe_in=namespace
    ) as policies:
        assert (
            _refusal(control_plane, installed, _maint_pod(namespace, repository=REPOSITORY)) is None
        )
        found = {}
        for case, (change, _) in REFUSED_PODS.items():
            pod = _maint_pod(namespace, repository=REPOSITORY)
            change(pod)
            found[case] = _refusal(control_plane, installed, pod)
        # The same Pods by anyone else are not the policy's business (the admin's dry run).
        hostpath = _maint_pod(namespace, repository=REPOSITORY)
        _host_path(hostpath)
        CoreV1Api(k8s).create_namespaced_pod(namespace, hostpath, dry_run="All")
    for case, (_, message) in REFUSED_PODS.items():
        assert found[case] is not None, f"{case}: admitted"
        assert policies.pods in found[case] and message in found[case], (case, found[case])


def _token_secret(secret: dict) -> None:
    """What the token controller would fill with a ServiceAccount's token (maint never reads
    it back, but no such Secret is maint's to make)."""
    secret["type"] = "kubernetes.io/service-account-token"
    secret["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}


def _owner_name(name: str):
    def change(obj: dict) -> None:
        obj["metadata"]["ownerReferences"][0]["name"] = name

    return change


BOTH = ("Service", "Secret")
REFUSED_BYPASS_OBJECTS = {  # case: (change, the kinds it applies to, the refusal's message)
    "not named after its Pod": (
        lambda o: o["metadata"].update(name="db-bypass"),
        BOTH,
        "named after the Pod that owns it",
    ),
    "owned by another Pod": (_owner_name("other"), BOTH, "named after the Pod that owns it"),
    "owned by nothing": (
        lambda o: o["metadata"].pop("ownerReferences"),
        BOTH,
        "named after the Pod that owns it",
    ),
    "without maint's labels": (_without_managed_by, BOTH, "carries maint's labels"),
    "a NodePort": (_with("spec.type", "NodePort"), ("Service",), "ClusterIP only"),
    "a LoadBalancer": (_with("spec.type", "LoadBalancer"), ("Service",), "ClusterIP only"),
    "external IPs": (_with("spec.externalIPs", ["192.0.2.1"]), ("Service",), "ClusterIP only"),
    "a token Secret": (_token_secret, ("Secret",), "Opaque"),
    "another key": (_with("data.token", "eA=="), ("Secret",), "only the page's bypass include"),
}


@pytest.mark.parametrize("installed", ["cluster-wide"], indirect=True)
def test_admission_policy_admits_only_a_page_pods_own_bypass_service_and_secret(
    control_plane, k8s, namespace, installed
):
    with _admission(
        control_plane, k8s, installed, repository=REPOSITORY, probe_in=namespace
    ) as policies:
        for obj in _bypass_objects(namespace):
            assert _refusal(control_plane, installed, obj) is None, obj["kind"]
        found = {}
        for case, (change, kinds, _) in REFUSED_BYPASS_OBJECTS.items():
            for obj in _bypass_objects(namespace):
                if obj["kind"] in kinds:
                    change(obj)
                    found[(case, obj["kind"])] = _refusal(control_plane, installed, obj)
        elsewhere = {
            kind: _refusal(control_plane, installed, obj)
            for obj, kind in zip(_bypass_objects(installed.system), BOTH, strict=True)
        }
    for (case, kind), message in found.items():
        assert message is not None, f"{case} ({kind}): admitted"
        expected = REFUSED_BYPASS_OBJECTS[case][2]
        assert policies.bypass in message and expected in message, (case, kind, message)
    for kind, message in elsewhere.items():
        assert message is not None and policies.bypass in message, (kind, message)
        assert "in a system namespace or in its own" in message, (kind, message)


@pytest.mark.parametrize("installed", ["cluster-wide"], indirect=True)
def test_admission_policy_refuses_maint_pods_in_system_and_maints_own_namespaces(
    control_plane, k8s, namespace, installed
):
    with _admission(
        control_plane, k8s, installed, repository=REPOSITORY, probe_in=namespace
    ) as policies:
        found = {
            where: _refusal(control_plane, installed, _maint_pod(where, repository=REPOSITORY))
            for where in ("kube-system", "kube-public", "kube-node-lease", installed.system)
        }
    for where, message in found.items():
        assert message is not None and policies.pods in message, (where, message)
        assert "never starts a Pod in a system namespace or in its own" in message


def _job_image(image: str):
    def change(job: dict) -> None:
        job["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return change


def _job_spec(key: str, value: object):
    def change(job: dict) -> None:
        job["spec"]["template"]["spec"][key] = value

    return change


def _job_destination(destination: str):
    def change(job: dict) -> None:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        args[:] = [a for a in args if not a.startswith("--destination")]
        args.append(f"--destination={destination}")

    return change


def _job_volume(job: dict) -> None:
    job["spec"]["template"]["spec"]["volumes"].append({"name": "s", "secret": {"secretName": "x"}})


REFUSED_JOBS = {
    "another ServiceAccount": (_job_spec("serviceAccountName", "default"), "Kaniko Service"),
    "a token": (_job_spec("automountServiceAccountToken", True), "without a token"),
    "another image": (_job_image("registry.example/tools:1"), "configured Kaniko image"),
    "an init container": (
        _job_spec("initContainers", [{"name": "x", "image": KANIKO_IMAGE}]),
        "configured Kaniko image",
    ),
    "a push elsewhere": (
        _job_destination("registry.example/other:t"),
        "pushes only to the page repository",
    ),
    "a look-alike push": (
        _job_destination(f"{REPOSITORY}-x:t"),
        "pushes only to the page repository",
    ),
    "a Secret volume": (_job_volume, "mounts only its build context ConfigMap"),
}


@pytest.mark.parametrize("installed", ["cluster-wide"], indirect=True)
def test_admission_policy_admits_only_maints_own_build_job(
    control_plane, k8s, namespace, installed
):
    with _admission(
        control_plane, k8s, installed, repository=REPOSITORY, probe_in=namespace
    ) as policies:
        admitted = _refusal(
            control_plane, installed, _maint_job(installed.build, repository=REPOSITORY)
        )
        found = {}
        for case, (change, _) in REFUSED_JOBS.items():
            job = _maint_job(installed.build, repository=REPOSITORY)
            change(job)
            found[case] = _refusal(control_plane, installed, job)
    assert admitted is None
    for case, (_, message) in REFUSED_JOBS.items():
        assert found[case] is not None, f"{case}: admitted"
        assert policies.jobs in found[case] and message in found[case], (case, found[case])
