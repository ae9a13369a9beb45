"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

The page tests need what only a browser does: lay the page out at a phone's and a desktop's
width, paint it, enforce its Content-Security-Policy and run its reload script with real timers
and ``fetch``. Chromium is started as a plain process with a fresh profile in the test's temp
dir and ``--remote-debugging-port=0`` (it picks a free port and writes it to
``DevToolsActivePort`` in the profile, so parallel test workers never collide). One websocket
to the browser carries every tab as a flattened session; calls are synchronous and events are
kept per tab, in order, for the test to inspect (console, network, CSP reports).

Chromium runs in its own process group, closed with ``Browser.close`` and, failing that,
signalled by that group only. As root it needs ``--no-sandbox`` (its sandbox refuses root).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from tests.support.require import binary

HOW_TO_INSTALL = "apt-get install chromium fonts-nanum (or run tools/setup.sh as root)"
STARTUP_DEADLINE = 30.0  # seconds; chromium starts in about one, more on a busy machine
CALL_DEADLINE = 30.0  # seconds for one protocol call (a full-page screenshot takes the longest)
STOP_DEADLINE = 5.0

Event = dict[str, Any]


class BrowserError(AssertionError):
    """The browser refused a call or did not answer in time; the message has its log's tail."""


@dataclass(frozen=True)
class LogEntry:
    """Something the page said on its console, or the browser said about it.

    ``kind``: ``console`` (``console.*`` calls), ``log`` (the browser's own messages: network,
    security, violations), ``exception`` (uncaught errors) or ``issue`` (DevTools issues, such
    as a blocked CSP directive). ``source`` is the browser's source for ``log`` entries
    (``security`` for CSP reports) and the issue code for ``issue`` entries.
    """

    kind: str
    level: str
    source: str
    text: str

    @property
    def is_csp_violation(self) -> bool:
        return self.source in {"security", "ContentSecurityPolicyIssue"} or (
            "Content Security Policy" in self.text
        )


