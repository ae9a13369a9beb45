"""Where maint may act: the MAINT_TARGET_NAMESPACES allowlist and the namespaces refused always.

Pure logic; the same checks against the real API server and the CLI are in
tests/integration/test_namespace_policy.py.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from maint.errors import Forbidden, InvalidInput
from maint.notices.validation import NamespacePolicy, namespace_policy
from maint.settings import Settings

ALWAYS_REFUSED = ["kube-system", "kube-public", "kube-node-lease", "maint-system", "maint-build"]


def _policy(**values: str):
    return namespace_policy(Settings(**values))


def _check_write(policy: NamespacePolicy, what: str) -> None:
    """``what`` as the guard's ``Write`` describes itself: ``"<verb> <Kind> <ns>/<name>"``."""
    verb, kind, ref = what.split(" ", 2)
    policy.check_write(verb=verb, kind=kind, namespace=ref.split("/")[0], what=what)


@pytest.mark.parametrize("namespace", ALWAYS_REFUSED)
@pytest.mark.parametrize("allowlist", ["", "shop"])
def test_system_and_maints_own_namespaces_are_refused_with_or_without_an_allowlist(
    namespace, allowlist
):
    policy = _policy(target_namespaces=allowlist)
    with pytest.raises(InvalidInput, match=f"--target {namespace}/web: namespace {namespace} is "):
        policy.check_targets(["shop/web", f"{namespace}/web"])
    with pytest.raises(Forbidden, match=f"refused to patch Service {namespace}/web"):
        _check_write(policy, f"patch Service {namespace}/web")


def test_maints_own_namespaces_follow_their_settings():
    policy = _policy(namespace="ops-maint", build_namespace="ops-build")
    for namespace in ("ops-maint", "ops-build"):
        with pytest.raises(InvalidInput, match="never a maint target"):
            policy.check_targets([f"{namespace}/web"])
    policy.check_targets(["maint-system/web", "maint-build/web"])  # ordinary namespaces now


def test_empty_allowlist_admits_every_other_namespace():
    policy = _policy()
    policy.check_targets(["shop/web", "default/api"])
    _check_write(policy, "create Pod shop/maint-1-web-abcde-0123abcd")


def test_allowlist_admits_only_its_namespaces():
    policy = _policy(target_namespaces=" shop , web-team ")
    policy.check_targets(["shop/web", "web-team/api"])
    with pytest.raises(InvalidInput, match=r"not in MAINT_TARGET_NAMESPACES \(shop, web-team\)"):
        policy.check_targets(["default/api"])
    for what in ("create Pod default/p", "delete Pod default/p", "patch Service default/api"):
        with pytest.raises(Forbidden, match="not in MAINT_TARGET_NAMESPACES"):
            _check_write(policy, what)


def test_build_namespace_takes_build_objects_only():
    policy = _policy(target_namespaces="shop")
    for what in (
        "create Job maint-build/j",
        "delete Job maint-build/j",
        "create ConfigMap maint-build/c",
        "delete ConfigMap maint-build/c",
        "delete Pod maint-build/j-abcde",  # the Job's leftover Pods
    ):
        _check_write(policy, what)
    for what in ("create Pod maint-build/p", "patch Service maint-build/s"):
        with pytest.raises(Forbidden, match="never a maint target"):
            _check_write(policy, what)


def test_build_objects_anywhere_else_follow_the_target_rules():
    policy = _policy(target_namespaces="shop")
    with pytest.raises(Forbidden):
        _check_write(policy, "create ConfigMap kube-system/c")
    with pytest.raises(Forbidden):
        _check_write(policy, "create Job default/j")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("shop,kube-system", "kube-system is refused always"),
        ("shop,Bad_Name", "'Bad_Name' is not a namespace name"),
        ("shop,-x", "'-x' is not a namespace name"),
    ],
)
def test_bad_allowlist_is_a_bad_setting(value, message):
    with pytest.raises(ValidationError, match=message):
        Settings(target_namespaces=value)


def test_bad_own_namespace_is_a_bad_setting():
    with pytest.raises(ValidationError, match="not a namespace name"):
        Settings(namespace="Maint System")


def test_new_notice_refuses_targets_by_the_policy_it_is_given():
    from datetime import UTC, datetime, timedelta

    from maint.notices.validation import new_notice

    now = datetime(2026, 12, 1, tzinfo=UTC)
    fields = {
        "title": "T",
        "reason": "R",
        "start": (now + timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
        "lang": "en",
        "maintenance": True,
        "now": now,
        "start_tolerance": timedelta(minutes=5),
    }
    policy = _policy(target_namespaces="shop")
    assert new_notice(targets=["shop/web"], namespaces=policy, **fields).targets
    with pytest.raises(InvalidInput, match="--target kube-system/kube-dns: namespace kube-sys"):
        new_notice(targets=["shop/web", "kube-system/kube-dns"], namespaces=policy, **fields)
    assert new_notice(targets=["kube-system/kube-dns"], **fields).targets  # no policy given
