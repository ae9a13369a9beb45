"""``maint``: commands only — parse, call ``app``, print. Exit 0 ok, 2 bad input, 1 otherwise."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from maint import lazy

# The command's libraries, loaded once per process without the collector's passes over them.
with lazy.loading():
    from pydantic import ValidationError

    from maint import __version__, page
    from maint.app import App, dumps, notice_json
    from maint.cluster import Write, installed
    from maint.errors import InvalidInput, MaintError
    from maint.notices import POOL_LOGGER, Notice
    from maint.notices.validation import namespace_policy
    from maint.runner.housekeeping import pending_images
    from maint.runner.status import Status
    from maint.settings import Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 too, but prints the whole usage; one clear line is easier to read.
        self.exit(2, f"maint: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="maint", description=__doc__)
    p.add_argument("--version", action="version", version=f"maint {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="create or migrate the schema")
    db.add_parser("ping", help="exit 0 when the database answers (the readiness probe)")

    notice = sub.add_parser("notice", help="maintenance notices").add_subparsers(
        dest="notice", required=True, parser_class=_Parser
    )
    add = notice.add_parser("add", help="register a notice")
    add.add_argument("--title", required=True)
    add.add_argument("--reason", required=True)
    add.add_argument("--start", required=True, help="ISO 8601 with offset")
    add.add_argument("--end", required=True, help="ISO 8601 with offset")
    add.add_argument("--target", action="append", default=[], metavar="NAMESPACE/SERVICE")
    add.add_argument("--lang", default="ko", choices=page.SUPPORTED_LANGS)
    add.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA zone the page shows times in (default: the offset of --start, "
        "or MAINT_DISPLAY_TIMEZONE if that is Z/+00:00)",
    )
    add.add_argument("--no-maintenance", action="store_true", help="announcement only")
    add.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CHECK",
        help="accept a target the preflight blocks on CHECK (see `maint plan`)",
    )
    add.add_argument(
        "--pause-reconcilers",
        action="store_true",
        help="pause Flux on each target for the window (kustomize.toolkit.fluxcd.io/reconcile: "
        "disabled, set at the switch, removed at the end)",
    )
    add.add_argument(
        "--bypass",
        action="store_true",
        help="a secret link that lets engineers through to the app during the window "
        "(printed once here; `maint notice bypass ID` prints it again)",
    )
    _output(add)
    _output(notice.add_parser("list", help="list notices"))
    show = notice.add_parser("show", help="a notice, its targets and event log")
    show.add_argument("id", type=int)
    _output(show)
    bypass = notice.add_parser("bypass", help="print a notice's bypass link (keep it secret)")
    bypass.add_argument("id", type=int)
    for verb, text in (("cancel", "cancel (restores at once if active)"), ("end", "end now")):
        _intent(notice.add_parser(verb, help=f"{text}: recorded; `maint run` acts on it"))
    extend = notice.add_parser("extend", help="move the end: recorded; `maint run` acts on it")
    _intent(extend)
    extend.add_argument("--end", required=True)

    preview = sub.add_parser("preview", help="render a notice's page")
    preview.add_argument("id", type=int)
    preview.add_argument("--out", type=Path, default=Path("preview"))
    preview.add_argument("--serve", type=_port, metavar="PORT")
    preview.add_argument("--configmap", action="store_true")

    plan = sub.add_parser("plan", help="preflight: what would get in the way of a switch")
    plan.add_argument("--target", action="append", default=[], metavar="NAMESPACE/SERVICE")
    plan.add_argument(
        "--pause-reconcilers", action="store_true", help="as `notice add --pause-reconcilers`"
    )
    _output(plan)
    run = sub.add_parser("run", help="the scheduler")
    run.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    _output(
        sub.add_parser(
            "status",
            help="live windows and their last errors; exit 1 when a target FAILED or the "
            "forced-restore sweep stopped (a check command)",
        )
    )
    restore = sub.add_parser("restore", help="forced restore from Service annotations, no DB")
    restore.add_argument("--overdue", action="store_true", required=True)
    return p


def _intent(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int)
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until `maint run` has acted (cancel, end: every target finished; extend: "
        "the page rebuilt for the new end)",
    )
    p.add_argument(
        "--timeout", type=_seconds, default=120.0, help="seconds --wait waits (default 120)"
    )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{value!r}: give 0 < seconds <= 86400")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: give a port 1..65535")
    return port


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``maint`` command. Without ``argv`` it is this process's command line (the console
    script, ``python -m maint``), and the process exits after it."""
    if argv is not None:
        return _main(list(argv))
    try:
        return _main(sys.argv[1:])
    finally:
        # The process exits next. Its last garbage collection would walk every object of every
        # library loaded (a tenth of a second with SQLAlchemy, pydantic and psycopg: a sixth of
        # `maint status`) only to free memory the kernel takes back anyway.
        gc.freeze()


