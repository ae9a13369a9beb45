"""Deleting the page image: a real OCI registry (docker-registry + skopeo) and ECR via moto.

Every test uses its own repository name, so the session-wide servers need no cleanup.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from maint.build.registry import EcrRegistry, ImageRef, OciRegistry
from maint.errors import RegistryError
from tests.support.fixtures_registry import MotoEcr, OciRegistryServer


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _random_digest() -> str:
    return "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


@pytest.mark.registry
class TestOciRegistry:
    def _registry(self, server: OciRegistryServer, repository: str) -> OciRegistry:
        ref = ImageRef(registry=server.host, repository=repository)
        return OciRegistry(repository=ref, insecure=True, timeout=5)

    def test_delete_removes_the_pushed_manifest(self, oci_registry: OciRegistryServer) -> None:
        repository = f"maint/{_unique('page')}"
        digest = oci_registry.push_image(repository)
        assert oci_registry.has_manifest(repository, digest)

        assert self._registry(oci_registry, repository).delete_image(digest) is True

        assert not oci_registry.has_manifest(repository, digest)

    def test_delete_leaves_other_images_of_the_repository(
        self, oci_registry: OciRegistryServer
    ) -> None:
        repository = _unique("page")
        doomed, kept = oci_registry.push_image(repository), oci_registry.push_image(repository)
        assert doomed != kept

        self._registry(oci_registry, repository).delete_image(doomed)

        assert oci_registry.has_manifest(repository, kept)

    def test_second_delete_reports_already_gone(self, oci_registry: OciRegistryServer) -> None:
        repository = _unique("page")
        digest = oci_registry.push_image(repository)
        registry = self._registry(oci_registry, repository)
        registry.delete_image(digest)

        assert registry.delete_image(digest) is False

    def test_delete_of_a_never_pushed_repository_reports_already_gone(
        self, oci_registry: OciRegistryServer
    ) -> None:
        registry = self._registry(oci_registry, _unique("never-pushed"))
        assert registry.delete_image(_random_digest()) is False

    def test_delete_refused_by_the_registry_raises_with_status_and_hint(
        self, oci_registry_without_delete: OciRegistryServer
    ) -> None:
        repository = _unique("page")
        digest = oci_registry_without_delete.push_image(repository)
        registry = self._registry(oci_registry_without_delete, repository)

        with pytest.raises(RegistryError, match=r"405.*UNSUPPORTED.*storage\.delete\.enabled"):
            registry.delete_image(digest)
        assert oci_registry_without_delete.has_manifest(repository, digest)

    def test_delete_against_a_wrong_base_url_raises_instead_of_reporting_gone(
        self, oci_registry: OciRegistryServer
    ) -> None:
        # /not-here/v2/... is the server's plain 404 page, not "manifest unknown": a
        # misconfigured URL must never pass for an image that is already gone.
        ref = ImageRef(registry=oci_registry.host, repository="page")
        registry = OciRegistry(repository=ref, base_url=f"{oci_registry.url}/not-here", timeout=5)
        with pytest.raises(RegistryError, match=r"404: .*check the registry URL"):
            registry.delete_image(_random_digest())

    def test_delete_against_a_closed_port_raises_cannot_reach(self) -> None:
        ref = ImageRef(registry="127.0.0.1:9", repository="page")
        registry = OciRegistry(repository=ref, insecure=True, timeout=2)
        with pytest.raises(RegistryError, match=r"cannot reach registry http://127\.0\.0\.1:9"):
            registry.delete_image(_random_digest())

    def test_https_against_a_plain_http_registry_says_to_set_insecure(
        self, oci_registry: OciRegistryServer
    ) -> None:
        ref = ImageRef(registry=oci_registry.host, repository="page")
        registry = OciRegistry(repository=ref, insecure=False, timeout=5)
        with pytest.raises(RegistryError, match="needs the insecure setting"):
            registry.check_ready()

    def test_check_ready_passes_on_a_running_registry(
        self, oci_registry: OciRegistryServer
    ) -> None:
        self._registry(oci_registry, "page").check_ready()

    def test_check_ready_fails_when_nothing_listens(self) -> None:
        ref = ImageRef(registry="127.0.0.1:9", repository="page")
        with pytest.raises(RegistryError, match="cannot reach registry"):
            OciRegistry(repository=ref, insecure=True, timeout=2).check_ready()

    def test_check_ready_fails_when_the_url_is_not_a_registry(
        self, oci_registry: OciRegistryServer
    ) -> None:
        ref = ImageRef(registry=oci_registry.host, repository="page")
        registry = OciRegistry(repository=ref, base_url=f"{oci_registry.url}/not-here")
        with pytest.raises(RegistryError, match=r"not an OCI registry or not ready: .* 404"):
            registry.check_ready()


@pytest.mark.aws
class TestEcrRegistry:
    def _registry(self, moto_ecr: MotoEcr, ref: ImageRef) -> EcrRegistry:
        return EcrRegistry(
            repository=ref, region=moto_ecr.region, endpoint_url=moto_ecr.endpoint_url
        )

    def test_delete_removes_the_image_by_digest(self, moto_ecr: MotoEcr) -> None:
        ref = moto_ecr.create_repository(_unique("maint-page"))
        digest, kept = _random_digest(), _random_digest()
        moto_ecr.put_image(ref.repository, digest)
        moto_ecr.put_image(ref.repository, kept)

        assert self._registry(moto_ecr, ref).delete_image(digest) is True

        assert not moto_ecr.has_image(ref.repository, digest)
        assert moto_ecr.has_image(ref.repository, kept)

    def test_second_delete_counts_image_not_found_as_done(self, moto_ecr: MotoEcr) -> None:
        ref = moto_ecr.create_repository(_unique("maint-page"))
        digest = _random_digest()
        moto_ecr.put_image(ref.repository, digest)
        registry = self._registry(moto_ecr, ref)
        registry.delete_image(digest)

        assert registry.delete_image(digest) is False

    def test_delete_in_a_missing_repository_raises_saying_to_create_it(
        self, moto_ecr: MotoEcr
    ) -> None:
        registry = self._registry(moto_ecr, moto_ecr.ref(_unique("missing")))
        with pytest.raises(RegistryError, match="does not exist: create it") as raised:
            registry.delete_image(_random_digest())
        assert raised.value.__cause__ is not None

    def test_check_ready_passes_when_the_repository_exists(self, moto_ecr: MotoEcr) -> None:
        ref = moto_ecr.create_repository(_unique("maint-page"))
        self._registry(moto_ecr, ref).check_ready()

    def test_check_ready_fails_on_a_missing_repository_with_the_create_command(
        self, moto_ecr: MotoEcr
    ) -> None:
        name = _unique("missing")
        registry = self._registry(moto_ecr, moto_ecr.ref(name))
        with pytest.raises(
            RegistryError, match=f"aws ecr create-repository --repository-name {name}"
        ):
            registry.check_ready()

    def test_unreachable_endpoint_raises_registry_error(self, moto_ecr: MotoEcr) -> None:
        ref = moto_ecr.ref("maint-page")
        registry = EcrRegistry(
            repository=ref, region=moto_ecr.region, endpoint_url="http://127.0.0.1:9"
        )
        with pytest.raises(RegistryError, match=r"could not delete .* Could not connect") as e:
            registry.delete_image(_random_digest())
        assert type(e.value.__cause__).__name__ == "EndpointConnectionError"
