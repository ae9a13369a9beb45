"""Before the window: render the page, build its image (Kaniko), start its Pod, wait Ready.

Everything here is resumable: objects carry deterministic names (target + page revision), so
a retried step finds what an earlier attempt made (409 on create = "exists", go on). A failure
is either permanent (the Service cannot be switched, Forbidden, a broken build): roll back at
once; or it may pass (API outage, a wait past its deadline, a registry 5xx in the build): the
same step runs again, with a fresh build after a failed one, until the start plus a margin
(``transitions.after_failure``). A Service that is gone ends the target (``Ending.gone``).
Right before each create (the build's ConfigMap and Job, the page Pod) the step in progress is
confirmed from the database (``StepContext.confirm``): a cancel or an end recorded meanwhile
makes it ``Superseded`` and nothing is created for a window that is no longer wanted.
"""

from __future__ import annotations

from dataclasses import replace

from maint import build, cluster, naming, page, switch
from maint.cluster import AppIngress, ServiceInfo, Surroundings
from maint.errors import (
    BehindPage,
    BuildFailed,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    MaintError,
    NotFound,
)
from maint.notices import TargetState, TargetUpdate, WorkItem
from maint.page import bypass
from maint.runner.core import (
    PERMANENT_BEFORE_SWITCH,
    PRE_SWITCH,
    PageBuild,
    StepContext,
    Superseded,
)
from maint.runner.ending import Ending
from maint.runner.transitions import Step, after_failure
from maint.switch import netpol, preflight, shadow


class ServiceGone(NotFound):
    """The target Service does not exist (any more)."""


