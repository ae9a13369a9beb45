"""Registry fixtures: a real OCI registry process and a moto server speaking the ECR API.

``oci_registry`` runs Debian's ``docker-registry`` (the CNCF distribution registry, 2.8) on a
free 127.0.0.1 port with deletes enabled and its storage in a temp dir; images are written by
hand and pushed with skopeo (tests.support.oci_image), so no Docker is involved.
``oci_registry_without_delete`` is the same registry with deletes disabled, the default of
``registry:2``, to prove that maint reports the 405 instead of pretending it deleted.

``moto_ecr`` is one moto server for the session (ECR control plane only, no push endpoint) with
fake credentials in the environment; tests create their own uniquely named repositories.
Each fixture stops exactly the process or thread it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from maint.build.registry import ImageRef
from tests.support import oci_image
from tests.support.require import missing

INSTALL_HINT = "apt-get install docker-registry skopeo"
START_DEADLINE_S = 15.0

_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class OciRegistryServer:
    """A running docker-registry: ``host`` is ``127.0.0.1:PORT``, ``url`` its http:// base."""

    host: str
    url: str
    workdir: Path
    skopeo: str
    start_seconds: float

    def push_image(self, repository: str) -> str:
        """Push a new, unique one-layer image to ``repository``; returns its manifest digest."""
        tag = f"t{uuid.uuid4().hex[:12]}"
        layout = oci_image.write_layout(self.workdir / "layouts" / tag, tag=tag)
        return oci_image.push(
            layout, skopeo=self.skopeo, destination=f"{self.host}/{repository}:{tag}"
        )

    def has_manifest(self, repository: str, digest: str) -> bool:
        """HEAD the manifest by digest: True on 200, False on 404, anything else fails."""
        request = urllib.request.Request(
            f"{self.url}/v2/{repository}/manifests/{digest}",
            method="HEAD",
            headers={"Accept": _MANIFEST_ACCEPT},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _binaries() -> tuple[str, str]:
    """Paths of docker-registry and skopeo, or stop the test saying how to install them."""
    found = [
        shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        for name in ("docker-registry", "skopeo")
    ]
    registry_bin, skopeo = found
    if registry_bin is None or skopeo is None:
        missing("docker-registry and skopeo", INSTALL_HINT)
    return registry_bin, skopeo


@contextmanager
def running_registry(workdir: Path, *, delete_enabled: bool) -> Iterator[OciRegistryServer]:
    """Start docker-registry in ``workdir``, wait for ``/v2/``, stop that one process after."""
    registry_bin, skopeo = _binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": delete_enabled},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    # REGISTRY_* variables override the config file; none may leak in from the environment.
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
    log_path = workdir / "registry.log"
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [registry_bin, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = started + START_DEADLINE_S
        while not _answers(url):
            if process.poll() is not None:
                pytest.fail(f"docker-registry exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not answer on {url} within {START_DEADLINE_S}s")
            time.sleep(0.05)
        yield OciRegistryServer(
            host=f"127.0.0.1:{port}",
            url=url,
            workdir=workdir,
            skopeo=skopeo,
            start_seconds=time.monotonic() - started,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistryServer]:
    """docker-registry with ``storage.delete.enabled: true``, shared by the session."""
    with running_registry(tmp_path_factory.mktemp("oci-registry"), delete_enabled=True) as server:
        yield server


@pytest.fixture(scope="session")
def oci_registry_without_delete(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OciRegistryServer]:
    """docker-registry with deletes disabled (the registry:2 default): DELETE answers 405."""
    workdir = tmp_path_factory.mktemp("oci-registry-no-delete")
    with running_registry(workdir, delete_enabled=False) as server:
        yield server


@dataclass(frozen=True)
class MotoEcr:
    """A moto server answering the ECR API, plus helpers to arrange repositories and images."""

    endpoint_url: str
    region: str
    account: str
    client: Any
    start_seconds: float

    def create_repository(self, name: str) -> ImageRef:
        self.client.create_repository(repositoryName=name)
        return self.ref(name)

    def ref(self, name: str) -> ImageRef:
        """The repository's ImageRef, whether or not it exists."""
        return ImageRef(
            registry=f"{self.account}.dkr.ecr.{self.region}.amazonaws.com", repository=name
        )

    def put_image(self, name: str, digest: str) -> None:
        """Store an image under ``digest`` (moto keeps the given digest) with a unique tag."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci_image.MANIFEST_TYPE,
            "config": {"mediaType": oci_image.CONFIG_TYPE, "digest": digest, "size": 2},
            "layers": [],
            # moto folds images with identical manifests together: keep each one distinct.
            "annotations": {"test.maint/digest": digest},
        }
        self.client.put_image(
            repositoryName=name,
            imageManifest=json.dumps(manifest),
            imageTag=f"t{digest[-12:]}",
            imageDigest=digest,
        )

    def has_image(self, name: str, digest: str) -> bool:
        try:
            self.client.describe_images(repositoryName=name, imageIds=[{"imageDigest": digest}])
        except self.client.exceptions.ImageNotFoundException:
            return False
        return True


@pytest.fixture(scope="session")
def moto_ecr() -> Iterator[MotoEcr]:
    """One moto server per session; fake credentials only, never the machine's own."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("moto[server]", "pip install -e '.[dev]'")
    region = "us-east-1"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            env.setenv(name, value)
        started = time.monotonic()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint_url = f"http://{host}:{port}"
            client = boto3.client("ecr", region_name=region, endpoint_url=endpoint_url)
            sts = boto3.client("sts", region_name=region, endpoint_url=endpoint_url)
            account = str(sts.get_caller_identity()["Account"])
            yield MotoEcr(
                endpoint_url=endpoint_url,
                region=region,
                account=account,
                client=client,
                start_seconds=time.monotonic() - started,
            )
        finally:
            server.stop()
