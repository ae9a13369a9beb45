"""The write guard: checks run before each write, stack per context, and stop only their block."""

from __future__ import annotations

import threading

import pytest

from maint.cluster.guard import Write, before_write, guarded, installed
from maint.errors import Forbidden


def test_checks_run_in_order_and_only_inside_their_block() -> None:
    seen: list[str] = []
    before_write(Write("patch", "Service", "a", "b"))  # no checks: nothing happens
    with guarded(lambda w: seen.append(f"outer {w} {w.namespace}")):
        with guarded(lambda w: seen.append("inner")):
            before_write(Write("create", "Pod", "a", "p"))
        before_write(Write("delete", "Job", "a", "j"))
    before_write(Write("delete", "Job", "a", "j"))
    assert seen == ["outer create Pod a/p a", "inner", "outer delete Job a/j a"]


def test_a_check_that_raises_stops_the_write() -> None:
    def refuse(write: Write) -> None:
        raise Forbidden(f"{write}: not allowed in {write.namespace}")

    with guarded(refuse), pytest.raises(Forbidden, match="not allowed in kube-system"):
        before_write(Write("patch", "Service", "kube-system", "dns"))


def test_a_check_set_in_one_thread_does_not_apply_to_another() -> None:
    seen: list[str] = []
    with guarded(lambda w: seen.append(str(w))):
        other = threading.Thread(target=before_write, args=(Write("create", "Pod", "x", "y"),))
        other.start()
        other.join()
    assert seen == []


def test_an_installed_check_applies_to_every_thread_until_its_block_ends() -> None:
    seen: list[str] = []
    with installed(lambda w: seen.append(str(w))):
        other = threading.Thread(target=before_write, args=(Write("create", "Pod", "x", "y"),))
        other.start()
        other.join()
    before_write(Write("create", "Pod", "x", "z"))
    assert seen == ["create Pod x/y"]
