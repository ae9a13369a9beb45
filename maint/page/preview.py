"""``maint preview --serve``: the page served by Python exactly as nginx will serve it.

An operator checks a notice's page before the window without Docker or a cluster. The answers
come from the same ``rules`` that render the nginx config (status, headers, ``Accept`` rule,
health path), and tests run one table of requests against both servers.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from maint.errors import InvalidInput
from maint.page import rules
from maint.page.model import BuildContext
from maint.page.rules import Answer
from maint.page.script import SCRIPT_FILE, SCRIPT_TYPE

logger = logging.getLogger(__name__)

_MAX_DISCARDED_BODY = 1 << 20  # read and drop up to 1 MiB so keep-alive stays usable


class PageResponder:
    """Answers for one build context: a pure function of method, target and ``Accept``."""

    def __init__(self, context: BuildContext) -> None:
        try:
            self._html = context.files[rules.HTML_FILE]
            self._json = context.files[rules.JSON_FILE]
            self._script = context.files[SCRIPT_FILE]
            retry_after = str(json.loads(self._json)["retry_after"])
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput(
                "the build context lacks the page or its JSON twin; render it with maint.page"
            ) from e
        self._page_headers = rules.page_headers(retry_after=retry_after)

    def answer(self, *, method: str, target: str, accept: str | None) -> Answer:
        if rules.is_health_path(target):
            status, content_type, body = 200, rules.HEALTH_TYPE, rules.HEALTH_BODY.encode()
            extra = rules.health_headers()
        elif rules.is_script_path(target) and method in ("GET", "HEAD"):
            status, content_type, body = 200, SCRIPT_TYPE, self._script
            extra = rules.script_headers()
        elif rules.chosen_file(accept) == rules.JSON_FILE:
            status, content_type, body = rules.MAINTENANCE_STATUS, rules.JSON_TYPE, self._json
            extra = self._page_headers
        else:
            status, content_type, body = rules.MAINTENANCE_STATUS, rules.HTML_TYPE, self._html
            extra = self._page_headers
        # Like nginx, HEAD gets the Content-Length of the body it would have had.
        headers = (("Content-Type", content_type), ("Content-Length", str(len(body))), *extra)
        return Answer(status=status, headers=headers, body=b"" if method == "HEAD" else body)


class _PageHandler(BaseHTTPRequestHandler):
    server_version = "maint-preview"
    protocol_version = "HTTP/1.1"

    def __init__(self, *args: Any, responder: PageResponder, **kwargs: Any) -> None:
        self._responder = responder  # set first: the base class handles the request in __init__
        super().__init__(*args, **kwargs)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>; every method gets the page, none gets 501 or 405.
        if name.startswith("do_"):
            return self._respond
        raise AttributeError(name)

    def _respond(self) -> None:
        self._discard_body()
        answer = self._responder.answer(
            method=self.command, target=self.path, accept=self.headers.get("Accept")
        )
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or (length and not length.isdigit()):
            self.close_connection = True
            return
        size = int(length or 0)
        if size > _MAX_DISCARDED_BODY:
            self.close_connection = True
            return
        if size:
            self.rfile.read(size)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def make_server(
    context: BuildContext, *, port: int, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """A bound, not yet serving, preview server (``port=0`` picks a free port)."""
    handler = functools.partial(_PageHandler, responder=PageResponder(context))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(context: BuildContext, *, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``context`` until interrupted (Ctrl-C raises KeyboardInterrupt to the caller)."""
    with make_server(context, port=port, host=host) as server:
        logger.info("serving the maintenance page on http://%s:%d/", host, server.server_port)
        server.serve_forever()
