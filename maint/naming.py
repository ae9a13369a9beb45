"""Names, labels and annotations of everything maint creates: deterministic, so a retried step
finds what an earlier attempt made, and valid DNS-1123 (hashed when long)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "maint"
NOTICE_LABEL = "maint.io/notice"
TARGET_LABEL = "maint.io/target"
PAGE_LABEL = "maint.io/page"

ORIGINAL_SELECTOR_ANNOTATION = "maint.io/original-selector"
PAGE_SELECTOR_ANNOTATION = "maint.io/page-selector"
NOTICE_ANNOTATION = "maint.io/notice"
RESTORE_BY_ANNOTATION = "maint.io/restore-by"
# What the switch added to pause reconcilers, {annotation: value before, or null}.
PAUSED_ANNOTATION = "maint.io/paused"
# Who owned the selector's keys before the switch (``switch.ownership``), given back at restore.
SELECTOR_OWNERS_ANNOTATION = "maint.io/selector-owners"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # set by the Job controller
SERVICE_ANNOTATIONS = (
    ORIGINAL_SELECTOR_ANNOTATION,
    PAGE_SELECTOR_ANNOTATION,
    NOTICE_ANNOTATION,
    RESTORE_BY_ANNOTATION,
    PAUSED_ANNOTATION,
    SELECTOR_OWNERS_ANNOTATION,
)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A page's name: target_name's stem and hash, then the page revision (eight hex digits).
_PAGE_NAME = re.compile(r"maint-[0-9]+(-[a-z0-9-]*[a-z0-9])?-[0-9a-f]{5}-[0-9a-f]{8}")
_STEM_MAX = 40  # + "-" + 5 hash + "-" + 8 revision = 55: room for a Job's Pod suffix (63 max)


def target_name(*, notice_id: int, namespace: str, service: str) -> str:
    """``maint-<id>-<service>-<hash5>``; the hash keeps two namespaces' ``web`` apart."""
    digest = hashlib.sha256(f"{namespace}/{service}".encode()).hexdigest()[:5]
    stem = re.sub(r"[^a-z0-9-]", "-", f"maint-{notice_id}-{service}")[:_STEM_MAX].rstrip("-")
    return f"{stem}-{digest}"


def object_name(*, target: str, revision: str) -> str:
    """Name of the ConfigMap, Job and Pod of one page revision of a target."""
    return f"{target}-{revision}"


def labels(*, notice_id: int, target: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, NOTICE_LABEL: str(notice_id), TARGET_LABEL: target}


def page_selector(*, name: str, keys: Iterable[str]) -> dict[str, str]:
    """The Service selector during the window: the original selector's ``keys``, each with the
    page Pod's ``name`` as value.

    Same keys, so a merge-based revert (client-side ``kubectl apply``, Helm 3) of the original
    overwrites every one of them and gives the app back, where new keys would be merged into
    a selector that matches nothing; a server-side apply replaces it whole. Other values, so
    neither the app's Pods nor its workloads' selectors match the page Pod.
    """
    return dict.fromkeys(sorted(keys), name)


def page_labels(*, name: str, keys: Iterable[str], base: Mapping[str, str]) -> dict[str, str]:
    """The page Pod's labels: maint's own (``base``, the page name) and the page selector's."""
    return page_selector(name=name, keys=keys) | dict(base) | {PAGE_LABEL: name}


def job_of(labels: Mapping[str, str]) -> str | None:
    """The Job a Pod was made for, from the labels the Job controller gives its Pods."""
    return next((labels[k] for k in JOB_NAME_LABELS if k in labels), None)


def is_maint_key(key: str) -> bool:
    """A label key maint sets on its own objects; no selector maint switches may use one."""
    return key == MANAGED_BY or key.startswith("maint.io/")


def page_name(selector: object) -> str | None:
    """The page name if every value of ``selector`` is the same name of maint's page form
    (``maint-<notice>-<service>-<hash5>-<revision8>``, a DNS-1123 label), else None."""
    if not isinstance(selector, dict) or not selector:
        return None
    values = set(selector.values())
    if len(values) != 1:
        return None
    name = values.pop()
    if not isinstance(name, str) or not _DNS1123_LABEL.fullmatch(name):
        return None
    if not _PAGE_NAME.fullmatch(name):
        return None
    return name


def legacy_page_selector(*, name: str) -> dict[str, str]:
    """The page selector of maint releases before it kept the original's keys: a window such a
    release switched is still given back after an upgrade, by the runner and by the sweep."""
    return {MANAGED_BY: MANAGER, PAGE_LABEL: name}


def is_page_selector(selector: object, *, original: Mapping[str, str]) -> str | None:
    """The page Pod's name if ``selector`` is what :func:`page_selector` makes for ``original``
    (or exactly :func:`legacy_page_selector` of a page name of maint's form).

    Exactly ``original``'s keys (none of them maint's own), every value the same page name of
    maint's form: the forced restore acts on nothing else, since anyone who may edit a Service
    can write its annotations.
    """
    if isinstance(selector, dict) and set(selector) == {MANAGED_BY, PAGE_LABEL}:
        name = page_name({PAGE_LABEL: selector[PAGE_LABEL]})
        legacy = name is not None and selector == legacy_page_selector(name=name)
        return name if legacy else None
    if not isinstance(selector, dict) or set(selector) != set(original):
        return None
    if any(is_maint_key(key) for key in selector):
        return None
    return page_name(selector)
