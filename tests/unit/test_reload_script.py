"""The page's reload script, run under node (no browser here): its decisions and its loop.

The loop test drives ``watch`` with node's real ``fetch`` against a real local HTTP server
that answers like maint's page (503 with the marker) a few times and then like the app (200).
Only the timer is injected, recording each wait instead of sleeping through minutes of
backoff; ``reload`` records that it was called. A real browser test (CSP, currentScript,
location.reload) needs chromium, which this machine lacks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

import pytest

from tests.support.require import binary
from tests.support.serving import in_thread

SCRIPT = str(files("maint.page").joinpath("templates/reload.js"))


def _node(program: str) -> Any:
    node = binary("node", "apt-get install nodejs")
    done = subprocess.run(
        [node, "-e", f"const r = require({json.dumps(SCRIPT)});\n{program}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_only_an_answer_that_is_not_the_page_and_not_a_gateway_error_reloads() -> None:
    cases = [
        [200, None],
        [302, None],
        [404, None],
        [500, None],
        [503, None],
        [502, None],
        [504, None],
        [503, "maintenance"],
        [200, "maintenance"],
        [200, ""],
    ]
    result = _node(
        f"console.log(JSON.stringify({json.dumps(cases)}.map(c => r.shouldReload(c[0], c[1]))))"
    )
    assert result == [True, True, True, True, False, False, False, False, False, True]


def test_backoff_doubles_from_5s_is_capped_at_2_minutes_and_jittered_within_half() -> None:
    program = """
    const low = [], high = [];
    for (let a = 0; a < 10; a++) {
      low.push(r.backoff(a, () => 0));
      high.push(r.backoff(a, () => 0.999999));
    }
    console.log(JSON.stringify({low, high}));
    """
    result = _node(program)
    ceilings = [min(120000, 5000 * 2**a) for a in range(10)]
    assert result["low"] == [c // 2 for c in ceilings]
    assert result["high"] == ceilings
    assert max(result["high"]) == 120000


def test_before_the_end_it_waits_for_the_end_plus_jitter_in_slices_of_an_hour() -> None:
    program = """
    const end = 10 * 3600000;
    console.log(JSON.stringify([
      r.nextDelay(end - 60000, end, 0, null, () => 0),
      r.nextDelay(end - 60000, end, 0, null, () => 1),
      r.nextDelay(0, end, 0, null, () => 0),
      r.nextDelay(end, end, 3, null, () => 0),
      r.nextDelay(end, end, 0, end + 600000, () => 0),
      r.nextDelay(end, end, 0, end - 1, () => 0),
    ]));
    """
    assert _node(program) == [60000, 65000, 3600000, 20000, 600000, 2500]


class _Comeback(BaseHTTPRequestHandler):
    """Maint's page (503 + marker) for the first ``page_answers`` requests, then the app."""

    page_answers = 3
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if len(self.seen) <= self.page_answers:
            self.send_response(503)
            self.send_header("X-Maint-Page", "maintenance")
            self.send_header("Retry-After", "Thu, 01 Jan 1970 00:00:01 GMT")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def comeback() -> Iterator[str]:
    _Comeback.seen = []
    with in_thread(ThreadingHTTPServer(("127.0.0.1", 0), _Comeback)) as server:
        yield f"http://127.0.0.1:{server.server_port}/shop?x=1"


def test_after_the_end_it_polls_the_page_url_with_backoff_and_reloads_when_the_app_answers(
    comeback: str,
) -> None:
    program = f"""
    const waits = [];
    let now = 1000;
    r.watch({{
      end: 61000, url: {json.dumps(comeback)}, random: () => 0,
      now: () => now,
      fetch: (url, init) => fetch(url, init),
      setTimeout: (fn, ms) => {{ waits.push(ms); now += ms; setImmediate(fn); }},
      reload: () => console.log(JSON.stringify({{waits, now}})),
    }});
    """
    result = _node(program)
    # 60 s to the end (no jitter), the first check at the end; after each of the three maint
    # answers the backoff doubles (5 s, 10 s, 20 s at jitter 0); the fourth answer is the app.
    assert result["waits"] == [60000, 5000, 10000, 20000]
    assert result["now"] == 61000 + 35000
    assert _Comeback.seen == ["/shop?x=1"] * 4


def test_a_network_error_counts_as_not_back_yet() -> None:
    program = """
    const waits = [];
    let now = 0, calls = 0;
    r.watch({
      end: 0, url: "http://127.0.0.1:9/", random: () => 0, now: () => now,
      fetch: () => {
        calls++;
        const app = {status: 200, headers: {get: () => null}};
        return calls < 3 ? Promise.reject(new Error("refused")) : Promise.resolve(app);
      },
      setTimeout: (fn, ms) => { waits.push(ms); now += ms; setImmediate(fn); },
      reload: () => console.log(JSON.stringify({waits, calls})),
    });
    """
    # Started after the end: a first jittered wait (2.5 s at jitter 0), then the backoff.
    assert _node(program) == {"waits": [2500, 5000, 10000], "calls": 3}
