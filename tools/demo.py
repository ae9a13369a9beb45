#!/usr/bin/env python3
"""`make demo`: watch one maintenance window open and close, printed as a timeline.

Two ways, chosen by tools/demo.sh:

``local`` (no Docker or no kind): the same flow on the local control plane the tests use.
  Real: etcd, kube-apiserver and kube-controller-manager v1.36 (RBAC and Pod Security on), the
  RBAC and namespaces of manifests/base, the sample app of manifests/sample-app, `maint run` as a
  process with its ServiceAccount's token, on the wall clock, SQLite, and an OCI registry
  (Debian's docker-registry) that maint really deletes the image from. Simulated: the nodes (a
  fake kubelet marks Pods Ready, no container runs) and Kaniko's push (an image pushed with
  skopeo; the fake kubelet reports its digest as Kaniko would).

``kind --notice ID``: follow a notice of maint deployed on kind (tools/demo.sh set it up) through
  `kubectl exec ... maint notice show`, and the sample app through its NodePort.
"""

# Every URL opened here is http:// to a local server this script started or the kind NodePort.
# ruff: noqa: S310

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START_IN = 30.0  # seconds from registering the notice to its start
LENGTH = 30.0  # seconds the window lasts
SETTINGS = {  # short timings so the whole window fits in about a minute and a half
    "MAINT_PREPARE_LEAD": "15",
    "MAINT_POLL_INTERVAL": "2",
    "MAINT_RESTORE_GRACE": "30",
    "MAINT_BUILD_TIMEOUT": "30",
    "MAINT_POD_READY_TIMEOUT": "20",
    "MAINT_ENDPOINTS_TIMEOUT": "20",
}
MANAGED = "app.kubernetes.io/managed-by=maint"
MAINT = str(REPO / ".venv" / "bin" / "maint")


