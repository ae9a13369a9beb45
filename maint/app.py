"""The one place that builds concrete objects from ``Settings``, and the use cases the CLI calls.

Commands stay thin: parse, call one function here, print.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maint import build, cluster, naming, page, switch
from maint.errors import InvalidInput, NotFound
from maint.notices import (
    DatabaseLimits,
    Event,
    Notice,
    NoticeStore,
    ServiceRef,
    TargetState,
    new_notice,
    parse_time,
)
from maint.notices.validation import MAX_WINDOW, namespace_policy
from maint.page import bypass as page_bypass
from maint.runner.housekeeping import pending_images
from maint.runner.status import Status, status
from maint.runner.transitions import Window, due_at, utcnow
from maint.settings import Settings

# Only for annotations: the runner, its observers and the Kubernetes client are imported where
# they are built (``App.runner``, ``App.api``...), so the commands that only read the database
# (``notice list``, ``notice show``, ``status``) never load them, nor prometheus_client.
if TYPE_CHECKING:
    from maint.cluster import Cluster
    from maint.notices.outbox import Routing
    from maint.runner import KubernetesEvents, OverdueResult, Runner, Steps
    from maint.runner.beacon import SweepBeacon
    from maint.runner.notify import Notifier
    from maint.runner.silences import Silences
    from maint.runner.webhooks import Webhook
    from maint.switch.preflight import Finding

log = logging.getLogger(__name__)
WAIT_PROGRESS_EVERY = 5.0  # seconds between "still waiting" lines of `--wait`


def say_stderr(line: str) -> None:
    print(f"{utcnow().strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _ignore(_event: Event) -> None:
    """The observer when nothing listens."""


@dataclass
class App:
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    say: Callable[[str], None] = say_stderr
    _store: NoticeStore | None = None
    _api: Cluster | None = None
    _events: KubernetesEvents | None = None
    _silences: Silences | None = None
    _notifier: Notifier | None = None
    _beacon: SweepBeacon | None = None

    # --- wiring ---------------------------------------------------------------------------
    @property
    def store(self) -> NoticeStore:
        if self._store is None:
            # + the pass, the claim renewer and the forced-restore sweep; + the sweep's beacon
            # and each webhook's sender (threads of their own, each holding one at a time)
            s = self.settings
            self._store = NoticeStore(
                s.database_url,
                connections=s.workers + 4 + len(self.webhooks),
                limits=DatabaseLimits(
                    pool_timeout=s.database_pool_timeout,
                    statement_timeout=s.database_statement_timeout,
                    reply_timeout=s.database_reply_timeout,
                    keepalives_idle=s.database_keepalives_idle,
                    keepalives_interval=s.database_keepalives_interval,
                    keepalives_count=s.database_keepalives_count,
                    tcp_user_timeout=s.database_tcp_user_timeout,
                ),
                routing=self._routing(),
            )
        return self._store

    def _routing(self) -> Routing | None:
        """Which events queue webhook notifications: None without webhooks."""
        if not self.webhooks:
            return None
        from maint.runner import notify

        return notify.routing(self.webhooks)

    @functools.cached_property
    def webhooks(self) -> list[Webhook]:
        """The configured webhooks, parsed once (the store, the runner and the senders)."""
        urls = self.settings.webhooks()
        if not urls:
            return []  # and the senders' HTTP client stays unloaded
        from maint.runner.webhooks import Webhook

        return [Webhook.parse(url) for url in urls]

    @property
    def api(self) -> Cluster:
        if self._api is None:
            self._api = cluster.connect(kubeconfig=self.settings.kubeconfig)
        return self._api

    def registry(self) -> build.Registry:
        ref = build.parse_repository(self.settings.image_repository)
        if self.settings.registry_kind == "ecr":
            return build.EcrRegistry(
                repository=ref,
                region=self.settings.aws_region,
                endpoint_url=self.settings.ecr_endpoint_url,
            )
        return build.OciRegistry(
            repository=ref,
            base_url=self.settings.registry_url,
            insecure=self.settings.registry_insecure,
        )

    def steps(
        self,
        *,
        renew: Callable[[int], object] = lambda _target_id: None,
        observe: Callable[[Event], None] = _ignore,
    ) -> Steps:
        from maint.runner import Steps

        return Steps(
            api=self.api,
            store=self.store,
            registry=self.registry(),
            settings=self.settings,
            clock=self.clock,
            say=self.say,
            renew=renew,
            observe=observe,
        )

    def runner(self, **hooks: Any) -> Runner:
        """The runner and its steps, sharing one set of claims and the observers of the event
        log (metrics, Kubernetes Events, silences); ``hooks`` are the Runner's
        (``on_step_done``, ``wake_at``, ``sweep_in_pass``): the scheduler passes its own when
        it calls this as its factory. Once per App: the senders, the beacon and the observers
        it starts are the App's to close, and a second set would leak the first's threads."""
        if self._beacon is not None:
            raise RuntimeError("App.runner() builds the one runner of an App: called twice")
        from maint.runner import KubernetesEvents, Runner, make_claims
        from maint.runner.alertmanager import Alertmanager
        from maint.runner.beacon import SweepBeacon
        from maint.runner.metrics import Metrics
        from maint.runner.notify import Notifier
        from maint.runner.silences import Silences

        if self.settings.watch_cache and self.api.cache is None:
            # The runner's reads marked ``cached`` come from shared watches (``caching``). Its
            # watches hold their connections for as long as they run: a client (and connection
            # pool) of their own, so they never take one that a volley's PATCHes need.
            self._api = dataclasses.replace(self.api, cache=cluster.Cache(self.api.clone()))
        claims = make_claims(self.store, self.settings)
        self._beacon = SweepBeacon(self.store, replica=claims.owner)
        metrics = Metrics(on_sweep=self._beacon.completed)
        observers: list[Callable[[Event], None]] = [metrics.observe]
        if self.settings.kubernetes_events:
            self._events = KubernetesEvents(self.api, instance=claims.owner)
            observers.append(self._events)
        if self.settings.alertmanager_url:
            self._silences = Silences(
                Alertmanager(
                    self.settings.alertmanager_url, timeout=self.settings.alertmanager_timeout
                ),
                store=self.store,
                settings=self.settings,
                clock=self.clock,
            )
            observers.append(self._silences)
        if self.webhooks:
            self._notifier = Notifier(
                self.webhooks,
                store=self.store,
                settings=self.settings,
                owner=claims.owner,
                clock=self.clock,
                counted=metrics.notified,
            )
            observers.append(self._notifier)

        def observe(event: Event) -> None:
            """Each observer only counts or queues, and none can fail the step."""
            for each in observers:
                try:
                    each(event)
                except Exception:
                    log.exception("an observer of the event log failed on %s", event.step)

        return Runner(
            api=self.api,
            store=self.store,
            steps=self.steps(renew=claims.renew, observe=observe),
            settings=self.settings,
            clock=self.clock,
            workers=self.settings.workers,
            claims=claims,
            metrics=metrics,
            **hooks,
        )

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
        if self._silences is not None:
            self._silences.close()
        if self._notifier is not None:
            self._notifier.close()
        if self._beacon is not None:
            self._beacon.close()
        if self._store is not None:
            self._store.close()
        if self._api is not None:
            if self._api.cache is not None:
                self._api.cache.close()
                self._api.cache.cluster.close()
            self._api.close()

    # --- use cases ------------------------------------------------------------------------
    def add_notice(
        self,
        *,
        title: str,
        reason: str,
        start: str,
        end: str,
        targets: Sequence[str],
        lang: str,
        maintenance: bool,
        allow: Sequence[str] = (),
        timezone: str | None = None,
        pause_reconcilers: bool = False,
        bypass: bool = False,
    ) -> Notice:
        """Register a notice; a target the preflight blocks is refused unless ``allow`` names
        each blocking check (a reconciler maint pauses itself does not block)."""
        check_names(allow)
        if bypass and not self.settings.bypass_key.get_secret_value():
            raise InvalidInput(
                "--bypass needs MAINT_BYPASS_KEY (at least 32 characters, from a Secret of "
                "maint's namespace: README, Bypass)"
            )
        now = self.clock()
        new = new_notice(
            title=title,
            reason=reason,
            start=start,
            end=end,
            targets=targets,
            lang=lang,
            maintenance=maintenance,
            now=now,
            start_tolerance=timedelta(seconds=self.settings.start_tolerance),
            namespaces=namespace_policy(self.settings),
            timezone=timezone,
            pause_reconcilers=pause_reconcilers,
            bypass_salt=secrets.token_hex(16) if bypass else None,
        )
        if maintenance:
            for ref in new.targets:
                try:
                    service = cluster.get_service(self.api, namespace=ref.namespace, name=ref.name)
                except NotFound:
                    raise InvalidInput(f"Service {ref} does not exist") from None
                switch.switchable(service)
                found = self.preflight(ref, pause_reconcilers=pause_reconcilers)
                refused = switch.preflight.blocking(found, allowed=allow)
                if refused:
                    first = refused[0]
                    raise InvalidInput(
                        f"Service {ref}: preflight check {first.check!r} blocks: {first.message}; "
                        f"to do: {first.remedy}"
                    )
        window = Window(
            start=new.start, end=new.end, lead=self.settings.lead(), grace=self.settings.grace()
        )
        return self.store.add(new, now=now, due_at=due_at(TargetState.SCHEDULED, window=window))

    def plan(self, targets: Sequence[str], *, pause_reconcilers: bool = False) -> list[Finding]:
        """The preflight of ``maint plan``: every finding for every target, in order."""
        if not targets:
            raise InvalidInput("give at least one --target NAMESPACE/SERVICE")
        refs = [ServiceRef.parse(t) for t in targets]
        pause = pause_reconcilers
        return [f for ref in refs for f in self.preflight(ref, pause_reconcilers=pause)]

    def preflight(self, ref: ServiceRef, *, pause_reconcilers: bool = False) -> list[Finding]:
        try:
            around = cluster.surroundings(self.api, namespace=ref.namespace, name=ref.name)
        except NotFound:
            raise InvalidInput(f"Service {ref} does not exist") from None
        return switch.preflight.findings(around, pause_reconcilers=pause_reconcilers)

    def end_notice(self, notice_id: int, *, cancel: bool) -> Notice:
        """Record "end now" or "cancel": only the database is written, the runner acts.

        A cancel is a flag that ``decide`` reads in every state (before the switch: roll back;
        after it: restore now). "End now" is the database's now (``set_window``), so nothing
        here depends on this shell's clock or settings.
        """
        notice = self.store.get(notice_id)
        if notice.cancelled_at is not None:
            raise InvalidInput(f"notice {notice_id} is already CANCELLED (or being cancelled)")
        if notice.targets and all(t.state.terminal for t in notice.targets):
            raise InvalidInput(f"notice {notice_id} is already {notice.state(self.clock())}")
        if cancel:
            return self.store.set_window(notice_id, cancelled=True, intent="cancel")
        return self.store.set_window(notice_id, end_now=True, intent="end")

    def extend_notice(self, notice_id: int, *, end: str) -> Notice:
        """Record a new end, validated like ``notice add``; the runner moves the page."""
        notice = self.store.get(notice_id)
        now = self.clock()
        new_end = parse_time(end, what="--end")
        if new_end <= notice.start:
            raise InvalidInput(f"--end {end} must be after the start {notice.start.isoformat()}")
        if new_end <= now:
            raise InvalidInput(f"--end {end} is in the past; use `maint notice end` to end now")
        if new_end - notice.start > MAX_WINDOW:
            raise InvalidInput(
                f"--end {end} makes the window longer than {MAX_WINDOW.days} days; "
                "register a new notice for the rest"
            )
        if new_end == notice.end:
            raise InvalidInput(f"--end {end} is the end notice {notice_id} already has")
        if notice.targets and all(t.state.terminal for t in notice.targets):
            raise InvalidInput(f"notice {notice_id} is already {notice.state(now)}")
        if notice.cancelled_at is not None or any(
            t.state is TargetState.RESTORING for t in notice.targets
        ):
            raise InvalidInput(f"notice {notice_id} is already ending; register a new notice")
        return self.store.set_window(notice_id, end=new_end, intent="extend", check_overlap=True)

    def wait_settled(
        self, notice_id: int, *, timeout: float, say: Callable[[str], None]
    ) -> Notice | None:
        """Until every target of the notice is terminal (cancel, end), or None after
        ``timeout`` seconds. Reads only the database: ``maint run`` does the work."""
        return self._wait(notice_id, timeout=timeout, say=say, goal="finish", pending=_unsettled)

    def wait_extended(
        self, notice_id: int, *, timeout: float, say: Callable[[str], None]
    ) -> Notice | None:
        """Until the runner has acted on the notice's last extend, or None after ``timeout``.

        Done for a target once a page finished after the extend was recorded (``refresh ok``
        for a page that was READY or ACTIVE, ``prepare ok`` for one being prepared), once it
        is SCHEDULED (its preparation will build the new end's page) or once it is terminal.
        ``maint.io/restore-by`` moves before the rebuild, so it has moved by then too. A build
        that started before the extend and finishes after it is rebuilt at the runner's next
        look, which this wait does not follow.
        """
        return self._wait(
            notice_id, timeout=timeout, say=say, goal="serve the new end", pending=_not_extended
        )

    def _wait(
        self,
        notice_id: int,
        *,
        timeout: float,
        say: Callable[[str], None],
        goal: str,
        pending: Callable[[Notice, list[Event]], list[str]],
    ) -> Notice | None:
        """Poll the database until ``pending`` names no target; tell what is awaited when it
        changes and every ``WAIT_PROGRESS_EVERY`` seconds."""
        deadline = time.monotonic() + timeout
        told, last = 0.0, ""
        while True:
            notice = self.store.get(notice_id)
            waiting = pending(notice, self.store.events(notice_id))
            if not waiting:
                return notice
            if time.monotonic() >= deadline:
                return None
            line = f"waiting for `maint run` to {goal} notice {notice_id}: {', '.join(waiting)}"
            if line != last or time.monotonic() - told >= WAIT_PROGRESS_EVERY:
                told, last = time.monotonic(), line
                say(line)
            time.sleep(0.2)

    def render_preview(
        self, notice: Notice, *, ports: Sequence[int] = (8080,)
    ) -> page.BuildContext:
        return page.render(
            page.PageNotice(
                notice_id=notice.id,
                title=notice.title,
                reason=notice.reason,
                lang=notice.lang,
                start=notice.start,
                end=notice.end,
                display_zone=notice.display_zone,
            ),
            ports=ports,
            zone=self.settings.zone(),
            base_image=self.settings.base_image,
        )

    def write_preview(self, context: page.BuildContext, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, content in sorted(context.files.items()):
            (out / name).write_bytes(content)
            written.append(out / name)
        return written

    def preview_configmap(self, notice: Notice, context: page.BuildContext) -> str:
        name = f"maint-preview-{notice.id}"
        manifest = build.manifests.build_configmap(
            name=name,
            namespace=self.settings.build_namespace,
            labels={naming.MANAGED_BY: naming.MANAGER, naming.NOTICE_LABEL: str(notice.id)},
            files=dict(context.files),
            tarball=page.context_tarball(context),
        )
        manifest.pop("immutable")
        cluster.delete(
            self.api, kind="ConfigMap", namespace=self.settings.build_namespace, name=name
        )
        cluster.create(self.api, manifest)
        return f"{self.settings.build_namespace}/{name}"

    def bypass_link(self, notice: Notice) -> str:
        """The path of a notice's bypass link (``page.bypass``); InvalidInput if it has none."""
        key = self.settings.bypass_key.get_secret_value()
        if notice.bypass_salt is None:
            raise InvalidInput(f"notice {notice.id} has no bypass (`notice add --bypass`)")
        if not key:
            raise InvalidInput("MAINT_BYPASS_KEY is not set here: the link cannot be derived")
        return page_bypass.derive(key, notice_id=notice.id, salt=notice.bypass_salt).link

    def restore_overdue(self) -> list[OverdueResult]:
        from maint.runner import restore_overdue

        return restore_overdue(self.api, now=self.clock())

    def status(self) -> Status:
        """``maint status``: live windows, last errors, FAILED targets, a stopped sweep."""
        return status(self.store, now=self.clock(), poll_interval=self.settings.poll_interval)


def check_names(names: Sequence[str]) -> None:
    checks = switch.preflight.CHECKS
    unknown = sorted(set(names) - set(checks))
    if unknown:
        raise InvalidInput(f"--allow {unknown[0]}: no such check (checks: {', '.join(checks)})")


def notice_json(
    notice: Notice, *, now: datetime, events: list[Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": notice.id,
        "title": notice.title,
        "reason": notice.reason,
        "lang": notice.lang,
        "maintenance": notice.maintenance,
        "start": notice.start.isoformat(),
        "end": notice.end.isoformat(),
        "display_zone": notice.display_zone,
        "pause_reconcilers": notice.pause_reconcilers,
        "bypass": notice.bypass_salt is not None,
        "state": notice.state(now),
        "cancelled_at": notice.cancelled_at.isoformat() if notice.cancelled_at else None,
        "targets": [
            {
                "namespace": t.ref.namespace,
                "service": t.ref.name,
                "state": t.state.value,
                "image": t.image,
                "pod": t.pod,
                "original_selector": t.original_selector,
                "paused": t.paused,
                "actual_start": t.actual_start.isoformat() if t.actual_start else None,
                "actual_end": t.actual_end.isoformat() if t.actual_end else None,
                "forced": t.forced,
            }
            | (
                {"pending_cleanup": pending_images(events, target=str(t.ref))}
                if events is not None
                else {}
            )
            for t in notice.targets
        ],
    }
    if events is not None:
        data["events"] = [
            {
                "at": e.at.isoformat(),
                "target": e.target,
                "step": e.step,
                "outcome": e.outcome,
                "detail": e.detail,
            }
            for e in events
        ]
    return data


def _unsettled(notice: Notice, _events: list[Event]) -> list[str]:
    return [f"{t.ref} {t.state.value}" for t in notice.targets if not t.state.terminal]


def _not_extended(notice: Notice, events: list[Event]) -> list[str]:
    """Targets whose page has not been rebuilt since the notice's last extend (see
    ``App.wait_extended``)."""
    asked = max(
        (i for i, e in enumerate(events) if (e.step, e.outcome) == ("extend", "requested")),
        default=-1,
    )
    rebuilt = {e.target for e in events[asked + 1 :] if (e.step, e.outcome) in _PAGE_DONE}
    return [
        f"{t.ref} {t.state.value}"
        for t in notice.targets
        if t.state is not TargetState.SCHEDULED
        and not t.state.terminal
        and str(t.ref) not in rebuilt
    ]


_PAGE_DONE = {("refresh", "ok"), ("prepare", "ok")}


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
