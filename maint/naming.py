"""Names, labels and annotations of everything maint creates: deterministic, so a retried step
finds what an earlier attempt made, and valid DNS-1123 (hashed when long)."""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "maint"
NOTICE_LABEL = "maint.io/notice"
TARGET_LABEL = "maint.io/target"
PAGE_LABEL = "maint.io/page"

ORIGINAL_SELECTOR_ANNOTATION = "maint.io/original-selector"
PAGE_SELECTOR_ANNOTATION = "maint.io/page-selector"
NOTICE_ANNOTATION = "maint.io/notice"
RESTORE_BY_ANNOTATION = "maint.io/restore-by"
SERVICE_ANNOTATIONS = (
    ORIGINAL_SELECTOR_ANNOTATION,
    PAGE_SELECTOR_ANNOTATION,
    NOTICE_ANNOTATION,
    RESTORE_BY_ANNOTATION,
)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
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


def page_selector(*, name: str) -> dict[str, str]:
    """The Service selector during the window: matches only this revision's page Pod."""
    return {MANAGED_BY: MANAGER, PAGE_LABEL: name}


def is_page_selector(selector: object) -> str | None:
    """The page Pod's name if ``selector`` is exactly what :func:`page_selector` makes, else None.

    Exactly the two keys, ``managed-by`` equal to maint and a DNS-1123 label as the page name:
    the forced restore acts on nothing else, since anyone who may edit a Service can write its
    annotations.
    """
    if not isinstance(selector, dict) or set(selector) != {MANAGED_BY, PAGE_LABEL}:
        return None
    name = selector[PAGE_LABEL]
    if selector[MANAGED_BY] != MANAGER or not isinstance(name, str):
        return None
    if not _DNS1123_LABEL.fullmatch(name):
        return None
    return name
