"""An Alertmanager silence for each switched target, kept in step with its window.

An observer like ``announce.KubernetesEvents``: it sees every stored event and, for the few
that matter, queues a job that one background thread carries out, so Alertmanager never
delays or fails a step. At the switch the target gets a silence from start - margin to
end + margin; when the end moves (``deadline moved``, ``refresh ok``) the same silence is
posted again with its id; when the window ends early (``notice end``) or is cancelled, the
silence is expired. A window that ends on time keeps its silence until end + margin.

The silence's id lives in the event log (``silence created|updated|expired``), so a restarted
process or another replica finds it there instead of making a second one; before creating,
a silence maint made for the same notice and target that Alertmanager still has is adopted
(a crash between the POST and the event). An unreachable Alertmanager is logged, told once as
``silence failed`` and retried with capped backoff until the silence would no longer matter.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from maint.errors import MaintError
from maint.notices import Event, Notice, NoticeStore
from maint.runner import outcomes
from maint.runner.alertmanager import Alertmanager, Silence
from maint.runner.transitions import backoff
from maint.settings import SILENCE_MATCHER, Settings

log = logging.getLogger(__name__)

CREATED_BY = "maint"
QUEUE_SIZE = 1000
RETRY_CAP = 60.0  # seconds: the longest wait between two tries while Alertmanager is down
ENSURE = frozenset(
    {("switch", "ok"), ("switch", "already"), ("deadline", "moved"), ("refresh", "ok")}
)
ENDED = frozenset(
    {
        ("restore", "ok"),
        ("restore", "already"),
        ("force-restore", "ok"),
        ("force-restore", "already"),
    }
)
_RECORDED = re.compile(r"id (\S+) from (\S+) to (\S+) for the window ending (\S+)")


@dataclass(frozen=True)
class Job:
    notice_id: int
    target: str
    ensure: bool  # True: cover the current window; False: the window ended, expire if early
    create: bool = False  # ensure may create one (the switch); else only update (a moved end)


@dataclass(frozen=True)
class Recorded:
    """What the event log says of a target's silence."""

    id: str
    window_end: datetime | None  # None once expired
    ends_at: datetime | None


@dataclass
class _Retry:
    job: Job
    failures: int = 0
    next_try: float = 0.0