def _main(argv: list[str]) -> int:
    undecodable = _undecodable(argv)
    if undecodable is not None:
        print(f"maint: error: {undecodable} is not valid UTF-8", file=sys.stderr)
        return 2
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: keep argparse's exit code
        return e.code if isinstance(e.code, int) else 2
    configure_logging(verbose=args.verbose)
    try:
        settings = Settings()
    except ValidationError as e:
        first = e.errors()[0]
        print(
            f"maint: bad setting MAINT_{str(first['loc'][0]).upper()}: {first['msg']}",
            file=sys.stderr,
        )
        return 2
    app = App(settings=settings)
    try:
        # Every create, delete and Service patch any command makes passes the namespace policy.
        policy = namespace_policy(settings)

        def check(write: Write) -> None:
            policy.check_write(
                verb=write.verb, kind=write.kind, namespace=write.namespace, what=str(write)
            )

        with installed(check):
            return _dispatch(app, args)
    except InvalidInput as e:
        print(f"maint: {e}", file=sys.stderr)
        return 2
    except MaintError as e:
        print(f"maint: {e}", file=sys.stderr)
        return 1
    finally:
        app.close()


# Loggers that stay at WARNING even with -v: botocore's DEBUG output has whole signed
# requests, the IRSA session token (X-Amz-Security-Token) among them. SQLAlchemy names a pool's
# logger after its class, so the store's pool logs under maint's name and would print "Pool
# disposed" at INFO as every command exits.
QUIET_LOGGERS = ("kubernetes", "botocore", "boto3", "urllib3", "s3transfer", POOL_LOGGER)


def configure_logging(*, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _undecodable(argv: Sequence[str]) -> str | None:
    """Which argument holds bytes that are not UTF-8 (Python decodes them to lone surrogates)."""
    for index, arg in enumerate(argv):
        if _is_utf8(arg):
            continue
        option, sep, _ = arg.partition("=")
        if arg.startswith("--") and sep and _is_utf8(option):
            return f"the value of {option}"
        previous = argv[index - 1] if index else ""
        if previous.startswith("-") and _is_utf8(previous):
            return f"the value of {previous}"
        return f"argument {index + 1}"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str, *, keep: str = "") -> str:
    """``text`` with every control character (and undecodable byte) but ``keep`` escaped.

    Stored titles and reasons may predate input validation: printed raw, ESC, BEL or a C1
    character would reach the operator's terminal as an escape sequence.
    """
    out = []
    for char in text:
        if char in keep:
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cs"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _print_json(data: object) -> None:
    """JSON escapes C0 characters in strings but, without ``ensure_ascii``, prints DEL, C1
    and lone surrogates raw: escape those too (still valid JSON, same value when parsed).
    They can only occur inside strings; the layout's newlines are left alone."""
    print("".join(f"\\u{ord(c):04x}" if _json_unsafe(c) else c for c in dumps(data)))


def _json_unsafe(char: str) -> bool:
    return "\x7f" <= char <= "\x9f" or "\ud800" <= char <= "\udfff"