class Preparing:
    def __init__(self, ctx: StepContext, *, ending: Ending) -> None:
        self.ctx = ctx
        self.ending = ending

    def prepare(self, item: WorkItem) -> WorkItem:
        """SCHEDULED/PREPARING -> READY: page built, Pod Ready."""
        built: PageBuild | None = None
        around: Surroundings | None = None
        try:
            if item.target.state is TargetState.SCHEDULED:
                item = self.ctx.move(
                    item,
                    TargetState.PREPARING,
                    then=("prepare", "started", f"window starts {item.notice.start.isoformat()}"),
                )
                around = self.preflight(item)
            built = self.plan_page(item, around=around)
            item = self.build_image(item, built, step=Step.PREPARE)
            self.open_ingress(item, built, step=Step.PREPARE, around=around)
            self.start_pod(item, built, step=Step.PREPARE)
            return self.ctx.move(
                item,
                TargetState.READY,
                changes=TargetUpdate(pod=built.name),
                then=("prepare", "ok", f"page Pod {built.name} is Ready"),
            )
        except MaintError as e:
            return self.failed(item, e, built=built)

    def preflight(self, item: WorkItem) -> Surroundings | None:
        """The preflight again, once, as preparation starts: what changed since `notice add`
        (a Service adopted by Argo CD meanwhile, a new NetworkPolicy) is told in the event log
        and as a Kubernetes Event. It is told, not acted on: the operator may have allowed a
        check at `notice add`, and nothing but the operator cancels a window. What it read
        (None when it could not) plans the page and its NetworkPolicy without reading again."""
        ref = item.target.ref
        try:
            around = cluster.surroundings(
                self.ctx.api, namespace=ref.namespace, name=ref.name, cached=True
            )
        except MaintError as e:
            self.ctx.event(item, "preflight", "failed", str(e))
            return None
        pause = item.notice.pause_reconcilers
        for finding in preflight.findings(around, pause_reconcilers=pause):
            if finding.severity == preflight.INFO:
                continue
            outcome = "blocked" if finding.severity == preflight.BLOCK else "warn"
            self.ctx.event(item, "preflight", outcome, f"{finding.check}: {finding.message}")
        return around

    def failed(self, item: WorkItem, e: MaintError, *, built: PageBuild | None = None) -> WorkItem:
        """A step before the switch failed: end, roll back, or raise for a retry.

        Re-raises what the runner retries (and what is not ours to judge: a superseded step,
        the database); a failed build is removed first so the retry builds afresh.
        """
        if isinstance(e, ServiceGone):
            return self.ending.gone(item, why=str(e))
        if isinstance(e, Superseded | DatabaseUnavailable):
            raise e
        # Behind another window's page: that window ends, so this one waits for it.
        permanent = not isinstance(e, BehindPage) and (
            isinstance(e, PERMANENT_BEFORE_SWITCH)
            or (isinstance(e, BuildFailed) and build.permanent(e))
        )
        ctx = self.ctx
        step = after_failure(
            item.target.state, now=ctx.clock(), window=ctx.window(item), permanent=permanent
        )
        if step is Step.ROLLBACK:
            return self.ending.rollback(item, reason=str(e))
        if isinstance(e, BuildFailed) and built is not None:
            removed = build.remove(ctx.api, plan=built.plan)
            ctx.event(item, "build", "retry", f"{e}; removed {', '.join(removed) or 'nothing'}")
        raise e

    def service(self, item: WorkItem) -> ServiceInfo:
        """The target Service, from the watch cache (a miss is read again before it counts):
        what the page is planned from, and what an armed switch's patch is computed from, whose
        ``test`` op fails if it changed since."""
        ref = item.target.ref
        try:
            return cluster.get_service(
                self.ctx.api, namespace=ref.namespace, name=ref.name, cached=True
            )
        except NotFound:
            raise ServiceGone(f"Service {ref} was deleted") from None

    def plan_page(self, item: WorkItem, *, around: Surroundings | None = None) -> PageBuild:
        """The page the notice asks for now; its revision is the notice's content only. The
        Service is read, unless the preflight of this step has just read it (``around``)."""
        ctx = self.ctx
        service = cluster.service_from_dict(around.service) if around else self.service(item)
        if item.target.state in PRE_SWITCH:
            try:
                ports = switch.switchable(service, own_page=item.target.pod)
            except BehindPage:
                # Another window's page serves until that window ends (the switch checks
                # again at its instant): the ports are still the Service's.
                ports = switch.plan_ports(service)
        else:  # switched: the selector is ours now, the ports are still the Service's
            ports = switch.plan_ports(service)
        # The app's selector: recorded at the switch, else on the Service (switched without a
        # record), else the live one (not switched yet).
        saved = switch.saved_state(service)
        selector = item.target.original_selector or (saved[0] if saved else service.selector)
        notice = page.PageNotice(
            notice_id=item.notice.id,
            title=item.notice.title,
            reason=item.notice.reason,
            lang=item.notice.lang,
            start=item.notice.start,
            end=item.notice.end,
            display_zone=item.notice.display_zone,
        )
        numbers = [p.number for p in ports]
        context = page.render(
            notice, ports=numbers, zone=ctx.settings.zone(), base_image=ctx.settings.base_image
        )
        target = ctx.target_name(item)
        revision = page.revision(notice, ports=numbers, base_image=ctx.settings.base_image)
        name = naming.object_name(target=target, revision=revision)
        labels = naming.labels(notice_id=item.notice.id, target=target) | {naming.PAGE_LABEL: name}
        plan = build.BuildPlan(
            name=name,
            namespace=ctx.settings.build_namespace,
            labels=labels,
            destination=ctx.repository.tagged(name),
        )
        return PageBuild(
            target=target,
            name=name,
            revision=revision,
            plan=plan,
            context=context,
            tarball=page.context_tarball(context),
            ports=ports,
            selector=selector,
            service=service,
        )

    def build_image(self, item: WorkItem, built: PageBuild, *, step: Step) -> WorkItem:
        """Build the page's image unless an earlier attempt did; ``step`` is the step this
        build is part of, confirmed before anything is created (``StepContext.confirm``)."""
        if item.target.image and item.target.revision == built.revision:
            return item  # built by an earlier attempt
        ctx = self.ctx
        s = ctx.settings
        ctx.confirm(item, step)
        created = build.start(
            ctx.api,
            plan=built.plan,
            files=dict(built.context.files),
            tarball=built.tarball,
            spec=build.KanikoSpec(
                image=s.kaniko_image,
                service_account=s.kaniko_service_account,
                insecure=s.registry_insecure,
                timeout_seconds=int(s.build_timeout),
                aws_region=s.aws_region,
            ),
        )
        ctx.event(
            item,
            "build",
            "started" if created else "resumed",
            f"Kaniko Job {built.plan.namespace}/{built.name} -> {built.plan.destination}",
        )
        digest = build.wait_digest(
            ctx.api, plan=built.plan, timeout=s.build_timeout, progress=ctx.progress(item)
        )
        image = ctx.repository.at(digest)
        return ctx.move(
            item,
            item.target.state,
            changes=TargetUpdate(image=image, revision=built.revision),
            then=("build", "ok", image),
        )

    def open_ingress(
        self, item: WorkItem, built: PageBuild, *, step: Step, around: Surroundings | None = None
    ) -> None:
        """Give the page Pod the app's ingress before it starts (``switch.netpol``): with a
        default-deny policy the new Pod is isolated, and the page must answer the moment the
        selector moves. Nothing when no policy governs the app's Pods; when maint may not list
        policies this is told (the preflight warned already) and the window goes on.

        The app's Pods and the policies come from the preflight of this step (``around``) when
        it read them for the same selector, else they are read."""
        ctx = self.ctx
        ref = item.target.ref
        selector = built.selector
        ingress = _app_ingress(around, selector=selector)
        if ingress is None:
            try:
                ingress = cluster.app_ingress(
                    ctx.api, namespace=ref.namespace, selector=selector, cached=True
                )
            except Forbidden as e:
                ctx.event(item, "network-policy", "unknown", str(e))
                return
        app = netpol.app_policies(ingress.network_policies, pods=ingress.pods, selector=selector)
        if not app:
            return
        ports = netpol.page_ports(built.service, built.ports, pods=ingress.pods)
        name = netpol.policy_name(target=built.target)
        ctx.confirm(item, step)
        created = cluster.create(
            ctx.api,
            netpol.page_policy(
                name=name,
                namespace=ref.namespace,
                labels=naming.labels(notice_id=item.notice.id, target=built.target),
                ingress=netpol.page_ingress(app, ports=ports),
            ),
        )
        ctx.event(
            item,
            "network-policy",
            "created" if created else "exists",
            f"NetworkPolicy {ref.namespace}/{name}: the page Pod gets the ingress of "
            + ", ".join(str((p.get("metadata") or {}).get("name")) for p in app),
        )

    def start_pod(self, item: WorkItem, built: PageBuild, *, step: Step) -> None:
        """Create the page Pod (once ``step`` is confirmed still due) and wait until Ready."""
        assert item.target.image is not None
        ctx = self.ctx
        ref = item.target.ref
        ctx.confirm(item, step)
        with_bypass = item.notice.bypass_salt is not None
        created = cluster.create(
            ctx.api,
            switch.page_pod(
                name=built.name,
                namespace=ref.namespace,
                labels=naming.page_labels(name=built.name, keys=built.keys, base=built.plan.labels),
                image=item.target.image,
                ports=built.ports,
                drain=ctx.settings.page_drain,
                bypass_secret=shadow.name_for(built.name) if with_bypass else None,
            ),
        )
        ctx.event(item, "pod", "created" if created else "exists", f"{ref.namespace}/{built.name}")
        if with_bypass:
            self.open_bypass(item, built, replacing=created)
        cluster.wait_pod(
            ctx.api,
            namespace=ref.namespace,
            name=built.name,
            done=lambda p: p.ready and not p.deleting,
            timeout=ctx.settings.pod_ready_timeout,
            what=f"page Pod {ref.namespace}/{built.name} to be Ready",
            progress=ctx.progress(item),
        )
        ctx.event(item, "pod-ready", "ok", built.name)

    def open_bypass(self, item: WorkItem, built: PageBuild, *, replacing: bool) -> None:
        """The page Pod's shadow Service and Secret (``switch.shadow``, ``page.bypass``), owned
        by it. ``replacing``: the Pod is new, so objects of that name belong to an earlier Pod
        and are replaced; else they are this Pod's, from an earlier attempt of the step."""
        ctx = self.ctx
        ref = item.target.ref
        key = ctx.settings.bypass_key.get_secret_value()
        assert item.notice.bypass_salt is not None
        if not key:
            raise InvalidInput(
                f"notice {item.notice.id} has a bypass but MAINT_BYPASS_KEY is unset"
            )
        pod = cluster.get_pod(ctx.api, namespace=ref.namespace, name=built.name)
        selector = built.selector
        labels = built.plan.labels
        make = cluster.create_replacing if replacing else cluster.create
        make(
            ctx.api,
            shadow.shadow_service(pod=pod, labels=labels, selector=selector, ports=built.ports),
        )
        name = shadow.name_for(built.name)
        upstream = cluster.get_service(ctx.api, namespace=ref.namespace, name=name).cluster_ip
        secrets = bypass.derive(key, notice_id=item.notice.id, salt=item.notice.bypass_salt)
        include = bypass.include(
            secrets,
            notice_id=item.notice.id,
            expires=item.notice.end,
            upstream=upstream,
            ports={p.number: p.number for p in built.ports},
        )
        make(ctx.api, shadow.bypass_secret(pod=pod, labels=labels, include=include))
        ctx.event(
            item,
            "bypass",
            "ok",
            f"shadow Service {ref.namespace}/{name} ({upstream}, selector {selector}) and "
            f"Secret {name}, owned by page Pod {pod.name}",
        )

    def ensure_pod(self, item: WorkItem, *, step: Step) -> None:
        """Recreate the page Pod if it was deleted or evicted, then wait until it is Ready
        (``step``: the step this is part of, confirmed before the Pod is created)."""
        assert item.target.pod is not None
        ctx = self.ctx
        namespace = item.target.ref.namespace
        try:
            pod = cluster.get_pod(ctx.api, namespace=namespace, name=item.target.pod)
            if pod.ready and not pod.deleting:
                return
            if pod.phase == "Failed":  # evicted: a Failed Pod never becomes Ready again
                cluster.delete(ctx.api, kind="Pod", namespace=namespace, name=pod.name)
                ctx.event(item, "pod", "evicted", f"{pod.name} failed; deleted")
                raise Conflict(f"page Pod {pod.name} was evicted; recreating it once it is gone")
        except NotFound:
            ctx.event(item, "pod", "missing", f"{item.target.pod} was deleted; recreating")
        built = self.plan_page(item)
        if built.revision != item.target.revision:
            built = _same_revision(built, item)
        self.start_pod(item, built, step=step)


def _app_ingress(around: Surroundings | None, *, selector: dict[str, str]) -> AppIngress | None:
    """What ``cluster.app_ingress`` would read, from the preflight's reads: the Pods it listed
    are the Service's live selector's, so only when that is ``selector``, and only when it
    could read the policies."""
    if around is None or around.network_policies is None:
        return None
    if ((around.service.get("spec") or {}).get("selector") or {}) != selector:
        return None
    return AppIngress(pods=around.pods, network_policies=around.network_policies)


def _same_revision(built: PageBuild, item: WorkItem) -> PageBuild:
    """Exactly the Pod we had (same name, labels, image) even if the notice changed since."""
    assert item.target.revision is not None and item.target.pod is not None
    labels = built.plan.labels | {naming.PAGE_LABEL: item.target.pod}
    plan = replace(built.plan, name=item.target.pod, labels=labels)
    return replace(built, name=item.target.pod, revision=item.target.revision, plan=plan)
