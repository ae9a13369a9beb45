"""The preview server answers exactly as the nginx config does (same table as the nginx tests)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from types import MappingProxyType

import pytest

from maint.errors import InvalidInput
from maint.page import BuildContext, make_server
from maint.page.preview import PageResponder
from tests.support.page_cases import (
    CASES,
    PageCase,
    check,
    fetch,
    running_preview,
    sample_context,
)

CONTEXT = sample_context()


@pytest.fixture(scope="module")
def preview_url() -> Iterator[str]:
    with running_preview(CONTEXT) as url:
        yield url


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_preview_server_answers_like_nginx(preview_url: str, case: PageCase) -> None:
    check(case, fetch(preview_url, case), CONTEXT)


def test_connection_stays_usable_after_a_request_with_a_body(preview_url: str) -> None:
    port = int(preview_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/form", body=b"x" * 10_000)
        first = connection.getresponse()
        assert first.status == 503
        first.read()
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        assert (second.status, second.read()) == (200, b"ok\n")
    finally:
        connection.close()


def test_port_zero_binds_a_free_port() -> None:
    server = make_server(CONTEXT, port=0)
    try:
        assert server.server_port > 0
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_context_without_json_twin_is_refused() -> None:
    files = {name: data for name, data in CONTEXT.files.items() if name != "index.json"}
    broken = BuildContext(files=MappingProxyType(files), ports=CONTEXT.ports)
    with pytest.raises(InvalidInput, match="JSON twin"):
        PageResponder(broken)


def test_responder_gives_head_the_length_of_the_page_without_the_page() -> None:
    answer = PageResponder(CONTEXT).answer(method="HEAD", target="/", accept=None)
    assert answer.status == 503
    assert ("Content-Length", str(len(CONTEXT.files["index.html"]))) in answer.headers
    assert answer.body == b""
