"""Turn what an operator typed into a ``NewNotice``, or one clear ``InvalidInput``.

Only checks that need no cluster live here; ``app.py`` adds the cluster checks (the Service
exists and has a selector) before anything is stored.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from maint.errors import InvalidInput
from maint.notices.models import REASON_MAX, TITLE_MAX
from maint.notices.types import NewNotice, ServiceRef

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
) -> NewNotice:
    """Validate every field; the first problem found is raised and nothing is written."""
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
    if len(refs) > MAX_TARGETS:
        raise InvalidInput(f"{len(refs)} targets; at most {MAX_TARGETS} per notice")
    if len(set(refs)) != len(refs):
        raise InvalidInput("the same --target is given twice")
    return NewNotice(
        title=title,
        reason=reason,
        lang=lang,
        maintenance=maintenance,
        start=start_at,
        end=end_at,
        targets=refs,
    )
