"""A client that asks a Service every few milliseconds, each time on a fresh TCP connection.

What a real client sees during a window: ``Probe`` runs in a thread, opens a new connection to
``host:port`` for every request (so kube-proxy picks the endpoints again each time, as it would
for a new visitor), and records the answer's status or the connection error. ``timeline``
reduces the answers to what the closing note shows: planned start, first 503, planned end,
first 200 again, and the lags in milliseconds.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Answer:
    at: datetime
    status: int | None  # None: the connection failed
    error: str = ""


@dataclass
class Probe:
    host: str
    port: int
    path: str = "/"
    interval_s: float = 0.005
    timeout_s: float = 2.0
    answers: list[Answer] = field(default_factory=list)
    first_page: tuple[int, dict[str, str], str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def ask(self) -> Answer:
        """One request on a new connection."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.request("GET", self.path, headers={"Accept": "text/html"})
            response = connection.getresponse()
            body = response.read()
            at = datetime.now(UTC)
            if response.status == 503 and self.first_page is None:
                headers = {k: v for k, v in response.getheaders()}
                self.first_page = (response.status, headers, body.decode(errors="replace"))
            return Answer(at, response.status)
        except (OSError, http.client.HTTPException) as error:
            return Answer(datetime.now(UTC), None, f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(self.ask())
            time.sleep(self.interval_s)

    def statuses(self) -> list[int | None]:
        """The answers with consecutive repeats folded: [200, 503, 200] for a clean window."""
        folded: list[int | None] = []
        for answer in self.answers:
            if not folded or folded[-1] != answer.status:
                folded.append(answer.status)
        return folded

    def errors(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status is None]

    def seen_after(self, status: int, moment: datetime, *, within_s: float) -> bool:
        """Keep probing until an answer ``status`` came at or after ``moment`` (True), for at
        most ``within_s``. maint's COMPLETED does not end what a client sees: kube-proxy and
        the page Pod's drain follow it, so the probe watches until the client has the app."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if any(a.status == status and a.at >= moment for a in list(self.answers)):
                return True
            time.sleep(0.05)
        return False


def wait_for_status(host: str, port: int, status: int, *, within_s: float = 60) -> None:
    """Until 20 answers in a row are ``status`` (kube-proxy programs a new Service lazily)."""
    deadline = time.monotonic() + within_s
    probe, streak = Probe(host, port), 0
    while streak < 20:
        streak = streak + 1 if probe.ask().status == status else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}:{port} did not answer {status} within {within_s}s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Timeline:
    planned_start: datetime
    first_503: datetime | None
    planned_end: datetime
    first_200_after: datetime | None
    probes: int
    errors: int

    @staticmethod
    def _lag(planned: datetime, seen: datetime | None) -> str:
        if seen is None:
            return "never"
        return f"{(seen - planned).total_seconds() * 1000:+.0f} ms"

    def render(self) -> str:
        def stamp(moment: datetime | None) -> str:
            return moment.isoformat(timespec="milliseconds") if moment else "never"

        return "\n".join(
            [
                f"planned start   {stamp(self.planned_start)}",
                f"first 503       {stamp(self.first_503)}  "
                f"({self._lag(self.planned_start, self.first_503)} after planned start)",
                f"planned end     {stamp(self.planned_end)}",
                f"first 200 again {stamp(self.first_200_after)}  "
                f"({self._lag(self.planned_end, self.first_200_after)} after planned end)",
                f"{self.probes} probes on fresh TCP connections, {self.errors} connection errors",
            ]
        )


def timeline(probe: Probe, start: datetime, end: datetime) -> Timeline:
    first_503 = next((a.at for a in probe.answers if a.status == 503), None)
    after = first_503 or start
    first_200 = next((a.at for a in probe.answers if a.status == 200 and a.at > after), None)
    return Timeline(
        planned_start=start,
        first_503=first_503,
        planned_end=end,
        first_200_after=first_200,
        probes=len(probe.answers),
        errors=len(probe.errors()),
    )


@dataclass(frozen=True)
class Visit:
    """An engineer's visit through a bypass link (``maint.page.bypass``)."""

    link_status: int
    cookie: str
    with_cookie: tuple[int, str]
    without_cookie: tuple[int, str]
    forged: tuple[int, str]


def through_bypass(host: str, port: int, link: str) -> Visit:
    """Open ``link`` on the Service's address, then ``/`` with the cookie it set, without it,
    and with a forged ``X-Forwarded-For`` (each on a new connection: kube-proxy picks anew)."""

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return request(host, port, path, headers=headers)

    status, headers, _ = get(link, {})
    cookie = headers.get("set-cookie", "").split(";")[0]
    with_cookie = get("/", {"Cookie": cookie})
    without = get("/", {})
    forged = get("/", {"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "127.0.0.1"})
    return Visit(
        link_status=status,
        cookie=cookie,
        with_cookie=(with_cookie[0], with_cookie[2]),
        without_cookie=(without[0], without[2]),
        forged=(forged[0], forged[2]),
    )


def request(
    host: str, port: int, path: str = "/", *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One GET on a new connection: status, headers (lower-case names), body."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path, headers={"Accept": "text/html", **(headers or {})})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()
