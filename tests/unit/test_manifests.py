"""Pure builders: the page Pod, its ports, the Kaniko Job, names."""

from __future__ import annotations

import base64

import pytest

from maint import naming
from maint.build.manifests import KanikoSpec, build_configmap, kaniko_job
from maint.cluster import ServiceInfo, ServicePort
from maint.errors import InvalidInput
from maint.switch import ContainerPort, page_pod, plan_ports


def service(*ports: ServicePort) -> ServiceInfo:
    return ServiceInfo(
        namespace="shop", name="web", type="ClusterIP", selector={"app": "web"}, ports=ports
    )


def test_numeric_target_ports_are_kept_and_named_ones_get_free_numbers_with_their_names():
    planned = plan_ports(
        service(
            ServicePort(port=80, target_port="http", name="http"),
            ServicePort(port=443, target_port=8080, name="https"),
            ServicePort(port=9000, target_port=9000),
            ServicePort(port=9001, target_port="metrics"),
        )
    )
    assert planned == (
        ContainerPort(8080),
        ContainerPort(9000),
        ContainerPort(8081, "http"),
        ContainerPort(8082, "metrics"),
    )


def test_a_service_without_tcp_ports_is_refused():
    with pytest.raises(InvalidInput, match="no TCP port"):
        plan_ports(service(ServicePort(port=53, target_port=53, protocol="UDP")))


def test_page_pod_meets_pod_security_restricted():
    pod = page_pod(
        name="p",
        namespace="shop",
        labels={"a": "b"},
        image="r/x@sha256:" + "0" * 64,
        ports=[ContainerPort(8080), ContainerPort(8081, "http")],
        drain=10,
    )
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert container["ports"] == [
        {"containerPort": 8080, "protocol": "TCP"},
        {"containerPort": 8081, "protocol": "TCP", "name": "http"},
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert "sysctls" not in spec["securityContext"]


def test_a_deleted_page_pod_keeps_serving_for_the_drain_then_stops():
    """Deleted after the restore, the page still answers while every kube-proxy catches up."""
    pod = page_pod(
        name="p", namespace="s", labels={}, image="i", ports=[ContainerPort(80)], drain=7
    )
    container = pod["spec"]["containers"][0]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 7}}}
    assert pod["spec"]["terminationGracePeriodSeconds"] > 7


def test_page_pod_for_a_low_port_allows_unprivileged_binding_by_safe_sysctl():
    pod = page_pod(
        name="p", namespace="s", labels={}, image="i", ports=[ContainerPort(80)], drain=0
    )
    assert pod["spec"]["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
    ]


def test_kaniko_job_reports_the_digest_via_termination_message_and_has_no_token():
    job = kaniko_job(
        name="maint-1-web-abc12-0123abcd",
        namespace="maint-build",
        labels={"x": "y"},
        destination="reg:5000/page:maint-1",
        spec=KanikoSpec(
            image="kaniko",
            service_account="maint-kaniko",
            insecure=True,
            timeout_seconds=600,
            aws_region="eu-west-1",
        ),
    )
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--digest-file=/dev/termination-log" in container["args"]
    assert "--insecure" in container["args"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert container["resources"]["limits"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]
    assert pod["volumes"][0]["configMap"]["items"] == [
        {"key": "context.tar.gz", "path": "context.tar.gz"}
    ]


def test_build_configmap_carries_the_tar_context_and_readable_files():
    cm = build_configmap(
        name="n", namespace="b", labels={}, files={"index.html": b"<p>"}, tarball=b"\x1f\x8b"
    )
    assert cm["data"] == {"index.html": "<p>"}
    assert base64.b64decode(cm["binaryData"]["context.tar.gz"]) == b"\x1f\x8b"


def test_names_are_deterministic_dns1123_and_fit_a_job_pod_name():
    long = "a" * 63
    name = naming.target_name(notice_id=123456, namespace="ns", service=long)
    assert name == naming.target_name(notice_id=123456, namespace="ns", service=long)
    full = naming.object_name(target=name, revision="0123abcd")
    assert len(full) + 6 <= 63
    assert naming.target_name(notice_id=1, namespace="a", service="web") != naming.target_name(
        notice_id=1, namespace="b", service="web"
    )
