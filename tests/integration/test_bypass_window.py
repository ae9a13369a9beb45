"""The engineers' bypass through a window on the real API server (``notice add --bypass``).

Each page Pod gets a shadow Service with the app's original selector and ports (its
EndpointSlices list the app's Pods, so the page's nginx reaches them) and the Secret holding its
nginx include, both owned by the page Pod: they go with it at restore, rollback and forced
restore. The secret link is printed by `notice add --bypass` and `notice bypass ID` only: it is
in no event, log line (``-v`` included), `notice show` output or page build context.

Real kube-apiserver, controller-manager (EndpointSlice controller, garbage collector), the fake
kubelet, SQLite and PostgreSQL. nginx's handling of the cookie is proven through real nginx in
``test_page_bypass_nginx.py`` and on the real node.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from maint.cli import main
from maint.notices import TargetState
from maint.page import bypass
from maint.runner import restore_overdue
from maint.switch import shadow
from tests.support.processes import ready_endpoints, wait_until
from tests.support.window import APP_LABELS, leftovers_after

pytestmark = [pytest.mark.k8s, pytest.mark.registry]

KEY = "bypass-key-of-this-installation-0123456789"


@pytest.fixture
def window_settings() -> dict[str, Any]:
    return {"bypass_key": KEY}


def _bypass_objects(k8s, namespace: str, page: str) -> tuple[Any, Any]:
    core = CoreV1Api(k8s)
    name = shadow.name_for(page)
    return core.read_namespaced_service(name, namespace), core.read_namespaced_secret(
        name, namespace
    )


def _gone(k8s, namespace: str, page: str) -> None:
    core = CoreV1Api(k8s)
    name = shadow.name_for(page)

    def gone() -> bool:
        services = {s.metadata.name for s in core.list_namespaced_service(namespace).items}
        secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        return name not in services and name not in secrets

    wait_until(gone, timeout=20, what=f"shadow Service and Secret {name} to go with their Pod")


def test_the_page_pod_gets_a_shadow_service_and_its_include_which_go_with_it(window, k8s):
    ns = window.namespace
    notice = window.add(bypass=True)
    window.step()
    target = window.notice(notice.id).targets[0]
    assert target.state is TargetState.READY, window.lines
    page = target.pod
    assert page is not None
    core = CoreV1Api(k8s)
    pod = core.read_namespaced_pod(page, ns)
    service, secret = _bypass_objects(k8s, ns, page)
    for obj in (service, secret):
        [owner] = obj.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Pod", page, pod.metadata.uid)
    assert service.spec.type == "ClusterIP" and service.spec.selector == APP_LABELS
    assert sorted((p.port, str(p.target_port)) for p in service.spec.ports) == [
        (8080, "http"),
        (9000, "9000"),
    ]
    # The shadow reaches the app's Pods, whatever the target Service selects.
    wait_until(
        lambda: ready_endpoints(k8s, ns, shadow.name_for(page)) == {"web-0", "web-1"},
        timeout=20,
        what="the shadow Service's EndpointSlices to list the app's Pods",
    )
    include = base64.b64decode(secret.data[bypass.INCLUDE_FILE]).decode()
    secrets = bypass.derive(KEY, notice_id=notice.id, salt=window.notice(notice.id).bypass_salt)
    assert f"location = {secrets.link} " in include
    assert f"proxy_pass http://{service.spec.cluster_ip}:$maint_app_port;" in include
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["bypass"].secret.secret_name == shadow.name_for(page)
    mounts = {m.name: m for m in pod.spec.containers[0].volume_mounts}
    assert mounts["bypass"].mount_path == bypass.INCLUDE_DIR and mounts["bypass"].read_only

    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    _bypass_objects(k8s, ns, page)  # still there: the page serves
    window.clock.at(notice.end)
    window.step()
    assert window.notice(notice.id).targets[0].state is TargetState.COMPLETED
    _gone(k8s, ns, page)
    assert leftovers_after(k8s, notice.id) == []


def test_a_rollback_and_a_forced_restore_take_the_bypass_objects_with_the_page(window, k8s):
    ns = window.namespace
    cancelled = window.add(bypass=True)
    window.step()
    page = window.notice(cancelled.id).targets[0].pod
    assert page is not None
    _bypass_objects(k8s, ns, page)
    window.app.end_notice(cancelled.id, cancel=True)
    window.step()
    assert window.notice(cancelled.id).targets[0].state is TargetState.CANCELLED
    _gone(k8s, ns, page)

    notice = window.add(bypass=True)
    window.step()
    window.clock.at(notice.start)
    window.step()
    page = window.notice(notice.id).targets[0].pod
    assert page is not None and window.notice(notice.id).targets[0].state is TargetState.ACTIVE
    _bypass_objects(k8s, ns, page)
    overdue = window.notice(notice.id).end + window.app.settings.grace() + timedelta(seconds=1)
    [result] = restore_overdue(window.app.api, now=overdue, namespace=ns)
    assert result.outcome == "restored"
    _gone(k8s, ns, page)


def test_the_secret_is_printed_by_two_commands_and_appears_nowhere_else(
    window, k8s, control_plane, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", window.app.settings.database_url)
    monkeypatch.setenv("MAINT_BYPASS_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    start = window.clock() + timedelta(seconds=600)
    args = ["--title", "t", "--reason", "r", "--start", start.isoformat()]
    args += ["--end", (start + timedelta(seconds=600)).isoformat()]
    code = main(["-v", "notice", "add", *args, "--target", f"{window.namespace}/web", "--bypass"])
    out, err = capsys.readouterr()
    assert code == 0, err
    notice_id = int(out.split()[1])
    notice = window.notice(notice_id)
    secrets = bypass.derive(KEY, notice_id=notice_id, salt=notice.bypass_salt)
    assert secrets.link in out
    assert main(["notice", "bypass", str(notice_id)]) == 0
    assert secrets.link in capsys.readouterr().out

    window.step()  # prepare: shadow Service, Secret, page Pod
    window.clock.at(notice.start)
    window.step()
    assert window.notice(notice_id).targets[0].state is TargetState.ACTIVE
    shown = []
    for command in (
        ["notice", "show", str(notice_id)],
        ["notice", "show", str(notice_id), "-o", "json"],
    ):
        assert main(["-v", *command]) == 0
        shown.append(capsys.readouterr())
    assert "bypass  yes" in shown[0].out and json.loads(shown[1].out)["bypass"] is True
    built = window.app.steps().plan_page(window.item(notice_id))
    nowhere = {
        "events": " ".join(e.detail for e in window.app.store.events(notice_id)),
        "logs": " ".join(r.getMessage() for r in caplog.records),
        "notice show": " ".join(o.out + o.err for o in shown),
        "build context": b"".join(built.context.files.values()).decode(errors="replace"),
        "build tarball": built.tarball.decode("latin-1"),
        "stderr of add": err,
    }
    for where, text in nowhere.items():
        for secret in (secrets.token, secrets.cookie_key):
            assert secret not in text, where
    assert notice.bypass_salt not in nowhere["notice show"]


def test_bypass_without_a_key_or_on_an_announcement_is_bad_input(
    window, control_plane, monkeypatch, capsys
):
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", window.app.settings.database_url)
    monkeypatch.delenv("MAINT_BYPASS_KEY", raising=False)
    start = window.clock() + timedelta(seconds=600)
    args = ["--title", "t", "--reason", "r", "--start", start.isoformat()]
    args += ["--end", (start + timedelta(seconds=600)).isoformat()]
    target = ["--target", f"{window.namespace}/web"]
    assert main(["notice", "add", *args, *target, "--bypass"]) == 2
    assert "MAINT_BYPASS_KEY" in capsys.readouterr().err
    monkeypatch.setenv("MAINT_BYPASS_KEY", KEY)
    assert main(["notice", "add", *args, "--no-maintenance", "--bypass"]) == 2
    assert "--bypass needs a maintenance notice" in capsys.readouterr().err
    assert window.app.store.recent() == []
    assert main(["notice", "add", *args, *target]) == 0
    notice_id = int(capsys.readouterr().out.split()[1])
    assert main(["notice", "bypass", str(notice_id)]) == 2
    assert "has no bypass" in capsys.readouterr().err
    monkeypatch.setenv("MAINT_BYPASS_KEY", "short")
    assert main(["notice", "list"]) == 2
    assert "MAINT_BYPASS_KEY: Value error, must be at least 32" in capsys.readouterr().err
