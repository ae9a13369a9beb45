"""Webhook notifications of a window's milestones: exactly which events, and the sender.

Which events: ``route`` (pure) maps a stored event to its kind and what makes it new. Each kind
is told once per target and window, like Argo CD's ``oncePer``: a step retried after a crash,
a restart or a second replica record the milestone again, but its notification is queued only
once (the outbox's unique key); a drift is told once per foreign selector.

The queueing happens in the store, in the event's own transaction (``notices.outbox``), so a
process killed right after the event leaves the notification to whoever runs next. Sending is
``Notifier``: one thread per webhook, off every step's path. It claims one due notification at
a time under a lease (the database's clock), posts it, and marks it sent; with none due it
sleeps until woken or until the next one it knows of is due (at most ``poll_interval``, for
those another replica queued and died holding). A failure is retried with capped backoff
until ``webhook_retry_for``, then given up with a ``notify gave-up`` event.
As an observer of the event log it only wakes its threads, so a dead webhook (500, or no
answer until the timeout) never delays a step. At least once, not exactly once: see README.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from maint.errors import MaintError
from maint.notices import Event, Notice, NoticeStore
from maint.notices.outbox import Delivery, Routing
from maint.runner import outcomes
from maint.runner.transitions import backoff
from maint.runner.webhooks import Message, Webhook, WebhookFailed, body
from maint.settings import Settings

log = logging.getLogger(__name__)

#: (step, outcome) of a stored event -> the kind of notification it is.
KINDS: dict[tuple[str, str], str] = {
    ("prepare", "retry"): "prepare-failed",
    ("switch", "ok"): "switched",
    ("switch", "already"): "switched",  # a retry after a crash between the patch and the event
    ("restore", "ok"): "restored",
    ("restore", "already"): "restored",
    ("force-restore", "ok"): "restored",
    ("force-restore", "already"): "restored",
    ("rollback", "ok"): "rolled-back",
    ("restore", "conflict"): "failed",  # the target goes FAILED right after
    ("drift", "foreign"): "drift",
}
#: The state each kind leaves its target in (a message may be sent after the next move).
STATES = {
    "prepare-failed": "PREPARING",
    "switched": "ACTIVE",
    "restored": "COMPLETED",
    "rolled-back": "ROLLED_BACK",
    "failed": "FAILED",
    "drift": "ACTIVE",
}
FAILURES = frozenset({"prepare-failed", "failed", "drift"})
RETRY_CAP = 300.0  # seconds: the longest wait between two tries of one notification
_FOREIGN = re.compile(r"selector is (\{[^}]*\})")


def route(event: Event) -> tuple[str, str] | None:
    """The kind of notification ``event`` is, and what makes it new (``""``: nothing, once
    per target and window; a drift: the foreign selector); None for every other event."""
    kind = KINDS.get((event.step, event.outcome))
    if kind is None or event.target is None:
        return None
    once = ""
    if kind == "drift":
        found = _FOREIGN.search(event.detail)
        text = found.group(1) if found else event.detail
        once = hashlib.sha256(text.encode()).hexdigest()[:16]
    return kind, once


def lease_for(timeout: float) -> float:
    """Seconds a notification being sent stays this replica's: twice the POST's timeout and
    10 s more, so a slow send is never taken over (and sent twice) by another replica."""
    return 2 * timeout + 10


def routing(webhooks: Sequence[Webhook]) -> Routing:
    return Routing(channels=tuple(w.key for w in webhooks), route=route)


class Notifier:
    """Call with each recorded ``Event``; ``close`` stops the threads (what is not sent stays
    queued in the database for the next process)."""

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        *,
        store: NoticeStore,
        settings: Settings,
        owner: str,
        clock: Callable[[], datetime],
        counted: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        """``owner`` names this replica in the leases; ``counted`` hears each attempt's
        outcome (sent, failed, gave_up) for the metrics."""
        self.store = store
        self.owner = owner
        self.clock = clock
        self.timeout = settings.webhook_timeout
        self.lease = lease_for(settings.webhook_timeout)
        self.retry_first = settings.step_retry_delay
        self.retry_for = settings.webhook_retry_for
        self.counted = counted
        # An idle sender waits for its wake-up (a milestone of this replica) or the next retry
        # it knows of, but at most this long: a notification queued by another replica that
        # died before sending it is found within the runner's own poll interval.
        self.idle = settings.poll_interval
        self._stopping = threading.Event()
        self._wake = {hook.key: threading.Event() for hook in webhooks}
        self._threads = [
            threading.Thread(target=self._run, args=(hook,), name=f"webhook-{n}", daemon=True)
            for n, hook in enumerate(webhooks)
        ]
        for thread in self._threads:
            thread.start()

    def __call__(self, event: Event) -> None:
        if route(event) is not None:
            for wake in self._wake.values():
                wake.set()

    def close(self, *, timeout: float = 5.0) -> None:
        self._stopping.set()
        for wake in self._wake.values():
            wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- one thread per webhook ---------------------------------------------------------
    def _run(self, hook: Webhook) -> None:
        wake = self._wake[hook.key]
        while not self._stopping.is_set():
            wake.clear()
            try:
                busy = self._once(hook)
            except Exception:  # never let the thread die: the next look may do better
                log.exception("webhook %s: unexpected error", hook.shown)
                busy = False
            if not busy:
                wake.wait(self._idle(hook))

    def _once(self, hook: Webhook) -> bool:
        """Send one due notification; False when there was none (or the outbox is unreadable)."""
        leased_at = time.monotonic()  # before the claim: the lease is never shorter here
        try:
            delivery = self.store.outbox.claim(channel=hook.key, owner=self.owner, lease=self.lease)
        except MaintError as e:
            log.warning("webhook %s: cannot read the outbox: %s", hook.shown, e)
            return False
        if delivery is None:
            return False
        self._deliver(hook, delivery, leased_at=leased_at)
        return True

    def _idle(self, hook: Webhook) -> float:
        """Seconds to wait, unless woken, for the next notification of ``hook`` to be due."""
        try:
            due = self.store.outbox.next_try_in(channel=hook.key)
        except MaintError as e:
            log.warning("webhook %s: cannot read the outbox: %s", hook.shown, e)
            return self.idle
        return self.idle if due is None else min(due, self.idle)

    def _deliver(self, hook: Webhook, delivery: Delivery, *, leased_at: float) -> None:
        what = f"{delivery.kind} of notice {delivery.notice_id} {delivery.target}"
        try:
            message = self._message(delivery)
            if time.monotonic() - leased_at > self.lease - self.timeout - 1:
                return  # the lease is nearly over: leave it to the next claim
            hook.post(body(hook.format, message), timeout=self.timeout)
        except MaintError as e:  # WebhookFailed, or the database while building the message
            self._failed(hook, delivery, what=what, error=e)
            return
        self.counted("sent")
        if self.store.outbox.sent(delivery, owner=self.owner):
            log.info("webhook %s told %s", hook.shown, what)
        else:
            log.warning(
                "webhook %s told %s after its lease passed to another replica, "
                "which may tell it again",
                hook.shown,
                what,
            )

    def _failed(self, hook: Webhook, delivery: Delivery, *, what: str, error: MaintError) -> None:
        text = str(error) if isinstance(error, WebhookFailed) else f"{hook.shown}: {error}"
        give_up = delivery.age >= self.retry_for
        delay = (
            None if give_up else backoff(delivery.attempts, first=self.retry_first, cap=RETRY_CAP)
        )
        self.counted("gave_up" if give_up else "failed")
        try:
            self.store.outbox.failed(delivery, owner=self.owner, error=text, retry_in=delay)
        except MaintError as e:
            log.warning("webhook %s: %s not rescheduled: %s", hook.shown, what, e)
        if give_up:
            log.error(
                "webhook %s: gave up on %s after %d tries: %s",
                hook.shown,
                what,
                delivery.attempts,
                text,
            )
            self._record(
                delivery,
                "gave-up",
                f"{delivery.kind} to {hook.shown}: {text}; gave up after {delivery.attempts} tries",
            )
            return
        log.warning("webhook %s: %s not told: %s; next try in %.0fs", hook.shown, what, text, delay)
        if delivery.attempts == 1:
            self._record(
                delivery,
                "failed",
                f"{delivery.kind} to {hook.shown}: {text}; retried "
                f"with backoff for {self.retry_for:.0f}s",
            )

    def _message(self, delivery: Delivery) -> Message:
        notice = self.store.get(delivery.notice_id)
        target = notice.target_named(delivery.target)
        return Message(
            kind=delivery.kind,
            notice_id=notice.id,
            title=notice.title,
            target=delivery.target,
            state=STATES[delivery.kind],
            planned_start=notice.start,
            planned_end=notice.end,
            # The milestone's own time where it is the switch or the restore: the target's
            # columns are written a moment later (after the endpoints and the cleanup).
            actual_start=delivery.event.at
            if delivery.kind == "switched"
            else (target.actual_start if target else None),
            actual_end=delivery.event.at
            if delivery.kind == "restored"
            else (target.actual_end if target else None),
            at=delivery.event.at,
            error=self._error(delivery, notice),
            detail=delivery.event.detail,
            delivery=f"maint-{delivery.event_id}-{delivery.kind}",
        )

    def _error(self, delivery: Delivery, notice: Notice) -> str | None:
        if delivery.kind in FAILURES:
            return delivery.event.detail
        if delivery.kind == "rolled-back":
            # Why is in the `rollback started` line before it; a vanished Service says it here.
            why = [
                e.detail
                for e in self.store.events(notice.id)
                if e.target == delivery.target and (e.step, e.outcome) == ("rollback", "started")
            ]
            return why[-1] if why else delivery.event.detail
        return None

    def _record(self, delivery: Delivery, outcome: str, detail: str) -> None:
        outcomes.record(
            self.store,
            at=self.clock(),
            notice_id=delivery.notice_id,
            target=delivery.target,
            step="notify",
            outcome=outcome,
            detail=detail,
        )
