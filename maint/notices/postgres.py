"""The psycopg connection class of the store's PostgreSQL engine (``store._engine``).

A module of its own so that only a PostgreSQL URL imports psycopg: SQLite users (a first try,
the tests) never load the driver.
"""

from __future__ import annotations

from typing import Any

import psycopg


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection that gives up on a server that stops answering.

    A hung server (or a proxy, or a peer whose kernel still acknowledges) keeps the TCP
    connection healthy, so neither keepalives nor the TCP user timeout fire, and the server
    never enforces its statement timeout. Every round trip (query, commit, the pool's ping)
    gets ``reply_timeout`` seconds; then the connection is closed and the caller gets an
    ``OperationalError``, which the store reports as ``DatabaseUnavailable``.
    """

    _reply_timeout: float | None = None

    @classmethod
    def connect(  # type: ignore[override]
        cls, *args: Any, reply_timeout: float | None = None, **kwargs: Any
    ) -> BoundedConnection:
        connection = super().connect(*args, **kwargs)
        connection._reply_timeout = reply_timeout
        return connection

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is None:
            timeout = self._reply_timeout
        try:
            return super().wait(gen, interval=interval, timeout=timeout)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()  # the socket is useless now; SQLAlchemy sees it closed
            raise psycopg.OperationalError(
                f"the server did not answer within {timeout:g}s"
            ) from None
