"""Configuration files of the real node's components, all inside the node's own folder.

Each setting that is not a default says why; most come from FACTS.md "A real node without
Docker": this VM withholds CAP_SYS_RESOURCE (``restrict_oom_score_adj``), is cgroup v1 hybrid
(``failCgroupV1: false``, ``cgroupfs``), and must keep its sysctls (``conntrack`` zeros,
``localhostNodePorts: false``). JSON is written where YAML is expected: JSON is YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
NODE_NAME = "maint-node"


@dataclass(frozen=True)
class Layout:
    """Where every component keeps its files, under one folder."""

    root: Path
    bridge: str
    node_ip: str
    pod_subnet: str
    registry: str  # host:port Pods, Kaniko and containerd all use

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"


def containerd(layout: Layout, pause_image: str) -> Path:
    """containerd 1.6 config (version 2): its own root, state and socket; CNI from our folder."""
    certs = layout.root / "certs.d"
    hosts = certs / layout.registry
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(
        f'server = "http://{layout.registry}"\n\n'
        f'[host."http://{layout.registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )
    cni = layout.root / "cni"
    config = f"""version = 2
root = "{layout.root / "containerd" / "root"}"
state = "{layout.root / "containerd" / "state"}"
# No plugin the node does not use: fewer snapshotters to probe, less to clean up.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # This VM withholds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, every sandbox fails.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni / "conf"}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"""
    path = layout.root / "containerd.toml"
    path.write_text(config)
    _cni(layout, cni)
    return path


def _cni(layout: Layout, cni: Path) -> None:
    (cni / "conf").mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "maint-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": True,
                # kube-proxy masquerades Service traffic; nothing else leaves the bridge.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(cni / "ipam"),
                    "ranges": [[{"subnet": layout.pod_subnet, "gateway": layout.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }
    (cni / "conf" / "10-maint-node.conflist").write_text(json.dumps(conflist, indent=2))


def kubelet(layout: Layout, *, port: int, healthz_port: int) -> Path:
    """KubeletConfiguration: cgroupfs on cgroup v1, its own folders, no fixed ports but ours."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The API server calls the kubelet for logs and exec; it has no client certificate here.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.root / "pod-logs"),
        "clusterDNS": [],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "cgroupsPerQOS": True,
        # Image GC and eviction would act on the VM's real disk usage, not the test's.
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "0%",
            "imagefs.available": "0%",
        },
        "evictionPressureTransitionPeriod": "1s",
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "maxPods": 60,
        "registerNode": True,
        "localStorageCapacityIsolation": False,
    }
    path = layout.root / "kubelet.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def kube_proxy(layout: Layout, kubeconfig: Path, *, healthz_port: int, metrics_port: int) -> Path:
    """iptables mode; the zeros keep the VM's conntrack sysctls as they are."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "clusterCIDR": layout.pod_subnet,
        "bindAddress": layout.node_ip,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # Pod-to-Service traffic on one bridge needs SNAT to come back the same way.
        "iptables": {
            "masqueradeAll": True,
            "localhostNodePorts": False,
            "syncPeriod": "30s",
            "minSyncPeriod": "0s",
        },
        "nodePortAddresses": [f"{layout.node_ip}/32"],
    }
    path = layout.root / "kube-proxy.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def registry(layout: Layout) -> Path:
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(layout.root / "registry")},
            "delete": {"enabled": True},
        },
        "http": {"addr": layout.registry},
    }
    path = layout.root / "registry.yml"
    path.write_text(json.dumps(config))
    return path
