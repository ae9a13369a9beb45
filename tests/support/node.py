"""A real single-node Kubernetes on this machine: containers run, kube-proxy routes real traffic.

No Docker: the control plane of ``tests.support.controlplane`` (with the controllers a real node
needs), Debian's containerd, runc and CNI plugins, and kubelet, kube-proxy (iptables mode) and
kube-scheduler built by ``tools/k8sbin/build.sh node``. Everything sits on a bridge this module
creates (``BRIDGE``, ``NODE_IP``): the node IP, the API server Pods reach, and a
``docker-registry`` that Pods, Kaniko and containerd all know under one name (``registry``).

A guard chain in mangle POSTROUTING drops every packet from the Pod subnet or to the Service
range that would leave through any other device than loopback and the bridge: nothing the node
runs talks to the outside. ``stop`` ends exactly the processes ``start`` launched (and the
containers they ran), then ``node_host.restore`` undoes every other difference from the
snapshot taken before start: sysctls, iptables in both families, interfaces, mounts, cgroups.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client import CoreV1Api

from tests.support import node_config, node_host, node_images
from tests.support.controlplane import SERVICE_CLUSTER_IP_RANGE, ControlPlane, free_port

BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "kubectl")
PACKAGES = {  # what must exist -> the Debian package that has it
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    f"{node_config.CNI_BIN_DIR}/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "gcc": "gcc",
}
#: Where the node's built images and binaries are cached (as tools/k8sbin and tools/nodeimages do).
CACHE = Path(
    os.environ.get("MAINT_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maint"
)
BRIDGE = "maintnode0"
NODE_IP = "10.88.0.1"
#: A bridge without an address of its own takes the lowest MAC among its ports, so a Pod's veth
#: coming or going changes it; every Pod's ARP entry for the gateway then points at a MAC the
#: bridge no longer answers to and replies are lost until the entry expires (seconds of
#: connection errors on the probe as the page Pod was deleted, seen in CI). A fixed, locally
#: administered address keeps it stable, as the CNI bridge plugin does for bridges it creates.
BRIDGE_MAC = "02:6d:61:69:6e:01"
POD_SUBNET = "10.88.0.0/24"
REGISTRY_PORT = 5000
GUARD_CHAIN = "MAINT-NODE-GUARD"
#: What a real node adds to the control plane's controllers: Ready/taints of the node, the
#: kube-root-ca.crt ConfigMap Pods' tokens mount, and PersistentVolumeClaim binding (maint's
#: SQLite file lives on a claim bound to a PersistentVolume).
CONTROLLERS = (
    "node-lifecycle-controller",
    "root-ca-certificate-publisher-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)


class NodeError(RuntimeError):
    """The node did not come up; the message carries the components' log tails."""


