"""What every step of a window shares: the collaborators, the event log and guarded moves.

The phases (``prepare``, ``window``, ``ending``) each hold one ``StepContext``; none of them
keeps state of its own between passes, so a crash loses nothing the database does not hold.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from maint import build, cluster, naming, page, switch
from maint.cluster import Cluster
from maint.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    MaintError,
    StepTimeout,
)
from maint.notices import Event, NoticeStore, TargetState, TargetUpdate, WorkItem
from maint.runner.instant import Instants, Member
from maint.runner.transitions import Step, Window, decide, due_at
from maint.settings import Settings

log = logging.getLogger(__name__)

# Errors no retry can fix before the switch: roll back at once, with the reason. Everything
# else (API outage, a wait past its deadline, a registry 5xx in the build) is retried until the
# start plus ``PREPARE_MARGIN`` (transitions.prepare_deadline).
PERMANENT_BEFORE_SWITCH = (InvalidInput, Forbidden)
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
    selector: dict[str, str]  # the app's selector this page stands in for
    service: cluster.ServiceInfo  # the Service as read to plan this page

    @property
    def keys(self) -> tuple[str, ...]:
        """The selector keys the page Pod is labelled for (``naming.page_labels``)."""
        return tuple(sorted(self.selector))


class StepContext:
    """The collaborators of every step and the few things they all do (log, move, confirm)."""

    def __init__(
        self,
        *,
        api: Cluster,
        store: NoticeStore,
        registry: build.Registry,
        settings: Settings,
        clock: Callable[[], datetime],
        say: Callable[[str], None],
        renew: Callable[[int], object],
        observe: Callable[[Event], None] = lambda _event: None,
    ) -> None:
        """``observe`` sees every event once it is stored (Kubernetes Events, notifications);
        it must not block: it runs on the step's path."""
        self.api = api
        self.store = store
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.say = say
        self.renew = renew
        self.observe = observe
        self.repository = build.parse_repository(settings.image_repository)
        # Switches and restores armed for an instant; the watch cache is quiet while they fire.
        self.instants = Instants(
            clock=clock, quiet=api.cache.quiet if api.cache is not None else contextlib.nullcontext
        )

    def window(self, item: WorkItem) -> Window:
        return Window(
            start=item.notice.start,
            end=item.notice.end,
            lead=self.settings.lead(),
            grace=self.settings.grace(),
            cancelled=item.notice.cancelled_at is not None,
        )

    def event(self, item: WorkItem, step: str, outcome: str, detail: str = "") -> None:
        """Log a sub-step of the step in progress (and renew its claim)."""
        self.record(item, step, outcome, detail)
        self.renew(item.target.id)

    def record(self, item: WorkItem, step: str, outcome: str, detail: str = "") -> None:
        """Log an event outside any step (background housekeeping): no claim to renew."""
        record = self._event(item, step, outcome, detail)
        self._say(record)
        self.store.record(record)
        self.observe(record)

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
            self.observe(record)
            self.renew(item.target.id)
        return WorkItem(notice=item.notice, target=target)

    def confirm(
        self,
        item: WorkItem,
        step: Step,
        *,
        volley: Member | None = None,
        since: datetime | None = None,
    ) -> WorkItem:
        """Re-read the notice and target right before a cluster write: ``Superseded`` unless
        ``step`` is still what ``decide`` wants, so an intent recorded a moment ago wins.
        ``volley``: its instant has passed; one read serves all its members. ``since``: the
        change marker read before ``item`` was (an armed step's, ``Runner._run``): while the
        marker has not moved, no notice was added or changed since, and ``item`` is still what
        the database holds."""
        fresh = None
        if since is not None:
            read = self.store.change_marker
            marker = volley.shared("marker", read) if volley is not None else read()
            fresh = item if marker == since else None
        if fresh is None and volley is not None:
            fresh = volley.read(item.target.id, self._live)
        fresh = fresh or self.store.target(item.target.id)
        wanted = decide(fresh.target.state, now=self.clock(), window=self.window(fresh))
        if wanted.step is not step:
            raise Superseded(f"{step.value} no longer due: {wanted.reason}")
        return fresh

    def _live(self) -> dict[int, WorkItem]:
        return {i.target.id: i for i in self.store.due(now=self.clock(), horizon=timedelta(0))}

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

    def verify_endpoints(self, item: WorkItem, *, want: set[str], what: str) -> None:
        """Wait (bounded) until the EndpointSlices list ``want`` (or, empty, no page Pod);
        a timeout is logged, not raised: the selector is already right."""
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


def describe(e: MaintError) -> str:
    """One line for the event log: the error's kind and message."""
    kind = "database" if isinstance(e, DatabaseUnavailable) else type(e).__name__
    return f"{kind}: {e}"
