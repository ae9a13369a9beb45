"""Every way a window ends: restore, rollback, cancel, a vanished Service, a foreign selector.

Each ending is terminal: once the Service is given back (or was never touched, or is gone),
the target reaches COMPLETED, ROLLED_BACK, CANCELLED or FAILED in the same step, and what is
left is housekeeping that never holds it up (image deletion, see ``housekeeping``).
A 404 on an object being deleted is success; a 409 on the selector patch means someone else
changed it (FOREIGN: reported, never overwritten).
"""

from __future__ import annotations

from datetime import datetime

from maint import build, cluster, naming, switch
from maint.cluster import ServiceInfo
from maint.errors import Conflict, NotFound
from maint.notices import TargetState, TargetUpdate, WorkItem
from maint.runner.core import PRE_SWITCH, StepContext
from maint.runner.housekeeping import ImageJanitor
from maint.runner.transitions import service_gone
from maint.switch import netpol


class Ending:
    def __init__(self, ctx: StepContext, *, janitor: ImageJanitor) -> None:
        self.ctx = ctx
        self.janitor = janitor

    def restore(
        self,
        item: WorkItem,
        *,
        forced: bool = False,
        patched: tuple[switch.Restored, datetime] | None = None,
    ) -> WorkItem:
        """ACTIVE/RESTORING -> COMPLETED (FAILED when someone else owns the selector now).
        ``patched``: the selector was given back already, and when (a restore armed for the
        end, ``Serving.restore_at``)."""
        ctx = self.ctx
        if item.target.state is not TargetState.RESTORING:
            item = ctx.move(item, TargetState.RESTORING)
        ref = item.target.ref
        assert item.target.pod is not None
        original: dict[str, str] | None
        if patched is not None:
            (result, at), original = patched, patched[0].live
        else:
            try:  # what to give back; ``switch.restore`` reads the Service itself to patch it
                service = cluster.get_service(
                    ctx.api, namespace=ref.namespace, name=ref.name, cached=True
                )
            except NotFound:
                return self.gone(item, why=f"Service {ref} was deleted")
            selectors = self.selectors(item, service)
            if selectors is None:
                raise Conflict(f"no original selector recorded for {ref}; restore it by hand")
            original, page = selectors
            try:
                result = switch.restore(ctx.api, ref=ref, page=page, original=original)
            except NotFound:
                return self.gone(item, why=f"Service {ref} was deleted")
            if result.outcome is switch.RestoreOutcome.FOREIGN:
                return self.fail_foreign(item, live=result.live, original=original)
            at = ctx.clock()
        lag = (at - item.notice.end).total_seconds()
        ctx.event(
            item,
            "force-restore" if forced else "restore",
            "ok" if result.outcome is switch.RestoreOutcome.RESTORED else "already",
            f"selector {original} ({lag:+.3f}s from end)"
            + (f"; {result.ownership}" if result.ownership else ""),
        )
        ctx.verify_endpoints(item, want=set(), what="no page Pod")
        self.cleanup(item, keep=None, images=_images(item))
        return ctx.move(
            item,
            TargetState.COMPLETED,
            changes=TargetUpdate(actual_end=ctx.clock(), forced=forced or None),
            then=("complete", "ok", "forced restore" if forced else ""),
        )

    def selectors(
        self, item: WorkItem, service: ServiceInfo
    ) -> tuple[dict[str, str], dict[str, str]] | None:
        """What a restore of ``service`` gives back and the page's selector it replaces: the
        original recorded at the switch (else saved on the Service), and the page's selector
        as it is on a switched Service (the older release's shape without the app's keys
        included). None when no original selector is known."""
        assert item.target.pod is not None
        saved = switch.saved_state(service)
        original = item.target.original_selector or (saved[0] if saved else None)
        if original is None:
            return None
        page = naming.page_selector(name=item.target.pod, keys=original)
        if service.selector == naming.legacy_page_selector(name=item.target.pod):
            page = service.selector  # switched by a release before the page kept the keys
        return original, page

    def rollback(
        self, item: WorkItem, *, reason: str, to: TargetState = TargetState.ROLLED_BACK
    ) -> WorkItem:
        """Undo a window that never (knowingly) switched; the Service stays as it is.

        If a crash left the Service switched without a record, restore it first.
        """
        ctx = self.ctx
        step = "rollback" if to is TargetState.ROLLED_BACK else "cancel"
        ctx.event(item, step, "started", reason)
        untouched = True
        if item.target.pod is not None:
            ref = item.target.ref
            try:
                service = cluster.get_service(ctx.api, namespace=ref.namespace, name=ref.name)
            except NotFound:
                service = None
            saved = switch.saved_state(service) if service is not None else None
            if (
                service is not None
                and saved
                and service.selector == naming.page_selector(name=item.target.pod, keys=saved[0])
            ):
                switch.restore(ctx.api, ref=ref, page=service.selector, original=saved[0])
                ctx.event(item, "restore", "ok", f"selector {saved[0]} (switched without record)")
                untouched = False
        self.cleanup(item, keep=None, images=_images(item))
        return ctx.move(
            item,
            to,
            expect=PRE_SWITCH,
            then=(
                step,
                "ok",
                "Service untouched" if untouched else "Service restored to its original selector",
            ),
        )

    def gone(self, item: WorkItem, *, why: str) -> WorkItem:
        """The Service vanished (or was replaced without our switch): nothing is left to give
        back, so remove what we made and end the target (ROLLED_BACK or COMPLETED)."""
        ctx = self.ctx
        ctx.event(item, "service", "gone", f"{why}; removing the page and its build")
        self.cleanup(item, keep=None, images=_images(item))
        to = service_gone(item.target.state)
        completed = to is TargetState.COMPLETED
        return ctx.move(
            item,
            to,
            changes=TargetUpdate(actual_end=ctx.clock() if completed else None),
            then=("complete" if completed else "rollback", "ok", why),
        )

    def fail_foreign(
        self, item: WorkItem, *, live: dict[str, str], original: dict[str, str]
    ) -> WorkItem:
        """Someone else changed the selector during the window: never overwritten. FAILED,
        after removing what serves nobody (Job, ConfigMap, image; the page Pod only when no
        Service selects it) and our annotations, so no pass or sweep warns about it again."""
        ctx = self.ctx
        ref = item.target.ref
        pod = item.target.pod
        selected = pod is not None and self._selected(item, pod, keys=original)
        ctx.event(
            item,
            "restore",
            "conflict",
            f"selector was changed to {live} during the window; not overwritten (the app's "
            f"selector was {original}). "
            + (
                f"The page Pod {pod} keeps running because a Service selects it: "
                "check the Service and delete the Pod"
                if selected
                else "Nothing selects the page Pod any more: removed"
            ),
        )
        self.cleanup(item, keep=None, images=_images(item), pods=not selected)
        try:
            if switch.drop_annotations(ctx.api, ref=ref, notice_id=item.notice.id):
                ctx.event(item, "cleanup", "ok", f"removed maint's annotations from {ref}")
        except (NotFound, Conflict):
            pass  # gone, or no longer ours: nothing of ours to remove
        return ctx.move(item, TargetState.FAILED, changes=TargetUpdate(actual_end=ctx.clock()))

    def cleanup(
        self, item: WorkItem, *, keep: str | None, images: list[str], pods: bool = True
    ) -> None:
        """Delete every object of this target (but ``keep``'s) and the images it built.

        Found by label, not by remembered names, so objects of an attempt that crashed before
        writing its state are found too; a finished Kaniko Pod still tells the digest it
        pushed. ``pods=False`` leaves the page Pod in the Service's namespace alone. The page's
        NetworkPolicy serves every revision of the window: it goes only when nothing is kept.
        Each kind is listed once (a list per kind and namespace, a delete per object found).
        """
        ctx = self.ctx
        labels = naming.labels(notice_id=item.notice.id, target=ctx.target_name(item))
        build_ns = ctx.settings.build_namespace

        def found(kind: str, namespace: str) -> list[cluster.ObjectRef]:
            refs = cluster.list_managed(
                ctx.api, kind=kind, labels=labels, namespace=namespace, cached=True
            )
            return [r for r in refs if r.labels.get(naming.PAGE_LABEL) != keep]

        page_pods = found("Pod", item.target.ref.namespace) if pods else []
        jobs = found("Job", build_ns)
        build_pods = found("Pod", build_ns)
        digests = {image.split("@", 1)[1] for image in images if "@" in image}
        digests |= {
            p.ended.message
            for p in build_pods
            if p.ended is not None and build.kaniko.DIGEST.fullmatch(p.ended.message)
        }
        # A Job's Pods go with it (the garbage collector, soon after): only a Pod whose Job is
        # already gone is deleted here.
        doomed = {job.name for job in jobs}
        strays = [p for p in build_pods if naming.job_of(p.labels) not in doomed]
        for ref in [*page_pods, *jobs, *strays, *found("ConfigMap", build_ns)]:
            if cluster.delete(ctx.api, kind=ref.kind, namespace=ref.namespace, name=ref.name):
                ctx.event(item, "cleanup", "ok", f"deleted {ref.kind} {ref.namespace}/{ref.name}")
        if keep is None:  # the window ends: the page's NetworkPolicy goes too (after its Pod)
            for line in netpol.retire(ctx.api, namespace=item.target.ref.namespace, labels=labels):
                ctx.event(item, "cleanup", "ok", line)
        current = item.target.image.split("@", 1)[1] if keep and item.target.image else None
        self.janitor.delete(item, digests - {current} if current else digests, record=ctx.record)

    def _selected(self, item: WorkItem, pod: str, *, keys: dict[str, str]) -> bool:
        """Whether any Service in the target's namespace selects the page Pod ``pod`` (made
        for a selector with ``keys``)."""
        base = naming.labels(notice_id=item.notice.id, target=self.ctx.target_name(item))
        labels = naming.page_labels(name=pod, keys=keys, base=base)
        return any(
            s.selector and all(labels.get(k) == v for k, v in s.selector.items())
            for s in cluster.list_services(self.ctx.api, namespace=item.target.ref.namespace)
        )


def _images(item: WorkItem) -> list[str]:
    return [item.target.image] if item.target.image else []
