"""Each completed forced-restore sweep, written to the database for ``maint status``.

The sweep itself never touches the database (a hung database must not hold up the restore at
end + grace), so it only hands its completion to this object (``Metrics(on_sweep=...)``); a
thread of its own writes it (``sweeps``, by the database's clock). A database that is down
loses nothing that matters: the next sweep writes again, and ``maint status``, which reads
the same database, could not have read it anyway.
"""

from __future__ import annotations

import logging
import threading

from maint.errors import MaintError
from maint.notices import NoticeStore

log = logging.getLogger(__name__)


class SweepBeacon:
    def __init__(self, store: NoticeStore, *, replica: str) -> None:
        self.store = store
        self.replica = replica
        self._lock = threading.Lock()
        self._pending = False
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-beacon", daemon=True)
        self._thread.start()

    def completed(self) -> None:
        """A sweep completed (called on the sweep's thread: only sets a flag)."""
        with self._lock:
            self._pending = True
        self._wake.set()

    def close(self, *, timeout: float = 5.0) -> None:
        """Write a completion still pending, then stop."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, stopping, self._pending = self._pending, self._stopping, False
            if pending:
                try:
                    self.store.sweeps.completed(self.replica)
                except MaintError as e:
                    log.warning("sweep not recorded for `maint status`: %s", e)
                except Exception:  # never let the thread die: the next sweep writes again
                    log.exception("sweep not recorded for `maint status`")
            if stopping:
                return
