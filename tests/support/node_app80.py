"""A second app in ``shop``: Service ``shop/app80`` whose ``targetPort`` is 80.

The node's nginx image listens on 8080; this Deployment gives it a config that listens on 80
instead, as UID 101 without capabilities, through the "safe" sysctl
``net.ipv4.ip_unprivileged_port_start`` that Pod Security ``restricted`` allows (the same one
maint's page Pod uses for a low target port).
"""

from __future__ import annotations

import json

from tests.support.node import Node

CONF = """worker_processes 1;
pid /tmp/nginx.pid;
error_log /dev/stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    server {
        listen 80;
        location / { default_type text/plain; return 200 "app80\\n"; }
    }
}
"""


def manifests(image: str) -> list[dict[str, object]]:
    labels = {"app": "app80"}
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 101,
            "seccompProfile": {"type": "RuntimeDefault"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
        },
        "containers": [
            {
                "name": "web",
                "image": image,
                "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 2},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"}
                ],
            }
        ],
        "volumes": [{"name": "conf", "configMap": {"name": "app80-conf"}}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app80-conf", "namespace": "shop"},
            "data": {"nginx.conf": CONF},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app80", "namespace": "shop"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app80", "namespace": "shop"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
        },
    ]


def deploy(node: Node, image: str) -> str:
    """Apply and roll out; returns the Service's ClusterIP."""
    document = {"apiVersion": "v1", "kind": "List", "items": manifests(image)}
    node.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    node.kubectl("-n", "shop", "rollout", "status", "deploy/app80", "--timeout=180s")
    return node.kubectl("-n", "shop", "get", "service", "app80", "-o", "jsonpath={.spec.clusterIP}")
