"""Where the maintenance page image lives, and how it goes away again.

Kaniko pushes the page image; this module parses the configured repository, checks before a
build that a push can land (an ECR repository is never created on push), and deletes the image
by digest when the window is over. Deletion is idempotent: an image that is already gone (ECR
``ImageNotFound``, OCI 404 with ``MANIFEST_UNKNOWN``) counts as done and returns ``False``;
every other refusal becomes a :class:`~maint.errors.RegistryError` that says what to do next,
chained with ``from e``. A malformed digest is :class:`~maint.errors.InvalidInput`.

This is the only module that imports boto3.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

from maint.errors import InvalidInput, RegistryError

logger = logging.getLogger(__name__)

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

# The grammar of github.com/distribution/reference, minus IPv6 hosts. A first component with a
# dot or a port (or "localhost") is a registry host; without one Docker would read the value as
# a Docker Hub path, so we refuse it rather than guess.
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"^{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MAX_NAME_LENGTH = 255

_ECR_HOST_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)

_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_BODY_SNIPPET = 300
_MAX_BODY = 64 * 1024
# Registry error codes that mean "this manifest is not here" (OCI distribution spec).
_GONE_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:`` and 64 lowercase hex digits, else InvalidInput."""
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidInput(f"{digest!r} is not an image digest: expected sha256: and 64 hex digits")
    return digest