class Silences:
    """Call with each recorded ``Event``; ``close`` stops the thread (retries are dropped)."""

    def __init__(
        self,
        client: Alertmanager,
        *,
        store: NoticeStore,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.store = store
        self.margin = timedelta(seconds=settings.alertmanager_margin)
        self.templates = [
            (m[1], m[2])
            for m in (SILENCE_MATCHER.fullmatch(t) for t in settings.alertmanager_matchers)
            if m is not None
        ]
        self.retry_first = settings.step_retry_delay
        self.clock = clock
        self.jobs: queue.Queue[Job | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="silences", daemon=True)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        key = (event.step, event.outcome)
        if event.target is None or (key not in ENSURE and key not in ENDED):
            return
        try:
            self.jobs.put_nowait(
                Job(
                    event.notice_id,
                    event.target,
                    ensure=key in ENSURE,
                    create=event.step == "switch",
                )
            )
        except queue.Full:
            log.warning("silence for %s dropped: queue full", event.target)

    def close(self, *, timeout: float = 5.0) -> None:
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def matchers(self, target: str, notice_id: int) -> tuple[tuple[str, str], ...]:
        namespace, _, service = target.partition("/")
        return tuple(
            (name, value.format(namespace=namespace, service=service, notice=notice_id))
            for name, value in self.templates
        )

    # --- the background thread ----------------------------------------------------------
    def _run(self) -> None:
        pending: dict[tuple[int, str], _Retry] = {}
        while True:
            wait = None
            if pending:
                wait = max(0.0, min(r.next_try for r in pending.values()) - time.monotonic())
            try:
                job = self.jobs.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                if job is None:
                    return
                pending[(job.notice_id, job.target)] = _Retry(job)  # the newest job wins
            now = time.monotonic()
            for key, retry in list(pending.items()):
                if retry.next_try <= now and self._attempt(retry):
                    del pending[key]

    def _attempt(self, retry: _Retry) -> bool:
        """True when the job is done (or no longer worth doing)."""
        job = retry.job
        try:
            if job.ensure:
                self._ensure(job)
            else:
                self._end(job)
            return True
        except MaintError as e:
            retry.failures += 1
            delay = backoff(retry.failures, first=self.retry_first, cap=RETRY_CAP)
            retry.next_try = time.monotonic() + delay
            log.warning(
                "silence for notice %s %s failed: %s; next try in %.0fs",
                job.notice_id,
                job.target,
                e,
                delay,
            )
            if retry.failures == 1:
                self._record(job, "failed", f"{e}; retried with backoff (at most {RETRY_CAP:.0f}s)")
            return False

    def _ensure(self, job: Job) -> None:
        notice = self.store.get(job.notice_id)
        target = notice.target_named(job.target)
        ends_at = notice.end + self.margin
        if target is None or target.state.terminal or self.clock() >= ends_at:
            return  # the window is over: a silence now would hide real alerts
        recorded = self._recorded(job)
        if recorded is not None and recorded.window_end is None:
            return  # expired: the window ended early or was cancelled
        if recorded is not None and recorded.window_end == _ms(notice.end):
            return  # already covers this window (a restart, another replica, a second event)
        live = self._live(job, notice, recorded)
        if live is None and recorded is None and not job.create:
            return  # a page rebuilt before the switch: the switch makes the silence
        starts_at = notice.start - self.margin
        if live is not None and live.state != "expired":
            # An active silence can only be updated in place if its start stays the same.
            starts_at = datetime.fromisoformat(live.starts_at)
        silence_id = self.client.post(
            matchers=self.matchers(job.target, job.notice_id),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=CREATED_BY,
            comment=f"{_comment_prefix(job)} {notice.title}",
            silence_id=live.id if live is not None and live.state != "expired" else None,
        )
        outcome = "created" if recorded is None or recorded.id != silence_id else "updated"
        detail = (
            f"id {silence_id} from {_iso(starts_at)} to {_iso(ends_at)} "
            f"for the window ending {_iso(notice.end)}"
        )
        log.info("silence %s for notice %s %s: %s", outcome, job.notice_id, job.target, detail)
        self._record(job, outcome, detail)

    def _end(self, job: Job) -> None:
        recorded = self._recorded(job)
        if recorded is None or recorded.window_end is None:
            return
        notice = self.store.get(job.notice_id)
        early = notice.cancelled_at is not None or _ms(notice.end) < recorded.window_end
        if not early or (recorded.ends_at is not None and self.clock() >= recorded.ends_at):
            return  # on time: the silence runs out at end + margin on its own
        known = self.client.expire(recorded.id)
        why = "cancelled" if notice.cancelled_at is not None else "ended early"
        detail = f"id {recorded.id}: {why}" + ("" if known else " (Alertmanager no longer had it)")
        log.info("silence expired for notice %s %s: %s", job.notice_id, job.target, detail)
        self._record(job, "expired", detail)

    def _live(self, job: Job, notice: Notice, recorded: Recorded | None) -> Silence | None:
        """The silence to update: the recorded one, else one of ours Alertmanager still has."""
        if recorded is not None:
            return self.client.get(recorded.id)
        prefix = _comment_prefix(job)
        ours = [
            s
            for s in self.client.silences()
            if s.created_by == CREATED_BY and s.comment.startswith(prefix) and s.state != "expired"
        ]
        return ours[0] if ours else None

    def _recorded(self, job: Job) -> Recorded | None:
        found: Recorded | None = None
        for event in self.store.events(job.notice_id):
            if event.step != "silence" or event.target != job.target:
                continue
            if event.outcome in ("created", "updated"):
                parsed = _RECORDED.match(event.detail)
                if parsed is not None:
                    found = Recorded(
                        id=parsed[1],
                        window_end=datetime.fromisoformat(parsed[4]),
                        ends_at=datetime.fromisoformat(parsed[3]),
                    )
            elif event.outcome == "expired" and found is not None:
                found = Recorded(id=found.id, window_end=None, ends_at=None)
        return found

    def _record(self, job: Job, outcome: str, detail: str) -> None:
        outcomes.record(
            self.store,
            at=self.clock(),
            notice_id=job.notice_id,
            target=job.target,
            step="silence",
            outcome=outcome,
            detail=detail,
        )


def _comment_prefix(job: Job) -> str:
    return f"maint notice {job.notice_id} ({job.target}):"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
