"""An operator's intent and a step's transition at the same moment never deadlock (PostgreSQL).

A step's transaction updates its target row and then inserts its event, whose foreign key to
the notice takes a KEY SHARE lock on the notice row. `notice end` / `cancel` / `extend`
(``set_window``) locked that notice row FOR UPDATE and then updated the targets' due times: the
two waited on each other and PostgreSQL aborted one (``DeadlockDetected``, seen once in a
parallel test run as `maint notice end --wait` failing). The intent now locks the notice FOR NO
KEY UPDATE, which a foreign-key check does not wait for.

Real PostgreSQL; the step's transaction is written by hand, as the store writes it, so the
interleaving is exact rather than left to timing.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.store import add_notice, open_store

pytestmark = pytest.mark.postgres


def test_an_intent_and_a_steps_event_at_the_same_moment_both_commit(postgres_url: str) -> None:
    now = datetime.now(UTC)
    with open_store(postgres_url) as store:
        notice = add_notice(
            store, now=now, start_in=timedelta(minutes=10), length=timedelta(minutes=10)
        )
        target_id = notice.targets[0].id
        engine = sa.create_engine(postgres_url)
        errors: list[BaseException] = []
        try:
            with engine.connect() as step:
                transaction = step.begin()
                # The step: its target row first ...
                step.execute(
                    sa.text("UPDATE targets SET due_at = :now WHERE id = :id"),
                    {"now": now, "id": target_id},
                )

                def intent() -> None:
                    try:
                        store.set_window(notice.id, end_now=True, intent="end")
                    except BaseException as error:
                        errors.append(error)

                operator = threading.Thread(target=intent)
                operator.start()
                # ... the intent now holds the notice row and waits for the target row ...
                operator.join(timeout=2)
                assert operator.is_alive(), f"the intent did not wait for the step: {errors}"
                # ... and the step's event checks its foreign key to the notice.
                step.execute(
                    sa.text(
                        "INSERT INTO events (notice_id, target, at, step, outcome, detail) "
                        "VALUES (:notice, 'shop/web', :now, 'switch', 'ok', '')"
                    ),
                    {"notice": notice.id, "now": now},
                )
                transaction.commit()
                operator.join(timeout=10)
            assert errors == []
            assert store.get(notice.id).end <= datetime.now(UTC)
        finally:
            engine.dispose()
