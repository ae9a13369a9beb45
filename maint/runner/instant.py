"""The instant of a switch or a restore, shared by every target armed for it.

A switch (or restore) armed ahead of its start (or end) has done before the instant everything
that can be: claim, reads, the patch. Its thread then waits here for exactly that instant, so the
PATCH leaves on time rather than a wake-up, a pass and a few reads later. Targets armed for the
same instant form one ``Volley``: their PATCHes go out together (at most ``FIRING`` at a time),
and each one's follow-up (events, transitions, EndpointSlice verification) waits until every
PATCH of the volley has been answered, so no follow-up's requests or CPU sit between two
PATCHes. For the same reason the watch cache applies no event while a volley fires
(``quiet``, ``maint.cluster.caching``). Both waits are bounded: a volley never holds a step back
for more than ``STRAGGLER_WAIT`` after its own PATCH.

The instant is read from the runner's clock (tests set it), and slept for on the monotonic one.
A clock that does not get there in the real time it should (a test's clock standing still) ends
the wait unfired (``Volley.wait`` is False): the step then does nothing and the next pass decides
again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRING = 64  # PATCHes in flight at once: the client's connection pool (cluster.connection)
STRAGGLER_WAIT = 5.0  # seconds a fired member waits for the rest of its volley
CLOCK_SLACK = 2.0  # seconds past the due real time before a still-early clock ends the wait
NAP = 1.0  # seconds between looks at the clock while far from the instant (an interrupt is at once)


class Volley:
    """The targets armed for one instant."""

    def __init__(
        self,
        at: datetime,
        *,
        clock: Callable[[], datetime],
        gate: threading.Semaphore,
        quiet: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    ):
        self.at = at
        self.clock = clock
        self.gate = gate
        self.quiet = quiet  # entered by the first PATCH, left when every member is through
        self.quieted: contextlib.ExitStack | None = None
        self.members = 0
        self.through = 0  # members through (fired or left)
        self.fired = 0  # of which fired
        self.changed = threading.Condition()
        self.reading = threading.Lock()
        self.reads: dict[str, object] = {}

    def wait(self, *, stop: threading.Event) -> bool:
        """Sleep until the instant; False if the clock never got there (see the module text) or
        ``stop`` was set meanwhile (an intent came in: decide again now)."""
        left = (self.at - self.clock()).total_seconds()
        give_up = time.monotonic() + max(0.0, left) + CLOCK_SLACK
        while left > 0:
            if time.monotonic() > give_up:
                return False
            if stop.wait(min(left, NAP)):
                return False
            left = (self.at - self.clock()).total_seconds()
        return True

    def shared(self, what: str, read: Callable[[], T]) -> T:
        """``read()`` made once for the whole volley by the first member to ask after the
        instant; before the instant (an interrupted member) each reads alone. A read from
        before the instant would miss an intent recorded in its last moments."""
        if self.clock() < self.at:
            return read()
        with self.reading:
            if what not in self.reads:
                self.reads[what] = read()
            return cast(T, self.reads[what])

    def read(self, key: int, every: Callable[[], Mapping[int, T]]) -> T | None:
        """``key``'s entry in ``every()``, read once for the volley (``shared``); None when
        the volley has one member (a read of one is cheaper) or ``every()`` lacks ``key``."""
        if self.members < 2:
            return None
        return self.shared("every", every).get(key)

    @contextmanager
    def firing(self) -> Iterator[None]:
        """Around one member's PATCH: bounded parallelism."""
        with self.changed:
            if self.quieted is None:
                self.quieted = contextlib.ExitStack()
                self.quieted.enter_context(self.quiet())
        with self.gate:
            yield

    def _through(self, *, fired: bool, early: bool) -> None:
        with self.changed:
            self.through += 1
            self.fired += fired
            self.changed.notify_all()
            if self.through == self.members and self.quieted is not None:
                self.quieted.close()
            if self.through == self.members and self.fired:
                log.info(
                    "%d PATCH(es) armed for %s answered %+.3fs from it",
                    self.fired,
                    self.at.isoformat(),
                    (self.clock() - self.at).total_seconds(),
                )
            if fired and not early:  # (the rest of an early one's volley waits for the instant)
                self.changed.wait_for(lambda: self.through >= self.members, timeout=STRAGGLER_WAIT)


