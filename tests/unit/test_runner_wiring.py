"""Wiring by constructor: the scheduler builds its Runner with its hooks; nothing is patched on.

Runs on a SQLite file (the Runner needs a store for its claims); no cluster is contacted, so
``api`` and ``steps`` are placeholders the constructor never touches when ``claims`` is given
(``steps`` has only what ``Runner.shutdown`` calls).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from maint.notices import NoticeStore
from maint.runner import Runner, Scheduler, make_claims
from maint.settings import Settings


class _NoSteps:
    """Steps with nothing armed: all ``Runner.shutdown`` asks of them is to wake it."""

    def stop_armed(self) -> None:
        pass


def test_the_scheduler_builds_its_runner_with_its_hooks(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'maint.db'}")
    store = NoticeStore(settings.database_url)
    store.upgrade()
    claims = make_claims(store, settings)
    given: dict[str, Any] = {}

    def make_runner(**hooks: Any) -> Runner:
        given.update(hooks)
        return Runner(
            api=None,  # type: ignore[arg-type]
            store=store,
            steps=_NoSteps(),  # type: ignore[arg-type]
            settings=settings,
            claims=claims,
            **hooks,
        )

    scheduler = Scheduler(make_runner, poll_interval=1.0)
    try:
        runner = scheduler.runner
        assert given == {
            "on_step_done": scheduler.arm,
            "wake_at": scheduler.wake_at,
            "sweep_in_pass": False,
        }
        assert runner.on_step_done == scheduler.arm
        assert runner.wake_at == scheduler.wake_at
        assert runner.sweep_in_pass is False
        assert runner.claims is claims
        assert scheduler.heartbeat.wedged == claims.wedged
    finally:
        scheduler.runner.shutdown()
        store.close()


def test_a_runner_built_alone_keeps_quiet_hooks(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'maint.db'}")
    store = NoticeStore(settings.database_url)
    runner = Runner(
        api=None,  # type: ignore[arg-type]
        store=store,
        steps=_NoSteps(),  # type: ignore[arg-type]
        settings=settings,
        claims=make_claims(store, settings),
    )
    try:
        assert runner.sweep_in_pass is True
        runner.on_step_done()
        runner.wake_at(datetime.now())
    finally:
        runner.shutdown()
        store.close()
