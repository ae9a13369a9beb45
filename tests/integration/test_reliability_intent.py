"""Operator intent as data, with ``maint run`` in its own process and the CLI in another.

The CLI only writes the database: it is given a kubeconfig that reaches no API server at all,
so any Kubernetes call it made would fail the command. The running scheduler (polling every
15 s, so a poll cannot be what acts) picks the intent up from the change marker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes.client import BatchV1Api

from maint import naming
from maint.notices import TargetState
from tests.support.processes import Stage, maint, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]

POLL = 15  # seconds: far longer than the 2 s the intent must take


def _unreachable(path: Path) -> Path:
    """A kubeconfig whose API server is a closed port on this machine."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "none", "user": {"token": "nobody"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "current-context": "none",
    }
    path.write_text(json.dumps(config))
    return path


def _cli(stage: Stage, *args: str, **settings: object) -> float:
    """Run a CLI command with no reachable API server; the time it exited."""
    kubeconfig = _unreachable(stage.workdir / "kubeconfig-unreachable")
    done = maint(*args, env=stage.env(kubeconfig=str(kubeconfig), **settings))
    assert done.returncode == 0, f"maint {' '.join(args)}: {done.stderr}"
    return time.monotonic()


def _state(stage: Stage, notice_id: int) -> TargetState:
    return stage.notice(notice_id).targets[0].state


def _reach(stage: Stage, notice_id: int, state: TargetState, timeout: float = 60) -> None:
    wait_until(
        lambda: _state(stage, notice_id) is state,
        timeout=timeout,
        what=f"notice {notice_id} to be {state.value}\n{stage.logs()}",
    )


@pytest.mark.parametrize("verb", ["cancel", "end"])
def test_cancel_and_end_of_an_active_window_restore_within_2s_of_the_command(stage, verb, capsys):
    notice = stage.add(start_in=5, length=600)
    stage.run(poll_interval=POLL)
    _reach(stage, notice.id, TargetState.ACTIVE)
    exited = _cli(stage, "notice", verb, str(notice.id))
    wait_until(lambda: stage.restored(), timeout=10, what=f"the restore\n{stage.logs()}")
    took = time.monotonic() - exited
    _reach(stage, notice.id, TargetState.COMPLETED, timeout=20)
    assert stage.settled_leftovers(notice.id) == []
    assert took < 2.0, f"restored {took:.2f}s after `maint notice {verb}` exited"
    with capsys.disabled():
        print(f"\nnotice {verb} of an ACTIVE window: restored {took:.2f}s after the CLI exited")


def test_cancel_during_a_late_prepare_never_switches_and_leaves_nothing(stage):
    # The build is held past the start: the preparation runs late, the cancel comes meanwhile.
    notice = stage.add(start_in=3, length=600, hold_build=True)
    stage.run(poll_interval=POLL)
    job = stage.page_name(notice.id)
    wait_until(
        lambda: any(j.metadata.name == job for j in _jobs(stage)),
        timeout=30,
        what=f"the page's Job\n{stage.logs()}",
    )
    wait_until(lambda: time.time() > notice.start.timestamp() + 1, timeout=10, what="the start")
    _cli(stage, "notice", "cancel", str(notice.id))
    stage.kubelet.finish_held_job(job)
    _reach(stage, notice.id, TargetState.CANCELLED, timeout=30)
    assert stage.selector() == {"app": "web"}
    assert stage.restored()
    assert not [e for e in stage.events(notice.id) if e.step == "switch"]
    assert stage.settled_leftovers(notice.id) == []


def test_end_from_a_shell_with_other_settings_leaves_another_live_window_untouched(stage):
    stage.add_service("other")
    live = stage.add(start_in=5, length=600, service="other")
    ended = stage.add(start_in=5, length=600)
    stage.run(poll_interval=POLL)
    _reach(stage, live.id, TargetState.ACTIVE)
    _reach(stage, ended.id, TargetState.ACTIVE)
    pod = stage.notice(live.id).targets[0].pod
    jobs = sorted(j.metadata.name for j in _jobs(stage))
    _cli(
        stage,
        "notice",
        "end",
        str(ended.id),
        display_timezone="Asia/Seoul",
        base_image="registry.example/other-nginx:9",
        kaniko_image="registry.example/other-kaniko:9",
    )
    _reach(stage, ended.id, TargetState.COMPLETED, timeout=20)
    time.sleep(2)  # a pass or two of the scheduler after the intent
    assert {j.metadata.name for j in _jobs(stage)} <= set(jobs)  # no new Job (the ended one's goes)
    assert stage.notice(live.id).targets[0].pod == pod
    assert stage.selector("other") == naming.page_selector(name=pod)
    assert not [e for e in stage.events(live.id) if e.step == "refresh"]


def _jobs(stage: Stage) -> list:
    return list(BatchV1Api(stage.k8s).list_namespaced_job(stage.build_namespace).items)