class Member:
    """One target's place in a volley."""

    def __init__(self, volley: Volley, *, stopping: threading.Event) -> None:
        self.volley = volley
        self.through = False
        self.interrupted = threading.Event()  # an intent came in: stop waiting, decide now
        self.stopping = stopping  # the runner is shutting down: send nothing
        self.armed = threading.Event()  # its reads are done: it waits for the instant

    def wait(self) -> bool:
        """Until the instant: False if interrupted or the clock never got there."""
        self.armed.set()
        return self.volley.wait(stop=self.interrupted)

    def firing(self) -> contextlib.AbstractContextManager[None]:
        return self.volley.firing()

    def read(self, key: int, every: Callable[[], Mapping[int, T]]) -> T | None:
        return self.volley.read(key, every)

    def shared(self, what: str, read: Callable[[], T]) -> T:
        return self.volley.shared(what, read)

    def done(self, *, fired: bool) -> None:
        """Through with the PATCH (``fired``: one was sent) or leaving without one; once. A
        member fired at the instant waits (bounded) until every other member of its volley is
        through too; one woken early by an intent (or fired before the instant) does not."""
        if not self.through:
            self.through = True
            early = self.interrupted.is_set() or self.volley.clock() < self.volley.at
            self.volley._through(fired=fired, early=early)


class Instants:
    """The volleys of one runner, by instant."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        quiet: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        """``quiet``: entered while a volley fires (the watch cache's ``Cache.quiet``)."""
        self.clock = clock
        self.quiet = quiet
        self.gate = threading.Semaphore(FIRING)
        self.volleys: dict[datetime, Volley] = {}
        self.waiting: dict[int, Member] = {}  # target id -> its member, while armed
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def interrupt_all(self) -> None:
        """The runner is shutting down: wake every armed step now (and any armed from now on at
        once); none of them sends its PATCH (``Member.stopping``), since its claim is no longer
        renewed."""
        with self.lock:
            self.stopping.set()
            members = list(self.waiting.values())
        for member in members:
            member.interrupted.set()

    def armed(self) -> int:
        """How many steps wait for their instant now, everything before it done."""
        with self.lock:
            return sum(1 for member in self.waiting.values() if member.armed.is_set())

    def interrupt(self, target_id: int, *, now: datetime) -> None:
        """Wake the target's armed step now (an intent came in), if one waits for an instant
        after ``now`` (at its instant it is firing, and confirms anyway)."""
        with self.lock:
            member = self.waiting.get(target_id)
        if member is not None and now < member.volley.at:
            member.interrupted.set()

    @contextmanager
    def join(self, at: datetime, *, target_id: int) -> Iterator[Member]:
        """Be the target's member of the volley for ``at`` for the duration of the block
        (leaving it unfired unless ``Member.done`` was called)."""
        with self.lock:
            volley = self.volleys.get(at)
            if volley is None:
                volley = self.volleys[at] = Volley(
                    at, clock=self.clock, gate=self.gate, quiet=self.quiet
                )
            with volley.changed:
                volley.members += 1
            member = self.waiting[target_id] = Member(volley, stopping=self.stopping)
            if self.stopping.is_set():
                member.interrupted.set()
        try:
            yield member
        finally:
            member.done(fired=False)
            with self.lock, volley.changed:
                if self.waiting.get(target_id) is member:
                    del self.waiting[target_id]
                if volley.through >= volley.members and self.volleys.get(at) is volley:
                    del self.volleys[at]
