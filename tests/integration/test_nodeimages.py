"""The real node's images (tools/nodeimages): built here, pushed to a real registry, and run.

Each image is unpacked from its cached OCI layout and its entry point run under ``chroot`` on
this host as the image's own user: Debian's nginx serving maint's rendered page config exactly
where the page Dockerfile puts it, maint's image running ``maint notice add`` against SQLite and
``maint run --once`` against the real control plane, the Kaniko executor, the pause program.
Nothing is faked; ``chroot`` stands in for a container runtime (the node tests run the same
images in containerd). Needs root (chroot), gcc, Go or a cached executor, skopeo.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maint.page import render
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_registry import OciRegistryServer
from tests.support.page_cases import SAMPLE_NOTICE
from tests.support.require import missing
from tools.nodeimages import oci, recipes

pytestmark = pytest.mark.registry

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "nodeimages" / "build.sh"
NAMES = {"pause", "nginx", "kaniko", "python", "maint"}
TEMP_KINDS = ("client", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class Built:
    refs: dict[str, str]
    registry: OciRegistryServer
    cache: Path
    seconds: float


def _build(registry: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), "--registry", registry, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(scope="module")
def built(oci_registry: OciRegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Built:
    if os.geteuid() != 0:
        missing("root", "run as root: the images are checked under chroot")
    for tool in ("gcc", "skopeo"):
        if shutil.which(tool) is None:
            missing(tool, "run tools/setup.sh as root")
    out = tmp_path_factory.mktemp("nodeimages") / "images.json"
    start = time.monotonic()
    result = _build(oci_registry.host, out)
    assert result.returncode == 0, result.stderr
    cache = Path(
        os.environ.get("MAINT_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maint"
    )
    return Built(json.loads(out.read_text()), oci_registry, cache, time.monotonic() - start)


def _layout(built: Built, name: str) -> oci.Image:
    folders = [p for p in (built.cache / "images" / name).iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1, folders
    return oci.read_image(folders[0])


def _config(image: oci.Image) -> dict[str, object]:
    blobs = image.path / "blobs" / "sha256"
    manifest = json.loads((blobs / image.manifest_digest[7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return dict(config["config"])


@pytest.fixture
def unpacked(tmp_path: Path) -> Path:
    return tmp_path / "root"


# A container's view: the host's /dev and /proc in the image's root, in a private mount
# namespace so the binds vanish with the process. With ``own_pids``, a PID namespace of its own
# and a fresh /proc (what Kaniko checks to see it is in a container).
_ENTER = 'mkdir -p "$0/dev" "$0/proc" && mount --rbind /dev "$0/dev" && {proc} && exec "$@"'
_HOST_PROC = 'mount --rbind /proc "$0/proc"'
_OWN_PROC = 'mount -t proc proc "$0/proc"'


def _chroot(
    root: Path, user: str, argv: list[str], env: dict[str, str], *, own_pids: bool = False
) -> list[str]:
    """``argv`` run in ``root`` as ``user`` with exactly the environment ``env``."""
    variables = [f"{k}={v}" for k, v in env.items()]
    chroot = ["/usr/sbin/chroot", f"--userspec={user}", str(root), *argv]
    enter = _ENTER.format(proc=_OWN_PROC if own_pids else _HOST_PROC)
    namespaces = ["--mount", "--propagation", "private"] + (["--pid", "--fork"] if own_pids else [])
    return ["unshare", *namespaces, "/bin/sh", "-c", enter, str(root),
            "/usr/bin/env", "-i", *variables, *chroot]  # fmt: skip


def _image_env(config: dict[str, object]) -> dict[str, str]:
    pairs = [str(e).split("=", 1) for e in config.get("Env", []) or []]  # type: ignore[union-attr]
    return {k: v for k, v in pairs}


def _tag_digest(registry: OciRegistryServer, repository: str, tag: str) -> str:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.headers["Docker-Content-Digest"])


def test_build_writes_digest_refs_the_registry_serves_and_a_rerun_changes_nothing(
    built: Built, tmp_path: Path
) -> None:
    assert set(built.refs) == NAMES
    host = built.registry.host
    for name, ref in built.refs.items():
        match = re.fullmatch(
            rf"{re.escape(host)}/(maint-node/[a-z-]+)@(sha256:[0-9a-f]{{64}})", ref
        )
        assert match, ref
        assert built.registry.has_manifest(match[1], match[2]), ref
        assert _layout(built, name).manifest_digest == match[2]
        # manifests/overlays/local names the same image by the tag `local`.
        assert _tag_digest(built.registry, match[1], "local") == match[2]
    again = tmp_path / "again.json"
    start = time.monotonic()
    result = _build(host, again)
    warm = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert json.loads(again.read_text()) == built.refs
    assert "cached" in result.stderr and "building" not in result.stderr
    assert warm < 60, f"a warm run took {warm:.1f}s"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--registry", "no-port", "--out", "OUT"], "is not HOST:PORT"),
        (["--registry", "127.0.0.1:5000", "--out", "/nonexistent/x.json"], "does not exist"),
        (["--out", "OUT"], "usage:"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    args: list[str], message: str, tmp_path: Path
) -> None:
    out = tmp_path / "refs.json"
    argv = [str(out) if a == "OUT" else a for a in args]
    result = subprocess.run(
        [str(BUILD), *argv], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}"
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _page_context(built: Built, port: int) -> dict[str, bytes]:
    context = render(
        SAMPLE_NOTICE, ports=[port], zone=ZoneInfo("UTC"), base_image=built.refs["nginx"]
    )
    return dict(context.files)


def _serves_the_page(root: Path, config: dict[str, object], port: int, page: bytes) -> None:
    """Run the image's Cmd in ``root`` as the page Pod does (UID 101, only /tmp written) and
    check the answers: 503 with the page on any path, 200 on /healthz, logs on stdout."""
    tmp = root / "tmp"
    assert tmp.is_dir() and not any(tmp.iterdir())
    command = [*config["Cmd"]]  # type: ignore[misc]
    # nginx reopens /dev/stdout and /dev/stderr: as runc does, hand UID 101 stdio it owns.
    logs = {name: root.parent / f"nginx.{name}" for name in ("stdout", "stderr")}
    for log in logs.values():
        log.touch()
        os.chown(log, 101, 101)
    with logs["stdout"].open("wb") as stdout, logs["stderr"].open("wb") as stderr:
        process = subprocess.Popen(
            _chroot(root, "101:101", command, _image_env(config)), stdout=stdout, stderr=stderr
        )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process)
        status, headers, body = _get(f"http://127.0.0.1:{port}/any/path")
        assert status == 503
        assert headers["Retry-After"] == "Sat, 28 Nov 2026 13:30:00 GMT"
        assert body == page
        status, _, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        owners = subprocess.run(
            ["ps", "-o", "uid=", "--ppid", str(process.pid), "-p", str(process.pid)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert set(owners) == {"101"}, owners
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout=20)
    assert process.returncode == 0, logs["stderr"].read_text()
    assert "GET /any/path" in logs["stdout"].read_text()  # the access log goes to stdout
    assert {p.name for p in tmp.iterdir()} <= {f"{k}_temp" for k in TEMP_KINDS}


def test_nginx_base_serves_maints_page_as_uid_101_with_the_page_dockerfile_layout(
    built: Built, unpacked: Path
) -> None:
    image = _layout(built, "nginx")
    config = _config(image)
    assert config["User"] == "101"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    oci.unpack(image, unpacked)
    port = _free_port()
    files = _page_context(built, port)
    # Apply the rendered Dockerfile's COPY lines by hand: every target must exist in this base.
    dockerfile = files["Dockerfile"].decode()
    copies = [line.split()[1:] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies, dockerfile
    for *sources, target in copies:
        for source in sources:
            destination = unpacked / target.lstrip("/")
            if target.endswith("/"):
                assert destination.is_dir(), f"{target} is missing in the base"
                destination = destination / source
            destination.write_bytes(files[source])
    _serves_the_page(unpacked, config, port, files["index.html"])


def test_kaniko_image_builds_maints_page_from_the_nginx_base_and_the_result_serves_it(
    built: Built, tmp_path: Path
) -> None:
    """Kaniko v1.24.0 runs from its image under chroot (private mount and PID namespaces stand
    in for the container), with the arguments maint's Kaniko Job passes."""
    kaniko = _layout(built, "kaniko")
    config = _config(kaniko)
    root = tmp_path / "kaniko"
    oci.unpack(kaniko, root)
    port = _free_port()
    files = _page_context(built, port)
    (root / "ctx").mkdir()
    with tarfile.open(root / "ctx" / "context.tar.gz", mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    destination = f"{built.registry.host}/maint-page:t{uuid.uuid4().hex[:8]}"
    args = [
        "--context=tar:///ctx/context.tar.gz", "--dockerfile=Dockerfile",
        f"--destination={destination}", "--digest-file=/ctx/digest", "--cache=false",
        "--log-format=text", "--insecure", "--insecure-pull", "--skip-tls-verify",
        "--skip-tls-verify-pull",
    ]  # fmt: skip
    command = [*config["Entrypoint"], *args]  # type: ignore[misc]
    argv = _chroot(root, "0:0", command, _image_env(config), own_pids=True)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b[" not in result.stdout + result.stderr  # --log-format=text: no colours
    digest = (root / "ctx" / "digest").read_text().strip()
    layout = tmp_path / "page-oci"
    copied = subprocess.run(
        [
            "skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{destination.rsplit(':', 1)[0]}@{digest}", f"oci:{layout}:page",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    page = oci.read_image(layout)
    page_config = _config(page)
    assert page_config["User"] == "101"
    page_root = tmp_path / "page"
    oci.unpack(page, page_root)
    _serves_the_page(page_root, page_config, port, files["index.html"])


def _pyc_state(root: Path) -> tuple[int, list[str]]:
    """(number of .py files with a .pyc, those whose .pyc records another mtime or size)."""
    compiled, stale = 0, []
    for folder in ("usr/lib/python3.11", recipes.SITE.lstrip("/")):
        for source in (root / folder).rglob("*.py"):
            pyc = (
                source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
            )
            if not pyc.exists():
                continue
            compiled += 1
            header = pyc.read_bytes()[:16]
            flags, mtime, size = struct.unpack("<III", header[4:16])
            info = source.stat()
            if flags == 0 and (mtime, size) != (int(info.st_mtime), info.st_size & 0xFFFFFFFF):
                stale.append(str(source.relative_to(root)))
    return compiled, stale


def test_maint_image_adds_a_notice_and_runs_a_pass_against_the_real_control_plane(
    built: Built, unpacked: Path, control_plane: ControlPlane
) -> None:
    image = _layout(built, "maint")
    config = _config(image)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["maint"] and config["Cmd"] == ["run"]
    assert config == recipes.dockerfile_runtime(REPO / "Dockerfile")
    oci.unpack(image, unpacked)
    assert not (unpacked / "usr/bin/pip").exists() and not (unpacked / "usr/bin/gcc").exists()
    # Every module is precompiled and its .pyc still valid for the source as unpacked: the root
    # is read-only, so a stale one would mean compiling everything again on each start.
    compiled, stale = _pyc_state(unpacked)
    assert compiled > 3000 and stale == [], stale[:5]
    tmp = unpacked / "tmp"
    kubeconfig = json.loads(control_plane.kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    ca = Path(cluster.pop("certificate-authority")).read_bytes()
    cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    (tmp / "kubeconfig").write_text(json.dumps(kubeconfig))
    (tmp / "kubeconfig").chmod(0o644)
    env = _image_env(config) | {
        "HOME": "/home/maint",
        "MAINT_DATABASE_URL": "sqlite:////tmp/maint.db",
        "MAINT_KUBECONFIG": "/tmp/kubeconfig",
    }

    def maint(*args: str) -> subprocess.CompletedProcess[str]:
        argv = _chroot(unpacked, "10001:10001", [*config["Entrypoint"], *args], env)  # type: ignore[misc]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    for args in (("db", "upgrade"),):
        result = maint(*args)
        assert result.returncode == 0, result.stderr
    result = maint(
        "notice", "add", "--title", "t", "--reason", "r", "--no-maintenance",
        "--start", "2030-01-01T10:00:00+00:00", "--end", "2030-01-01T11:00:00+00:00",
        "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["title"] == "t"
    result = maint("run", "--once")
    assert result.returncode == 0, result.stderr
    assert (tmp / "maint.db").stat().st_uid == 10001


def test_kaniko_and_pause_images_run(built: Built, tmp_path: Path) -> None:
    kaniko = _layout(built, "kaniko")
    config = _config(kaniko)
    root = tmp_path / "kaniko"
    oci.unpack(kaniko, root)
    for path in ("kaniko/ssl/certs/ca-certificates.crt", "etc/nsswitch.conf"):
        assert (root / path).is_file(), path
    assert (root / "kaniko/.docker").is_dir()
    result = subprocess.run(
        ["chroot", str(root), *config["Entrypoint"], "version"],  # type: ignore[misc]
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "v1.24.0" in result.stdout

    pause = _layout(built, "pause")
    root = tmp_path / "pause"
    oci.unpack(pause, root)
    assert [p.name for p in root.iterdir()] == ["pause"]
    process = subprocess.Popen(
        ["unshare", "--pid", "--fork", "chroot", "--userspec=65535:65535", str(root), "/pause"],
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    assert process.poll() is None
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    os.kill(int(children[0]), signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert b"signal 15, exiting" in stderr
