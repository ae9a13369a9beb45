"""Operator actions during a window, typed as CLI commands while ``maint run`` is running.

Cancel before the start removes everything that was prepared and never touches the Service;
``notice end`` restores at once; ``notice extend`` moves the end, and the page follows: a new
page revision whose ``Retry-After`` and JSON carry the new end, switched in without a gap,
the old revision cleaned up. The CLI writes the database and runs one pass of its own while the
scheduler runs its passes: the claims keep them from racing, so every step happens once.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from maint import naming
from maint.notices import TargetState
from maint.page import rules
from tests.support.processes import Stage, maint, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

GRACE = 30.0


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    return {"restore_grace": GRACE}


def _state(stage: Stage, notice_id: int) -> TargetState:
    return stage.notice(notice_id).targets[0].state


def _reach(stage: Stage, notice_id: int, state: TargetState, timeout: float = 40) -> None:
    wait_until(
        lambda: _state(stage, notice_id) is state,
        timeout=timeout,
        what=f"notice {notice_id} to be {state.value}\n{stage.logs()}",
        interval=0.1,
    )


def _cli(stage: Stage, *args: str) -> str:
    done = maint(*args, env=stage.env())
    assert done.returncode == 0, f"maint {' '.join(args)}: {done.stderr}"
    return done.stdout


def _steps(stage: Stage, notice_id: int) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in stage.events(notice_id)]


def test_cancel_end_and_extend_act_at_once_and_never_race_the_scheduler(stage, k8s, capsys):
    for service in ("cancelled", "ended", "extended"):
        stage.add_service(service)
    cancelled = stage.add(start_in=60, length=60, service="cancelled")
    ended = stage.add(start_in=6, length=600, service="ended")
    extended = stage.add(start_in=6, length=60, service="extended")
    run = stage.run("maint")

    # --- cancel before the start: everything prepared goes, the Service was never touched ---
    _reach(stage, cancelled.id, TargetState.READY)
    _cli(stage, "notice", "cancel", str(cancelled.id))
    _reach(stage, cancelled.id, TargetState.CANCELLED, timeout=15)
    assert stage.restored("cancelled")
    assert stage.settled_leftovers(cancelled.id) == []
    assert stage.image_deleted(cancelled.id)
    steps = _steps(stage, cancelled.id)
    assert ("cancel", "ok") in steps and not any(step == "switch" for step, _ in steps)

    # --- end now: the selector is back as soon as the command is through ---
    _reach(stage, ended.id, TargetState.ACTIVE)
    asked = time.time()
    _cli(stage, "notice", "end", str(ended.id))
    wait_until(lambda: stage.restored("ended"), timeout=15, what="the end-now restore")
    end_took = time.time() - asked
    _reach(stage, ended.id, TargetState.COMPLETED, timeout=15)
    assert stage.notice(ended.id).end <= datetime.fromtimestamp(time.time(), UTC)
    assert stage.settled_leftovers(ended.id) == []

    # --- extend: the page and its Retry-After follow the new end ---
    _reach(stage, extended.id, TargetState.ACTIVE)
    old_pod = stage.notice(extended.id).targets[0].pod
    old_image = stage.digests[extended.id]
    new_end = (extended.end + timedelta(minutes=20)).replace(microsecond=0)
    new_page = stage.page_name(extended.id, end=new_end)
    new_image = stage.arrange_build(extended.id, end=new_end)
    seoul = new_end.astimezone(timezone(timedelta(hours=9)))  # any offset; stored in UTC
    asked = time.time()
    _cli(stage, "notice", "extend", str(extended.id), "--end", seoul.isoformat())
    returned = time.time()

    def page_switched() -> bool:
        return stage.selector("extended") == naming.page_selector(name=new_page, keys=["app"])

    wait_until(page_switched, timeout=30, what=f"the new page to be switched in\n{run.tail()}")
    shown = time.time()
    assert stage.notice(extended.id).end == new_end
    context = CoreV1Api(k8s).read_namespaced_config_map(new_page, stage.build_namespace).data
    assert f'Retry-After "{rules.http_date(new_end)}"' in context["nginx.conf"]
    assert json.loads(context["index.json"])["end"] == new_end.isoformat()
    annotations = stage.service("extended").metadata.annotations
    restore_by = datetime.fromisoformat(annotations[naming.RESTORE_BY_ANNOTATION])
    assert restore_by == new_end + timedelta(seconds=GRACE)
    pod = CoreV1Api(k8s).read_namespaced_pod(new_page, stage.namespace)
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    wait_until(
        lambda: old_pod not in " ".join(stage.leftovers(extended.id)),
        timeout=15,
        what="the old page revision to be cleaned up",
    )
    # Cleanup deletes the objects first, then the images: wait for the image too.
    wait_until(
        lambda: not stage.registry.has_manifest("maint-page", old_image),
        timeout=15,
        what="the old page's image to be deleted",
    )
    assert stage.registry.has_manifest("maint-page", new_image)
    assert _state(stage, extended.id) is TargetState.ACTIVE

    _cli(stage, "notice", "end", str(extended.id))
    _reach(stage, extended.id, TargetState.COMPLETED, timeout=15)
    assert stage.restored("extended")
    assert stage.settled_leftovers(extended.id) == []
    assert not stage.registry.has_manifest("maint-page", new_image)

    # --- no race: the CLI's pass and the scheduler's did every step exactly once ---
    for notice, once in (
        (cancelled, [("cancel", "ok")]),
        (ended, [("switch", "ok"), ("restore", "ok"), ("complete", "ok")]),
        (extended, [("switch", "ok"), ("refresh", "ok"), ("restore", "ok"), ("complete", "ok")]),
    ):
        steps = _steps(stage, notice.id)
        for step in once:
            assert steps.count(step) == 1, (notice.id, step, steps)
        assert not [s for s in steps if s[1] in ("retry", "conflict", "failed")], steps

    with capsys.disabled():
        print(
            f"\noperator actions: end now restored {end_took:.2f}s after `maint notice end` "
            f"was typed; the page showed the new end {shown - returned:.2f}s after "
            f"`maint notice extend` returned ({shown - asked:.2f}s after it was typed)"
        )
