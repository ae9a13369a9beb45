"""The steps of a window, each idempotent: run it again after a crash and it finishes the job.

A step reads what exists (cluster first, database second), does the missing part, writes the
new state with a guarded transition (``Conflict`` if another actor moved the target), and logs
every sub-step to the event log. Before the switch, a failure that retrying cannot fix (failed
build, Pod never Ready, Service gone, RBAC) rolls back and leaves the Service untouched; errors
that may pass (API 5xx, registry, database) propagate so the next pass tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from maint import build, cluster, naming, page, switch
from maint.cluster import Cluster
from maint.errors import (
    BuildFailed,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    MaintError,
    NotFound,
    StepTimeout,
)
from maint.notices import Event, NoticeStore, TargetState, TargetUpdate, WorkItem
from maint.runner.transitions import Step, Window, decide, due_at
from maint.settings import Settings

log = logging.getLogger(__name__)

# Errors a retry cannot fix before the switch: roll back instead of trying again.
FATAL_BEFORE_SWITCH = (BuildFailed, StepTimeout, InvalidInput, NotFound, Forbidden)
NO_CHANGES = TargetUpdate()
PRE_SWITCH = (TargetState.SCHEDULED, TargetState.PREPARING, TargetState.READY)


class Superseded(Conflict):
    """An intent recorded a moment ago (cancel, end) changed what this step must do."""


@dataclass(frozen=True)
class PageBuild:
    """One revision of a target's page: its objects' name, plan and (once built) image."""

    target: str
    name: str
    revision: str
    plan: build.BuildPlan
    context: page.BuildContext
    tarball: bytes
    ports: tuple[switch.ContainerPort, ...]


class Steps:
    def __init__(
        self,
        *,
        api: Cluster,
        store: NoticeStore,
        registry: build.Registry,
        settings: Settings,
        clock: Callable[[], datetime],
        say: Callable[[str], None],
        renew: Callable[[int], object] = lambda _target_id: None,
    ) -> None:
        self.api = api
        self.store = store
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.say = say
        self.renew = renew
        self.repository = build.parse_repository(settings.image_repository)

    # --- helpers --------------------------------------------------------------------------
    def window(self, item: WorkItem) -> Window:
        return Window(
            start=item.notice.start,
            end=item.notice.end,
            lead=self.settings.lead(),
            grace=self.settings.grace(),
            cancelled=item.notice.cancelled_at is not None,
        )

    def event(self, item: WorkItem, step: str, outcome: str, detail: str = "") -> None:
        record = self._event(item, step, outcome, detail)
        self._say(record)
        self.store.record(record)
        self.renew(item.target.id)

    def move(
        self,
        item: WorkItem,
        to: TargetState,
        *,
        expect: tuple[TargetState, ...] | None = None,
        changes: TargetUpdate = NO_CHANGES,
        then: tuple[str, str, str] | None = None,
    ) -> WorkItem:
        """Transition the target; ``then`` = (step, outcome, detail) is the event that tells
        of it, written in the same transaction so a crash cannot lose it."""
        record = self._event(item, *then) if then is not None else None
        target = self.store.transition(
            item.target.id,
            expect=expect or (item.target.state,),
            to=to,
            due_at=due_at(to, window=self.window(item)),
            changes=changes,
            record=record,
        )
        if record is not None:
            self._say(record)
            self.renew(item.target.id)
        return WorkItem(notice=item.notice, target=target)

    def _event(self, item: WorkItem, step: str, outcome: str, detail: str) -> Event:
        return Event(
            at=self.clock(),
            notice_id=item.notice.id,
            target=str(item.target.ref),
            step=step,
            outcome=outcome,
            detail=detail,
        )

    def _say(self, record: Event) -> None:
        detail = f": {record.detail}" if record.detail else ""
        self.say(
            f"notice {record.notice_id} {record.target}: {record.step} {record.outcome}{detail}"
        )

    def confirm(self, item: WorkItem, step: Step) -> WorkItem:
        """Re-read the notice and target right before a cluster write: ``Superseded`` unless
        ``step`` is still what ``decide`` wants, so an intent recorded a moment ago wins."""
        fresh = self.store.target(item.target.id)
        wanted = decide(fresh.target.state, now=self.clock(), window=self.window(fresh))
        if wanted.step is not step:
            raise Superseded(f"{step.value} no longer due: {wanted.reason}")
        return fresh

    def target_name(self, item: WorkItem) -> str:
        return naming.target_name(
            notice_id=item.notice.id,
            namespace=item.target.ref.namespace,
            service=item.target.ref.name,
        )

    def progress(self, item: WorkItem) -> Callable[[str], None]:
        def report(line: str) -> None:
            self.say(f"notice {item.notice.id} {item.target.ref}: {line}")
            self.renew(item.target.id)

        return report

    # --- prepare --------------------------------------------------------------------------
    def prepare(self, item: WorkItem) -> WorkItem:
        """SCHEDULED/PREPARING -> READY: page built, Pod Ready. Rolls back on a fatal error."""
        try:
            if item.target.state is TargetState.SCHEDULED:
                item = self.move(
                    item,
                    TargetState.PREPARING,
                    then=("prepare", "started", f"window starts {item.notice.start.isoformat()}"),
                )
            built = self.plan_page(item)
            item = self.build_image(item, built)
            self.start_pod(item, built)
            item = self.move(
                item,
                TargetState.READY,
                changes=TargetUpdate(pod=built.name),
                then=("prepare", "ok", f"page Pod {built.name} is Ready"),
            )
            return item
        except FATAL_BEFORE_SWITCH as e:
            return self.rollback(item, reason=str(e))

    def plan_page(self, item: WorkItem) -> PageBuild:
        ref = item.target.ref
        service = cluster.get_service(self.api, namespace=ref.namespace, name=ref.name)
        if service.type == "ExternalName" or not service.selector:
            raise InvalidInput(f"Service {ref} has no selector; nothing to switch")
        ports = switch.plan_ports(service)
        context = page.render(
            page.PageNotice(
                notice_id=item.notice.id,
                title=item.notice.title,
                reason=item.notice.reason,
                lang=item.notice.lang,
                start=item.notice.start,
                end=item.notice.end,
            ),
            ports=[p.number for p in ports],
            zone=self.settings.zone(),
            base_image=self.settings.base_image,
        )
        tarball = page.context_tarball(context)
        target = self.target_name(item)
        revision = naming.revision_of(tarball)
        name = naming.object_name(target=target, revision=revision)
        labels = naming.labels(notice_id=item.notice.id, target=target) | {naming.PAGE_LABEL: name}
        plan = build.BuildPlan(
            name=name,
            namespace=self.settings.build_namespace,
            labels=labels,
            destination=self.repository.tagged(name),
        )
        return PageBuild(
            target=target,
            name=name,
            revision=revision,
            plan=plan,
            context=context,
            tarball=tarball,
            ports=ports,
        )

    def build_image(self, item: WorkItem, built: PageBuild) -> WorkItem:
        if item.target.image and item.target.revision == built.revision:
            return item  # built by an earlier attempt
        created = build.start(
            self.api,
            plan=built.plan,
            files=dict(built.context.files),
            tarball=built.tarball,
            spec=build.KanikoSpec(
                image=self.settings.kaniko_image,
                service_account=self.settings.kaniko_service_account,
                insecure=self.settings.registry_insecure,
                timeout_seconds=int(self.settings.build_timeout),
                aws_region=self.settings.aws_region,
            ),
        )
        self.event(
            item,
            "build",
            "started" if created else "resumed",
            f"Kaniko Job {built.plan.namespace}/{built.name} -> {built.plan.destination}",
        )
        digest = build.wait_digest(
            self.api,
            plan=built.plan,
            timeout=self.settings.build_timeout,
            progress=self.progress(item),
        )
        image = self.repository.at(digest)
        item = self.move(
            item,
            item.target.state,
            changes=TargetUpdate(image=image, revision=built.revision),
            then=("build", "ok", image),
        )
        return item

    def start_pod(self, item: WorkItem, built: PageBuild) -> None:
        assert item.target.image is not None
        ref = item.target.ref
        created = cluster.create(
            self.api,
            switch.page_pod(
                name=built.name,
                namespace=ref.namespace,
                labels=built.plan.labels,
                image=item.target.image,
                ports=built.ports,
            ),
        )
        self.event(item, "pod", "created" if created else "exists", f"{ref.namespace}/{built.name}")
        cluster.wait_pod(
            self.api,
            namespace=ref.namespace,
            name=built.name,
            done=lambda p: p.ready and not p.deleting,
            timeout=self.settings.pod_ready_timeout,
            what=f"page Pod {ref.namespace}/{built.name} to be Ready",
            progress=self.progress(item),
        )
        self.event(item, "pod-ready", "ok", built.name)

    # --- switch ---------------------------------------------------------------------------
    def switch(self, item: WorkItem) -> WorkItem:
        """READY -> ACTIVE at start: the Service selects only the page Pod."""
        ref = item.target.ref
        assert item.target.pod is not None
        try:
            self.ensure_pod(item)
            item = self.confirm(item, Step.SWITCH)
            assert item.target.pod is not None  # READY always has its page Pod
            result = switch.switch(
                self.api,
                ref=ref,
                page=naming.page_selector(name=item.target.pod),
                notice_id=item.notice.id,
                restore_by=item.notice.end + self.settings.grace(),
            )
        except FATAL_BEFORE_SWITCH as e:
            return self.rollback(item, reason=str(e))
        now = self.clock()
        lag = (now - item.notice.start).total_seconds()
        self.event(
            item,
            "switch",
            "ok" if not result.already else "already",
            f"selector {result.original} -> page {item.target.pod} ({lag:+.3f}s from start)",
        )
        item = self.move(
            item,
            TargetState.ACTIVE,
            changes=TargetUpdate(original_selector=result.original, actual_start=now),
        )
        self.verify_endpoints(item, want={item.target.pod or ""}, what="only the page Pod")
        return item

    def verify_endpoints(self, item: WorkItem, *, want: set[str], what: str) -> None:
        ref = item.target.ref
        page_pod = item.target.pod
        try:
            if want:

                def done(pods: set[str]) -> bool:
                    return pods == want
            else:

                def done(pods: set[str]) -> bool:
                    return page_pod not in pods

            seen = cluster.wait_endpoints(
                self.api,
                namespace=ref.namespace,
                service=ref.name,
                done=done,
                timeout=self.settings.endpoints_timeout,
                what=f"EndpointSlices of {ref} to list {what}",
                progress=self.progress(item),
            )
            self.event(item, "endpoints", "ok", f"{what}: {sorted(seen) or 'none ready'}")
        except StepTimeout as e:
            self.event(item, "endpoints", "failed", str(e))

    # --- during the window ----------------------------------------------------------------
    def ensure_pod(self, item: WorkItem) -> None:
        """Recreate the page Pod if it was deleted (drift), then wait until it is Ready."""
        assert item.target.pod is not None
        try:
            pod = cluster.get_pod(
                self.api, namespace=item.target.ref.namespace, name=item.target.pod
            )
            if pod.ready and not pod.deleting:
                return
        except NotFound:
            self.event(item, "pod", "missing", f"{item.target.pod} was deleted; recreating")
        built = self.plan_page(item)
        if built.revision != item.target.revision:
            built = self._same_revision(built, item)
        self.start_pod(item, built)

    def _same_revision(self, built: PageBuild, item: WorkItem) -> PageBuild:
        # Recreate exactly the Pod we had (same name, labels, image) even if the page changed.
        assert item.target.revision is not None and item.target.pod is not None
        labels = built.plan.labels | {naming.PAGE_LABEL: item.target.pod}
        plan = build.BuildPlan(
            name=item.target.pod,
            namespace=built.plan.namespace,
            labels=labels,
            destination=built.plan.destination,
        )
        return PageBuild(
            target=built.target,
            name=item.target.pod,
            revision=item.target.revision,
            plan=plan,
            context=built.context,
            tarball=built.tarball,
            ports=built.ports,
        )

    def observe(self, item: WorkItem, *, reported: set[tuple[int, str]]) -> WorkItem:
        """READY/ACTIVE: keep the page serving, follow a changed end, report foreign selectors."""
        self.ensure_pod(item)
        built = self.plan_page(item)
        if built.name != item.target.pod:  # the page changed (extend), or a refresh crashed
            item = self.refresh(item, built)
        if item.target.state is TargetState.ACTIVE:
            ref = item.target.ref
            assert item.target.pod is not None
            live = cluster.get_service(self.api, namespace=ref.namespace, name=ref.name).selector
            wanted = naming.page_selector(name=item.target.pod)
            key = (item.target.id, repr(sorted(live.items())))
            if live != wanted and key not in reported:
                reported.add(key)
                self.event(
                    item,
                    "drift",
                    "foreign",
                    f"selector is {live}, not the page's {wanted}; left as is, reported",
                )
        return item

    def refresh(self, item: WorkItem, built: PageBuild) -> WorkItem:
        """The page changed (end extended): build it, start it, move the selector, drop the old."""
        old_pod = item.target.pod
        old_image = item.target.image
        self.event(item, "refresh", "started", f"page changed (revision {built.revision})")
        staged = WorkItem(
            notice=item.notice,
            target=replace(item.target, image=None)
            if item.target.revision != built.revision
            else item.target,
        )
        staged = self.build_image(staged, built)
        self.start_pod(staged, built)
        if item.target.state is TargetState.ACTIVE:
            assert old_pod is not None
            switch.switch(
                self.api,
                ref=item.target.ref,
                page=naming.page_selector(name=built.name),
                previous_page=naming.page_selector(name=old_pod),
                notice_id=item.notice.id,
                restore_by=item.notice.end + self.settings.grace(),
            )
        item = self.move(
            staged,
            staged.target.state,
            changes=TargetUpdate(pod=built.name),
            then=("refresh", "ok", f"page Pod {built.name} now serves"),
        )
        self.cleanup(item, keep=built.name, images=[old_image] if old_image else [])
        return item

    # --- restore and cleanup --------------------------------------------------------------
    def restore(self, item: WorkItem, *, forced: bool = False) -> WorkItem:
        """ACTIVE/RESTORING -> COMPLETED (or FAILED when someone else owns the selector now)."""
        if item.target.state is not TargetState.RESTORING:
            item = self.move(item, TargetState.RESTORING)
        ref = item.target.ref
        assert item.target.pod is not None
        service = cluster.get_service(self.api, namespace=ref.namespace, name=ref.name)
        saved = switch.saved_state(service)
        original = item.target.original_selector or (saved[0] if saved else None)
        if original is None:
            raise Conflict(f"no original selector recorded for {ref}; restore it by hand")
        result = switch.restore(
            self.api, ref=ref, page=naming.page_selector(name=item.target.pod), original=original
        )
        if result.outcome is switch.RestoreOutcome.FOREIGN:
            self.event(
                item,
                "restore",
                "conflict",
                f"selector was changed to {result.live} during the window; not overwritten. "
                f"The page Pod {item.target.pod} keeps running: check the Service and delete it",
            )
            return self.move(
                item, TargetState.FAILED, changes=TargetUpdate(actual_end=self.clock())
            )
        lag = (self.clock() - item.notice.end).total_seconds()
        self.event(
            item,
            "force-restore" if forced else "restore",
            "ok" if result.outcome is switch.RestoreOutcome.RESTORED else "already",
            f"selector {original} ({lag:+.3f}s from end)",
        )
        self.verify_endpoints(item, want=set(), what="no page Pod")
        self.cleanup(item, keep=None, images=[item.target.image] if item.target.image else [])
        item = self.move(
            item,
            TargetState.COMPLETED,
            changes=TargetUpdate(actual_end=self.clock(), forced=forced or None),
            then=("complete", "ok", "forced restore" if forced else ""),
        )
        return item

    def rollback(
        self, item: WorkItem, *, reason: str, to: TargetState = TargetState.ROLLED_BACK
    ) -> WorkItem:
        """Undo a window that never (knowingly) switched; the Service stays as it is.

        If a crash left the Service switched without a record, restore it first.
        """
        self.event(
            item, "rollback" if to is TargetState.ROLLED_BACK else "cancel", "started", reason
        )
        untouched = True
        if item.target.pod is not None:
            ref = item.target.ref
            service = cluster.get_service(self.api, namespace=ref.namespace, name=ref.name)
            saved = switch.saved_state(service)
            if service.selector == naming.page_selector(name=item.target.pod) and saved:
                switch.restore(self.api, ref=ref, page=service.selector, original=saved[0])
                self.event(item, "restore", "ok", f"selector {saved[0]} (switched without record)")
                untouched = False
        self.cleanup(item, keep=None, images=[item.target.image] if item.target.image else [])
        item = self.move(
            item,
            to,
            expect=PRE_SWITCH,
            then=(
                "rollback" if to is TargetState.ROLLED_BACK else "cancel",
                "ok",
                "Service untouched" if untouched else "Service restored to its original selector",
            ),
        )
        return item

    def cleanup(self, item: WorkItem, *, keep: str | None, images: list[str]) -> None:
        """Delete every object of this target (but ``keep``'s) and the images it built.

        Found by label, not by remembered names, so objects of an attempt that crashed before
        writing its state are found too; a finished Job still tells the digest it pushed.
        """
        labels = naming.labels(notice_id=item.notice.id, target=self.target_name(item))
        digests = {image.split("@", 1)[1] for image in images if "@" in image}
        for ref in cluster.list_managed(
            self.api, kind="Job", labels=labels, namespace=self.settings.build_namespace
        ):
            if ref.labels.get(naming.PAGE_LABEL) == keep:
                continue
            ended = cluster.job_termination(self.api, namespace=ref.namespace, job=ref.name)
            if ended is not None and build.kaniko.DIGEST.fullmatch(ended.message):
                digests.add(ended.message)
        for kind, namespace in (
            ("Pod", item.target.ref.namespace),
            ("Job", self.settings.build_namespace),
            # A Job's Pods go with it, but asynchronously (garbage collector): do not wait.
            ("Pod", self.settings.build_namespace),
            ("ConfigMap", self.settings.build_namespace),
        ):
            for ref in cluster.list_managed(
                self.api, kind=kind, labels=labels, namespace=namespace
            ):
                if ref.labels.get(naming.PAGE_LABEL) == keep:
                    continue
                if cluster.delete(self.api, kind=kind, namespace=ref.namespace, name=ref.name):
                    self.event(item, "cleanup", "ok", f"deleted {kind} {ref.namespace}/{ref.name}")
        current = item.target.image.split("@", 1)[1] if keep and item.target.image else None
        for digest in sorted(digests - {current} if current else digests):
            gone = self.registry.delete_image(digest)
            self.event(
                item,
                "cleanup",
                "ok",
                f"{'deleted' if gone else 'already gone:'} image {self.repository.at(digest)}",
            )


def describe(e: MaintError) -> str:
    """One line for the event log: the error's kind and message."""
    kind = "database" if isinstance(e, DatabaseUnavailable) else type(e).__name__
    return f"{kind}: {e}"