def _dispatch(app: App, args: argparse.Namespace) -> int:
    command = args.command
    if command == "db" and args.db == "ping":
        app.store.change_marker()  # one index probe of the notices table: schema there too
        print(f"database answers ({_safe_url(app.settings.database_url)})")
        return 0
    if command == "db":
        app.store.upgrade()
        print(f"database schema is up to date ({_safe_url(app.settings.database_url)})")
        return 0
    if command == "notice":
        return _notice(app, args)
    if command == "preview":
        # Every check first (the notice, --out, the port is free), then the writes.
        out = _preview_dir(args.out)
        notice = app.store.get(args.id)
        context = app.render_preview(notice)
        server = None
        if args.serve is not None:
            try:
                server = page.make_server(context, port=args.serve)
            except OSError as e:
                raise InvalidInput(f"--serve {args.serve}: {e.strerror or e}") from e
        try:
            try:
                written = app.write_preview(context, out)
            except OSError as e:
                raise MaintError(f"cannot write the preview to {str(out)!r}: {e}") from e
            for path in written:
                print(path)
            if args.configmap:
                print(f"stored in ConfigMap {app.preview_configmap(notice, context)}")
            if server is not None:
                print(f"serving the page on http://127.0.0.1:{args.serve}/ (Ctrl-C stops)")
                with contextlib.suppress(KeyboardInterrupt):
                    server.serve_forever()
        finally:
            if server is not None:
                server.server_close()
        return 0
    if command == "plan":
        from maint.switch import preflight

        found = app.plan(args.target, pause_reconcilers=args.pause_reconcilers)
        if args.output == "json":
            print(preflight.dumps(found))
        else:
            print(_printable(preflight.table(found), keep="\n") if found else "nothing found")
        return 2 if preflight.blocking(found) else 0
    if command == "run":
        return _run(app, once=args.once)
    if command == "status":
        report = app.status()
        if args.output == "json":
            _print_json(report.json())
        else:
            _print_status(report)
        return 0 if report.ok else 1
    if command == "restore":
        results = app.restore_overdue()
        for r in results:
            print(f"{r.service}: {r.outcome} ({r.detail})")
        if not results:
            print("no overdue Service found")
        # A skipped Service was not restored: a CronJob running this must show it as failed.
        unfinished = [r for r in results if r.outcome in ("failed", "skipped")]
        if unfinished:
            print(
                f"maint: {len(unfinished)} Service(s) not restored (failed or skipped, see above)",
                file=sys.stderr,
            )
            return 1
        return 0
    raise AssertionError(command)


def _print_status(found: Status) -> None:
    sweep = found.sweep
    age = sweep["age_seconds"]
    print(
        f"sweep   {'never' if age is None else f'{age:.1f}s ago'} (stale after "
        f"{sweep['stale_after_seconds']:g}s)"
    )
    backlog = found.notifications
    print(f"notify  {backlog['pending']} pending, {backlog['gave_up']} given up")
    for w in found.windows:
        title = _printable(w["title"])
        print(f"{w['id']:>5}  {w['state']:<12} {w['start']} .. {w['end']}  {title}")
        for t in w["targets"]:
            last = t["last_error"]
            error = ""
            if last:
                error = f"  last error: {last['step']} {last['outcome']}: {last['detail']}"
            print(f"       {t['target']:<30} {t['state']:<12}{_printable(error)}")
    for problem in found.problems:
        print(f"maint: {_printable(problem)}", file=sys.stderr)


