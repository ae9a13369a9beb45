"""``-v`` never turns on the AWS SDK's DEBUG logs (signed requests carry the session token)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from maint.cli import QUIET_LOGGERS, configure_logging


@pytest.fixture
def restore_levels() -> Iterator[None]:
    names = ("", *QUIET_LOGGERS)
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_levels")
@pytest.mark.parametrize("verbose", [True, False])
def test_aws_and_http_loggers_stay_at_warning(verbose: bool) -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # as -v makes it
    configure_logging(verbose=verbose)
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    # The loggers that print signed requests and their headers are children of these.
    for name in ("botocore.endpoint", "botocore.auth", "botocore.hooks", "urllib3.connectionpool"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


@pytest.mark.usefixtures("restore_levels")
def test_verbose_still_shows_maint_debug(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging(verbose=True)
    logging.getLogger().setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("maint.runner").debug("hello")
        logging.getLogger("botocore.endpoint").debug("X-Amz-Security-Token: secret")
    assert "hello" in caplog.text
    assert "X-Amz-Security-Token" not in caplog.text
