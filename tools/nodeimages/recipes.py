"""What goes into each image of the real node: root folders made from this host's files.

- ``pause``: the static pause program (pause.c), nothing else.
- ``nginx``: Debian's /usr/sbin/nginx, shaped like nginxinc/nginx-unprivileged: UID 101, listen
  8080, pid and temp files under /tmp, logs to stdout/stderr, docroot /usr/share/nginx/html. The
  page image maint builds with Kaniko is ``FROM`` this one (maint/page/templates/Dockerfile.j2:
  it replaces /etc/nginx/nginx.conf and adds files to the docroot, then ``USER 101``).
- ``kaniko``: the executor built from source (kaniko-bin.sh) with its CA bundle, the
  /kaniko/.docker folder and /etc/nsswitch.conf, laid out as the upstream image.
- ``python``: Debian's python3 interpreter, its standard library and the libraries they load.
- ``maint``: the python layer plus maint and its dependencies installed from wheels prepared on
  the host, configured as the project's Dockerfile says (its final stage's ENV, USER, WORKDIR,
  ENTRYPOINT and CMD are read from the Dockerfile).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

from tools.nodeimages.rootfs import Rootfs, group, passwd

NGINX_UID = 101  # nginx-unprivileged's user; maint's page Pod runs as this UID
MAINT_UID = 10001  # the Dockerfile's and the manifests' user
PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
SITE = f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages"

NGINX_CONF = """\
# Like nginxinc/nginx-unprivileged: non-root, port 8080, writes only under /tmp.
worker_processes 1;
pid /tmp/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    sendfile on;

    server {
        listen 8080;
        server_name localhost;
        location / {
            root /usr/share/nginx/html;
            index index.html;
        }
    }
}
"""

INDEX_HTML = "<!doctype html><title>nginx</title><p>nginx (maint node image)</p>\n"


def pause(root: Rootfs, binary: Path) -> dict[str, Any]:
    root.install(binary, "/pause")
    return {"Entrypoint": ["/pause"], "User": "65535:65535"}


def nginx(root: Rootfs) -> dict[str, Any]:
    binary = Path("/usr/sbin/nginx")
    root.copy_host(binary)
    root.add_libraries([binary])
    root.copy_host("/etc/nginx/mime.types")
    root.write("/etc/nginx/nginx.conf", NGINX_CONF)
    root.write("/usr/share/nginx/html/index.html", INDEX_HTML)
    root.write(
        "/etc/passwd",
        passwd([("root", 0, 0, "/root"), ("nginx", NGINX_UID, NGINX_UID, "/nonexistent")]),
    )
    root.write("/etc/group", group([("root", 0), ("nginx", NGINX_UID)]))
    root.write("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    # Debian's build writes its access log to /var/log/nginx unless told otherwise: as in the
    # official images, those names lead to the container's stdout and stderr.
    root.symlink("/var/log/nginx/access.log", "/dev/stdout")
    root.symlink("/var/log/nginx/error.log", "/dev/stderr")
    root.mkdir("/tmp", mode=0o1777)  # noqa: S108 - the image's own /tmp
    return {
        "User": str(NGINX_UID),
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "ExposedPorts": {"8080/tcp": {}},
        "Cmd": ["/usr/sbin/nginx", "-g", "daemon off;"],
        "StopSignal": "SIGQUIT",
    }


NGINX_OWNERS = {"etc/nginx": (NGINX_UID, NGINX_UID), "usr/share/nginx/html": (0, 0)}


def kaniko(root: Rootfs, executor: Path) -> dict[str, Any]:
    root.install(executor, "/kaniko/executor")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    root.install(bundle, "/kaniko/ssl/certs/ca-certificates.crt", mode=0o644)
    root.mkdir("/kaniko/.docker")
    root.write("/etc/nsswitch.conf", "hosts: files dns\n")
    root.mkdir("/workspace")
    return {
        "Env": [
            "PATH=/usr/local/bin:/kaniko",
            "HOME=/root",
            "USER=root",
            "SSL_CERT_DIR=/kaniko/ssl/certs",
            "DOCKER_CONFIG=/kaniko/.docker/",
        ],
        "Entrypoint": ["/kaniko/executor"],
        "WorkingDir": "/workspace",
    }


def _python_skip(path: Path) -> bool:
    """Parts of the standard library a server never imports (tests, GUI, the 2to3 tool)."""
    name = path.name
    return name in {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip"} or (
        name.startswith("config-") and path.parent.name.startswith("python3")
    )


def python(root: Rootfs) -> dict[str, Any]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: install python{version} (Debian)")
    root.copy_host(PYTHON)
    root.symlink("/usr/bin/python3", PYTHON.name)
    root.copy_tree(f"/usr/lib/python{version}", skip=_python_skip)
    if Path(f"/etc/python{version}").is_dir():
        root.copy_tree(f"/etc/python{version}")
    root.copy_host("/etc/ssl/certs/ca-certificates.crt")
    root.add_libraries(root.elf_files())
    root.write("/etc/passwd", passwd([("root", 0, 0, "/root")]))
    root.write("/etc/group", group([("root", 0)]))
    root.write("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
    root.mkdir("/tmp", mode=0o1777)  # noqa: S108 - the image's own /tmp
    return {
        "Env": [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "LANG=C.UTF-8",
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        ],
        "Cmd": ["python3"],
    }


ENTRY_SCRIPT = """\
#!{python}
import sys

