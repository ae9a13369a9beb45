"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) as processes.

Why: there is no Docker engine on the development and CI machines, yet the behaviour ``maint``
relies on (validation, Pod Security admission, RBAC, JSON Patch ``test``, EndpointSlices, Jobs)
has to be proven against the real API server, not a mock. The binaries are built from the
Kubernetes Go modules by ``tools/k8sbin/build.sh``; this module only runs them, envtest-style.

Everything lives in one temporary directory (etcd data, PKI, logs, kubeconfig) and on free
loopback ports, so several test sessions and benchmarks can run side by side. ``stop`` ends
exactly the processes ``start`` created: SIGTERM, then SIGKILL after a timeout. If start-up fails,
the tail of every component's log is put into the raised error, because that is the only place
the reason is written.

There is no kubelet and no scheduler: ``tests.support.kubelet.FakeKubelet`` plays both.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes.client import ApiClient, Configuration
from urllib3 import HTTPHeaderDict

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

#: Only what ``maint`` and its tests exercise: fewer controllers start faster and log less.
#: Deployments/ReplicaSets let tests stand up a realistic "application" behind a Service.
CONTROLLERS = (
    "job-controller",
    "endpointslice-controller",
    "endpoints-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "deployment-controller",
    "replicaset-controller",
)

# Room for the benchmark's 500 Services sharing one start (and everything else alongside).
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/20"
ADMIN_USER = "maint-test-admin"


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message carries the components' log tails."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it, so no collisions)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries(assets: Path) -> list[str]:
    """Names of the control-plane binaries that ``assets`` lacks (empty when complete)."""
    return [name for name in BINARIES if not os.access(assets / name, os.X_OK)]


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_public: Path
    sa_private: Path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_pki(directory: Path, address: str = "127.0.0.1") -> _Pki:
    """A throw-away CA, a serving certificate for the API server and the service-account keys.

    ECDSA for TLS because it is generated in microseconds; RSA for service-account tokens
    because that is what clusters use and what every token verifier accepts.
    """
    directory.mkdir(mode=0o700)
    now = dt.datetime.now(dt.UTC)
    valid_from, valid_to = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maint-test-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    serving_key = ec.generate_private_key(ec.SECP256R1())
    service_ip = next(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE).hosts())
    names: list[x509.GeneralName] = [
        *{x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", address)},
        x509.IPAddress(service_ip),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = _Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_public=directory / "sa.pub",
        sa_private=directory / "sa.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.sa_private.write_bytes(_pem_key(sa_key))
    pki.sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _die_with_parent() -> None:
    """Runs in the child before exec: kill it if the test process dies without cleaning up.

    SIGKILL, not SIGTERM: all components would get the signal at once, and the API server's
    graceful shutdown hangs forever once etcd is gone. Nothing here is worth a clean exit.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in a temp dir; use as a context manager.

    After ``start``: ``server`` (https URL), ``token`` (an admin in ``system:masters``),
    ``ca_file`` and ``kubeconfig`` (a file ``maint`` and kubectl can use as they are).
    """

    def __init__(
        self,
        assets: Path,
        *,
        start_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        address: str = "127.0.0.1",
        extra_controllers: Sequence[str] = (),
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
    ) -> None:
        """``address``: where the API server listens and what it advertises (a real node's Pods
        need one they can reach, not loopback); the ``extra_*`` options add to the defaults."""
        self.assets = Path(assets)
        self.address = address
        self.extra_controllers = tuple(extra_controllers)
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.extra_controller_manager_args = tuple(extra_controller_manager_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.token = secrets.token_hex(24)
        self.workdir = Path(tempfile.mkdtemp(prefix="maint-k8s-"))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.server = ""
        self.etcd_url = ""  # http://127.0.0.1:PORT, for tests that look at storage directly
        self.startup_seconds = 0.0
        self._components: list[_Component] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, *, attempts: int = 3) -> None:
        """Start all three components and return once the API and the controllers answer.

        The components are launched without waiting for each other (the API server retries
        etcd, the controller manager retries the API server): on two cores that overlap is
        what keeps start-up well under the time a sequential start would take. A free port can
        be taken by another session between choosing and binding it: that case starts over.
        """
        absent = missing_binaries(self.assets)
        if absent:
            raise ControlPlaneError(f"{self.assets} lacks {', '.join(absent)}")
        began = time.monotonic()
        pki = _write_pki(self.workdir / "pki", self.address)
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(pki, deadline=time.monotonic() + self.start_timeout)
            except ControlPlaneError as error:
                report = self._log_report()
                self._stop_processes()
                if "address already in use" in report and attempt < attempts:
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                    continue
                self.stop(keep_files=True)
                raise ControlPlaneError(f"{error}\n{report}") from None
            except BaseException:
                self.stop(keep_files=True)
                raise
            break
        self.startup_seconds = time.monotonic() - began

    def _start_once(self, pki: _Pki, *, deadline: float) -> None:
        self.etcd_url = self._start_etcd()
        secure_port = free_port()
        self.server = f"https://{self.address}:{secure_port}"
        self._write_kubeconfig()
        self._start_apiserver(self.etcd_url, secure_port, pki)
        self._start_controller_manager()
        self._wait_ready(deadline)

    def stop(self, *, keep_files: bool = False) -> None:
        """Stop what ``start`` launched (newest first), then remove the temp dir.

        The directory stays when ``keep_files`` is set (a failed start: its logs explain why)
        or when ``MAINT_KEEP_CONTROL_PLANE_DIR`` is set in the environment.
        """
        self._stop_processes()
        if keep_files or os.environ.get("MAINT_KEEP_CONTROL_PLANE_DIR"):
            print(f"control plane files kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        # One at a time, newest first: the API server's graceful shutdown stalls when etcd
        # vanishes underneath it, so etcd goes last.
        for component in reversed(self._components):
            process = component.process
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        self._components.clear()

    # -- clients ---------------------------------------------------------------------------------

    def configuration(self) -> Configuration:
        """A client configuration for the admin identity, verifying the generated CA."""
        configuration = Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.verify_ssl = True
        # The prefix goes into the value: the client looks the prefix up under a key name that
        # changed between versions ('authorization' vs 'BearerToken'), the value it always finds.
        configuration.api_key = {"authorization": f"Bearer {self.token}"}
        return configuration

    def api_client(
        self, impersonate: str | None = None, groups: Sequence[str] | None = None
    ) -> ApiClient:
        """A new ``ApiClient``; as admin, or acting as ``impersonate`` (and ``groups``).

        Impersonation is how tests check RBAC without minting tokens: the admin may impersonate
        anyone, and for ``system:serviceaccount:NS:NAME`` the API server adds the service-account
        groups itself. The caller closes the client.
        """
        if impersonate is None:
            if groups:
                raise ValueError("impersonating groups needs a user as well")
            return ApiClient(self.configuration())
        return _ImpersonatingApiClient(self.configuration(), impersonate, list(groups or ()))

    # -- components ------------------------------------------------------------------------------

    def _launch(self, name: str, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(self.assets / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # prctl(PDEATHSIG) fires when the *thread* that forked exits: only safe from
                # the main thread, which is where pytest and the benchmarks start us.
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        self._components.append(_Component(name=name, process=process, log=log))

    def _start_etcd(self) -> str:
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        self._launch(
            "etcd",
            [
                "--name=maint-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=maint-test={peer_url}",
                # Test data is thrown away: durability only costs time.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        return client_url

    def _start_apiserver(self, etcd_url: str, secure_port: int, pki: _Pki) -> None:
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        self._launch(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}",
                # Without it the API server looks for a default route and may find none.
                f"--advertise-address={self.address}",
                f"--secure-port={secure_port}",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                # Pod Security admission is on by default; privileged pods are allowed by the
                # cluster and refused per namespace by its labels, as in a real cluster.
                "--allow-privileged=true",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )

    def _start_controller_manager(self) -> None:
        self._launch(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join((*CONTROLLERS, *self.extra_controllers))}",
                "--leader-elect=false",
                # No serving port: the default 10257 would collide between parallel sessions.
                "--secure-port=0",
                "--profiling=false",
                *self.extra_controller_manager_args,
            ],
        )

    def _write_kubeconfig(self) -> None:
        """An admin kubeconfig; JSON is valid YAML, so no YAML library is needed to write it."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "maint-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "maint-test",
                    "context": {"cluster": "maint-test", "user": ADMIN_USER},
                }
            ],
            "current-context": "maint-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    # -- readiness -------------------------------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        """``/readyz`` for the API server; the ``default`` ServiceAccount for the controllers.

        The ServiceAccount is created by the serviceaccount controller, which the controller
        manager starts together with the others, after their informers are set up.
        """
        context = ssl.create_default_context(cafile=str(self.ca_file))
        checks = [
            ("kube-apiserver /readyz", "/readyz"),
            (
                "kube-controller-manager (ServiceAccount default/default)",
                "/api/v1/namespaces/default/serviceaccounts/default",
            ),
        ]
        for what, path in checks:
            while not self._answers(path, context):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"{what} not ready after {self.start_timeout:.0f}s (logs in {self.workdir})"
                    )
                time.sleep(0.1)

    def _answers(self, path: str, context: ssl.SSLContext) -> bool:
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _check_alive(self) -> None:
        for component in self._components:
            code = component.process.poll()
            if code is not None:
                raise ControlPlaneError(f"{component.name} exited with status {code}")

    def _log_report(self) -> str:
        parts = []
        for component in self._components:
            parts.append(f"----- last lines of {component.name} ({component.log}) -----")
            parts.append(component.tail())
        return "\n".join(parts)


class _ImpersonatingApiClient(ApiClient):  # type: ignore[misc]
    """An ``ApiClient`` that sends ``Impersonate-User`` and one ``Impersonate-Group`` per group.

    ``ApiClient.default_headers`` is a plain dict and cannot repeat a header, and the API server
    does not split a comma-joined group header, so the headers are added per request instead.
    """

    def __init__(self, configuration: Configuration, user: str, groups: list[str]) -> None:
        super().__init__(configuration)
        self._user = user
        self._groups = groups

    def request(self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        merged = HTTPHeaderDict(headers or {})
        merged["Impersonate-User"] = self._user
        for group in self._groups:
            merged.add("Impersonate-Group", group)
        return super().request(method, url, *args, headers=merged, **kwargs)


@contextlib.contextmanager
def running_control_plane(assets: Path, **options: Any) -> Iterator[ControlPlane]:
    """``with running_control_plane(path) as cp:`` for scripts and benchmarks."""
    with ControlPlane(assets, **options) as control_plane:
        yield control_plane
