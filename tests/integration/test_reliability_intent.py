"""Operator intent as data, with ``maint run`` in its own process and the CLI in another.

The CLI only writes the database: it is given a kubeconfig that reaches no API server at all,
so any Kubernetes call it made would fail the command. The running scheduler (polling every
15 s, so a poll cannot be what acts) picks the intent up from the change marker, whatever the
CLI's clock says. ``--wait`` tells what it waits for and returns at the end state, or says in
one line that nothing acted.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from kubernetes.client import BatchV1Api

from maint import naming
from maint.app import App
from maint.notices import TargetState
from maint.runner import utcnow
from maint.settings import Settings
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
    done = _run_cli(stage, *args, **settings)
    assert done.returncode == 0, f"maint {' '.join(args)}: {done.stderr}"
    return time.monotonic()


def _run_cli(stage: Stage, *args: str, **settings: object) -> CompletedProcess[str]:
    kubeconfig = _unreachable(stage.workdir / "kubeconfig-unreachable")
    return maint(*args, env=stage.env(kubeconfig=str(kubeconfig), **settings))


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
    assert stage.selector("other") == naming.page_selector(name=pod, keys=["app"])
    assert not [e for e in stage.events(live.id) if e.step == "refresh"]


SKEWED = [("cancel", -1), ("end", -1), ("end", +1)]  # (verb, hours the CLI's clock is off)


@pytest.mark.parametrize(("verb", "hours"), SKEWED, ids=[f"{v}-clock{h:+d}h" for v, h in SKEWED])
def test_intent_from_a_cli_with_a_skewed_clock_restores_within_2s(stage, verb, hours, capsys):
    # A CLI an hour behind must still move the change marker; one an hour ahead must not push
    # "end now" an hour out. The poll (60 s) is far from the 2 s the intent may take.
    notice = stage.add(start_in=5, length=600)
    _announce(stage)  # a newer notice: the newest marker is not the ended one's
    stage.run(poll_interval=60)
    _reach(stage, notice.id, TargetState.ACTIVE)
    # Let the switch's step and the passes around it finish: from here on only the change
    # marker (or the poll, a minute away) makes the scheduler look again.
    time.sleep(3)
    kubeconfig = _unreachable(stage.workdir / "kubeconfig-unreachable")
    skewed = App(
        settings=Settings(**stage.values(kubeconfig=str(kubeconfig))),
        clock=lambda: utcnow() + timedelta(hours=hours),
    )
    try:
        skewed.end_notice(notice.id, cancel=verb == "cancel")
    finally:
        skewed.close()
    exited = time.monotonic()
    wait_until(lambda: stage.restored(), timeout=10, what=f"the restore\n{stage.logs()}")
    took = time.monotonic() - exited
    _reach(stage, notice.id, TargetState.COMPLETED, timeout=20)
    assert took < 2.0, f"restored {took:.2f}s after `notice {verb}` from a clock {hours:+d}h off"
    with capsys.disabled():
        print(f"\nnotice {verb} from a clock {hours:+d}h off: restored {took:.2f}s after it")


def test_wait_tells_what_it_waits_for_and_returns_at_the_end_state(stage):
    notice = stage.add(start_in=5, length=600)
    new_end = (notice.end + timedelta(minutes=20)).replace(microsecond=0)
    new_page = stage.page_name(notice.id, end=new_end)
    stage.arrange_build(notice.id, end=new_end)
    stage.run(poll_interval=POLL)
    _reach(stage, notice.id, TargetState.ACTIVE)
    target = f"{stage.namespace}/web"

    # extend --wait: done once the page for the new end serves.
    args = ["notice", "extend", str(notice.id), "--end", new_end.isoformat()]
    done = _run_cli(stage, *args, "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert "maint:" not in done.stderr  # no error (SQLAlchemy may log its pool at INFO)
    lines = done.stdout.splitlines()
    assert lines[0] == f"notice {notice.id}: extend recorded; it now ends {new_end.isoformat()}"
    assert (
        f"waiting for `maint run` to serve the new end notice {notice.id}: {target} ACTIVE" in lines
    )
    assert lines[-1] == f"notice {notice.id} {target}: ACTIVE"
    assert stage.notice(notice.id).targets[0].pod == new_page  # already, not eventually
    assert stage.selector() == naming.page_selector(name=new_page, keys=["app"])
    assert ("refresh", "ok") in {(e.step, e.outcome) for e in stage.events(notice.id)}

    # end --wait: done once every target is terminal.
    done = _run_cli(stage, "notice", "end", str(notice.id), "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert "maint:" not in done.stderr  # no error (SQLAlchemy may log its pool at INFO)
    lines = done.stdout.splitlines()
    assert f"waiting for `maint run` to finish notice {notice.id}: {target} ACTIVE" in lines
    assert lines[-1] == f"notice {notice.id} {target}: COMPLETED"
    assert stage.notice(notice.id).targets[0].state is TargetState.COMPLETED
    assert stage.restored()


@pytest.mark.parametrize("verb", ["cancel", "end"])
def test_wait_without_a_running_scheduler_times_out_with_one_line(stage, verb):
    notice = stage.add(start_in=600, length=600)
    began = time.monotonic()
    done = _run_cli(stage, "notice", verb, str(notice.id), "--wait", "--timeout", "2")
    took = time.monotonic() - began
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"maint: notice {notice.id} not finished after 2s; "
        "is `maint run` running against this database?"
    ]
    assert done.stdout.splitlines()[0].startswith(f"notice {notice.id}: {verb} recorded")
    assert 2 <= took < 10
    assert stage.notice(notice.id).targets[0].state is TargetState.SCHEDULED


def _announce(stage: Stage) -> None:
    start = utcnow() + timedelta(hours=1)
    stage.app.add_notice(
        title="Heads-up",
        reason="Later this week",
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        targets=[],
        lang="en",
        maintenance=False,
    )


def _jobs(stage: Stage) -> list:
    return list(BatchV1Api(stage.k8s).list_namespaced_job(stage.build_namespace).items)
