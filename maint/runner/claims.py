"""The claims this replica holds, and the fence that stops a step which may have lost its own.

The database decides who holds a claim, by its own clock (``NoticeStore.claim``). Locally a
claim counts as held only while its last successful renewal is younger than the TTL minus a
margin, on the monotonic clock: the renewal is timed from *before* its statement was sent, so
the expiry the database computed lies later still, and the margin covers a write already on
its way when the TTL runs out. A process paused (SIGSTOP, a GC pause, a VM freeze) or cut off
from its database for longer than that refuses every further write of that step, whether or
not another replica has taken over yet: ``check`` raises ``ClaimLost`` before each cluster
write (installed with ``maint.cluster.guarded``), and the store refuses transitions and events
of a generation that is gone (``NoticeStore.fenced``).

A step may hold its claim for ``step_deadline`` at most: after that it is no longer renewed
(another replica takes over one TTL later) and ``wedged`` tells ``/healthz`` to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from maint.cluster import Write, guarded
from maint.errors import ClaimLost, MaintError
from maint.notices import Claim, NoticeStore

log = logging.getLogger(__name__)

#: Share of the TTL kept back from a renewal's age before writes stop (see the module text).
MARGIN_SHARE = 1 / 6


@dataclass
class Held:
    claim: Claim
    taken: float  # monotonic: when the step took it (its deadline counts from here)
    renewed: float  # monotonic: when the last successful renewal (or the claim) was sent
    lost: str = ""  # why it is gone, once known
    past_deadline: bool = False


class Claims:
    """Take, renew, fence and release this replica's claims (one per running step)."""

    def __init__(
        self,
        *,
        store: NoticeStore,
        owner: str,
        ttl: float,
        deadline: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.deadline = deadline
        self.margin = ttl * MARGIN_SHARE
        self.monotonic = monotonic
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()

    def take(self, target_id: int) -> Held | None:
        """Claim a target for a step; ``None`` while another replica holds it."""
        sent = self.monotonic()
        claim = self.store.claim(target_id, owner=self.owner, ttl=timedelta(seconds=self.ttl))
        if claim is None:
            return None
        held = Held(claim=claim, taken=sent, renewed=sent)
        with self._lock:
            self._held[target_id] = held
        return held

    def renew(self, target_id: int) -> bool:
        """Extend the claim of the step working on ``target_id``; False once it is gone or the
        step is past its deadline (then it is not renewed any more)."""
        with self._lock:
            held = self._held.get(target_id)
        if held is None or held.lost:
            return False
        sent = self.monotonic()
        if sent - held.taken > self.deadline:
            if not held.past_deadline:
                held.past_deadline = True
                log.error(
                    "the step on target %s has run for over %.0fs (MAINT_STEP_DEADLINE): no "
                    "longer renewing its claim; /healthz now fails",
                    target_id,
                    self.deadline,
                )
            return False
        if not self.store.renew(held.claim, ttl=timedelta(seconds=self.ttl)):
            held.lost = "the database refused the renewal (expired or taken over)"
            log.warning("lost the claim on target %s: %s", target_id, held.lost)
            return False
        held.renewed = max(held.renewed, sent)
        return True

    def renew_all(self) -> None:
        """One round of the background renewer: every claim a step holds."""
        with self._lock:
            busy = list(self._held)
        for target_id in busy:
            try:
                self.renew(target_id)
            except MaintError as e:  # e.g. database unavailable: the claim ages meanwhile
                log.warning("cannot renew the claim on target %s: %s", target_id, e)

    def check(self, target_id: int, what: str = "write") -> None:
        """``ClaimLost`` unless the claim on ``target_id`` is known to be still held."""
        with self._lock:
            held = self._held.get(target_id)
        if held is None:
            raise ClaimLost(f"{what}: this replica holds no claim on target {target_id}")
        if held.lost:
            raise ClaimLost(f"{what}: claim on target {target_id} lost: {held.lost}")
        age = self.monotonic() - held.renewed
        if age > self.ttl - self.margin:
            held.lost = (
                f"last renewed {age:.1f}s ago, beyond the {self.ttl:g}s TTL less "
                f"{self.margin:.1f}s margin (paused or cut off from the database)"
            )
            log.warning("lost the claim on target %s: %s", target_id, held.lost)
            raise ClaimLost(f"{what}: claim on target {target_id} lost: {held.lost}")

    @contextmanager
    def fence(self, held: Held) -> Iterator[None]:
        """Around a step in its worker thread: every cluster write checks the claim first,
        every transition and event of the target is written under its generation."""
        target_id = held.claim.target_id

        def check(write: Write) -> None:
            self.check(target_id, str(write))

        with guarded(check), self.store.fenced(held.claim):
            yield

    def release(self, held: Held) -> None:
        with self._lock:
            if self._held.get(held.claim.target_id) is held:
                del self._held[held.claim.target_id]
        self.store.release(held.claim)

    def count(self) -> int:
        """How many claims the steps of this replica hold now (``maint_claims_held``)."""
        with self._lock:
            return len(self._held)

    def wedged(self) -> str | None:
        """Why ``/healthz`` should fail: a step past its deadline (else ``None``)."""
        now = self.monotonic()
        with self._lock:
            ages = [(t, now - h.taken) for t, h in self._held.items()]
        late = [(t, age) for t, age in ages if age > self.deadline]
        if not late:
            return None
        target_id, age = max(late, key=lambda pair: pair[1])
        return (
            f"step on target {target_id} running for {age:.0f}s, "
            f"past its {self.deadline:g}s deadline"
        )
