"""The steps of a window, each idempotent: run it again after a crash and it finishes the job.

A step reads what exists (cluster first, database second), does the missing part, writes the
new state with a guarded transition (``Conflict`` if another actor moved the target), and logs
every sub-step to the event log. ``Steps`` is what the runner calls; the work is split by
phase: ``prepare`` (page, build, Pod), ``serving`` (switch, the window), ``ending`` (restore,
rollback, a vanished Service, cleanup), sharing ``core.StepContext``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from maint import build
from maint.cluster import Cluster
from maint.notices import Event, NoticeStore, TargetState, WorkItem
from maint.runner.core import PageBuild, StepContext, Superseded, describe
from maint.runner.ending import Ending
from maint.runner.housekeeping import ImageJanitor
from maint.runner.prepare import Preparing, ServiceGone
from maint.runner.serving import Serving
from maint.runner.transitions import Step, Window
from maint.settings import Settings

__all__ = ["PageBuild", "ServiceGone", "Steps", "Superseded", "describe"]


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
        janitor: ImageJanitor | None = None,
        observe: Callable[[Event], None] = lambda _event: None,
    ) -> None:
        """``renew(target_id)`` extends the claim of the step in progress (every event);
        ``janitor`` retries refused image deletes (default: its documented backoff);
        ``observe`` sees every stored event (``announce.KubernetesEvents``)."""
        self.ctx = StepContext(
            api=api,
            store=store,
            registry=registry,
            settings=settings,
            clock=clock,
            say=say,
            renew=renew,
            observe=observe,
        )
        self.janitor = janitor or ImageJanitor(registry=registry, repository=self.ctx.repository)
        self.ending = Ending(self.ctx, janitor=self.janitor)
        self.preparing = Preparing(self.ctx, ending=self.ending)
        self.serving = Serving(self.ctx, preparing=self.preparing, ending=self.ending)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def window(self, item: WorkItem) -> Window:
        return self.ctx.window(item)

    def event(self, item: WorkItem, step: str, outcome: str, detail: str = "") -> None:
        self.ctx.event(item, step, outcome, detail)

    def confirm(self, item: WorkItem, step: Step) -> WorkItem:
        return self.ctx.confirm(item, step)

    def plan_page(self, item: WorkItem) -> PageBuild:
        return self.preparing.plan_page(item)

    def prepare(self, item: WorkItem) -> WorkItem:
        return self.preparing.prepare(item)

    def switch(
        self, item: WorkItem, *, at: datetime | None = None, since: datetime | None = None
    ) -> WorkItem:
        """``at``: armed for that instant; ``since``: the change marker read before ``item``."""
        return self.serving.switch(item, at=at, since=since)

    def observe(self, item: WorkItem, *, reported: set[tuple[int, str]]) -> WorkItem:
        return self.serving.observe(item, reported=reported)

    def restore(
        self,
        item: WorkItem,
        *,
        forced: bool = False,
        at: datetime | None = None,
        since: datetime | None = None,
    ) -> WorkItem:
        """``at``: armed for that instant; ``since``: the change marker read before ``item``."""
        if at is not None and not forced:
            return self.serving.restore_at(item, at=at, since=since)
        return self.ending.restore(item, forced=forced)

    def interrupt(self, target_id: int, *, now: datetime) -> None:
        """Wake the target's armed switch or restore now, if its instant is after ``now``: an
        intent came in."""
        self.ctx.instants.interrupt(target_id, now=now)

    def stop_armed(self) -> None:
        """Wake every armed switch and restore, which then send nothing: shutting down."""
        self.ctx.instants.interrupt_all()

    def rollback(
        self, item: WorkItem, *, reason: str, to: TargetState = TargetState.ROLLED_BACK
    ) -> WorkItem:
        return self.ending.rollback(item, reason=reason, to=to)