from maint.cli import main

sys.exit(main())
"""


def maint(root: Rootfs, site_packages: Path, dockerfile: Path) -> dict[str, Any]:
    """maint's own layer: ``site_packages`` (installed from wheels) and the entry point.

    The python layer below it supplies the interpreter and libc; libraries the installed
    extension modules need beyond that are added here.
    """
    root.mkdir(SITE)
    for path in sorted(site_packages.iterdir()):
        if path.name in {"bin", "__pycache__"}:
            continue
        target = root.inside(SITE) / path.name
        _copy_any(path, target)
    # Libraries the extension modules load (wheels bundle most of theirs; those are skipped).
    root.add_libraries(root.elf_files())
    root.write("/usr/local/bin/maint", ENTRY_SCRIPT.format(python=PYTHON), mode=0o755)
    settings = dockerfile_runtime(dockerfile)
    home = settings.get("WorkingDir", "/home/maint")
    root.write(
        "/etc/passwd",
        passwd([("root", 0, 0, "/root"), ("maint", MAINT_UID, MAINT_UID, home)]),
    )
    root.write("/etc/group", group([("root", 0), ("maint", MAINT_UID)]))
    root.mkdir(home, mode=0o755)
    return settings


def maint_owners(settings: dict[str, Any]) -> dict[str, tuple[int, int]]:
    home = str(settings.get("WorkingDir", "/home/maint")).lstrip("/")
    return {home: (MAINT_UID, MAINT_UID)}


def _copy_any(source: Path, target: Path) -> None:
    import shutil

    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _exec_form(value: str) -> list[str]:
    import json

    if value.startswith("["):
        parsed = json.loads(value)
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            raise ValueError(f"not an exec-form list: {value}")
        return parsed
    return ["/bin/sh", "-c", value]


def dockerfile_runtime(dockerfile: Path) -> dict[str, Any]:
    """The image config the Dockerfile's final stage declares (ENV, USER, WORKDIR, ENTRYPOINT,
    CMD), so the locally assembled maint image runs exactly as the Docker-built one."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(dockerfile.read_text()):
        if keyword == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((keyword, rest))
    if not stages:
        raise ValueError(f"{dockerfile}: no FROM")
    config: dict[str, Any] = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]}
    for keyword, rest in stages[-1]:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, equals, value = pair.partition("=")
                if not equals:
                    raise ValueError(f"{dockerfile}: ENV {rest!r}: only NAME=value is supported")
                config["Env"] = [e for e in config["Env"] if not e.startswith(name + "=")]
                config["Env"].append(f"{name}={value}")
        elif keyword == "USER":
            config["User"] = rest
        elif keyword == "WORKDIR":
            config["WorkingDir"] = rest
        elif keyword == "ENTRYPOINT":
            config["Entrypoint"] = _exec_form(rest)
        elif keyword == "CMD":
            config["Cmd"] = _exec_form(rest)
    return config
