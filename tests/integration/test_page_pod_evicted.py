"""An evicted page Pod during the window is replaced at once, at the default poll interval.

Eviction (node pressure, a preemption) leaves the Pod object in phase ``Failed``: it never
becomes Ready again and, unlike a deleted Pod, it is not gone either. ``maint run`` watches its
page Pods (``runner.pages``), so the runner looks at the target the moment the phase changes,
deletes the failed Pod and starts its successor, instead of finding it at the next poll.
Against the real control plane; the fake kubelet stands in for the node that evicts (it reports
the status an evicting kubelet writes: phase Failed, reason Evicted).
"""

from __future__ import annotations

import time

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from maint.notices import TargetState
from maint.settings import Settings
from tests.support.processes import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry, pytest.mark.postgres]


def test_an_evicted_page_pod_is_replaced_and_ready_within_10s(stage, k8s, capsys):
    poll = Settings.model_fields["poll_interval"].default
    notice = stage.add(start_in=4, length=120)
    run = stage.run("maint", poll_interval=poll)
    wait_until(
        lambda: (
            stage.notice(notice.id).targets[0].state is TargetState.ACTIVE
            and any(e.step == "endpoints" for e in stage.events(notice.id))
        ),
        timeout=40,
        what=f"the window to be active\n{run.tail()}",
        interval=0.2,
    )
    # Evict right after an observe has started: the next one by the clock is a poll away.
    observe = f"started {notice.id}/{stage.namespace}/web:observe"
    seen = run.output().count(observe)
    wait_until(
        lambda: run.output().count(observe) > seen,
        timeout=2 * poll + 5,
        what=f"an observe pass\n{run.tail()}",
        interval=0.05,
    )
    pod = stage.notice(notice.id).targets[0].pod
    core = CoreV1Api(k8s)
    uid = core.read_namespaced_pod(pod, stage.namespace).metadata.uid

    def replaced() -> bool:
        try:
            found = core.read_namespaced_pod(pod, stage.namespace)
        except ApiException:
            return False
        conditions = found.status.conditions or []
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        return found.metadata.uid != uid and ready

    evicted = time.time()
    core.patch_namespaced_pod_status(
        pod,
        stage.namespace,
        {
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
                "conditions": [{"type": "Ready", "status": "False"}],
            }
        },
    )
    wait_until(replaced, timeout=poll + 5, what=f"a new page Pod\n{run.tail()}", interval=0.05)
    took = time.time() - evicted
    assert took <= 10, f"page Pod replaced {took:.2f}s after its eviction (poll {poll:.0f}s)"
    outcomes = [(e.step, e.outcome) for e in stage.events(notice.id)]
    assert ("pod", "evicted") in outcomes, outcomes
    assert stage.notice(notice.id).targets[0].state is TargetState.ACTIVE
    with capsys.disabled():
        print(f"\nan evicted page Pod was replaced and Ready {took:.2f}s later (poll {poll:.0f}s)")
