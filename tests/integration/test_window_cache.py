"""A watch cache that has not yet seen this runner's own PATCH never ends or reports a window.

The runner's Service watch is made deaf (the proxy lets a new watch's headers through, then
nothing) before the switch, so its cache still holds the Service as it was before. The observe
that follows must not take that for a Service recreated by someone else (ending the window) or
for a foreign selector (reporting drift): what is not expected is read again directly.

Everything is real (control plane, registry, SQLite and PostgreSQL) but the clock, which the
test sets, and the fake kubelet (Kaniko cannot run here).
"""

from __future__ import annotations

from typing import Any

import pytest

from maint.notices import TargetState
from tests.support.faults import ApiProxy, Fault
from tests.support.kubelet import JobResult
from tests.support.processes import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.registry]


@pytest.fixture
def window_settings(proxy, tmp_path) -> dict[str, Any]:
    return {"kubeconfig": str(proxy.kubeconfig(tmp_path / "kubeconfig")), "step_retry_delay": 1}


def _deafen_services(window, proxy: ApiProxy) -> None:
    """From now on the cache's Service watch delivers nothing, without failing."""

    def service_watch(e) -> bool:
        return e.watch and e.resource == "services"

    hole = proxy.inject(Fault.blackhole(after_events=0), when=service_watch, limit=1)
    cache = window.runner.steps.ctx.api.cache
    cache.informer("Service", window.namespace).restart()
    wait_until(lambda: hole.hits, timeout=10, what="the cache's Service watch to go deaf")


def test_an_observe_right_after_the_switch_does_not_end_the_window(
    window, proxy, kubelet, oci_registry
):
    kubelet.default_job_result = JobResult(
        succeeded=True, message=oci_registry.push_image("maint-page")
    )
    notice = window.add()
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.READY
    _deafen_services(window, proxy)
    window.clock.at(notice.start)
    window.step()  # the switch (its PATCH reads the Service directly)
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    window.clock.advance(window.app.settings.poll_interval + 1)
    window.step()  # the observe: the cache still has the Service from before the switch
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.ACTIVE, window.lines[-6:]
    steps = [(e.step, e.outcome) for e in window.app.store.events(notice.id)]
    assert ("service", "gone") not in steps and ("drift", "foreign") not in steps, steps
