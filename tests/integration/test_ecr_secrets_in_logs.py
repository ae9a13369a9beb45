"""``-v`` and an ECR cleanup: the session token and the secret key never reach the output.

Against moto's ECR API (no real AWS can be used here; moto accepts any credentials, so the
signed requests are exactly those botocore sends to AWS, X-Amz-Security-Token header included).
The cleanup runs in a fresh process the way ``maint -v`` runs it: ``configure_logging(verbose=
True)``, then the registry ``App`` builds from ``MAINT_*`` settings deletes the image by digest.
A control run with plain DEBUG logging (what ``-v`` did before the SDK loggers were quieted)
shows that the token would be printed, so the check would notice a leak.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import uuid

import pytest

from tests.support.fixtures_registry import MotoEcr

pytestmark = pytest.mark.aws

CHILD = """
import logging, sys
from maint.app import App
from maint.cli import configure_logging
from maint.settings import Settings

if sys.argv[1] == "cli":
    configure_logging(verbose=True)  # exactly what `maint -v` does
else:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
logging.getLogger("maint.test").debug("debug logging is on")
deleted = App(settings=Settings()).registry().delete_image(sys.argv[2])
print(f"deleted={deleted}")
"""


def _cleanup(moto_ecr: MotoEcr, logging_as: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    name = f"maint-page-{uuid.uuid4().hex[:8]}"
    ref = moto_ecr.create_repository(name)
    digest = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    moto_ecr.put_image(name, digest)
    credentials = {  # session (IRSA-like) credentials, unique so any echo of them is found
        "AWS_ACCESS_KEY_ID": "ASIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": "secret" + secrets.token_hex(16),
        "AWS_SESSION_TOKEN": "token" + secrets.token_hex(48),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAINT_", "AWS_"))}
    env |= credentials | {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "MAINT_REGISTRY_KIND": "ecr",
        "MAINT_IMAGE_REPOSITORY": str(ref),
        "MAINT_AWS_REGION": moto_ecr.region,
        "MAINT_ECR_ENDPOINT_URL": moto_ecr.endpoint_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, logging_as, digest],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "deleted=True"
    assert not moto_ecr.has_image(name, digest)
    return done, credentials


def test_verbose_ecr_cleanup_prints_no_session_token_nor_secret_key(moto_ecr: MotoEcr) -> None:
    done, credentials = _cleanup(moto_ecr, "cli")
    output = done.stdout + done.stderr
    assert "DEBUG maint.test: debug logging is on" in output  # -v is really on
    assert "deleted image" in output  # maint's own INFO line about the cleanup
    assert credentials["AWS_SESSION_TOKEN"] not in output
    assert credentials["AWS_SECRET_ACCESS_KEY"] not in output
    assert "X-Amz-Security-Token" not in output


def test_control_plain_debug_logging_would_print_the_token(moto_ecr: MotoEcr) -> None:
    done, credentials = _cleanup(moto_ecr, "plain")
    assert credentials["AWS_SESSION_TOKEN"] in done.stderr
