"""``notice add --timezone``: validated (exit 2, nothing stored), kept, shown by ``notice show``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from tests.integration.test_cli import cli  # noqa: F401 - the fixture


def _add(cli, *extra: str, start: datetime | None = None):  # noqa: F811
    start = start or (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    return cli(
        "notice", "add", "--title", "T", "--reason", "R",
        "--start", start.isoformat(), "--end", (start + timedelta(hours=1)).isoformat(),
        "--no-maintenance", "-o", "json", *extra,
    )  # fmt: skip


def test_a_bad_timezone_exits_2_with_one_line_and_stores_nothing(cli) -> None:  # noqa: F811
    code, out, err = _add(cli, "--timezone", "Mars/Olympus")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--timezone" in err and "Mars/Olympus" in err
    code, out, _ = cli("notice", "list", "-o", "json")
    assert code == 0 and json.loads(out) == []


def test_the_zone_is_shown_by_notice_show_in_text_and_json(cli) -> None:  # noqa: F811
    code, out, err = _add(cli, "--timezone", "Asia/Seoul")
    assert code == 0, err
    notice_id = str(json.loads(out)["id"])
    assert json.loads(out)["display_zone"] == "Asia/Seoul"
    code, out, _ = cli("notice", "show", notice_id, "-o", "json")
    assert code == 0 and json.loads(out)["display_zone"] == "Asia/Seoul"
    code, out, _ = cli("notice", "show", notice_id)
    assert code == 0 and "zone    Asia/Seoul" in out


def test_without_timezone_the_offset_is_kept_and_utc_keeps_none(cli) -> None:  # noqa: F811
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    code, out, _ = _add(cli, start=start.astimezone(timezone(timedelta(hours=9))))
    assert code == 0 and json.loads(out)["display_zone"] == "+09:00"
    code, out, _ = _add(cli, start=start + timedelta(hours=3))
    assert code == 0 and json.loads(out)["display_zone"] is None
