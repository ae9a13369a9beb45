"""The page's fixed wording, per language.

A notice's title and reason are written by an operator in one language; the words around them
("Scheduled maintenance", "Until") come from here. The page shows them in the notice's
language first and repeats the essentials in the other one, so a visitor who reads only
English (or only Korean) still learns what is happening and until when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class PageTexts:
    """Fixed strings of the page in one language (plain text; the template escapes them)."""

    lang: str
    heading: str
    lead: str
    starts: str
    ends: str
    zone_note: str
    retry: str
    summary: str


TEXTS: Mapping[str, PageTexts] = MappingProxyType(
    {
        "ko": PageTexts(
            lang="ko",
            heading="서비스 점검 중",
            lead="더 나은 서비스를 위해 점검을 진행하고 있습니다. 이용에 불편을 드려 죄송합니다.",
            starts="시작",
            ends="종료 예정",
            zone_note="시간대",
            retry="점검이 끝나면 이 페이지를 새로고침해 주세요.",
            summary="현재 예정된 점검이 진행 중입니다. 종료 예정 시각:",
        ),
        "en": PageTexts(
            lang="en",
            heading="Scheduled maintenance",
            lead="We are carrying out planned maintenance. Sorry for the inconvenience.",
            starts="Starts",
            ends="Expected to end",
            zone_note="Time zone",
            retry="Please reload this page once the maintenance has ended.",
            summary="This service is under scheduled maintenance. Expected to end:",
        ),
    }
)
"""Texts by language code; every entry of ``SUPPORTED_LANGS`` has one (a unit test checks)."""
