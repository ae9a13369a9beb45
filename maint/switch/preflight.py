"""The preflight: what else acts on a Service, and what a selector switch would run into.

Pure rules over ``cluster.Surroundings``; each rule returns findings with a severity:
``block`` (the window would not do what the operator expects: the page would vanish, or users
would get timeouts), ``warn`` (it works, with a consequence the operator should know) and
``info``. ``maint plan`` prints them; ``notice add`` refuses a target with a blocking finding
unless the operator allows that check by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from maint import naming
from maint.cluster.types import Object, Surroundings
from maint.switch.netpol import app_policies, isolates_ingress
from maint.switch.pause import FLUX_RECONCILE

BLOCK, WARN, INFO = "block", "warn", "info"
SEVERITIES = (BLOCK, WARN, INFO)

ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
ARGO_MANAGERS = frozenset({"argocd-controller", "argocd-application-controller"})
FLUX_KUSTOMIZE_MANAGER = "kustomize-controller"
FLUX_HELM_MANAGER = "helm-controller"
HELM_RELEASE = "meta.helm.sh/release-name"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

ARGO_REMEDY = (
    "keep Argo CD off the selector for the window: in the Application add "
    "ignoreDifferences: [{group: '', kind: Service, name: <svc>, jsonPointers: [/spec/selector]}] "
    "and syncPolicy.syncOptions: [RespectIgnoreDifferences=true] (without the option a sync still "
    "rewrites the field), or a deny sync window over the maintenance; then pass "
    "--allow argocd"
)


@dataclass(frozen=True)
class Finding:
    target: str
    check: str
    severity: str
    message: str
    remedy: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def findings(s: Surroundings, *, pause_reconcilers: bool = False) -> list[Finding]:
    """Every finding for one Service, blocking ones first, then in check order.

    With ``pause_reconcilers`` (the notice pauses Flux itself, ``switch.pause``) Flux's
    kustomize-controller no longer blocks: it is told as what maint will do."""
    meta = s.service.get("metadata") or {}
    target = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    found = [
        Finding(target, check, severity, message, remedy)
        for rule in RULES
        for check, severity, message, remedy in rule(s)
    ]
    if pause_reconcilers:
        found = [_paused(f) if f.check == "flux" and f.severity == BLOCK else f for f in found]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


def _paused(finding: Finding) -> Finding:
    return Finding(
        finding.target,
        finding.check,
        INFO,
        f"Flux's kustomize-controller manages this Service: maint sets {FLUX_RECONCILE}: "
        "disabled in the switch's patch and puts back the value it had at the end "
        "(--pause-reconcilers)",
        "resume Flux by hand only if maint could not end the window",
    )


def blocking(found: Iterable[Finding], *, allowed: Iterable[str] = ()) -> list[Finding]:
    allow = set(allowed)
    return [f for f in found if f.severity == BLOCK and f.check not in allow]


Result = tuple[str, str, str, str]  # check, severity, message, remedy
Rule = Callable[[Surroundings], list[Result]]


# --- who else writes this Service ----------------------------------------------------------
def _argocd(s: Surroundings) -> list[Result]:
    meta = s.service.get("metadata") or {}
    managers = _managers(s.service)
    why = []
    if ARGO_TRACKING in (meta.get("annotations") or {}):
        why.append(f"annotation {ARGO_TRACKING}")
    why += [f"field manager {m}" for m in sorted(managers & ARGO_MANAGERS)]
    if not why:
        return []
    return [
        (
            "argocd",
            BLOCK,
            f"Argo CD manages this Service ({', '.join(why)}): with self-heal it reverts the "
            "page selector about 5 s after the switch, and any later sync rewrites it",
            ARGO_REMEDY,
        )
    ]


def _flux(s: Surroundings) -> list[Result]:
    meta = s.service.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    managers = _managers(s.service)
    kustomize = FLUX_KUSTOMIZE_MANAGER in managers or any(
        k.startswith("kustomize.toolkit.fluxcd.io/") for k in labels
    )
    helm = FLUX_HELM_MANAGER in managers or any(
        k.startswith("helm.toolkit.fluxcd.io/") for k in labels
    )
    results: list[Result] = []
    if kustomize:
        if annotations.get(FLUX_RECONCILE) == "disabled":
            results.append(
                (
                    "flux",
                    INFO,
                    f"Flux's kustomize-controller manages this Service, and {FLUX_RECONCILE}: "
                    "disabled is set, so it leaves the Service alone",
                    "remove the annotation after the window if it was set only for it",
                )
            )
        else:
            results.append(
                (
                    "flux",
                    BLOCK,
                    "Flux's kustomize-controller manages this Service: it reverts the page "
                    "selector at its next interval or commit",
                    "pass --pause-reconcilers (maint sets "
                    f"{FLUX_RECONCILE}: disabled for the window and removes it after), or "
                    "`flux suspend kustomization <name>` and pass --allow flux",
                )
            )
    if helm:
        results.append(
            (
                "flux-helm",
                WARN,
                "Flux's helm-controller manages this Service: a HelmRelease upgrade during the "
                "window rewrites the selector, and with drift detection enabled it is reverted "
                "at once",
                "`flux suspend helmrelease <name>` for the window",
            )
        )
    return results


def _helm(s: Surroundings) -> list[Result]:
    meta = s.service.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    why = []
    if HELM_RELEASE in annotations:
        why.append(f"release {annotations[HELM_RELEASE]}")
    if labels.get("app.kubernetes.io/managed-by") == "Helm":
        why.append("label app.kubernetes.io/managed-by=Helm")
    if "helm" in _managers(s.service):
        why.append("field manager helm")
    if not why:
        return []
    return [
        (
            "helm",
            WARN,
            f"Helm installed this Service ({', '.join(why)}): a `helm upgrade` during the window "
            "rewrites the selector (Helm 4 applies server-side and may refuse with a conflict on "
            "spec.selector)",
            "hold upgrades of this release until the window ends",
        )
    ]


def _kubectl_apply(s: Surroundings) -> list[Result]:
    annotations = (s.service.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED not in annotations:
        return []
    return [
        (
            "kubectl-apply",
            WARN,
            "this Service was created with client-side `kubectl apply`: applying its manifest "
            "during the window merges the app's selector keys into the page selector, and the "
            "Service then selects no Pod at all (kubernetes#36509)",
            "apply server-side (`kubectl apply --server-side`) or not at all during the window",
        )
    ]


# --- the network around it -----------------------------------------------------------------
def _network_policy(s: Surroundings) -> list[Result]:
    if s.network_policies is None:
        return [
            (
                "network-policy",
                WARN,
                "maint may not read NetworkPolicies here, so it cannot tell whether the page "
                "Pod will be reachable",
                "grant list on networking.k8s.io networkpolicies in this namespace",
            )
        ]
    selector = (s.service.get("spec") or {}).get("selector") or {}
    app = app_policies(s.network_policies, pods=s.pods, selector=selector)
    if app:
        return [
            (
                "network-policy",
                INFO,
                "NetworkPolicies govern ingress to the app's Pods ("
                + ", ".join(_name(p) for p in app)
                + "): for the window maint creates a NetworkPolicy giving the page Pod the "
                "union of their ingress rules (ports mapped to the page's), and deletes it at "
                "the end",
                "",
            )
        ]
    page = _page_pod_labels(s)
    isolating = [p for p in s.network_policies if isolates_ingress(p, page)]
    if not isolating:
        return []
    allowing = [p for p in isolating if _ingress(p)]
    if allowing:
        return [
            (
                "network-policy",
                INFO,
                "NetworkPolicies select the page Pod and allow some ingress to it: "
                + ", ".join(_name(p) for p in allowing),
                "check that these rules let the app's clients in",
            )
        ]
    return [
        (
            "network-policy",
            BLOCK,
            "ingress to the page Pod is denied by "
            + ", ".join(_name(p) for p in isolating)
            + ", and no policy governs the app's Pods for maint to copy: users would get "
            "timeouts instead of the page",
            "add a NetworkPolicy with podSelector "
            f"{{matchLabels: {{{naming.MANAGED_BY}: {naming.MANAGER}}}}} and the ingress the page "
            "needs for the window; then pass --allow network-policy",
        )
    ]


def _traffic_policy(s: Surroundings) -> list[Result]:
    spec = s.service.get("spec") or {}
    local = [
        field
        for field in ("internalTrafficPolicy", "externalTrafficPolicy")
        if spec.get(field) == "Local"
    ]
    if not local:
        return []
    return [
        (
            "traffic-policy",
            WARN,
            f"{' and '.join(local)}: Local — only nodes that run the page Pod answer; clients "
            "routed to any other node get no answer at all during the window",
            "set the traffic policy to Cluster for the window",
        )
    ]


def _headless(s: Surroundings) -> list[Result]:
    if (s.service.get("spec") or {}).get("clusterIP") != "None":
        return []
    return [
        (
            "headless",
            WARN,
            "headless Service: clients resolve Pod IPs through DNS and keep cached answers, so "
            "some keep reaching the app's Pods after the switch, for as long as their DNS cache",
            "give clients a ClusterIP Service to reach, or accept the DNS delay",
        )
    ]


def _session_affinity(s: Surroundings) -> list[Result]:
    if (s.service.get("spec") or {}).get("sessionAffinity") != "ClientIP":
        return []
    return [
        (
            "session-affinity",
            INFO,
            "sessionAffinity ClientIP: affinity is dropped when the endpoints change, and "
            "connections already open stay on the app's Pods until they close",
            "",
        )
    ]


def _mesh(s: Surroundings) -> list[Result]:
    where = []
    if s.namespace is not None:
        labels = (s.namespace.get("metadata") or {}).get("labels") or {}
        annotations = (s.namespace.get("metadata") or {}).get("annotations") or {}
        if labels.get("istio-injection") == "enabled" or "istio.io/rev" in labels:
            where.append("Istio injection on the namespace")
        if annotations.get("linkerd.io/inject") == "enabled":
            where.append("Linkerd injection on the namespace")
    for pod in s.pods:
        meta = pod.get("metadata") or {}
        containers = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
        if "istio-proxy" in containers:
            where.append(f"an Istio sidecar in Pod {meta.get('name')}")
        if "linkerd-proxy" in containers:
            where.append(f"a Linkerd proxy in Pod {meta.get('name')}")
    if not where:
        return []
    return [
        (
            "mesh",
            WARN,
            f"a service mesh is in the path ({'; '.join(sorted(set(where)))}): the page Pod gets "
            "no sidecar from maint, so STRICT mTLS or authorization policies may refuse mesh "
            "clients, and DestinationRule subsets keyed on the app's labels answer "
            "'no healthy upstream'",
            "allow plaintext to the page Pod (PeerAuthentication PERMISSIVE on its labels) and "
            "check DestinationRules for this host",
        )
    ]


def _shared_selector(s: Surroundings) -> list[Result]:
    selector = (s.service.get("spec") or {}).get("selector") or {}
    same = [
        _name(other)
        for other in s.services
        if ((other.get("spec") or {}).get("selector") or {}) == selector and selector
    ]
    if not same:
        return []
    return [
        (
            "shared-selector",
            INFO,
            f"other Services select the same Pods ({', '.join(same)}); they keep serving the app "
            "during the window",
            "add them as targets if they should show the page too",
        )
    ]


def _unreadable(s: Surroundings) -> list[Result]:
    return [("access", INFO, f"not readable: {what}", "") for what in s.unreadable]


RULES: tuple[Rule, ...] = (
    _argocd,
    _flux,
    _helm,
    _kubectl_apply,
    _network_policy,
    _traffic_policy,
    _headless,
    _session_affinity,
    _mesh,
    _shared_selector,
    _unreadable,
)
CHECKS = (
    "argocd",
    "flux",
    "flux-helm",
    "helm",
    "kubectl-apply",
    "network-policy",
    "traffic-policy",
    "headless",
    "session-affinity",
    "mesh",
    "shared-selector",
    "access",
)


# --- helpers -------------------------------------------------------------------------------
def _managers(obj: Object) -> set[str]:
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return {str(e.get("manager")) for e in entries if e.get("manager")}


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _page_pod_labels(s: Surroundings) -> dict[str, str]:
    """The labels maint's page Pod carries: the app's selector keys and maint's own, all with
    per-notice values (policies select the app's values, rarely these)."""
    meta = s.service.get("metadata") or {}
    keys = (s.service.get("spec") or {}).get("selector") or {}
    target = naming.target_name(notice_id=1, namespace=meta["namespace"], service=meta["name"])
    base = naming.labels(notice_id=1, target=target)
    return naming.page_labels(name=target, keys=keys, base=base)


def _ingress(policy: Object) -> list[Any]:
    rules: list[Any] = (policy.get("spec") or {}).get("ingress") or []
    return rules


def table(found: Iterable[Finding]) -> str:
    """Findings as the text ``maint plan`` prints: one block per target, worst first."""
    lines: list[str] = []
    by_target: dict[str, list[Finding]] = {}
    for f in found:
        by_target.setdefault(f.target, []).append(f)
    width = max((len(f.check) for f in found_list(by_target)), default=0)
    for target, items in by_target.items():
        lines.append(target)
        for f in items:
            lines.append(f"  {f.severity:<5}  {f.check:<{width}}  {f.message}")
            if f.remedy:
                lines.append(f"  {'':<5}  {'':<{width}}  fix: {f.remedy}")
    return "\n".join(lines)


def found_list(by_target: Mapping[str, list[Finding]]) -> list[Finding]:
    return [f for items in by_target.values() for f in items]


def dumps(found: Iterable[Finding]) -> str:
    return json.dumps([f.as_json() for f in found], indent=2, ensure_ascii=False)
