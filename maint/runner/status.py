"""``maint status``: the live windows, their last errors, and whether all is well.

A check command (``kubectl exec deploy/maint -- maint status``, a CronJob, a monitoring
agent): it reads only the database, so it runs in any process. Not well, and ``problems``
says why, when:

- a target of a recent window is FAILED: maint could not give its Service back. "Recent" is
  ``FAILED_RECENT`` after it failed: a check that stayed red for ever after one failure would
  soon be ignored (the alert ``MaintTargetFailed`` in the README tells the moment);
- no replica's forced-restore sweep has completed for more than twice the poll interval
  (``sweeps``, written by every ``maint run``; the database's clock on both sides), or none
  ever did.

Live windows are the notices with a target not finished yet, or FAILED recently, found from
the targets' states however many newer notices there are (``NoticeStore.live``); the last
errors of all their targets come in one query (``NoticeStore.last_events``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from maint.notices import Event, Notice, NoticeStore, TargetState

FAILED_RECENT = timedelta(hours=24)
#: Outcomes of the event log that tell of something going wrong.
ERRORS = frozenset({"retry", "failed", "conflict", "blocked", "foreign", "gave-up", "pending"})
#: Steps that tell others of a window (webhooks, Alertmanager's silences): their failures
#: are recorded with the target but never say why the target itself went wrong.
TELLING = frozenset({"notify", "silence"})


@dataclass(frozen=True)
class Status:
    ok: bool
    problems: list[str]
    windows: list[dict[str, Any]]
    sweep: dict[str, Any]
    notifications: dict[str, int] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "sweep": self.sweep,
            "notifications": self.notifications,
            "windows": self.windows,
        }


def status(store: NoticeStore, *, now: datetime, poll_interval: float) -> Status:
    problems: list[str] = []
    windows = []
    notices = store.live(now=now, failed_since=now - FAILED_RECENT)
    errors = store.last_events(
        [n.id for n in notices if n.targets], outcomes=ERRORS, except_steps=TELLING
    )
    for notice in notices:
        window = _window(notice, errors, now=now)
        windows.append(window)
        for target in window["targets"]:
            if target["state"] == TargetState.FAILED.value:
                last = target["last_error"]
                problems.append(
                    f"notice {notice.id} {target['target']} is FAILED"
                    + (f": {last['detail']}" if last else "")
                )
    sweep = _sweep(store, poll_interval=poll_interval)
    if sweep["problem"]:
        problems.append(sweep["problem"])
    backlog = store.outbox.backlog()
    return Status(
        ok=not problems,
        problems=problems,
        windows=windows,  # oldest first, like the event log
        sweep=sweep,
        notifications={"pending": backlog.pending, "gave_up": backlog.gave_up},
    )


def _window(
    notice: Notice, errors: dict[tuple[int, str], Event], *, now: datetime
) -> dict[str, Any]:
    return {
        "id": notice.id,
        "title": notice.title,
        "start": notice.start.isoformat(),
        "end": notice.end.isoformat(),
        "state": notice.state(now),
        "targets": [
            {
                "target": str(t.ref),
                "state": t.state.value,
                "actual_start": t.actual_start.isoformat() if t.actual_start else None,
                "actual_end": t.actual_end.isoformat() if t.actual_end else None,
                "last_error": _error(errors.get((notice.id, str(t.ref)))),
            }
            for t in notice.targets
        ],
    }


def _error(e: Event | None) -> dict[str, str] | None:
    if e is None:
        return None
    return {"at": e.at.isoformat(), "step": e.step, "outcome": e.outcome, "detail": e.detail}


def _sweep(store: NoticeStore, *, poll_interval: float) -> dict[str, Any]:
    replicas, now = store.sweeps.last()
    stale_after = 2 * poll_interval
    newest = max(replicas.values(), default=None)
    age = (now - newest).total_seconds() if newest is not None else None
    problem = None
    if age is None:
        problem = "no forced-restore sweep has ever completed: is `maint run` running?"
    elif age > stale_after:
        problem = (
            f"the forced-restore sweep last completed {age:.1f}s ago, more than twice the "
            f"poll interval ({stale_after:g}s): is `maint run` running and healthy?"
        )
    return {
        "last": newest.isoformat() if newest is not None else None,
        "age_seconds": round(age, 3) if age is not None else None,
        "stale_after_seconds": stale_after,
        "problem": problem,
        "replicas": [
            {
                "replica": r,
                "at": at.isoformat(),
                "age_seconds": round((now - at).total_seconds(), 3),
            }
            for r, at in sorted(replicas.items(), key=lambda kv: kv[1], reverse=True)
        ],
    }
