"""Turn what an operator typed into a ``NewNotice``, or one clear ``InvalidInput``.

Only checks that need no cluster live here; ``app.py`` adds the cluster checks (the Service
exists and has a selector) before anything is stored.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maint.errors import Forbidden, InvalidInput
from maint.notices.models import REASON_MAX, TITLE_MAX, ZONE_MAX
from maint.notices.types import NewNotice, ServiceRef
from maint.settings import Settings

LANGS = ("ko", "en")
MAX_TARGETS = 50
MAX_WINDOW = timedelta(days=14)


def parse_time(value: str, *, what: str) -> datetime:
    """ISO 8601 with an offset (``Z`` or ``+09:00``) to an aware UTC datetime."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not an ISO 8601 time, e.g. 2026-12-01T02:00:00+09:00"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(
            f"{what} {value!r} has no UTC offset; add one, e.g. {text}+09:00 or {text}Z"
        )
    return parsed.astimezone(UTC)


def parse_zone(value: str) -> str:
    """``--timezone``: an IANA zone name known to this machine's tz database, as given."""
    name = value.strip()
    check_text(name, what="--timezone")
    hint = "use an IANA name like Asia/Seoul or Europe/Berlin"
    if not name or len(name) > ZONE_MAX:
        raise InvalidInput(f"--timezone {value!r} is not a time zone; {hint}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"--timezone {value!r} is not a known time zone; {hint}") from None
    return name


def written_zone(value: str) -> str | None:
    """The offset ``--start`` was written with (``+09:00``), or None if it was UTC.

    ``Z`` and ``+00:00`` say nothing about the reader (they are how scripts write UTC), so
    such a notice shows times in ``MAINT_DISPLAY_TIMEZONE``, like one written before zones
    were kept. Seconds in an offset are dropped: no zone in use has them.
    """
    offset = datetime.fromisoformat(value.strip().replace("z", "Z")).utcoffset()
    if offset is None or not offset:
        return None
    minutes = int(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def check_text(value: str, *, what: str, allowed: str = "") -> None:
    """``InvalidInput`` if ``value`` holds a control character (Unicode ``Cc``) not in ``allowed``.

    Stored text is printed to operators' terminals later: ESC, BEL, DEL or a C1 character
    would be an escape-sequence injection. Lone surrogates (undecodable bytes) are refused too.
    """
    for position, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category == "Cs":
            raise InvalidInput(f"{what} is not valid UTF-8 (character {position})")
        if category == "Cc" and char not in allowed:
            hint = "only newline and tab are allowed" if allowed else "use printable text only"
            raise InvalidInput(
                f"{what} contains the control character U+{ord(char):04X} at character "
                f"{position}; {hint}"
            )


def new_notice(
    *,
    title: str,
    reason: str,
    start: str,
    end: str,
    targets: Sequence[str],
    lang: str,
    maintenance: bool,
    now: datetime,
    start_tolerance: timedelta,
    namespaces: NamespacePolicy | None = None,
    timezone: str | None = None,
    pause_reconcilers: bool = False,
    bypass_salt: str | None = None,
) -> NewNotice:
    """Validate every field; the first problem found is raised and nothing is written.

    ``namespaces``: refuse targets outside the allowlist or in a namespace refused always.
    ``timezone``: the IANA zone the page shows times in; without it, the offset ``start`` was
    written with (unless UTC, see ``written_zone``). ``pause_reconcilers``: see ``switch.pause``.
    """
    title = title.strip()
    reason = reason.strip()
    if not title:
        raise InvalidInput("--title must not be empty")
    check_text(title, what="--title")
    if len(title) > TITLE_MAX:
        raise InvalidInput(f"--title is {len(title)} characters; at most {TITLE_MAX}")
    if not reason:
        raise InvalidInput("--reason must not be empty")
    check_text(reason, what="--reason", allowed="\n\t")
    if len(reason) > REASON_MAX:
        raise InvalidInput(f"--reason is {len(reason)} characters; at most {REASON_MAX}")
    if lang not in LANGS:
        raise InvalidInput(f"--lang {lang!r} is not supported; use one of {', '.join(LANGS)}")
    start_at = parse_time(start, what="--start")
    display_zone = parse_zone(timezone) if timezone is not None else written_zone(start)
    end_at = parse_time(end, what="--end")
    if end_at <= start_at:
        raise InvalidInput(f"--end {end} must be after --start {start}")
    if end_at - start_at > MAX_WINDOW:
        raise InvalidInput(f"the window is longer than {MAX_WINDOW.days} days; split it")
    if start_at < now - start_tolerance:
        raise InvalidInput(
            f"--start {start} is in the past (now {now.isoformat(timespec='seconds')})"
        )
    refs = tuple(ServiceRef.parse(t) for t in targets)
    if maintenance and not refs:
        raise InvalidInput("a maintenance notice needs at least one --target NAMESPACE/SERVICE")
    if pause_reconcilers and not maintenance:
        raise InvalidInput("--pause-reconcilers needs a maintenance notice (it switches nothing)")
    if bypass_salt is not None and not maintenance:
        raise InvalidInput("--bypass needs a maintenance notice (there is no app to bypass to)")
    if len(refs) > MAX_TARGETS:
        raise InvalidInput(f"{len(refs)} targets; at most {MAX_TARGETS} per notice")
    if len(set(refs)) != len(refs):
        raise InvalidInput("the same --target is given twice")
    if namespaces is not None:
        namespaces.check_targets(targets)
    return NewNotice(
        title=title,
        reason=reason,
        lang=lang,
        maintenance=maintenance,
        start=start_at,
        end=end_at,
        targets=refs,
        display_zone=display_zone,
        pause_reconcilers=pause_reconcilers,
        bypass_salt=bypass_salt,
    )


@dataclass(frozen=True)
class NamespacePolicy:
    """Which namespaces maint may act in: the allowlist, minus the namespaces refused always.

    ``check_targets`` runs at ``notice add`` (InvalidInput, exit 2, nothing stored);
    ``check_write`` is installed with ``maint.cluster.guarded`` and runs before every create,
    delete and Service patch (Forbidden: a step stops, it is not retried). The build namespace
    is refused as a target but holds maint's own build objects: there maint writes Jobs and
    ConfigMaps and deletes the Jobs' Pods, and nothing else.
    """

    allowed: frozenset[str]  # empty: every namespace not refused
    refused: frozenset[str]
    build_namespace: str

    def why_refused(self, namespace: str) -> str | None:
        if namespace in self.refused:
            return f"namespace {namespace} is never a maint target (system or maint's own)"
        if self.allowed and namespace not in self.allowed:
            return (
                f"namespace {namespace} is not in MAINT_TARGET_NAMESPACES "
                f"({', '.join(sorted(self.allowed))})"
            )
        return None

    def check_targets(self, targets: Sequence[str]) -> None:
        for target in targets:
            why = self.why_refused(ServiceRef.parse(target).namespace)
            if why is not None:
                raise InvalidInput(f"--target {target}: {why}")

    def check_write(self, *, verb: str, kind: str, namespace: str, what: str) -> None:
        """A cluster write (``maint.cluster.guard.Write``'s fields): refused outside the
        allowlist; the build namespace takes maint's Jobs and ConfigMaps (and their Pods'
        deletion) whatever the allowlist says."""
        if namespace == self.build_namespace and (
            kind in BUILD_KINDS or (kind == "Pod" and verb == "delete")
        ):
            return
        why = self.why_refused(namespace)
        if why is not None:
            raise Forbidden(f"refused to {what}: {why}")


BUILD_KINDS = frozenset({"Job", "ConfigMap"})


def namespace_policy(settings: Settings) -> NamespacePolicy:
    return NamespacePolicy(
        allowed=settings.allowed_target_namespaces(),
        refused=settings.refused_target_namespaces(),
        build_namespace=settings.build_namespace,
    )