def _preview_dir(out: Path) -> Path:
    """``--out``: a directory, or a path whose nearest existing ancestor is one."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "--out" if path == out else f"--out {str(out)!r}: {str(path)!r}"
                raise InvalidInput(f"{what} exists and is not a directory")
            return out
    return out


def _notice(app: App, args: argparse.Namespace) -> int:
    verb = args.notice
    now = app.clock()
    if verb == "add":
        notice = app.add_notice(
            title=args.title,
            reason=args.reason,
            start=args.start,
            end=args.end,
            targets=args.target,
            lang=args.lang,
            maintenance=not args.no_maintenance,
            allow=args.allow,
            pause_reconcilers=args.pause_reconcilers,
            timezone=args.timezone,
            bypass=args.bypass,
        )
        link = app.bypass_link(notice) if args.bypass else None
        if args.output == "json":
            print(dumps(notice_json(notice, now=now) | ({"bypass_link": link} if link else {})))
        else:
            print(
                f"notice {notice.id} registered: {notice.start.isoformat()} .. "
                f"{notice.end.isoformat()} ({notice.state(now)})"
            )
            if link:
                print(_bypass_text(notice, link))
        return 0
    if verb == "bypass":
        notice = app.store.get(args.id)
        print(_bypass_text(notice, app.bypass_link(notice)))
        return 0
    if verb == "list":
        _print_notices(app, app.store.recent(), args.output)
        return 0
    if verb == "show":
        notice = app.store.get(args.id)
        events = app.store.events(notice.id)
        if args.output == "json":
            _print_json(notice_json(notice, now=now, events=events))
            return 0
        print(f"notice {notice.id}: {_printable(notice.title)} [{notice.state(now)}]")
        print(
            f"  window  {notice.start.isoformat()} .. {notice.end.isoformat()}  lang={notice.lang}"
        )
        print(f"  zone    {_printable(notice.display_zone or '-')} (page times)")
        if notice.pause_reconcilers:
            print("  pause   reconcilers (Flux) paused on each target for the window")
        if notice.bypass_salt:
            print(f"  bypass  yes (the link: `maint notice bypass {notice.id}`)")
        reason = _printable(notice.reason, keep="\n\t").replace("\n", "\n          ")
        print(f"  reason  {reason}")
        for t in notice.targets:
            print(f"  target  {t.ref}  {t.state.value}  pod={t.pod or '-'}  image={t.image or '-'}")
            pending = pending_images(events, target=str(t.ref))
            if pending:
                print(f"          cleanup pending: {_printable(', '.join(pending))}")
        print("  events")
        for e in events:
            print(
                f"    {e.at.isoformat(timespec='seconds')}  {e.target or '-':<24} "
                f"{e.step:<13} {e.outcome:<9} {_printable(e.detail)}"
            )
        return 0
    if verb in ("cancel", "end"):
        notice = app.end_notice(args.id, cancel=verb == "cancel")
        print(f"notice {notice.id}: {verb} recorded; `maint run` restores and cleans up")
        if not args.wait:
            return 0
        return _waited(app.wait_settled, notice.id, timeout=args.timeout, goal="finished")
    if verb == "extend":
        notice = app.extend_notice(args.id, end=args.end)
        print(f"notice {notice.id}: extend recorded; it now ends {notice.end.isoformat()}")
        if not args.wait:
            return 0
        return _waited(app.wait_extended, notice.id, timeout=args.timeout, goal="rebuilt")
    raise AssertionError(verb)


def _bypass_text(notice: Notice, link: str) -> str:
    return (
        f"bypass link (share only with the engineers; valid until {notice.end.isoformat()}): "
        f"open {link} on the Service's own address during the window"
    )


def _waited(
    wait: Callable[..., Notice | None], notice_id: int, *, timeout: float, goal: str
) -> int:
    """``--wait``: what is awaited on stdout as it changes, the end state of every target;
    one line on stderr and exit 1 if ``maint run`` has not got there within ``timeout``."""
    done = wait(notice_id, timeout=timeout, say=_say_now)
    if done is None:
        print(
            f"maint: notice {notice_id} not {goal} after {timeout:g}s; "
            "is `maint run` running against this database?",
            file=sys.stderr,
        )
        return 1
    for t in done.targets:
        print(f"notice {notice_id} {t.ref}: {t.state.value}")
    return 0


def _say_now(line: str) -> None:
    print(line, flush=True)


def _run(app: App, *, once: bool) -> int:
    from maint.runner import Scheduler

    if once:
        runner = app.runner()
        result = runner.pass_once()
        runner.wait_idle()
        runner.shutdown()
        for label in result.overdue:
            print(f"forced restore: {label}")
        if not result.database_ok:
            print("maint: database unavailable; only the forced restore ran", file=sys.stderr)
            return 1
        return 0
    Scheduler(
        app.runner, poll_interval=app.settings.poll_interval, health_port=app.settings.health_port
    ).run()
    return 0


def _print_notices(app: App, notices: list[Notice], output: str) -> None:
    now = app.clock()
    if output == "json":
        _print_json([notice_json(n, now=now) for n in notices])
        return
    print(f"{'ID':>5}  {'STATE':<12} {'START':<25} {'END':<25} {'TARGETS':<30} TITLE")
    for n in notices:
        targets = ",".join(str(t.ref) for t in n.targets) or "-"
        print(
            f"{n.id:>5}  {n.state(now):<12} {n.start.isoformat(timespec='seconds'):<25} "
            f"{n.end.isoformat(timespec='seconds'):<25} {targets:<30} {_printable(n.title)}"
        )


def _safe_url(url: str) -> str:
    """The database URL without its password (never print secrets)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
