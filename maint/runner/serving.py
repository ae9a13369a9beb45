"""The window itself: switch the Service to the page at start, then keep the page serving.

During the window (READY or ACTIVE) every poll re-checks the page Pod (recreated when it was
deleted), moves ``maint.io/restore-by`` at once when the end moved, rebuilds the page when the
notice's content changed (extend) and reports a foreign selector once. A refresh never adopts
a foreign selector; a failed rebuild keeps the old page serving and is retried with capped
backoff. A Service that disappears ends the target (``Ending.gone``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from maint import build, cluster, naming, switch
from maint.cluster import PodInfo, ServiceInfo
from maint.errors import BehindPage, BuildFailed, Conflict, MaintError, NotFound
from maint.notices import TargetState, TargetUpdate, WorkItem
from maint.runner.core import PageBuild, StepContext, Superseded
from maint.runner.ending import Ending
from maint.runner.instant import Member
from maint.runner.prepare import Preparing, ServiceGone
from maint.runner.transitions import Step, backoff
from maint.switch import RestorePlan, Switched, SwitchPlan

REFRESH_MAX_DELAY = 300.0  # seconds: the cap of the backoff between failed rebuilds


class Serving:
    def __init__(self, ctx: StepContext, *, preparing: Preparing, ending: Ending) -> None:
        self.ctx = ctx
        self.preparing = preparing
        self.ending = ending
        # target id -> (failed rebuilds in a row, monotonic time of the next try); per process:
        # after a restart the first pass simply tries again.
        self.refresh_backoff: dict[int, tuple[int, float]] = {}

    def switch(
        self, item: WorkItem, *, at: datetime | None = None, since: datetime | None = None
    ) -> WorkItem:
        """READY -> ACTIVE at start: the Service selects only the page Pod.

        ``at`` (the start, still ahead): armed. Page Pod and Service are read and the patch is
        computed now; the PATCH leaves at ``at`` from this thread, right after the notice is
        confirmed once more (an intent recorded meanwhile wins), together with the other
        targets armed for that instant (``instant``). ``since``: the change marker read before
        ``item`` (``StepContext.confirm``), by the runner that found the switch due at ``at``.
        """
        ctx = self.ctx
        if at is None or ctx.clock() >= at:
            return self._switch_now(item)
        with ctx.instants.join(at, target_id=item.target.id) as member:
            try:
                labels, service = self._arm_switch(item)
                armed = self._plan_armed(item, labels, service)
                if not _until_instant(member):
                    return item  # the clock never got there (a test's): the next pass decides
                fresh = ctx.confirm(item, Step.SWITCH, volley=member, since=since)
                if armed is not None and fresh.notice.end != item.notice.end:  # extended
                    armed = self._plan_switch(fresh, labels, service)
                item = fresh
                with member.firing():
                    try:
                        if armed is None:
                            result = self._apply_switch_now(item, labels)
                        elif isinstance(armed, Switched):
                            result = armed
                        else:
                            result = switch.apply_switch(ctx.api, armed)
                    except Conflict:  # the Service changed since it was read: read it again
                        result = self._apply_switch_now(item, labels)
                patched_at = ctx.clock()
            except MaintError as e:
                member.done(fired=False)
                return self.preparing.failed(item, e)
            # Every PATCH of the volley answered: now the follow-ups.
            member.done(fired=not isinstance(armed, Switched))
        return self._switched(item, result, at=patched_at)

    def _arm_switch(self, item: WorkItem) -> tuple[dict[str, str], ServiceInfo]:
        """Before the instant: the page Pod Ready (its labels), the Service as it is now. (The
        runner decided the switch due at ``at`` from the target read under the claim.)"""
        pod = self._page(item, step=Step.OBSERVE)
        return pod.labels, self.preparing.service(item)

    def _plan_switch(
        self, item: WorkItem, labels: dict[str, str], service: ServiceInfo
    ) -> SwitchPlan | Switched:
        return switch.plan_switch(
            service,
            page=labels,
            notice_id=item.notice.id,
            restore_by=item.notice.end + self.ctx.settings.grace(),
            pause_reconcilers=item.notice.pause_reconcilers,
        )

    def _plan_armed(
        self, item: WorkItem, labels: dict[str, str], service: ServiceInfo
    ) -> SwitchPlan | Switched | None:
        """The armed switch's patch, or None while another window's page serves the Service:
        that window ends before this one starts, so the Service is read again at the instant."""
        try:
            return self._plan_switch(item, labels, service)
        except BehindPage:
            return None

    def _switch_now(self, item: WorkItem) -> WorkItem:
        ctx = self.ctx
        try:
            pod = self._page(item, step=Step.SWITCH)
            item = ctx.confirm(item, Step.SWITCH)
            result = self._apply_switch_now(item, pod.labels)
        except MaintError as e:
            return self.preparing.failed(item, e)
        return self._switched(item, result)

    def _page(self, item: WorkItem, *, step: Step = Step.SWITCH) -> PodInfo:
        """The page Pod, Ready (recreated first if it was deleted or evicted)."""
        ctx = self.ctx
        ref = item.target.ref
        assert item.target.pod is not None  # READY always has its page Pod
        try:
            pod = cluster.get_pod(
                ctx.api, namespace=ref.namespace, name=item.target.pod, cached=True
            )
            if pod.ready and not pod.deleting:
                return pod
        except NotFound:
            pass
        self.preparing.ensure_pod(item, step=step)
        try:
            return cluster.get_pod(
                ctx.api, namespace=ref.namespace, name=item.target.pod, cached=True
            )
        except NotFound:  # deleted since ensure_pod: the next pass recreates it
            raise Conflict(f"page Pod {item.target.pod} is gone; recreating it") from None

    def _apply_switch_now(self, item: WorkItem, page: dict[str, str]) -> Switched:
        ctx = self.ctx
        ref = item.target.ref
        try:
            return switch.switch(
                ctx.api,
                ref=ref,
                page=page,
                notice_id=item.notice.id,
                restore_by=item.notice.end + ctx.settings.grace(),
                pause_reconcilers=item.notice.pause_reconcilers,
            )
        except NotFound:  # only the Service is read or patched here
            raise ServiceGone(f"Service {ref} was deleted") from None

    def _switched(
        self, item: WorkItem, result: Switched, *, at: datetime | None = None
    ) -> WorkItem:
        """After the switch's PATCH (answered ``at``, default now): its event, ACTIVE, then
        the EndpointSlices checked."""
        ctx = self.ctx
        now = at or ctx.clock()
        lag = (now - item.notice.start).total_seconds()
        ctx.event(
            item,
            "switch",
            "ok" if not result.already else "already",
            f"selector {result.original} -> page {item.target.pod} ({lag:+.3f}s from start)"
            + (f"; paused {sorted(result.paused)}" if result.paused else ""),
        )
        item = ctx.move(
            item,
            TargetState.ACTIVE,
            changes=TargetUpdate(
                original_selector=result.original, paused=result.paused, actual_start=now
            ),
        )
        ctx.verify_endpoints(item, want={item.target.pod or ""}, what="only the page Pod")
        return item

    def restore_at(
        self, item: WorkItem, *, at: datetime, since: datetime | None = None
    ) -> WorkItem:
        """ACTIVE, its end ``at`` still ahead: the restore armed for it. The Service is read
        and the patch computed now; at ``at`` the notice is confirmed once more (``notice
        extend`` a moment ago wins) and the PATCH leaves with the rest of the volley; the
        ownership hand-back, events, EndpointSlices and clean-up follow (``Ending.restore``).
        A Service that is not the page's now (gone, someone else's, an older release's shape)
        arms nothing: the usual restore runs at the instant. ``since``: as for ``switch``."""
        ctx = self.ctx
        if ctx.clock() >= at:
            return self.ending.restore(item)
        with ctx.instants.join(at, target_id=item.target.id) as member:
            armed = self._arm_restore(item)
            if not _until_instant(member):
                return item  # the clock never got there (a test's): the next pass decides
            item = ctx.confirm(item, Step.RESTORE, volley=member, since=since)
            patched = None
            if armed is not None:
                # Changed since it was read (Conflict, NotFound): the usual restore reads again.
                with member.firing(), contextlib.suppress(Conflict, NotFound):
                    patched = switch.apply_restore(ctx.api, armed)
                patched_at = ctx.clock()
            # Every PATCH of the volley answered: now the follow-ups.
            member.done(fired=armed is not None)
        if armed is None or patched is None:
            return self.ending.restore(item)
        restored = switch.hand_back(ctx.api, armed, patched)
        return self.ending.restore(item, patched=(restored, patched_at))

    def _arm_restore(self, item: WorkItem) -> RestorePlan | None:
        ctx = self.ctx
        ref = item.target.ref
        try:
            service = cluster.get_service(
                ctx.api, namespace=ref.namespace, name=ref.name, cached=True
            )
        except NotFound:
            return None
        selectors = self.ending.selectors(item, service)
        if selectors is None:
            return None
        original, page = selectors
        return switch.plan_restore(service, page=page, original=original)

    def observe(self, item: WorkItem, *, reported: set[tuple[int, str]]) -> WorkItem:
        """READY/ACTIVE: keep the page serving, follow a changed end, report foreign selectors."""
        try:
            self.preparing.ensure_pod(item, step=Step.OBSERVE)
            built = self.preparing.plan_page(item)
        except ServiceGone as e:
            return self.ending.gone(item, why=str(e))
        except MaintError as e:
            if item.target.state is TargetState.READY:
                return self.preparing.failed(item, e)
            raise
        live: dict[str, str] | None = None  # the selector as the Service was just read
        if item.target.state is TargetState.ACTIVE:
            ended, live = self._follow_service(item)
            if ended is not None:
                return ended
        if built.name != item.target.pod:  # the page changed (extend), or a refresh crashed
            item = self._refresh_when_due(item, built, reported=reported)
            live = None  # the refresh may have moved it: read it again
        if item.target.state is TargetState.ACTIVE:
            self._report_drift(item, reported=reported, live=live)
        return item

    def refresh(
        self, item: WorkItem, built: PageBuild, *, reported: set[tuple[int, str]]
    ) -> WorkItem:
        """The page changed (end extended): build it, start it, move the selector from the old
        page to the new one (never from anything else), drop the old page. Each of these
        cluster writes waits until the observe is confirmed still due: a cancel or an end
        recorded during the rebuild is ``Superseded``, and the old page serves until restored."""
        ctx = self.ctx
        old_pod = item.target.pod
        old_image = item.target.image
        ctx.event(item, "refresh", "started", f"page changed (revision {built.revision})")
        staged = WorkItem(
            notice=item.notice,
            target=replace(item.target, image=None)
            if item.target.revision != built.revision
            else item.target,
        )
        staged = self.preparing.build_image(staged, built, step=Step.OBSERVE)
        self.preparing.start_pod(staged, built, step=Step.OBSERVE)
        if item.target.state is TargetState.ACTIVE:
            assert old_pod is not None
            confirmed = ctx.confirm(staged, Step.OBSERVE)
            keys = _keys(item)
            outcome, live = switch.move_page(
                ctx.api,
                ref=item.target.ref,
                page=naming.page_selector(name=built.name, keys=keys),
                previous_page=naming.page_selector(name=old_pod, keys=keys),
                restore_by=confirmed.notice.end + ctx.settings.grace(),
            )
            if outcome is switch.MoveOutcome.FOREIGN:
                reported.add((item.target.id, repr(sorted(live.items()))))
                ctx.event(
                    item,
                    "drift",
                    "foreign",
                    f"selector is {live}, not a page of this window; the new page is not "
                    "switched in, left as is, reported",
                )
        item = ctx.move(
            staged,
            staged.target.state,
            changes=TargetUpdate(pod=built.name),
            then=("refresh", "ok", f"page Pod {built.name} now serves"),
        )
        self.ending.cleanup(item, keep=built.name, images=[old_image] if old_image else [])
        return item

    def _refresh_when_due(
        self, item: WorkItem, built: PageBuild, *, reported: set[tuple[int, str]]
    ) -> WorkItem:
        """Refresh, unless an earlier rebuild failed and its backoff has not passed yet; a
        failure keeps the old page serving and says when the next try is."""
        ctx = self.ctx
        failures, next_try = self.refresh_backoff.get(item.target.id, (0, 0.0))
        if time.monotonic() < next_try:
            return item
        try:
            item = self.refresh(item, built, reported=reported)
        except Superseded:
            raise  # not a failed rebuild: an intent came in, the runner decides again
        except MaintError as e:
            failures += 1
            delay = backoff(failures, first=ctx.settings.step_retry_delay, cap=REFRESH_MAX_DELAY)
            self.refresh_backoff[item.target.id] = (failures, time.monotonic() + delay)
            if isinstance(e, BuildFailed):  # the next try builds afresh
                build.remove(ctx.api, plan=built.plan)
            ctx.event(
                item,
                "refresh",
                "failed",
                f"{e}; page {item.target.pod} keeps serving, next try in {delay:.0f}s",
            )
            return item
        self.refresh_backoff.pop(item.target.id, None)
        return item

    def _follow_service(self, item: WorkItem) -> tuple[WorkItem | None, dict[str, str] | None]:
        """ACTIVE: end the target if its Service was deleted or recreated (our switch went
        with it), else move ``restore-by`` to the current end at once (extend), before any
        rebuild: the DB-less sweep must never restore at the old deadline. Returns the ended
        target, or the live selector."""
        ctx = self.ctx
        ref = item.target.ref
        assert item.target.pod is not None
        page = naming.page_selector(name=item.target.pod, keys=_keys(item))

        def switched(service: ServiceInfo) -> bool:
            ours = service.annotations.get(naming.NOTICE_ANNOTATION) == str(item.notice.id)
            return ours or service.selector == page

        try:
            service = self._service(item, expected=switched)
        except NotFound:
            return self.ending.gone(item, why=f"Service {ref} was deleted"), None
        if not switched(service):
            return self.ending.gone(
                item,
                why=f"Service {ref} was recreated (no page selector, no maint annotation)",
            ), None
        restore_by = (item.notice.end + ctx.settings.grace()).isoformat()
        moving = service.annotations.get(naming.RESTORE_BY_ANNOTATION) != restore_by
        if service.selector == page and moving:  # (move_deadline reads the Service again)
            at = item.notice.end + ctx.settings.grace()
            moved = switch.move_deadline(ctx.api, ref=ref, page=page, restore_by=at)
            if moved is switch.MoveOutcome.MOVED:
                ctx.event(item, "deadline", "moved", f"restore-by {restore_by}")
        return None, service.selector

    def _service(self, item: WorkItem, *, expected: Callable[[ServiceInfo], bool]) -> ServiceInfo:
        """The target Service from the watch cache, read again directly when it is not
        ``expected``: a cached read may miss this runner's own PATCH of a moment ago, and what
        is not expected ends the window or reports it."""
        ref = item.target.ref
        cached = cluster.get_service(
            self.ctx.api, namespace=ref.namespace, name=ref.name, cached=True
        )
        if expected(cached):
            return cached
        return cluster.get_service(self.ctx.api, namespace=ref.namespace, name=ref.name)

    def _report_drift(
        self, item: WorkItem, *, reported: set[tuple[int, str]], live: dict[str, str] | None
    ) -> None:
        """A selector that is not the page's (``live``: as just read, else read now), once."""
        ctx = self.ctx
        assert item.target.pod is not None
        wanted = naming.page_selector(name=item.target.pod, keys=_keys(item))
        if live is None:
            live = self._service(item, expected=lambda s: s.selector == wanted).selector
        key = (item.target.id, repr(sorted(live.items())))
        if live != wanted and key not in reported:
            reported.add(key)
            ctx.event(
                item,
                "drift",
                "foreign",
                f"selector is {live}, not the page's {wanted}; left as is, reported",
            )


def _until_instant(member: Member) -> bool:
    """Wait for the instant: True to go on to the confirm (at the instant, or woken early by an
    intent: the confirm decides), False if the clock never got there. ``Superseded`` when the
    runner is shutting down: the step's claim is no longer renewed, so nothing may be sent."""
    woken = member.wait() or member.interrupted.is_set()
    if member.stopping.is_set():
        raise Superseded("the runner is shutting down; nothing sent")
    return woken


def _keys(item: WorkItem) -> list[str]:
    """The page selector's keys: the original selector's, recorded at the switch (ACTIVE)."""
    assert item.target.original_selector is not None
    return sorted(item.target.original_selector)