@dataclass(frozen=True)
class ImageRef:
    """A repository in a registry, without tag or digest: ``registry/repository``."""

    registry: str
    """Host and optional port, e.g. ``kind-registry:5000`` or ``<account>.dkr.ecr.<region>…``."""
    repository: str
    """Path inside the registry, e.g. ``maint-page`` or ``team/maint-page``."""

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    def at(self, digest: str) -> str:
        """The pullable reference ``registry/repository@sha256:…`` of one pushed image."""
        return f"{self}@{check_digest(digest)}"

    def tagged(self, tag: str) -> str:
        """``registry/repository:tag``; a tag is 1-128 of ``[A-Za-z0-9_.-]``, not led by . or -."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidInput(
                f"{tag!r} is not an image tag: use up to 128 letters, digits, '_', '.', '-', "
                "not starting with '.' or '-'"
            )
        return f"{self}:{tag}"


def parse_repository(value: str) -> ImageRef:
    """Parse ``host[:port]/path/name`` as configured in settings; InvalidInput on anything else.

    A tag or digest is refused: maint chooses a unique tag per build and deletes by digest, so
    a fixed one in the setting would be ignored or, worse, overwritten.
    """
    example = (
        "e.g. kind-registry:5000/maint-page or "
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/maint-page"
    )
    if "://" in value:
        raise InvalidInput(f"image repository {value!r} must not have a scheme ({example})")
    if "@" in value:
        raise InvalidInput(f"image repository {value!r} must not have a digest: maint adds one")
    host, sep, path = value.partition("/")
    if not sep:
        raise InvalidInput(
            f"image repository {value!r} needs a registry host and a path ({example})"
        )
    if ":" in path.rpartition("/")[2]:
        raise InvalidInput(f"image repository {value!r} must not have a tag: maint chooses one")
    if not _HOST_RE.fullmatch(host) or not ("." in host or ":" in host or host == "localhost"):
        raise InvalidInput(
            f"image repository {value!r} must start with a registry host that has a dot or a "
            f"port, or is localhost ({example})"
        )
    if not _REPOSITORY_RE.fullmatch(path):
        raise InvalidInput(
            f"image repository {value!r} has an invalid path {path!r}: use lowercase letters, "
            "digits and separators . _ __ - between them, components split by /"
        )
    if len(value) > _MAX_NAME_LENGTH:
        raise InvalidInput(f"image repository {value!r} is longer than {_MAX_NAME_LENGTH} chars")
    return ImageRef(registry=host, repository=path)


class Registry(Protocol):
    """What the build and restore steps need from a registry."""

    def check_ready(self) -> None:
        """Raise RegistryError, saying what to fix, if a push or delete cannot work."""

    def delete_image(self, digest: str) -> bool:
        """Delete one image by digest: True if deleted, False if it was already gone."""


class EcrRegistry:
    """Amazon ECR, through boto3 and the default credential chain (IRSA in EKS).

    The registry id is the account in the repository host. ``region`` defaults to the one in
    the host and must agree with it: ECR repositories are regional. ``endpoint_url`` is for
    tests (moto) or a VPC endpoint. Needs ``ecr:DescribeRepositories`` and
    ``ecr:BatchDeleteImage`` on the repository.
    """

    def __init__(
        self, *, repository: ImageRef, region: str | None, endpoint_url: str | None
    ) -> None:
        match = _ECR_HOST_RE.fullmatch(repository.registry)
        if match is None:
            raise InvalidInput(
                f"{repository} is not an ECR repository: expected "
                "<account>.dkr.ecr.<region>.amazonaws.com/<name>"
            )
        host_region = match["region"]
        if region is not None and region != host_region:
            raise InvalidInput(
                f"AWS region {region!r} does not match the region {host_region!r} of {repository}"
            )
        self.repository = repository
        self.registry_id = match["account"]
        self.region = host_region
        config = botocore.config.Config(
            connect_timeout=10, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
        )
        try:
            self._client: Any = boto3.client(
                "ecr", region_name=host_region, endpoint_url=endpoint_url, config=config
            )
        except botocore.exceptions.BotoCoreError as e:
            raise RegistryError(f"cannot set up an ECR client for {repository}: {e}") from e

    def check_ready(self) -> None:
        """Raise RegistryError unless the repository exists (Kaniko cannot create it)."""
        try:
            self._client.describe_repositories(
                registryId=self.registry_id, repositoryNames=[self.repository.repository]
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self._error("describe", e) from e

    def delete_image(self, digest: str) -> bool:
        """``BatchDeleteImage`` by digest; the image's tags go with it."""
        check_digest(digest)
        try:
            response = self._client.batch_delete_image(
                registryId=self.registry_id,
                repositoryName=self.repository.repository,
                imageIds=[{"imageDigest": digest}],
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self._error(f"delete {digest} from", e) from e
        # Per-image problems are not raised by ECR: they come back in `failures`.
        for failure in response.get("failures", []):
            code = failure.get("failureCode", "")
            if code == "ImageNotFound":
                logger.info("image %s was already gone from %s", digest, self.repository)
                return False
            reason = failure.get("failureReason", "")
            raise RegistryError(
                f"ECR did not delete {self.repository.at(digest)}: {code}: {reason}"
            )
        deleted = {image_id.get("imageDigest") for image_id in response.get("imageIds", [])}
        if digest not in deleted:
            raise RegistryError(
                f"ECR answered without deleting or reporting {self.repository.at(digest)}: "
                "check the repository in the AWS console and delete the image by hand"
            )
        logger.info("deleted image %s", self.repository.at(digest))
        return True

    def _error(self, action: str, e: Exception) -> RegistryError:
        where = f"ECR repository {self.repository}"
        if isinstance(e, botocore.exceptions.ClientError):
            code = e.response.get("Error", {}).get("Code", "")
            message = e.response.get("Error", {}).get("Message", "")
            if code == "RepositoryNotFoundException":
                return RegistryError(
                    f"{where} does not exist: create it (aws ecr create-repository "
                    f"--repository-name {self.repository.repository} --region {self.region}); "
                    "pushes do not create it"
                )
            if code in {"AccessDeniedException", "UnrecognizedClientException"}:
                return RegistryError(
                    f"not allowed to {action} {where}: {code}: {message}; grant the controller's "
                    "IAM role ecr:DescribeRepositories and ecr:BatchDeleteImage on it"
                )
            return RegistryError(f"could not {action} {where}: {code}: {message}")
        if isinstance(e, botocore.exceptions.NoCredentialsError):
            return RegistryError(
                f"no AWS credentials to {action} {where}: configure IRSA or the AWS_* variables"
            )
        # botocore's own messages name endpoints and parameters, never secrets.
        return RegistryError(f"could not {action} {where}: {e}")


class OciRegistry:
    """An OCI distribution registry (``registry:2``/``registry:3``, Debian's docker-registry).

    Meant for the local registry next to kind: requests are anonymous, so a registry that asks
    for a Basic or Bearer token is reported by :meth:`check_ready` as unsupported. Deletion
    needs ``storage.delete.enabled: true`` (``REGISTRY_STORAGE_DELETE_ENABLED=true``); without
    it the registry answers 405. ``insecure`` means plain HTTP, like Kaniko's ``--insecure``.
    """

    def __init__(
        self,
        *,
        repository: ImageRef,
        base_url: str | None = None,
        insecure: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if base_url is None:
            base_url = f"{'http' if insecure else 'https'}://{repository.registry}"
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"registry URL {base_url!r} must start with http:// or https://")
        self.repository = repository
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def check_ready(self) -> None:
        """Raise RegistryError unless ``GET /v2/`` answers 200 without credentials."""
        url = f"{self.base_url}/v2/"
        answer = self._request("GET", url, headers={})
        if answer.status == 200:
            return
        if answer.status == 401:
            raise RegistryError(
                f"registry {self.base_url} asks for credentials; maint only talks to "
                "registries that allow anonymous access (a local registry next to kind)"
            )
        raise RegistryError(
            f"registry {self.base_url} is not an OCI registry or not ready: GET /v2/ answered "
            f"{answer.status}: {answer.snippet}"
        )

    def delete_image(self, digest: str) -> bool:
        """``DELETE /v2/<repository>/manifests/<digest>``: 202 deleted, 404 already gone.

        A 404 counts as "already gone" only with a registry error code (``MANIFEST_UNKNOWN``,
        ``NAME_UNKNOWN``): a bare 404 means a wrong URL, which must not pass for success.
        """
        check_digest(digest)
        url = f"{self.base_url}/v2/{self.repository.repository}/manifests/{digest}"
        answer = self._request("DELETE", url, headers={"Accept": _MANIFEST_ACCEPT})
        if answer.status in {200, 202}:
            logger.info("deleted image %s", self.repository.at(digest))
            return True
        if answer.status == 404 and answer.error_codes & _GONE_CODES:
            logger.info("image %s was already gone from %s", digest, self.repository)
            return False
        hint = {
            404: "; the answer carries no registry error code: check the registry URL",
            405: "; enable deletes in the registry (storage.delete.enabled: true)",
            401: "; maint only supports registries without authentication",
        }.get(answer.status, "")
        raise RegistryError(
            f"registry {self.base_url} refused to delete {self.repository.at(digest)}: "
            f"{answer.status}: {answer.snippet}{hint}"
        )

    def _request(self, method: str, url: str, *, headers: dict[str, str]) -> _Answer:
        """Status and body of any HTTP answer; only network failures raise (RegistryError)."""
        # The scheme is checked in __init__, so urlopen never sees file:// or similar.
        request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _Answer(status=int(response.status), body=response.read(_MAX_BODY))
        except urllib.error.HTTPError as e:
            try:
                body = e.read(_MAX_BODY)
            except (OSError, AttributeError):  # some HTTPErrors carry no body at all
                body = b""
            finally:
                e.close()
            return _Answer(status=e.code, body=body)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            hint = ""
            if url.startswith("https://"):
                hint = " (if the registry speaks plain HTTP, it needs the insecure setting)"
            raise RegistryError(
                f"cannot reach registry {self.base_url} ({method} {url}): {reason}{hint}"
            ) from e


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes

    @property
    def error_codes(self) -> frozenset[str]:
        """The ``errors[].code`` values of a distribution error body, if it is one."""
        try:
            errors = json.loads(self.body)["errors"]
            return frozenset(str(error["code"]) for error in errors)
        except (ValueError, KeyError, TypeError):
            return frozenset()

    @property
    def snippet(self) -> str:
        """The body on one line, cut short enough for a log line or an event detail."""
        text = self.body.decode("utf-8", errors="replace").strip()
        try:
            text = json.dumps(json.loads(text), separators=(",", ":"))
        except ValueError:
            text = " ".join(text.split())
        return text[:_BODY_SNIPPET] or "(empty body)"
