"""Parsing the configured image repository and building references from it."""

from __future__ import annotations

import pytest

from maint.build.registry import (
    EcrRegistry,
    ImageRef,
    OciRegistry,
    check_digest,
    parse_repository,
)
from maint.errors import InvalidInput

DIGEST = "sha256:" + "ab" * 32
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("value", "registry", "repository"),
    [
        ("kind-registry:5000/maint-page", "kind-registry:5000", "maint-page"),
        (f"{ECR_HOST}/maint-page", ECR_HOST, "maint-page"),
        (f"{ECR_HOST}/team/maint-page", ECR_HOST, "team/maint-page"),
        ("localhost/maint-page", "localhost", "maint-page"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c"),
        ("registry.example.com/maint_page.v2", "registry.example.com", "maint_page.v2"),
        ("registry.example.com/a__b--c", "registry.example.com", "a__b--c"),
        ("Registry.Example.com:443/x", "Registry.Example.com:443", "x"),
    ],
)
def test_parse_repository_splits_host_and_path(value: str, registry: str, repository: str) -> None:
    ref = parse_repository(value)
    assert ref == ImageRef(registry=registry, repository=repository)
    assert str(ref) == value


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("kind-registry:5000/maint-page:latest", "must not have a tag"),
        (f"{ECR_HOST}/maint-page@{DIGEST}", "must not have a digest"),
        ("maint-page", "needs a registry host"),
        ("kind-registry:5000", "needs a registry host"),
        ("library/nginx", "registry host that has a dot or a port"),
        ("kind-registry/maint-page", "registry host that has a dot or a port"),
        ("https://kind-registry:5000/maint-page", "must not have a scheme"),
        ("kind-registry:5000/Maint-Page", "invalid path"),
        ("kind-registry:5000/maint-page/", "invalid path"),
        ("kind-registry:5000//maint-page", "invalid path"),
        ("kind-registry:5000/-maint", "invalid path"),
        ("kind-registry:5000/maint..page", "invalid path"),
        (" kind-registry:5000/maint-page", "registry host"),
        ("kind-registry:5000/maint-page ", "invalid path"),
        ("-bad.host:5000/maint-page", "registry host"),
        ("kind-registry:port/maint-page", "registry host"),
        ("", "needs a registry host"),
        ("registry.example.com/" + "a" * 250, "longer than 255"),
    ],
)
def test_parse_repository_refuses_what_is_not_a_bare_repository(value: str, complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        parse_repository(value)


def test_image_ref_at_gives_a_pullable_digest_reference() -> None:
    ref = ImageRef(registry="kind-registry:5000", repository="team/maint-page")
    assert ref.at(DIGEST) == f"kind-registry:5000/team/maint-page@{DIGEST}"


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "ab" * 32,
        "sha256:" + "AB" * 32,
        "sha256:" + "ab" * 31,
        "sha256:" + "ab" * 33,
        "sha512:" + "ab" * 64,
        f"sha256:{'ab' * 32}\n",
        "sha256:" + "g" * 64,
    ],
)
def test_image_ref_at_refuses_malformed_digests(digest: str) -> None:
    ref = ImageRef(registry="kind-registry:5000", repository="maint-page")
    with pytest.raises(InvalidInput, match="not an image digest"):
        ref.at(digest)
    with pytest.raises(InvalidInput):
        check_digest(digest)


def test_image_ref_tagged_accepts_docker_tags() -> None:
    ref = ImageRef(registry="kind-registry:5000", repository="maint-page")
    assert ref.tagged("n42-web-1a2b3c") == "kind-registry:5000/maint-page:n42-web-1a2b3c"
    assert ref.tagged("_x." + "a" * 125).endswith(":_x." + "a" * 125)


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a/b", "a:b", "a" * 129, "ünicode"])
def test_image_ref_tagged_refuses_invalid_tags(tag: str) -> None:
    ref = ImageRef(registry="kind-registry:5000", repository="maint-page")
    with pytest.raises(InvalidInput, match="not an image tag"):
        ref.tagged(tag)


def test_ecr_registry_takes_account_and_region_from_the_host() -> None:
    registry = EcrRegistry(
        repository=parse_repository(f"{ECR_HOST}/maint-page"), region=None, endpoint_url=None
    )
    assert (registry.registry_id, registry.region) == ("123456789012", "eu-west-1")


def test_ecr_registry_refuses_a_region_other_than_the_hosts() -> None:
    with pytest.raises(InvalidInput, match="does not match the region 'eu-west-1'"):
        EcrRegistry(
            repository=parse_repository(f"{ECR_HOST}/maint-page"),
            region="us-east-1",
            endpoint_url=None,
        )


def test_ecr_registry_refuses_a_repository_outside_ecr() -> None:
    with pytest.raises(InvalidInput, match="not an ECR repository"):
        EcrRegistry(
            repository=parse_repository("kind-registry:5000/maint-page"),
            region="us-east-1",
            endpoint_url=None,
        )


def test_oci_registry_uses_plain_http_only_when_insecure() -> None:
    ref = parse_repository("kind-registry:5000/maint-page")
    assert OciRegistry(repository=ref).base_url == "https://kind-registry:5000"
    assert OciRegistry(repository=ref, insecure=True).base_url == "http://kind-registry:5000"


def test_oci_registry_refuses_a_base_url_that_is_not_http() -> None:
    ref = parse_repository("kind-registry:5000/maint-page")
    with pytest.raises(InvalidInput, match="must start with http"):
        OciRegistry(repository=ref, base_url="file:///etc/passwd")


def test_oci_registry_refuses_a_malformed_digest_before_any_request() -> None:
    # An unreachable base URL: a request would raise RegistryError, not InvalidInput.
    registry = OciRegistry(
        repository=parse_repository("kind-registry:5000/maint-page"),
        base_url="http://127.0.0.1:9",
    )
    with pytest.raises(InvalidInput, match="not an image digest"):
        registry.delete_image("latest")
