"""The CLI contract (DESIGN.md): exit codes, one-line errors, nothing written on bad input.

Runs ``maint`` in-process against the real control plane and both databases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client import CoreV1Api

from maint.cli import main
from maint.notices import Event, Notice, NoticeStore, ServiceRef
from maint.notices.types import NewNotice
from tests.support.window import make_app

pytestmark = pytest.mark.k8s


@pytest.fixture
def cli(control_plane, k8s, namespace, database_url, monkeypatch, capsys):
    make_app(k8s, namespace)
    core = CoreV1Api(k8s)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        },
    )
    core.create_namespaced_service(
        namespace, {"metadata": {"name": "bare"}, "spec": {"ports": [{"port": 80}]}}
    )
    monkeypatch.setenv("MAINT_KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.setenv("MAINT_DATABASE_URL", database_url)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.namespace = namespace  # type: ignore[attr-defined]
    run.database_url = database_url  # type: ignore[attr-defined]
    return run


def iso(delta_minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=delta_minutes)).isoformat(timespec="seconds")


def notice_count(database_url: str) -> int:
    store = NoticeStore(database_url)
    try:
        return len(store.recent())
    finally:
        store.close()


BAD_INPUTS = [
    ("end before start", {"--start": iso(60), "--end": iso(30)}, "must be after"),
    ("end equal to start", {"--start": iso(60), "--end": iso(60)}, "must be after"),
    ("start in the past", {"--start": iso(-60), "--end": iso(30)}, "in the past"),
    ("no offset", {"--start": "2030-01-01T10:00:00", "--end": iso(90)}, "no UTC offset"),
    ("not a time", {"--start": "tomorrow", "--end": iso(90)}, "not an ISO 8601"),
    ("empty title", {"--title": "  "}, "--title must not be empty"),
    ("title too long", {"--title": "x" * 201}, "at most 200"),
    ("reason too long", {"--reason": "x" * 4001}, "at most 4000"),
    ("bad target form", {"--target": "web"}, "NAMESPACE/SERVICE"),
    ("bad target name", {"--target": "{ns}/Web_1"}, "not a valid Kubernetes name"),
    ("missing Service", {"--target": "{ns}/nope"}, "does not exist"),
    ("ExternalName Service", {"--target": "{ns}/ext"}, "ExternalName"),
    ("selector-less Service", {"--target": "{ns}/bare"}, "no selector"),
    ("unsupported language", {"--lang": "fr"}, "invalid choice"),
    ("window too long", {"--end": iso(60 * 24 * 15)}, "longer than 14 days"),
    # Control characters would reach an operator's terminal raw when the notice is listed.
    ("ESC in title", {"--title": "Planned \x1b[2J maintenance"}, "control character U+001B"),
    ("BEL in title", {"--title": "Planned\x07"}, "control character U+0007"),
    ("DEL in title", {"--title": "Plan\x7fned"}, "control character U+007F"),
    ("C1 CSI in title", {"--title": "Planned \x9b31m"}, "control character U+009B"),
    ("newline in title", {"--title": "Planned\nmaintenance"}, "control character U+000A"),
    ("tab in title", {"--title": "Planned\tmaintenance"}, "control character U+0009"),
    ("ESC in reason", {"--reason": "DB\n\tupgrade \x1b]0;x\x07"}, "control character U+001B"),
    ("CR in reason", {"--reason": "DB\r\nupgrade"}, "control character U+000D"),
    # What Python makes of bytes that are not UTF-8 (surrogateescape); see also the subprocess
    # test below, which passes the raw bytes.
    ("invalid UTF-8 title", {"--title": os.fsdecode(b"Planned \xff")}, "is not valid UTF-8"),
    ("invalid UTF-8 target", {"--target": os.fsdecode(b"{ns}/w\xc3")}, "is not valid UTF-8"),
    ("trailing newline in target", {"--target": "{ns}/web\n"}, "not a valid Kubernetes name"),
    ("trailing newline in namespace", {"--target": "{ns}\n/web"}, "not a valid Kubernetes name"),
]


@pytest.mark.parametrize(
    ("case", "override", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_notice_add_exits_2_with_one_line_and_writes_nothing(cli, case, override, message):
    args = {
        "--title": "Planned maintenance",
        "--reason": "DB upgrade",
        "--start": iso(30),
        "--end": iso(90),
        "--target": "{ns}/web",
    } | override
    argv = ["notice", "add"]
    for flag, value in args.items():
        argv += [flag, value.replace("{ns}", cli.namespace)]
    code, out, err = cli(*argv)
    assert code == 2, (case, out, err)
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert notice_count(cli.database_url) == 0


def test_overlapping_window_on_the_same_service_is_refused(cli):
    target = f"{cli.namespace}/web"
    base = ["notice", "add", "--title", "T", "--reason", "R", "--target", target]
    assert cli(*base, "--start", iso(30), "--end", iso(90))[0] == 0
    code, _, err = cli(*base, "--start", iso(60), "--end", iso(120))
    assert code == 2 and "overlapping" in err
    assert notice_count(cli.database_url) == 1


def test_notice_show_json_has_the_documented_fields(cli):
    code, out, _ = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "<b>R</b>",
        "--start",
        iso(30),
        "--end",
        iso(90),
        "--target",
        f"{cli.namespace}/web",
        "--lang",
        "en",
        "-o",
        "json",
    )
    assert code == 0
    notice_id = json.loads(out)["id"]
    code, out, _ = cli("notice", "show", str(notice_id), "-o", "json")
    data = json.loads(out)
    assert code == 0
    assert {"id", "title", "reason", "start", "end", "state", "targets", "events"} <= set(data)
    assert data["state"] == "SCHEDULED"
    assert datetime.fromisoformat(data["start"]).utcoffset() == timedelta(0)
    target = data["targets"][0]
    assert {"namespace", "service", "state", "image", "pod", "original_selector"} <= set(target)
    assert {"at", "target", "step", "outcome", "detail"} <= set(data["events"][0])


def test_times_with_any_offset_are_stored_in_utc(cli):
    start = (
        (datetime.now(UTC) + timedelta(hours=2))
        .astimezone(__import__("zoneinfo").ZoneInfo("Asia/Seoul"))
        .replace(microsecond=0)
    )
    code, out, _ = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "R",
        "--start",
        start.isoformat(),
        "--end",
        (start + timedelta(hours=1)).isoformat(),
        "--target",
        f"{cli.namespace}/web",
        "-o",
        "json",
    )
    assert code == 0
    stored = json.loads(out)
    assert stored["start"] == start.astimezone(UTC).isoformat()


def test_announcement_only_notice_is_listed_and_never_switched(cli):
    _announcement(cli, title="Heads-up")
    code, out, _ = cli("notice", "list", "-o", "json")
    assert code == 0
    assert [n["title"] for n in json.loads(out)] == ["Heads-up"]
    assert json.loads(out)[0]["maintenance"] is False


def test_unknown_notice_exits_1_with_a_hint(cli):
    code, _, err = cli("notice", "show", "999")
    assert code == 1 and "maint notice list" in err


def test_preview_writes_the_rendered_files(cli, tmp_path):
    _, out, _ = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "<script>x</script>",
        "--start",
        iso(30),
        "--end",
        iso(90),
        "--target",
        f"{cli.namespace}/web",
        "-o",
        "json",
    )
    notice_id = json.loads(out)["id"]
    code, out, _ = cli("preview", str(notice_id), "--out", str(tmp_path))
    assert code == 0
    html = (tmp_path / "index.html").read_text()
    assert "&lt;script&gt;" in html and "<script>x" not in html
    assert json.loads((tmp_path / "index.json").read_text())["reason"] == "<script>x</script>"


def test_cancel_before_start_marks_the_notice_cancelled(cli):
    _, out, _ = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "R",
        "--start",
        iso(60),
        "--end",
        iso(90),
        "--target",
        f"{cli.namespace}/web",
        "-o",
        "json",
    )
    notice_id = json.loads(out)["id"]
    code, _, err = cli("notice", "cancel", str(notice_id))
    assert code == 0, err
    # Intent only: recorded, shown, and acted on by the runner (here one pass of it).
    _, out, _ = cli("notice", "show", str(notice_id), "-o", "json")
    shown = json.loads(out)
    assert shown["cancelled_at"] is not None
    assert ("cancel", "requested") in {(e["step"], e["outcome"]) for e in shown["events"]}
    code, _, err = cli("notice", "cancel", str(notice_id))
    assert code == 2 and "already CANCELLED" in err
    code, _, err = cli("run", "--once")
    assert code == 0, err
    _, out, _ = cli("notice", "show", str(notice_id), "-o", "json")
    assert json.loads(out)["state"] == "CANCELLED"


def _window(cli, *, start: float = 30, end: float = 90) -> dict:
    code, out, err = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "R",
        "--start",
        iso(start),
        "--end",
        iso(end),
        "--target",
        f"{cli.namespace}/web",
        "-o",
        "json",
    )
    assert code == 0, err
    return json.loads(out)


def _open_window(cli) -> Notice:
    """A maintenance window on ``web`` that started an hour ago and ends in an hour."""
    store = NoticeStore(cli.database_url)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        return store.add(
            NewNotice(
                title="T",
                reason="R",
                lang="en",
                maintenance=True,
                start=now - timedelta(hours=1),
                end=now + timedelta(hours=1),
                targets=(ServiceRef(namespace=cli.namespace, name="web"),),
            ),
            now=now,
            due_at=now,
        )
    finally:
        store.close()


BAD_EXTENDS = [
    # (case, the new end, message)
    (
        "more than 14 days after the start",
        lambda n: n.start + timedelta(days=14, minutes=1),
        "longer than 14 days",
    ),
    ("in the past", lambda n: datetime.now(UTC) - timedelta(minutes=10), "in the past"),
    ("the end it already has", lambda n: n.end, "the end notice"),
]


@pytest.mark.parametrize(
    ("case", "new_end", "message"), BAD_EXTENDS, ids=[c[0] for c in BAD_EXTENDS]
)
def test_bad_notice_extend_exits_2_with_one_line_and_changes_nothing(cli, case, new_end, message):
    notice = _open_window(cli)
    end = new_end(notice).isoformat()
    code, out, err = cli("notice", "extend", str(notice.id), "--end", end)
    assert code == 2, (case, out, err)
    assert message in err
    assert len(err.strip().splitlines()) == 1
    _, out, _ = cli("notice", "show", str(notice.id), "-o", "json")
    shown = json.loads(out)
    assert datetime.fromisoformat(shown["end"]) == notice.end
    assert [(e["step"], e["outcome"]) for e in shown["events"]] == [("register", "ok")]


def test_notice_show_lists_a_targets_pending_image_cleanup(cli):
    added = _window(cli)
    image = f"registry.example/maint-page@sha256:{'ab' * 32}"
    other = f"registry.example/maint-page@sha256:{'cd' * 32}"
    store = NoticeStore(cli.database_url)
    try:
        for outcome, digest in (("pending", image), ("pending", other), ("ok", other)):
            store.record(
                Event(
                    at=datetime.now(UTC),
                    notice_id=added["id"],
                    target=f"{cli.namespace}/web",
                    step="cleanup",
                    outcome=outcome,
                    detail=f"image {digest}: registry refused; retrying in the background",
                )
            )
    finally:
        store.close()
    code, out, _ = cli("notice", "show", str(added["id"]))
    assert code == 0
    lines = out.splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("  target  "))
    assert lines[target + 1] == f"          cleanup pending: {image}"
    assert other not in "\n".join(lines[: lines.index("  events")])


def test_invalid_utf8_bytes_in_argv_exit_2_with_one_line(cli):
    env = os.environ | {
        "MAINT_DATABASE_URL": cli.database_url,
        "MAINT_KUBECONFIG": os.environ["MAINT_KUBECONFIG"],
    }
    base = [b"notice", b"add", b"--reason", b"R", b"--start", iso(30).encode()]
    base += [b"--end", iso(90).encode(), b"--target", f"{cli.namespace}/web".encode()]
    for argv, named in (
        ([b"--title", b"Planned \xff\xfe"], "--title"),
        ([b"--title=Planned \xc3("], "--title"),
        ([b"--title", b"T", b"--lang", b"\xe9n"], "--lang"),
    ):
        done = subprocess.run(
            [os.fsencode(sys.executable), b"-m", b"maint", *base, *argv],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        err = done.stderr.decode()
        assert done.returncode == 2, (argv, err)
        assert err.strip().splitlines() == [
            f"maint: error: the value of {named} is not valid UTF-8"
        ]
        assert "Traceback" not in err
    assert notice_count(cli.database_url) == 0


def _store_raw(database_url: str, *, title: str, reason: str) -> int:
    """A row as an older maint (no control-character check) may have stored it."""
    store = NoticeStore(database_url)
    try:
        now = datetime.now(UTC)
        notice = store.add(
            NewNotice(
                title=title,
                reason=reason,
                lang="en",
                maintenance=False,
                start=now + timedelta(hours=1),
                end=now + timedelta(hours=2),
                targets=(),
            ),
            now=now,
            due_at=None,
        )
        return notice.id
    finally:
        store.close()


def test_stored_control_characters_are_printed_escaped(cli):
    title = "evil \x1b[2J\x07 \x7f \x9b31m"
    reason = "line one\n\tline two \x1b]0;owned\x07"
    notice_id = _store_raw(cli.database_url, title=title, reason=reason)
    raw = {"\x1b", "\x07", "\x7f", "\x9b"}

    code, out, _ = cli("notice", "list")
    assert code == 0
    assert not raw & set(out)
    assert "evil \\x1b[2J\\x07 \\x7f \\x9b31m" in out

    code, out, _ = cli("notice", "show", str(notice_id))
    assert code == 0
    assert not raw & set(out)
    assert f"notice {notice_id}: evil \\x1b[2J\\x07 \\x7f \\x9b31m" in out
    # A reason keeps its newline and tab (continuation lines indented), nothing else.
    assert "  reason  line one\n          \tline two \\x1b]0;owned\\x07\n" in out

    for argv in (
        ("notice", "list", "-o", "json"),
        ("notice", "show", str(notice_id), "-o", "json"),
    ):
        code, out, _ = cli(*argv)
        assert code == 0
        assert not raw & set(out)
        data = json.loads(out)
        shown = data[0] if isinstance(data, list) else data
        assert (shown["title"], shown["reason"]) == (title, reason)


def test_reason_may_hold_newlines_and_tabs(cli):
    code, out, err = cli(
        "notice",
        "add",
        "--title",
        "T",
        "--reason",
        "line one\n\tline two",
        "--start",
        iso(30),
        "--end",
        iso(90),
        "--no-maintenance",
        "-o",
        "json",
    )
    assert code == 0, err
    assert json.loads(out)["reason"] == "line one\n\tline two"


def _announcement(cli, *, title: str = "T") -> str:
    code, out, err = cli(
        "notice",
        "add",
        "--title",
        title,
        "--reason",
        "R",
        "--start",
        iso(30),
        "--end",
        iso(90),
        "--no-maintenance",
        "-o",
        "json",
    )
    assert code == 0, err
    return str(json.loads(out)["id"])


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_preview_with_a_bad_port_exits_2_and_writes_nothing(cli, tmp_path, port):
    notice_id = _announcement(cli)
    out_dir = tmp_path / "preview"
    code, out, err = cli("preview", notice_id, "--out", str(out_dir), "--serve", port)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "--serve" in err
    assert out == ""
    assert not out_dir.exists()


def test_preview_into_an_existing_file_exits_2_and_writes_nothing(cli, tmp_path):
    notice_id = _announcement(cli)
    root = tmp_path / "out"
    root.mkdir()
    blocker = root / "file"
    blocker.write_text("keep me")
    for out_dir in (blocker, blocker / "sub"):
        code, out, err = cli("preview", notice_id, "--out", str(out_dir))
        assert code == 2, (out, err)
        assert len(err.strip().splitlines()) == 1 and "not a directory" in err
    assert blocker.read_text() == "keep me"
    assert sorted(p.name for p in root.iterdir()) == ["file"]


def test_preview_on_a_busy_port_exits_2_and_writes_nothing(cli, tmp_path):
    import socket

    notice_id = _announcement(cli)
    out_dir = tmp_path / "preview"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = cli("preview", notice_id, "--out", str(out_dir), "--serve", str(port))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and f"--serve {port}" in err
    assert not out_dir.exists()
