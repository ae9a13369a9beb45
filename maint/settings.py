"""All of maint's settings, read once from the environment (prefix ``MAINT_``).

Every field says its unit and why its default was chosen. Durations are seconds (float), so an
environment variable is a plain number. ``app.py`` is the only place that turns these into
concrete objects; nothing else reads the environment.
"""

from __future__ import annotations

import json
import re
import string
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Kubernetes' own namespaces: never a maint target, whatever MAINT_TARGET_NAMESPACES says.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
BYPASS_KEY_MIN = 32  # characters of MAINT_BYPASS_KEY
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
# One silence matcher: an Alertmanager label name, ``=``, a double-quoted value template.
SILENCE_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]+)"\Z')
SILENCE_FIELDS = ("namespace", "service", "notice")
WEBHOOK_FORMATS = ("slack", "json")  # the prefixes that choose a webhook's body


class Settings(BaseSettings):
    """maint's configuration. Environment variables: ``MAINT_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_prefix="MAINT_",
        extra="ignore",
        frozen=True,
        # The fields' docstrings are for readers (a unit test checks each has one); pydantic's
        # use_attribute_docstrings would parse this source file at every start (about 15 ms).
        # A rejected value may be a URL with a token (webhooks, the database): never echo it.
        hide_input_in_errors=True,
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str = "sqlite:///maint.db"
    """SQLAlchemy URL of the notices database. SQLite file by default so a first try needs
    nothing; production uses PostgreSQL (``postgresql+psycopg://…``) so replicas share state."""

    # Fail fast: with these defaults a query to a black-holed or hung PostgreSQL fails as
    # "database unavailable" within about 15 s (the reply timeout on the pool's ping, then one
    # reconnect bounded by the 10 s connect timeout), well inside a pass and a claim TTL.
    database_pool_timeout: float = Field(default=10.0, gt=0)
    """Seconds a thread waits for a free pooled connection before "database unavailable". The
    pool holds ``workers`` + 4 connections and one per webhook (no overflow), one per thread
    that may need one, so a wait this long means connections are hung, not merely busy."""

    database_statement_timeout: float = Field(default=4.0, gt=0)
    """Seconds the PostgreSQL server lets one statement run (``statement_timeout``). maint's
    queries are index probes of milliseconds; 4 s only stops one stuck on a lock or a bad
    plan, and it keeps an advisory-lock wait in ``notice add`` bounded."""

    database_reply_timeout: float = Field(default=5.0, gt=0)
    """Seconds maint waits for any answer from PostgreSQL (a query, a commit, the pool's
    ping) before closing the connection. Catches a hung server, whose kernel still
    acknowledges so TCP sees nothing wrong; a little above the statement timeout so the
    server's own, cleaner error comes first."""

    database_keepalives_idle: int = Field(default=5, ge=1)
    """Seconds a PostgreSQL connection may be idle before TCP keepalive probes start (libpq
    ``keepalives_idle``). The kernel default, two hours, would leave a dead pooled connection
    undetected; with interval and count below a partition is noticed after about 11 s."""

    database_keepalives_interval: int = Field(default=2, ge=1)
    """Seconds between unanswered keepalive probes (libpq ``keepalives_interval``)."""

    database_keepalives_count: int = Field(default=3, ge=1)
    """Unanswered keepalive probes before the connection is dropped (``keepalives_count``)."""

    database_tcp_user_timeout: float = Field(default=10.0, gt=0)
    """Seconds sent data may stay unacknowledged before the kernel drops the connection (libpq
    ``tcp_user_timeout``, Linux). Without it a query sent into a partition is retransmitted
    for ~15 minutes; 10 s covers a retransmit or two on a healthy network."""

    # --- cluster -------------------------------------------------------------------------
    kubeconfig: str | None = None
    """Path of a kubeconfig. Unset: in-cluster credentials, else ``~/.kube/config``."""

    namespace: str = "maint-system"
    """maint's own namespace (the controller's). Never a target; the Deployment sets it from
    the Pod's own namespace (downward API), so it follows wherever maint is installed."""

    target_namespaces: str = ""
    """Comma-separated namespaces whose Services may be targets (``shop,web-team``). Empty:
    every namespace except the refused ones. ``kube-system``, ``kube-public``,
    ``kube-node-lease``, ``namespace`` and ``build_namespace`` are refused always, listed or
    not. Checked at ``notice add`` and before every cluster write."""

    build_namespace: str = "maint-build"
    """Namespace of the ConfigMaps and Kaniko Jobs. Kaniko runs as root, so this namespace
    enforces Pod Security ``baseline`` while target namespaces may enforce ``restricted``."""

    kaniko_service_account: str = "maint-kaniko"
    """ServiceAccount of the Kaniko Jobs; on EKS it carries the IRSA role that may push."""

    # --- registry ------------------------------------------------------------------------
    registry_kind: Literal["ecr", "oci"] = "oci"
    """``ecr`` (AWS, IRSA, cleanup with boto3) or ``oci`` (any registry with the v2 API, e.g.
    kind's local registry). OCI by default because that is what a first try on kind has."""

    image_repository: str = "kind-registry:5000/maint-page"
    """Repository the page images are pushed to, as Pods and Kaniko see it (no tag)."""

    registry_url: str | None = None
    """Base URL maint itself uses for the OCI registry API (deleting images), when it differs
    from how Pods reach the registry. Unset: derived from ``image_repository``."""

    registry_insecure: bool = False
    """Push and delete over plain HTTP. Only for a local registry (kind); off by default."""

    aws_region: str | None = None
    """AWS region of the ECR repository. Unset: the region boto3 and IRSA find on their own."""

    ecr_endpoint_url: str | None = None
    """ECR API endpoint override (tests against a moto server; VPC endpoints). Unset: AWS."""

    # --- images --------------------------------------------------------------------------
    kaniko_image: str = "ghcr.io/osscontainertools/kaniko:v1.25.2"
    """Kaniko executor image. GoogleContainerTools/kaniko is archived (2025-06); this is a
    maintained fork. Pin it by digest in your overlay (``…@sha256:…``)."""

    base_image: str = "nginxinc/nginx-unprivileged:1.27-alpine"
    """``FROM`` of the page image: non-root nginx on 8080, pid and temp files under /tmp."""

    # --- timing --------------------------------------------------------------------------
    prepare_lead: float = Field(default=600.0, ge=0)
    """Seconds before ``start`` that preparation (build, Pod Ready) begins. 10 minutes covers a
    cold Kaniko build with margin so the switch itself lands on time."""

    poll_interval: float = Field(default=15.0, gt=0)
    """Seconds between reconcile passes. Wake-ups at due times give the precision; this pass is
    the safety net (drift, missed wake-ups, another replica's work), so 15 s is plenty."""

    build_timeout: float = Field(default=600.0, gt=0)
    """Seconds a Kaniko Job may take (also its ``activeDeadlineSeconds``). A page image is one
    COPY layer on a ~40 MB base: minutes at worst."""

    pod_ready_timeout: float = Field(default=120.0, gt=0)
    """Seconds for the maintenance Pod to become Ready: an image pull and an nginx start."""

    endpoints_timeout: float = Field(default=60.0, gt=0)
    """Seconds for the Service's EndpointSlices to follow a selector change."""

    page_drain: int = Field(default=5, ge=0, le=300)
    """Seconds a page Pod keeps answering after it was deleted (a preStop sleep). The
    EndpointSlice drops the page as soon as the selector is restored, but every node's
    kube-proxy, and any ingress or load balancer that follows the EndpointSlices, stops sending
    new connections to it only when it has caught up: deleted at once, the page refused those
    connections and then dropped them (seen on a real node). 5 s covers a kube-proxy sync on a
    busy node with margin and keeps a page Pod that someone deleted mid-window (it drains too,
    and its successor has its name) back within about 6 s. The window's state never waits."""

    bypass_key: SecretStr = SecretStr("")
    """The installation's key for engineers' bypass links (``notice add --bypass``), at least
    32 characters, from a Secret of maint's namespace. Each notice's link token and cookie key
    are derived from it and a random per-notice salt, so the database holds nothing secret
    (``maint.page.bypass``). Empty: ``--bypass`` is refused."""

    restore_grace: float = Field(default=300.0, ge=0)
    """Seconds after ``end`` before a forced restore from the Service annotation alone. Gives a
    normal restore (with its cleanup and retries) five minutes before the safety net acts."""

    step_retry_delay: float = Field(default=5.0, gt=0)
    """Seconds before a failed step (API or registry error) is tried again."""

    claim_ttl: float = Field(default=60.0, gt=0)
    """Seconds a replica's claim on a target lasts without renewal. Another replica takes over
    after this; short enough for a quick takeover, long enough to ride out a slow step."""

    # --- fencing (claims and the per-step deadline) ----------------------------------------
    step_deadline: float = Field(default=1800.0, gt=0)
    """Seconds one step (prepare, switch, restore…) may hold its target's claim. After this the
    claim is no longer renewed, so another replica takes over one TTL later, and ``/healthz``
    answers 503 so the liveness probe restarts the wedged process. 30 minutes is well above the
    longest legitimate step (a prepare: ``build_timeout`` + ``pod_ready_timeout`` + retries)."""

    start_tolerance: float = Field(default=300.0, ge=0)
    """Seconds ``start`` may lie in the past when a notice is added (clock skew, typing time)."""

    workers: int = Field(default=32, ge=1, le=256)
    """Steps that may run at once (threads), and database connections. 50 Services switching
    at one start need no more: a switch is a few short API calls; 32 keeps two replicas well
    under PostgreSQL's default of 100 connections."""

    kubernetes_events: bool = True
    """Tell each milestone of a window (prepared, switched, restored, rolled back, restore
    conflict, drift) as a Kubernetes Event on the target Service (``kubectl describe service``).
    Best effort, sent off the step's path; the database's event log stays the history."""

    watch_cache: bool = True
    """Read what windows read again and again (their Services, page Pods, Jobs and build
    Pods, EndpointSlices, NetworkPolicies, build ConfigMaps) from one list and watch per kind
    and namespace, shared by every window there, instead of a request each time: about half
    the requests of a window. Writes never rely on it alone (every selector PATCH tests what it
    replaces). Off: every read is a request, and maint holds no copy of the target
    namespaces' Pods and Services (memory in very large namespaces)."""

    health_port: int = Field(default=8081, ge=0, le=65535)
    """Port of ``maint run``'s ``/healthz`` (liveness probe); 0 turns it off. 8081 stays clear
    of the 8080 that many sidecars and the page image use."""

    # --- Alertmanager silences -------------------------------------------------------------
    alertmanager_url: str = ""
    """Base URL of an Alertmanager (``http://alertmanager.monitoring:9093``) in which each
    window gets a silence for its target while the page serves. Empty: no silences. Best
    effort, off the step's path: an unreachable Alertmanager is retried, never delays a switch."""

    alertmanager_matchers: list[str] = Field(
        default_factory=lambda: ['namespace="{namespace}"', 'service="{service}"']
    )
    """The silence's matchers, each ``label="value"`` (equality only), the value templated with
    ``{namespace}``, ``{service}`` and ``{notice}`` (the notice id). A JSON list in the
    environment. The default fits alerts labelled the way kube-prometheus labels them."""

    alertmanager_margin: float = Field(default=300.0, ge=0)
    """Seconds the silence starts before the planned start and ends after the planned end:
    alerts raised by the switch itself (a scrape that fails, endpoints that change) and alerts
    still firing while the app warms up after the restore stay quiet."""

    alertmanager_timeout: float = Field(default=5.0, gt=0)
    """Seconds one request to Alertmanager may take. Its API answers in milliseconds; a longer
    wait means it is down, and the retry (capped backoff) takes over."""

    # --- webhook notifications -----------------------------------------------------------
    webhook_urls: SecretStr = SecretStr("")
    """Webhooks told of each milestone of a window (prepare failed, switched, restored, rolled
    back, failed, drift), separated by spaces, commas or newlines (or a JSON list). A URL whose
    host is ``hooks.slack.com``, or any URL written ``slack+https://…``, gets a Slack message
    (``{"text": …}``, also what Mattermost and Rocket.Chat take); every other URL, or one written
    ``json+https://…``, gets maint's JSON body. URLs may carry tokens: maint shows only their
    scheme and host, never the rest. Empty: no notifications."""

    webhook_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds one POST to a webhook may take. Chat webhooks answer in well under a second; a
    longer wait means the receiver is down and the retry (capped backoff) takes over. The lease
    on a notification being sent is twice this plus 10 s, so no other replica sends it meanwhile."""

    webhook_retry_for: float = Field(default=3600.0, gt=0)
    """Seconds a notification is retried (backoff from ``step_retry_delay``, doubling, capped at
    5 minutes) before maint gives up on it and records ``notify gave-up``. An hour covers a
    receiver's deploy or outage; a message older than that is news for nobody."""

    # --- page ----------------------------------------------------------------------------
    display_timezone: str = "UTC"
    """IANA zone in which the page shows times (e.g. ``Asia/Seoul``). Stored times stay UTC."""

    def lead(self) -> timedelta:
        return timedelta(seconds=self.prepare_lead)

    def grace(self) -> timedelta:
        return timedelta(seconds=self.restore_grace)

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.display_timezone)

    def allowed_target_namespaces(self) -> frozenset[str]:
        """The allowlist as a set; empty means every namespace not refused."""
        return frozenset(n.strip() for n in self.target_namespaces.split(",") if n.strip())

    def refused_target_namespaces(self) -> frozenset[str]:
        return SYSTEM_NAMESPACES | {self.namespace, self.build_namespace}

    @field_validator("namespace", "build_namespace")
    @classmethod
    def _namespace_name(cls, value: str) -> str:
        if not _DNS1123_LABEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a namespace name (DNS-1123 label)")
        return value

    @field_validator("target_namespaces")
    @classmethod
    def _allowlist(cls, value: str) -> str:
        for name in (n.strip() for n in value.split(",")):
            if name and not _DNS1123_LABEL.fullmatch(name):
                raise ValueError(f"{name!r} is not a namespace name (DNS-1123 label)")
            if name in SYSTEM_NAMESPACES:
                raise ValueError(f"{name} is refused always; remove it from the list")
        return value

    @field_validator("display_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like Asia/Seoul"
            ) from e
        return value

    @field_validator("bypass_key")
    @classmethod
    def _long_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < BYPASS_KEY_MIN:
            raise ValueError(f"must be at least {BYPASS_KEY_MIN} characters (or empty)")
        return value

    @field_validator("alertmanager_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    def webhooks(self) -> list[str]:
        """The webhook URLs as written (``slack+``/``json+`` prefixes kept)."""
        return split_urls(self.webhook_urls.get_secret_value())

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, value: SecretStr) -> SecretStr:
        for number, url in enumerate(split_urls(value.get_secret_value()), start=1):
            try:
                webhook_target(url)
            except ValueError as e:  # never the URL itself in the message: it may carry a token
                raise ValueError(f"URL number {number} {e}") from None
        return value

    @field_validator("alertmanager_matchers")
    @classmethod
    def _matcher_templates(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('give at least one matcher, e.g. namespace="{namespace}"')
        for matcher in value:
            parsed = SILENCE_MATCHER.fullmatch(matcher)
            if parsed is None:
                raise ValueError(f'{matcher!r} is not label="value" (equality matchers only)')
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(parsed[2]) if f is not None]
            except ValueError as e:
                raise ValueError(f"{matcher!r}: {e}") from None
            for field in fields:
                if field not in SILENCE_FIELDS:
                    raise ValueError(
                        f"{matcher!r}: unknown placeholder {{{field}}} "
                        f"(known: {', '.join('{' + f + '}' for f in SILENCE_FIELDS)})"
                    )
        return value


def webhook_target(configured: str) -> tuple[str | None, str]:
    """A configured webhook as (format prefix or None, the URL to POST to). ``ValueError``,
    whose message never quotes the URL (it may carry a token), unless it is an http(s) URL
    with a host and a valid port, optionally prefixed ``slack+`` or ``json+``."""
    chosen, url = None, configured
    for prefix in WEBHOOK_FORMATS:
        if configured.startswith(f"{prefix}+"):
            chosen, url = prefix, configured[len(prefix) + 1 :]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("does not start with http(s)://, slack+http(s):// or json+http(s)://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return chosen, url


def split_urls(text: str) -> list[str]:
    """URLs separated by spaces, commas or newlines, or a JSON list of strings."""
    text = text.strip()
    if text.startswith("["):
        try:
            found = json.loads(text)
        except ValueError:
            raise ValueError("a JSON list of URLs that does not parse") from None
        if not isinstance(found, list) or not all(isinstance(u, str) for u in found):
            raise ValueError("give a JSON list of strings")
        return [u.strip() for u in found if u.strip()]
    return [u for u in re.split(r"[\s,]+", text) if u]