class Timeline:
    """Prints one line per thing that happened, with the time relative to the window's start."""

    def __init__(self) -> None:
        self.start: datetime | None = None

    def line(self, source: str, what: str, detail: str = "", at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        clock = at.astimezone().strftime("%H:%M:%S")
        if self.start is None:
            relative = "       "
        else:
            offset = (at - self.start).total_seconds()
            relative = f"T{'+' if offset >= 0 else '-'}{abs(offset):5.1f}s"
        print(f"  {clock}  {relative}  {source:<8} {what:<24} {detail}".rstrip(), flush=True)


def say(text: str) -> None:
    print(text, flush=True)


def shell(args: list[str], env: dict[str, str], *, show: bool = True) -> str:
    """Run a maint command as an operator would, echo it, and return its stdout."""
    if show:
        say(f"  $ {' '.join(_quote(a) for a in ['maint', *args[1:]])}")
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args)}` failed:\n{result.stderr}")
    return result.stdout


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


# --- local mode ---------------------------------------------------------------------------


def local(reason: str) -> int:
    from tests.support.controlplane import running_control_plane
    from tests.support.fixtures_k8s import control_plane_assets
    from tests.support.kubelet import FakeKubelet, JobResult
    from tests.support.window import leftovers_after

    say("maint demo — local control plane: simulated nodes, no containers")
    say(f"  why not kind: {reason}")
    say("  real: kube-apiserver, controllers, RBAC, Pod Security, SQLite, OCI registry, maint run")
    say("  simulated: nodes (a fake kubelet marks Pods Ready) and Kaniko's push (see below)")
    say("")
    workdir = Path(tempfile.mkdtemp(prefix="maint-demo-"))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(running_control_plane(_assets(control_plane_assets)))
        admin = plane.api_client()
        stack.callback(admin.close)
        kubelet = FakeKubelet(admin)
        kubelet.start()
        stack.callback(kubelet.stop)
        say(f"* control plane up in {time.monotonic() - started:.1f}s ({plane.server})")
        registry, push = stack.enter_context(_registry(workdir))
        digest = push()
        kubelet.default_job_result = JobResult(succeeded=True, message=digest)
        say(f"* registry {registry}: seeded image {digest[:19]}… (stands in for Kaniko's push)")
        kubeconfig = _install(admin, plane, workdir, repository=f"{registry}/maint-page")
        _sample_app(admin)
        env = os.environ | SETTINGS
        env |= {
            "MAINT_KUBECONFIG": str(kubeconfig),
            "MAINT_DATABASE_URL": f"sqlite:///{workdir / 'maint.db'}",
            "MAINT_IMAGE_REPOSITORY": f"{registry}/maint-page",
            "MAINT_REGISTRY_INSECURE": "true",
        }
        say("")
        say("* the operator's part")
        shell([MAINT, "db", "upgrade"], env)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=START_IN)
        end = start + timedelta(seconds=LENGTH)
        added = shell(
            [
                MAINT,
                *("notice", "add", "--title", "Planned maintenance"),
                *("--reason", "Database upgrade (maint demo)"),
                *("--start", start.isoformat(), "--end", end.isoformat()),
                *("--target", "shop/web", "--lang", "en", "-o", "json"),
            ],
            env,
        )
        notice_id = int(json.loads(added)["id"])
        say(f"    notice {notice_id}: {start.isoformat()} .. {end.isoformat()}")
        # The scheduler starts now, so preparation begins on time while the page is shown.
        log = stack.enter_context((workdir / "maint-run.log").open("w"))
        runner = subprocess.Popen([MAINT, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, runner)
        _show_page(notice_id, env, workdir)
        say("")
        say("* maint run (the Deployment's command), with maint's ServiceAccount token")
        say(f"  $ maint run   (started right after `notice add`; log: {log.name})")
        timeline = Timeline()
        timeline.start = start
        say(f"  {'time':<8}  {'T=start':<8} {'source':<8} {'what':<24} detail")
        state = _follow(admin, env, notice_id, timeline, deadline=end + timedelta(seconds=45))
        _stop(runner)
        say("")
        say(f"  $ maint notice show {notice_id}")
        say(_indent(shell([MAINT, "notice", "show", str(notice_id)], env, show=False)))
        left = leftovers_after(admin, notice_id, timeout=10)
        image_gone = not _registry_has(registry, digest)
        say(f"* state {state}; objects left: {left or 'none'}; image deleted: {image_gone}")
        say(f"* whole demo took {time.monotonic() - started:.0f}s; files in {workdir}")
        if state == "COMPLETED" and not left and image_gone:
            return 0
        say(f"* something went wrong; the last lines of {log.name}:")
        say(_indent("\n".join(Path(log.name).read_text().splitlines()[-30:])))
        return 1


def _assets(find: Callable[[], Path]) -> Path:
    import pytest

    try:
        return find()
    except (pytest.skip.Exception, pytest.fail.Exception) as e:  # how the test helper stops
        raise SystemExit(f"demo: {e}") from None


def _install(admin: Any, plane: Any, workdir: Path, *, repository: str) -> Path:
    """Apply manifests/base (all but the Deployment), its admission policies admitting the
    demo's page ``repository`` (what an overlay patches); a kubeconfig with maint's SA token."""
    from kubernetes.client import CoreV1Api

    from tests.support import manifests

    docs = manifests.render(manifests.KUSTOMIZATIONS["base"])
    docs = [d for d in docs if d["kind"] != "Deployment"]
    for policy in manifests.find(docs, "ValidatingAdmissionPolicy"):
        for variable in policy["spec"].get("variables", []):
            if variable["name"] == "repository":
                variable["expression"] = f"'{repository}'"
    for applied in manifests.apply(admin, docs):
        say(f"  applied {applied.what}  (manifests/base)")
    say("  not applied: Deployment maint-system/maint (no containers here; `maint run` below)")
    token = CoreV1Api(admin).create_namespaced_service_account_token(
        "maint", "maint-system", {"spec": {"expirationSeconds": 3600}}
    )
    kubeconfig = workdir / "maint-sa.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "demo",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [{"name": "maint", "user": {"token": token.status.token}}],
        "contexts": [{"name": "maint", "context": {"cluster": "demo", "user": "maint"}}],
        "current-context": "maint",
    }
    kubeconfig.write_text(json.dumps(config))
    kubeconfig.chmod(0o600)
    say("  token of ServiceAccount maint-system/maint -> MAINT_KUBECONFIG")
    return kubeconfig


def _sample_app(admin: Any) -> None:
    from tests.support import manifests

    docs = manifests.render(manifests.KUSTOMIZATIONS["sample-app"])
    for applied in manifests.apply(admin, docs):
        say(f"  applied {applied.what}  (manifests/sample-app)")
    pods = _wait(lambda: _endpoints(admin) if len(_endpoints(admin)) == 2 else None, 30)
    say(f"  shop/web serves from {', '.join(sorted(pods))}")


@contextlib.contextmanager
def _registry(workdir: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """docker-registry + skopeo if installed, else a stand-in that only records deletes."""
    from tests.support import oci_image
    from tests.support.fixtures_registry import running_registry

    absent = [
        name
        for name in ("docker-registry", "skopeo")
        if not (shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin"))
    ]
    if absent:
        say(f"* {' and '.join(absent)} not installed (apt-get install docker-registry skopeo):")
        say("  using a stand-in registry that accepts deletes and stores nothing")
        with _stand_in_registry() as host:
            digest = "sha256:" + secrets.token_hex(32)
            yield host, lambda: digest
        return
    with running_registry(workdir / "registry", delete_enabled=True) as server:

        def push() -> str:
            layout = oci_image.write_layout(workdir / "image", tag="seed")
            return oci_image.push(
                layout, skopeo=server.skopeo, destination=f"{server.host}/maint-page:seed"
            )

        yield server.host, push


@contextlib.contextmanager
def _stand_in_registry() -> Iterator[str]:
    deleted: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # GET /v2/ and HEAD-like checks
            self._answer(200 if self.path == "/v2/" else 404)

        def do_HEAD(self) -> None:
            self._answer(404 if self.path.rsplit("/", 1)[-1] in deleted else 200)

        def do_DELETE(self) -> None:
            digest = self.path.rsplit("/", 1)[-1]
            if digest in deleted:
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            else:
                deleted.add(digest)
                self._answer(202)

        def _answer(self, status: int, body: bytes = b"{}") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _registry_has(host: str, digest: str) -> bool:
    request = urllib.request.Request(
        f"http://{host}/v2/maint-page/manifests/{digest}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError as e:
        return e.code != 404


def _show_page(notice_id: int, env: dict[str, str], workdir: Path) -> None:
    """The rendered files, and what a client gets, from `maint preview --serve`."""
    say("")
    say("* the page users will see")
    shell([MAINT, "preview", str(notice_id), "--out", str(workdir / "page")], env)
    files = sorted(path.name for path in (workdir / "page").iterdir())
    say(f"    rendered: {', '.join(files)} in {workdir / 'page'}")
    say(f"    open {workdir / 'page' / 'index.html'} in a browser to see it")
    port = _free_port()
    server = subprocess.Popen(
        [MAINT, "preview", str(notice_id), "--serve", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    say(f"  $ maint preview {notice_id} --serve {port} &")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(url), 20)
        say("    (no containers here: `maint preview --serve` answers by the same rules as the")
        say("     nginx in the page image, which tests/integration/test_page_nginx.py checks)")
        for method, path, accept in (
            ("GET", "/", "text/html"),
            ("POST", "/checkout", "text/html"),
            ("GET", "/api/orders", "application/json"),
            ("GET", "/healthz", "*/*"),
        ):
            say(f"  $ curl -si -X {method} -H 'Accept: {accept}' {url}{path}")
            say(_indent(_http(method, url + path, accept), prefix="    | "))
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2):
            return True
    except OSError:
        return False


def _http(method: str, url: str, accept: str) -> str:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        response = urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as e:
        response = e
    with response:
        body = response.read().decode("utf-8", errors="replace")
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [f"{k}: {v}" for k, v in response.headers.items() if k not in ("Date", "Server")]
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if "json" in response.headers.get("Content-Type", ""):
        shown = [json.dumps(json.loads(body), ensure_ascii=False)[:160] + "…"]
    else:
        shown = [line for line in lines if "<title>" in line or "<h1" in line][:2] or lines[:1]
    return "\n".join([*head, "", *shown])


def _follow(
    admin: Any, env: dict[str, str], notice_id: int, timeline: Timeline, *, deadline: datetime
) -> str:
    """Print maint's event log and what the cluster shows, until the target is done."""
    from maint.notices import NoticeStore

    store = NoticeStore(env["MAINT_DATABASE_URL"])
    seen_events = 0
    last: dict[str, Any] = {}

    def new_events() -> None:
        nonlocal seen_events
        for event in store.events(notice_id)[seen_events:]:
            seen_events += 1
            if event.step != "register":
                what = f"{event.step} {event.outcome}"
                timeline.line("maint", what, _short(event.detail), at=event.at)

    state = "SCHEDULED"
    try:
        while datetime.now(UTC) < deadline:
            # Events first (they carry their own time), then the state they led to, then
            # what the cluster shows now: the lines come out in the order things happened.
            new_events()
            target = store.get(notice_id).targets[0]
            state = target.state.value
            if state != last.get("state"):
                timeline.line("maint", f"state -> {state}")
                last["state"] = state
            _observe(admin, timeline, last)
            if target.state.terminal and not _managed(admin):
                new_events()  # the last ones, written after this pass read the log
                return state
            time.sleep(0.25)
    finally:
        store.close()
    return state


def _observe(admin: Any, timeline: Timeline, last: dict[str, Any]) -> None:
    from kubernetes.client import CoreV1Api

    selector = CoreV1Api(admin).read_namespaced_service("web", "shop").spec.selector
    if selector != last.get("selector"):
        timeline.line("cluster", "Service shop/web", f"selector {selector}")
        last["selector"] = selector
    pods = sorted(_endpoints(admin))
    if pods != last.get("endpoints"):
        timeline.line("cluster", "EndpointSlices shop/web", f"ready: {', '.join(pods) or 'none'}")
        last["endpoints"] = pods
    objects = set(_managed(admin))
    for name in sorted(objects - last.get("objects", set())):
        timeline.line("cluster", "+ created", name)
    for name in sorted(last.get("objects", set()) - objects):
        timeline.line("cluster", "- deleted", name)
    last["objects"] = objects


def _managed(admin: Any) -> list[str]:
    from kubernetes.client import BatchV1Api, CoreV1Api

    core, batch = CoreV1Api(admin), BatchV1Api(admin)
    found = [
        f"Pod {p.metadata.namespace}/{p.metadata.name}"
        for p in core.list_pod_for_all_namespaces(label_selector=MANAGED).items
    ]
    found += [
        f"Job {j.metadata.namespace}/{j.metadata.name}"
        for j in batch.list_job_for_all_namespaces(label_selector=MANAGED).items
    ]
    found += [
        f"ConfigMap {c.metadata.namespace}/{c.metadata.name}"
        for c in core.list_config_map_for_all_namespaces(label_selector=MANAGED).items
    ]
    return found


def _endpoints(admin: Any) -> set[str]:
    from kubernetes.client import DiscoveryV1Api

    slices = DiscoveryV1Api(admin).list_namespaced_endpoint_slice(
        "shop", label_selector="kubernetes.io/service-name=web"
    )
    return {
        e.target_ref.name
        for s in slices.items
        for e in (s.endpoints or [])
        if e.target_ref and (e.conditions is None or e.conditions.ready)
    }


def _short(detail: str) -> str:
    return detail if len(detail) <= 110 else detail[:107] + "..."


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def _wait(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"demo: gave up after {timeout:.0f}s waiting for {probe}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- kind mode ----------------------------------------------------------------------------


def kind(notice_id: int, url: str, context: str) -> int:
    """Follow a notice on kind: its event log via kubectl exec, and HTTP through the Service."""
    timeline = Timeline()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_http, args=(url, timeline, stop), daemon=True)
    seen = 0
    state = ""
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            notice = _kubectl_notice(notice_id, context)  # a few seconds: a Python process
            if timeline.start is None:
                timeline.start = datetime.fromisoformat(notice["start"])
                watcher.start()
            for event in notice["events"][seen:]:
                seen += 1
                if event["step"] != "register":
                    what = f"{event['step']} {event['outcome']}"
                    at = datetime.fromisoformat(event["at"])
                    timeline.line("maint", what, _short(event["detail"]), at=at)
            if state in TERMINAL:  # this last fetch drained the events written after it
                return 0 if state == "COMPLETED" else 1
            if notice["targets"][0]["state"] != state:
                state = notice["targets"][0]["state"]
                timeline.line("maint", f"state -> {state}")
    finally:
        stop.set()
    return 1


TERMINAL = ("COMPLETED", "FAILED", "ROLLED_BACK", "CANCELLED")


def _watch_http(url: str, timeline: Timeline, stop: threading.Event) -> None:
    """What a client of the Service gets, every half second; a line when it changes."""
    last = None
    while not stop.is_set():
        status = _status(url)
        if status != last:
            timeline.line("client", f"GET {url}", status)
            last = status
        stop.wait(0.5)


def _kubectl_notice(notice_id: int, context: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            *("kubectl", "--context", context, "-n", "maint-system", "exec", "deploy/maint"),
            *("-c", "maint", "--", "maint", "notice", "show", str(notice_id), "-o", "json"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout))


def _status(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return f"{response.status} (the app)"
    except urllib.error.HTTPError as e:
        page = "maintenance page" if e.code == 503 and e.headers.get("Retry-After") else "?"
        return f"{e.code} ({page})"
    except OSError as e:
        return f"no answer ({e})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    local_mode = sub.add_parser("local")
    local_mode.add_argument("--reason", default="Docker or kind is not available")
    kind_mode = sub.add_parser("kind")
    kind_mode.add_argument("--notice", type=int, required=True)
    kind_mode.add_argument("--url", default="http://127.0.0.1:30080/")
    kind_mode.add_argument("--context", default="kind-maint")
    args = parser.parse_args()
    if args.mode == "local":
        return local(args.reason)
    return kind(args.notice, args.url, args.context)


if __name__ == "__main__":
    sys.exit(main())
