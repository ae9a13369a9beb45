"""The write guard: checks run before each write, stack per context, and stop only their block."""

from __future__ import annotations

import threading

import pytest

from maint.cluster import before_write, guarded, installed
from maint.errors import Forbidden


def test_checks_run_in_order_and_only_inside_their_block() -> None:
    seen: list[str] = []
    before_write("patch Service a/b", "a")  # no checks: nothing happens
    with guarded(lambda what, ns: seen.append(f"outer {what} {ns}")):
        with guarded(lambda what, ns: seen.append("inner")):
            before_write("create Pod a/p", "a")
        before_write("delete Job a/j", "a")
    before_write("delete Job a/j", "a")
    assert seen == ["outer create Pod a/p a", "inner", "outer delete Job a/j a"]


def test_a_check_that_raises_stops_the_write() -> None:
    def refuse(what: str, namespace: str) -> None:
        raise Forbidden(f"{what}: not allowed in {namespace}")

    with guarded(refuse), pytest.raises(Forbidden, match="not allowed in kube-system"):
        before_write("patch Service kube-system/dns", "kube-system")


def test_a_check_set_in_one_thread_does_not_apply_to_another() -> None:
    seen: list[str] = []
    with guarded(lambda what, ns: seen.append(what)):
        other = threading.Thread(target=before_write, args=("create Pod x/y", "x"))
        other.start()
        other.join()
    assert seen == []


def test_an_installed_check_applies_to_every_thread_until_its_block_ends() -> None:
    seen: list[str] = []
    with installed(lambda what, ns: seen.append(what)):
        other = threading.Thread(target=before_write, args=("create Pod x/y", "x"))
        other.start()
        other.join()
    before_write("create Pod x/z", "x")
    assert seen == ["create Pod x/y"]
