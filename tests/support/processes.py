"""Real ``maint`` processes for the reliability tests, and the stage they play on.

``MaintRun`` is one ``maint run`` process that the test may SIGKILL, SIGSTOP or SIGTERM at any
moment (and that dies with the test process if the test itself is killed). ``maint`` runs one
CLI command (``notice end``, ``restore --overdue``…) as a separate process. Both are forked
by the launcher (below) unless ``fork=False`` asks for a fresh ``python -m maint``.

``Stage`` gathers what a real-process window needs: a namespace with an app Service, a build
namespace, a database, an image in the real registry that the fake kubelet reports as the
Kaniko digest, and the ``MAINT_*`` environment; the test process reads the same database and
cluster through an in-process ``App`` to check what the processes did.

The processes run on real time: windows start seconds ahead and the settings keep every
interval short (poll 1 s, claim TTL 3 s) so a whole window takes seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from maint import naming
from maint.app import App
from maint.notices import Event, Notice, NoticeStore, WorkItem
from maint.settings import Settings
from tests.support.window import APP_LABELS, make_app, make_build_namespace

T = TypeVar("T")

#: Settings every real-process window uses unless a test overrides them (MAINT_<KEY>).
FAST_SETTINGS: dict[str, Any] = {
    "poll_interval": 1,
    "claim_ttl": 3,
    "step_retry_delay": 1,
    "pod_ready_timeout": 20,
    "endpoints_timeout": 20,
    "build_timeout": 40,
    "restore_grace": 12,
    "prepare_lead": 60,
    "health_port": 0,  # several replicas on one machine: no fixed port
    "registry_insecure": True,
}


# --- waiting ----------------------------------------------------------------------------------


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- processes --------------------------------------------------------------------------------


def maint_env(**settings: Any) -> dict[str, str]:
    """This process's environment without any ``MAINT_*`` of its own, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINT_")}
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        if value is None:
            continue
        env[f"MAINT_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def maint(
    *args: str, env: dict[str, str], timeout: float = 90, fork: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one ``maint`` command to its end in a new process; the caller checks
    ``returncode``. ``fork=False`` starts a fresh interpreter (``python -m maint``)."""
    if not fork:
        return subprocess.run(
            [sys.executable, "-m", "maint", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with tempfile.TemporaryDirectory(prefix="maint-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        child = launcher().spawn(list(args), env=env, stdout=out, stderr=err)
        code = child.wait(timeout)
        return subprocess.CompletedProcess(
            ["maint", *args], code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))


# --- the launcher: maint processes without paying for Python start-up each time --------------
#
# ``python -m maint`` spends 2 CPU-seconds importing (kubernetes' client models, SQLAlchemy,
# boto3...) before it does anything: with dozens of processes per test on two shared cores,
# that alone decides when a replacement process is up. The launcher imports maint once and
# forks a child per request; the child takes its environment, stdout and stderr from the
# request and calls ``maint.cli.main(argv)``, exactly what the console script does. It is a new
# process with its own pid, settings, connections and threads. The launcher reaps its children
# and writes each exit code to the file the request named.

REPO = Path(__file__).resolve().parents[2]


class Child:
    """A process started by the launcher: signals by pid, exit code from its status file."""

    def __init__(self, pid: int, status: Path) -> None:
        self.pid = pid
        self.status = status

    def poll(self) -> int | None:
        try:
            return int(self.status.read_text())
        except (OSError, ValueError):
            return None

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.01)
        return code


class _Launcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.support.processes import serve; serve()"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent
            if threading.current_thread() is threading.main_thread()
            else None,
        )
        self.lock = threading.Lock()
        self.workdir = Path(tempfile.mkdtemp(prefix="maint-launcher-"))
        self.count = 0

    def spawn(self, argv: list[str], *, env: dict[str, str], stdout: Path, stderr: Path) -> Child:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.count += 1
            status = self.workdir / f"{self.count}.status"
            request = {
                "argv": argv,
                "env": env,
                "stdout": str(stdout),
                "stderr": str(stderr),
                "status": str(status),
            }
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        if not answer.strip():
            raise RuntimeError("the maint launcher died; see the test's stderr")
        return Child(int(answer), status)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def launcher() -> _Launcher:
    """The one launcher of this test session, started on first use."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or _launcher.process.poll() is not None:
            _launcher = _Launcher()
            atexit.register(_launcher.close)
        return _launcher


def serve() -> None:
    """The launcher's main loop (runs in its own process): one JSON request per line."""
    import faulthandler
    import random
    import traceback

    import maint.cli
    import maint.runner.scheduler  # imported lazily by `maint run`: pay for it here
    from maint import build, cluster, page, runner

    # These packages load their names on first use (the CLI's start-up): a forked `maint run`
    # uses them all (the Kubernetes client, boto3, Jinja2), so load them once, before any fork.
    for package in (build, cluster, page, runner):
        for name in package.__all__:
            getattr(package, name)

    statuses: dict[int, str] = {}
    early: dict[int, int] = {}

    def record(pid: int, code: int) -> None:
        path = statuses.pop(pid, None)
        if path is None:
            early[pid] = code
            return
        Path(path + ".tmp").write_text(str(code))
        os.replace(path + ".tmp", path)

    def reap(_signum: int, _frame: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record(pid, os.waitstatus_to_exitcode(status))

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _die_with_parent()
                random.seed()  # not the launcher's sequence: jitter must differ per process
                os.environ.clear()
                os.environ.update(request["env"])
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
                faulthandler.register(signal.SIGUSR2, all_threads=True)  # see MaintRun.dump
                code = maint.cli.main(request["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        statuses[pid] = request["status"]
        if pid in early:
            record(pid, early.pop(pid))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


class MaintRun:
    """One ``maint run`` process; its stdout and stderr (maint's log) go to ``log``.

    Forked by the launcher by default; ``fork=False`` starts ``python -m maint run``.
    """

    def __init__(
        self, env: dict[str, str], *, log: Path, name: str = "maint", fork: bool = True
    ) -> None:
        self.env = env
        self.log = log
        self.name = name
        self.fork = fork
        self.process: subprocess.Popen[bytes] | Child | None = None
        self.killed_at: float | None = None

    def start(self) -> MaintRun:
        if self.fork:
            self.process = launcher().spawn(["run"], env=self.env, stdout=self.log, stderr=self.log)
            return self
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "maint", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                # PDEATHSIG fires when the forking *thread* ends: only from the main thread.
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> float:
        """SIGKILL, reaped before returning: nothing of it runs afterwards. Returns the time."""
        assert self.process is not None
        self.process.kill()
        self.killed_at = time.time()
        self.process.wait(timeout=10)
        return self.killed_at

    def freeze(self) -> None:
        """SIGSTOP: the process keeps everything but runs no instruction until ``thaw``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def dump(self) -> str:
        """Every thread's stack, written to the log by a forked process (SIGUSR2)."""
        if self.fork and self.alive():
            self.process.send_signal(signal.SIGUSR2)  # type: ignore[union-attr]
            time.sleep(0.5)
        return self.tail(200)

    def up(self) -> bool:
        """Its scheduler is running (the line ``maint run`` logs once started)."""
        return "reconcile every" in self.output()

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it does not go within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


# --- databases --------------------------------------------------------------------------------

# Alembic keeps its migration context in module globals: two upgrades at once in one process
# (parallel stages) would run each other's migrations. maint itself upgrades once per process.
_UPGRADES = threading.Lock()


def upgrade(url: str) -> None:
    with _UPGRADES:
        store = NoticeStore(url)
        try:
            store.upgrade()
        finally:
            store.close()


def conninfo(url: str) -> str:
    """libpq connection string for a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    return make_conninfo(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        dbname=parsed.database or "postgres",
        user=parsed.username or None,
        password=parsed.password or None,
        connect_timeout=5,
    )


@contextlib.contextmanager
def new_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (schema applied) for one process group; dropped after."""
    name = f"maint_rel_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        _drop_database(admin_url, name)


def _drop_database(admin_url: str, name: str) -> None:
    """DROP … WITH (FORCE), retried: an autovacuum worker busy in the database is a process
    of another role, which FORCE may not terminate (InsufficientPrivilege) until it is done."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(20):
        try:
            with psycopg.connect(conninfo(admin_url), autocommit=True) as conn:
                conn.execute(drop)
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 19:
                raise
            time.sleep(0.5)


# --- the stage --------------------------------------------------------------------------------


@dataclass
class Stage:
    """One app Service, its build namespace and database, and how ``maint`` reaches them.

    ``kubeconfig`` is what the ``maint`` processes use (the control plane's, or a proxy's);
    the in-process ``app`` always talks to the control plane directly.
    """

    k8s: ApiClient
    namespace: str
    build_namespace: str
    database_url: str
    kubeconfig: Path
    direct_kubeconfig: Path
    registry: Any  # tests.support.fixtures_registry.OciRegistryServer
    kubelet: Any  # tests.support.kubelet.FakeKubelet
    workdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    digests: dict[int, str] = field(default_factory=dict)  # notice id -> pushed image
    services: dict[int, str] = field(default_factory=dict)  # notice id -> its Service
    runs: list[MaintRun] = field(default_factory=list)
    _app: App | None = None

    @property
    def repository(self) -> str:
        return f"{self.registry.host}/maint-page"

    def values(self, **overrides: Any) -> dict[str, Any]:
        values = dict(FAST_SETTINGS)
        values.update(
            kubeconfig=str(self.kubeconfig),
            database_url=self.database_url,
            build_namespace=self.build_namespace,
            image_repository=self.repository,
        )
        values.update(self.settings)
        values.update(overrides)
        return values

    def env(self, **overrides: Any) -> dict[str, str]:
        return maint_env(**self.values(**overrides))

    @property
    def app(self) -> App:
        if self._app is None:
            values = self.values(kubeconfig=str(self.direct_kubeconfig))
            self._app = App(settings=Settings(**values), say=self.lines.append)
        return self._app

    def run(self, name: str = "maint", **overrides: Any) -> MaintRun:
        """Start a ``maint run`` process (not waiting for anything)."""
        log = self.workdir / f"{name}-{len(self.runs)}.log"
        process = MaintRun(self.env(**overrides), log=log, name=name).start()
        self.runs.append(process)
        return process

    def add_service(self, name: str) -> None:
        """Another Service (and two app Pods) in the stage's namespace."""
        make_app(self.k8s, self.namespace, service=name)

    def add(
        self,
        *,
        start_in: float,
        length: float,
        hold_build: bool = False,
        service: str = "web",
        **fields: Any,
    ) -> Notice:
        """Register a window ``start_in`` seconds from now (in UTC) and arrange its build: a
        fresh image in the registry whose digest the fake kubelet reports for the page's Job.

        Call it before starting the processes that would prepare the window: a process that
        is already running may start the Job before the fake kubelet knows its result."""
        start = datetime.now(UTC) + timedelta(seconds=start_in)
        notice = self.app.add_notice(
            title=fields.get("title", "Planned maintenance"),
            reason=fields.get("reason", "Database upgrade"),
            start=start.isoformat(),
            end=(start + timedelta(seconds=length)).isoformat(),
            targets=[f"{self.namespace}/{service}"],
            lang=fields.get("lang", "en"),
            maintenance=True,
        )
        self.services[notice.id] = service
        self.arrange_build(notice.id, hold=hold_build)
        return notice

    def arrange_build(
        self, notice_id: int, *, hold: bool = False, end: datetime | None = None
    ) -> str:
        """Push an image and have the fake kubelet finish the page's Job with it (the Job of
        the page as it is now, or once the end moves to ``end``)."""
        from tests.support.kubelet import JobResult

        digest = self.registry.push_image("maint-page")
        job = self.page_name(notice_id, end=end)
        self.kubelet.job_results[job] = JobResult(succeeded=True, message=digest)
        if hold:
            self.kubelet.held_jobs.add(job)
        self.digests.setdefault(notice_id, digest)
        return digest

    def page_name(self, notice_id: int, *, end: datetime | None = None) -> str:
        """The name of the page's ConfigMap, Job and Pod for the notice as it is now (or as
        it will be once its end moves to ``end``)."""
        item = self.item(notice_id)
        if end is not None:
            item = WorkItem(notice=replace(item.notice, end=end), target=item.target)
        return self.app.steps().plan_page(item).name

    def item(self, notice_id: int) -> WorkItem:
        notice = self.notice(notice_id)
        return WorkItem(notice=notice, target=notice.targets[0])

    def notice(self, notice_id: int) -> Notice:
        return self.app.store.get(notice_id)

    def events(self, notice_id: int) -> list[Event]:
        return self.app.store.events(notice_id)

    def service(self, name: str = "web") -> Any:
        return CoreV1Api(self.k8s).read_namespaced_service(name, self.namespace)

    def selector(self, service: str = "web") -> dict[str, str]:
        return dict(self.service(service).spec.selector or {})

    def restored(self, service: str = "web") -> bool:
        """The app's selector is back and no maint annotation is left on the Service."""
        found = self.service(service)
        annotations = found.metadata.annotations or {}
        return dict(found.spec.selector or {}) == APP_LABELS and not any(
            key.startswith("maint.io/") for key in annotations
        )

    def leftovers(self, notice_id: int) -> list[str]:
        """maint's Pods, Jobs and ConfigMaps of this notice's target (both namespaces)."""
        service = self.services.get(notice_id, "web")
        target = naming.target_name(notice_id=notice_id, namespace=self.namespace, service=service)
        selector = f"{naming.MANAGED_BY}={naming.MANAGER},{naming.TARGET_LABEL}={target}"
        core, batch = CoreV1Api(self.k8s), BatchV1Api(self.k8s)
        found = []
        for ns in (self.namespace, self.build_namespace):
            for kind, list_fn in (
                ("Pod", core.list_namespaced_pod),
                ("Job", batch.list_namespaced_job),
                ("ConfigMap", core.list_namespaced_config_map),
            ):
                found += [f"{kind} {ns}/{o.metadata.name}" for o in _items(list_fn, ns, selector)]
        return found

    def settled_leftovers(self, notice_id: int, timeout: float = 15) -> list[str]:
        """``leftovers`` once deletions settle (Pods terminate, the GC takes a Job's Pods)."""
        deadline = time.monotonic() + timeout
        found = self.leftovers(notice_id)
        while found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = self.leftovers(notice_id)
        return found

    def image_deleted(self, notice_id: int) -> bool:
        return not self.registry.has_manifest("maint-page", self.digests[notice_id])

    def logs(self) -> str:
        return "\n".join(f"----- {r.log.name} -----\n{r.tail()}" for r in self.runs)

    def close(self) -> None:
        for process in self.runs:
            process.stop()
        if self._app is not None:
            self._app.close()
        core = CoreV1Api(self.k8s)
        for ns in (self.namespace, self.build_namespace):
            with contextlib.suppress(ApiException):
                core.delete_namespace(ns, propagation_policy="Background")


def _items(list_fn: Callable[..., Any], namespace: str, selector: str) -> list[Any]:
    return list(list_fn(namespace, label_selector=selector).items)


def make_stage(
    *,
    control_plane: Any,
    k8s: ApiClient,
    kubelet: Any,
    registry: Any,
    database_url: str,
    workdir: Path,
    kubeconfig: Path | None = None,
    **settings: Any,
) -> Stage:
    """A fresh namespace with the app (2 Pods, Service ``web``) and a build namespace."""
    core = CoreV1Api(k8s)
    namespace = f"t-rel-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"maint-test": "true"}}})
    make_app(k8s, namespace)
    workdir.mkdir(parents=True, exist_ok=True)
    stage = Stage(
        k8s=k8s,
        namespace=namespace,
        build_namespace=make_build_namespace(k8s),
        database_url=database_url,
        kubeconfig=kubeconfig or Path(control_plane.kubeconfig),
        direct_kubeconfig=Path(control_plane.kubeconfig),
        registry=registry,
        kubelet=kubelet,
        workdir=workdir,
        settings=settings,
    )
    upgrade(database_url)  # idempotent; new_database() has done it already
    return stage


def ready_endpoints(k8s: ApiClient, namespace: str, service: str = "web") -> set[str]:
    from kubernetes.client import DiscoveryV1Api

    slices = (
        DiscoveryV1Api(k8s)
        .list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items
    )
    return {
        e.target_ref.name
        for s in slices
        for e in (s.endpoints or [])
        if e.target_ref and (e.conditions is None or e.conditions.ready)
    }


# --- the shared fixture -------------------------------------------------------------------------


@pytest.fixture
def stage_settings() -> dict[str, Any]:
    """``MAINT_*`` settings of this module's stage (override the fixture in a module)."""
    return {}


@pytest.fixture
def stage_kubeconfig() -> Path | None:
    """The kubeconfig the ``maint`` processes use; None = the control plane's own (override it
    in a module to put a proxy in between)."""
    return None


@pytest.fixture
def stage_database_url(postgres_url: str) -> str:
    """The database of this module's stage: PostgreSQL (override the fixture in a module, e.g.
    with ``database_url`` to run its tests on SQLite too)."""
    return postgres_url


@pytest.fixture
def stage(
    control_plane: Any,
    k8s: ApiClient,
    kubelet: Any,
    oci_registry: Any,
    stage_database_url: str,
    tmp_path: Path,
    stage_settings: dict[str, Any],
    stage_kubeconfig: Path | None,
) -> Iterator[Stage]:
    """One ``Stage`` per test on ``stage_database_url``: the app, a build namespace, and
    ``maint`` wired with ``stage_settings`` through ``stage_kubeconfig``."""
    made = make_stage(
        control_plane=control_plane,
        k8s=k8s,
        kubelet=kubelet,
        registry=oci_registry,
        database_url=stage_database_url,
        workdir=tmp_path,
        kubeconfig=stage_kubeconfig,
        **stage_settings,
    )
    try:
        yield made
    finally:
        made.close()
