"""The zone a page shows its times in, and how it names that zone.

A notice keeps the zone it was written in: an IANA name (``Asia/Seoul``, shown as
"Asia/Seoul (KST)") or a fixed offset (``+09:00``, shown as "UTC+09:00"). A notice without
one uses the renderer's default zone (MAINT_DISPLAY_TIMEZONE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maint.errors import InvalidInput

_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(frozen=True)
class DisplayZone:
    """A resolved zone: what times are converted to, and its name for the page."""

    tz: tzinfo
    label: str


def resolve(
    written: str | None, *, default: ZoneInfo, start: datetime, end: datetime
) -> DisplayZone:
    """The page's zone for a notice written in ``written`` (None: ``default``)."""
    if written is None:
        return _named(default, start=start, end=end)
    match = _OFFSET.fullmatch(written)
    if match is not None:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset >= timedelta(hours=24):
            raise InvalidInput(f"offset {written!r} is not a UTC offset (under 24 hours)")
        return DisplayZone(
            tz=timezone(-offset if sign == "-" else offset, name=written), label=f"UTC{written}"
        )
    try:
        zone = ZoneInfo(written)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"time zone {written!r} is not a known IANA zone") from None
    return _named(zone, start=start, end=end)


def _named(zone: ZoneInfo, *, start: datetime, end: datetime) -> DisplayZone:
    # The abbreviation in force at start, and at end if it differs (a DST change inside).
    names: list[str] = []
    for moment in (start, end):
        abbreviation = moment.astimezone(zone).tzname() or ""
        if abbreviation and abbreviation != zone.key and abbreviation not in names:
            names.append(abbreviation)
    label = f"{zone.key} ({'/'.join(names)})" if names else zone.key
    return DisplayZone(tz=zone, label=label)
