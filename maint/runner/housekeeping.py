"""Deleting the images a window built: best-effort housekeeping that never holds up an ending.

A registry that refuses deletes (ECR without ``BatchDeleteImage``, a registry with deletes
turned off) must not keep a target RESTORING: the target goes COMPLETED, the image is named in
a ``cleanup pending`` event (``notice show`` lists what is still pending, derived from those
events), and deletion is retried in the background with capped exponential backoff, then given
up with one event. At most three events per image, however long the registry refuses.

Retries live in this process only: after a restart a pending image stays listed as pending
(delete it by hand, or it goes with the repository's lifecycle policy).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable

from maint import build
from maint.errors import MaintError
from maint.notices import Event, WorkItem
from maint.runner.transitions import backoff

log = logging.getLogger(__name__)

FIRST_RETRY = 10.0  # seconds before the first retry of a refused delete
MAX_DELAY = 600.0  # the backoff's cap: one try every 10 minutes at most
ATTEMPTS = 8  # retries before giving up (about 40 minutes in all)

Record = Callable[[WorkItem, str, str, str], None]
_IMAGE = re.compile(r"image (\S+@sha256:[0-9a-f]{64})")


class ImageJanitor:
    def __init__(
        self,
        *,
        registry: build.Registry,
        repository: build.ImageRef,
        first_retry: float = FIRST_RETRY,
        max_delay: float = MAX_DELAY,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.first_retry = first_retry
        self.max_delay = max_delay
        self.attempts = attempts
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()

    def delete(self, item: WorkItem, digests: Iterable[str], *, record: Record) -> None:
        """Try each image now; a refused one is recorded as pending and retried later."""
        for digest in sorted(digests):
            image = self.repository.at(digest)
            try:
                gone = self.registry.delete_image(digest)
            except MaintError as e:
                detail = f"image {image}: {e}; retrying in the background"
                record(item, "cleanup", "pending", detail)
                self._later(item, digest, attempt=1, record=record)
                continue
            record(item, "cleanup", "ok", f"{'deleted' if gone else 'already gone:'} image {image}")

    def stop(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()

    def _later(self, item: WorkItem, digest: str, *, attempt: int, record: Record) -> None:
        delay = backoff(attempt, first=self.first_retry, cap=self.max_delay)
        timer = threading.Timer(delay, self._retry, args=(item, digest, attempt, record))
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def _retry(self, item: WorkItem, digest: str, attempt: int, record: Record) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive()}
        image = self.repository.at(digest)
        try:
            try:
                gone = self.registry.delete_image(digest)
            except MaintError as e:
                if attempt >= self.attempts:
                    record(
                        item,
                        "cleanup",
                        "gave-up",
                        f"image {image}: {e}; gave up after {attempt} retries, delete it by hand",
                    )
                    return
                log.info("image %s still not deleted (retry %d): %s", image, attempt, e)
                self._later(item, digest, attempt=attempt + 1, record=record)
                return
            record(item, "cleanup", "ok", f"{'deleted' if gone else 'already gone:'} image {image}")
        except MaintError as e:  # the database is down too: the log line is all we can leave
            log.warning("cleanup of image %s: %s", image, e)


def pending_images(events: Iterable[Event], *, target: str) -> list[str]:
    """Images of ``target`` whose deletion is still pending, from the event log alone."""
    pending: dict[str, None] = {}
    for e in events:
        if e.target != target or e.step != "cleanup":
            continue
        found = _IMAGE.search(e.detail)
        if found is None:
            continue
        if e.outcome == "pending":
            pending[found.group(1)] = None
        else:
            pending.pop(found.group(1), None)
    return list(pending)