class _Connection:
    """The browser's websocket: numbered calls, and every event kept per session."""

    def __init__(self, url: str, *, log: Path) -> None:
        # No Origin header: Chromium refuses DevTools connections from unlisted origins.
        self._socket = websocket.create_connection(url, timeout=CALL_DEADLINE, suppress_origin=True)
        self._ids = itertools.count(1)
        self._log = log
        self.events: dict[str | None, list[Event]] = {}

    def call(self, method: str, params: dict[str, Any], *, session: str | None = None) -> Any:
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + CALL_DEADLINE
        while True:
            reply = self._receive(deadline, waiting_for=method)
            if reply.get("id") != call_id:
                continue
            if "error" in reply:
                raise BrowserError(f"{method} failed: {reply['error']}")
            return reply.get("result", {})

    def wait(
        self,
        session: str | None,
        match: Callable[[Event], bool],
        *,
        after: int,
        timeout: float,
        what: str,
    ) -> Event:
        """The first event of ``session`` at index ``after`` or later that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            events = self.events.get(session, [])
            for event in events[seen:]:
                if match(event):
                    return event
            seen = max(seen, len(events))
            self._receive(deadline, waiting_for=what)

    def _receive(self, deadline: float, *, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"no answer for {waiting_for} in time; {self._tail()}")
        self._socket.settimeout(remaining)
        try:
            message: dict[str, Any] = json.loads(self._socket.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError(f"no answer for {waiting_for} in time; {self._tail()}") from None
        except (websocket.WebSocketException, OSError) as e:
            raise BrowserError(f"the browser went away ({e}); {self._tail()}") from e
        if "method" in message:
            self.events.setdefault(message.get("sessionId"), []).append(message)
        return message

    def _tail(self) -> str:
        lines = self._log.read_text(errors="replace").splitlines()[-20:]
        return "chromium's log ends:\n" + "\n".join(lines)

    def close(self) -> None:
        self._socket.close()


class Tab:
    """One browser tab: navigate, emulate a device, evaluate, screenshot; its events kept."""

    def __init__(self, connection: _Connection, *, target: str, session: str) -> None:
        self._connection = connection
        self.target = target
        self.session = session

    def call(self, method: str, **params: Any) -> Any:
        return self._connection.call(method, params, session=self.session)

    @property
    def events(self) -> list[Event]:
        return self._connection.events.setdefault(self.session, [])

    def wait_for(
        self,
        method: str,
        *,
        match: Callable[[Event], bool] = lambda _: True,
        after: int = 0,
        timeout: float = CALL_DEADLINE,
    ) -> Event:
        """The first ``method`` event from index ``after`` on that ``match`` accepts."""
        return self._connection.wait(
            self.session,
            lambda event: event["method"] == method and match(event["params"]),
            after=after,
            timeout=timeout,
            what=method,
        )

    def emulate(self, *, width: int, height: int, scale: float, mobile: bool) -> None:
        """Lay the page out as a device of this CSS size, pixel ratio and kind would."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )
        self.call("Emulation.setTouchEmulationEnabled", enabled=mobile)

    def open(self, url: str, *, timeout: float = CALL_DEADLINE) -> None:
        """Navigate to ``url`` and wait for its load event (a 503 page loads like any other)."""
        mark = len(self.events)
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {result['errorText']}")
        self.wait_for("Page.loadEventFired", after=mark, timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page (beyond the viewport), at the emulated pixel ratio."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )["data"]
        return base64.b64decode(data)

    def fonts_of(self, selector: str) -> list[str]:
        """The families Chromium actually drew the text of ``selector`` with (after fallback)."""
        root = self.call("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        fonts = self.call("CSS.getPlatformFontsForNode", nodeId=node)["fonts"]
        return [font["familyName"] for font in fonts]

    def log(self) -> list[LogEntry]:
        """Console calls, browser messages, uncaught exceptions and issues, in order."""
        entries: list[LogEntry] = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.consoleAPICalled":
                args = params["args"]
                text = " ".join(str(arg.get("value", arg.get("description"))) for arg in args)
                entries.append(LogEntry("console", params["type"], "console-api", text))
            elif event["method"] == "Log.entryAdded":
                entry = params["entry"]
                entries.append(LogEntry("log", entry["level"], entry["source"], entry["text"]))
            elif event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description", details["text"])
                entries.append(LogEntry("exception", "error", "javascript", text))
            elif event["method"] == "Audits.issueAdded":
                issue = params["issue"]
                entries.append(
                    LogEntry("issue", "issue", issue["code"], json.dumps(issue["details"]))
                )
        return entries


class Browser:
    """A running headless Chromium; ``new_tab`` opens a tab that reports everything."""

    def __init__(self, connection: _Connection, *, version: str) -> None:
        self._connection = connection
        self.version = version

    def new_tab(self) -> Tab:
        target = self._connection.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._connection.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        tab = Tab(self._connection, target=target, session=session)
        for domain in ("Page", "Runtime", "Log", "Network", "Audits", "DOM", "CSS"):
            tab.call(f"{domain}.enable")
        return tab

    def close_tab(self, tab: Tab) -> None:
        self._connection.call("Target.closeTarget", {"targetId": tab.target})


@contextlib.contextmanager
def chromium(workdir: Path) -> Iterator[Browser]:
    """Start a headless Chromium with its profile and log in ``workdir``; stop it afterwards."""
    executable = binary("chromium", HOW_TO_INSTALL)
    profile, log = workdir / "chromium-profile", workdir / "chromium.log"
    profile.mkdir(parents=True)
    arguments = [
        executable,
        "--headless",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",  # no update, safe-browsing or sync traffic
        "--disable-component-update",
        "--disable-extensions",
        "--disable-gpu",  # software rendering: the same pixels on every machine
        "--hide-scrollbars",
        "--mute-audio",
        "--password-store=basic",
        "about:blank",
    ]
    if os.geteuid() == 0:
        arguments.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    with log.open("wb") as output:
        process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    connection = None
    try:
        connection = _Connection(_devtools_url(process, profile, log=log), log=log)
        version = connection.call("Browser.getVersion", {})["product"]
        yield Browser(connection, version=version)
    finally:
        _stop(process, connection)
        shutil.rmtree(profile, ignore_errors=True)  # hundreds of files; the log stays


def _devtools_url(process: subprocess.Popen[bytes], profile: Path, *, log: Path) -> str:
    # The port (first line) and the browser's path (second) appear once it listens.
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrowserError(f"chromium exited with {process.returncode}:\n{log.read_text()}")
        lines = active.read_text().split("\n") if active.exists() else []
        if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/"):
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise BrowserError(f"chromium did not open its DevTools port in time:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes], connection: _Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(BrowserError):
            connection.call("Browser.close", {})
        connection.close()
    else:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_DEADLINE)
    # Helpers that outlived the browser: the group was started for it, nothing else is in it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