def missing_prerequisites(assets: Path) -> list[str]:
    """What this machine lacks to run the node, each with how to get it (empty when ready)."""
    absent = [
        f"{name} (apt-get install {package})"
        for name, package in PACKAGES.items()
        if not (shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin"))
        and not os.access(name, os.X_OK)
    ]
    absent += [
        f"{assets}/{name} (tools/k8sbin/build.sh node)"
        for name in BINARIES
        if not os.access(assets / name, os.X_OK)
    ]
    if os.geteuid() != 0:
        absent.append("root (the kubelet, containerd and iptables need it)")
    return absent


def _run(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise NodeError(f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass
class _Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Node:
    """Use as a context manager; ``control_plane``, ``registry``, ``kubectl(...)`` after start."""

    def __init__(self, assets: Path, *, cache: Path, ready_timeout: float = 120.0) -> None:
        self.assets = Path(assets)
        self.cache = cache
        self.ready_timeout = ready_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="maint-node-"))
        self.layout = node_config.Layout(
            root=self.workdir,
            bridge=BRIDGE,
            node_ip=NODE_IP,
            pod_subnet=POD_SUBNET,
            registry=f"{NODE_IP}:{REGISTRY_PORT}",
        )
        self.registry = self.layout.registry
        self.control_plane = ControlPlane(
            assets,
            address=NODE_IP,
            extra_controllers=CONTROLLERS,
            extra_apiserver_args=("--kubelet-preferred-address-types=InternalIP",),
        )
        # The root-CA publisher writes this CA into every namespace's kube-root-ca.crt.
        self.control_plane.extra_controller_manager_args = (
            f"--root-ca-file={self.control_plane.ca_file}",
        )
        self.before: node_host.HostSnapshot | None = None
        self.startup_seconds = 0.0
        self.pause_image = ""
        self._processes: list[_Process] = []
        self._control_plane_started = False

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.before = node_host.HostSnapshot.take()
        try:
            self._bridge_and_guard()
            self._launch("docker-registry", ["serve", str(node_config.registry(self.layout))])
            self._wait_http(f"http://{self.registry}/v2/", "docker-registry")
            self.pause_image = node_images.push(
                node_images.pause_layout(self.cache / "node-images"), f"{self.registry}/pause:3"
            )
            self.control_plane.start()
            self._control_plane_started = True
            config = node_config.containerd(self.layout, f"{self.registry}/pause:3")
            self._launch("containerd", ["--config", str(config)])
            self._wait_for(self.layout.containerd_socket.exists, "containerd socket")
            self._start_kubelet()
            self._launch(
                "kube-proxy",
                [
                    "--config",
                    str(
                        node_config.kube_proxy(
                            self.layout,
                            self.control_plane.kubeconfig,
                            healthz_port=free_port(),
                            metrics_port=free_port(),
                        )
                    ),
                ],
            )
            self._launch(
                "kube-scheduler",
                [
                    f"--kubeconfig={self.control_plane.kubeconfig}",
                    "--leader-elect=false",
                    f"--secure-port={free_port()}",
                    "--bind-address=127.0.0.1",
                ],
            )
            self._wait_for(self._node_ready, "node Ready")
        except BaseException as error:
            report = self._log_report()
            self.stop()
            if isinstance(error, Exception):
                raise NodeError(f"{error}\n{report}") from error
            raise
        self.startup_seconds = time.monotonic() - began

    def _bridge_and_guard(self) -> None:
        _run("ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for command in node_host.IPTABLES:
            _run(command, "-t", "mangle", "-N", GUARD_CHAIN)
            _run(command, "-t", "mangle", "-A", GUARD_CHAIN, "-o", "lo", "-j", "RETURN")
            _run(command, "-t", "mangle", "-A", GUARD_CHAIN, "-o", BRIDGE, "-j", "RETURN")
            _run(command, "-t", "mangle", "-A", GUARD_CHAIN, "-o", "veth+", "-j", "RETURN")
            _run(command, "-t", "mangle", "-I", "POSTROUTING", "1", "-j", GUARD_CHAIN)
        guard = ("iptables", "-t", "mangle", "-A", GUARD_CHAIN)
        _run(*guard, "-s", POD_SUBNET, "-j", "DROP")
        _run(*guard, "-d", SERVICE_CLUSTER_IP_RANGE, "-j", "DROP")
        _run(*guard, "-s", f"{NODE_IP}/32", "-j", "DROP")

    def _start_kubelet(self) -> None:
        config = node_config.kubelet(self.layout, port=free_port(), healthz_port=free_port())
        self._launch(
            "kubelet",
            [
                f"--config={config}",
                f"--kubeconfig={self.control_plane.kubeconfig}",
                f"--hostname-override={node_config.NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--root-dir={self.layout.kubelet_dir}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                "--v=1",
            ],
        )

    def _launch(self, name: str, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        binary = str(self.assets / name) if name in BINARIES else shutil.which(name) or name
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [binary, *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
                start_new_session=True,
            )
        self._processes.append(_Process(name, process, log))

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """``name`` (e.g. kube-proxy) frozen with SIGSTOP inside the block: a component that
        lags behind the API server, as one on a busy node does."""
        (entry,) = [e for e in self._processes if e.name == name]
        os.kill(entry.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(entry.process.pid, signal.SIGCONT)

    def _wait_http(self, url: str, what: str) -> None:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        self._wait_for(answers, what)

    def _wait_for(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not condition():  # type: ignore[operator]
            for entry in self._processes:
                if entry.process.poll() is not None:
                    raise NodeError(f"{entry.name} exited with {entry.process.returncode}")
            if time.monotonic() > deadline:
                raise NodeError(f"{what} not reached after {self.ready_timeout:.0f}s")
            time.sleep(0.2)

    def _node_ready(self) -> bool:
        with self.control_plane.api_client() as client:
            nodes = CoreV1Api(client).list_node().items
        for node in nodes:
            for condition in node.status.conditions or []:
                if condition.type == "Ready" and condition.status == "True":
                    return True
        return False

    # -- use -------------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        result = subprocess.run(
            [str(self.assets / "kubectl"), f"--kubeconfig={self.control_plane.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    # -- stop ------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything, undo the host changes; returns what could not be undone."""
        for name in ("kube-scheduler", "kube-proxy", "kubelet"):
            self._stop(name)
        self._remove_containers()
        self._stop("containerd")
        self._kill_shims()
        if self._control_plane_started:
            self.control_plane.stop()
            self._control_plane_started = False
        self._stop("docker-registry")
        problems = node_host.restore(self.before) if self.before else []
        if os.environ.get("MAINT_KEEP_NODE_DIR"):
            print(f"node files kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return problems

    def _stop(self, name: str) -> None:
        for entry in [e for e in self._processes if e.name == name]:
            if entry.process.poll() is None:
                entry.process.terminate()
                try:
                    entry.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    entry.process.kill()
                    entry.process.wait(timeout=15)
            self._processes.remove(entry)

    def _ctr(self, *args: str) -> str:
        return _run("ctr", "--address", str(self.layout.containerd_socket), "-n", "k8s.io", *args)

    def _remove_containers(self) -> None:
        """Every container containerd runs for the node: killed, its task and record deleted."""
        if not any(e.name == "containerd" and e.process.poll() is None for e in self._processes):
            return
        with contextlib.suppress(NodeError):
            for task in self._ctr("tasks", "ls", "-q").split():
                with contextlib.suppress(NodeError):
                    self._ctr("tasks", "kill", "-s", "SIGKILL", "--all", task)
            deadline = time.monotonic() + 20
            for task in self._ctr("tasks", "ls", "-q").split():
                while time.monotonic() < deadline:
                    try:
                        self._ctr("tasks", "delete", task)
                        break
                    except NodeError:
                        time.sleep(0.2)
            for container in self._ctr("containers", "ls", "-q").split():
                with contextlib.suppress(NodeError):
                    self._ctr("containers", "delete", container)

    def _kill_shims(self) -> None:
        """The runc shims our containerd started outlive it: find them by our socket, by PID."""
        socket = str(self.layout.containerd_socket)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                cmdline
                and cmdline[0].endswith(b"containerd-shim-runc-v2")
                and (socket.encode() in cmdline)
            ):
                with contextlib.suppress(OSError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _log_report(self) -> str:
        parts = []
        for entry in self._processes:
            try:
                tail = entry.log.read_text(errors="replace").splitlines()[-25:]
            except OSError as error:
                tail = [f"(no log: {error})"]
            parts += [f"----- last lines of {entry.name} ({entry.log}) -----", *tail]
        return "\n".join(parts)
