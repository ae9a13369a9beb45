"""Image root folders assembled from this host's files: a binary, the libraries it loads, config.

Host paths are reproduced exactly, symlinks included (``/lib`` -> ``usr/lib`` on a merged-/usr
Debian, ``libz.so.1`` -> ``libz.so.1.2.13``), so the dynamic loader finds in the image what it
finds on the host. ``ldd`` lists what a binary or shared object needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: Path) -> list[Path]:
    """What ``ldd`` says ``binary`` loads (empty for a static binary)."""
    result = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise RuntimeError(f"ldd {binary} failed: {result.stderr.strip() or result.stdout}")
    if "not found" in result.stdout:
        raise RuntimeError(f"ldd {binary}: a library is missing on this host:\n{result.stdout}")
    return [Path(match.group(1)) for match in _LDD_PATH.finditer(result.stdout)]


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


class Rootfs:
    """A folder that becomes an image layer."""

    def __init__(self, root: Path) -> None:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        self.root = root

    def inside(self, path: str | Path) -> Path:
        return self.root / str(path).lstrip("/")

    def copy_host(self, path: str | Path) -> None:
        """Copy the host's ``path`` to the same place, recreating every symlink on the way."""
        self._copy(Path(path), depth=0)

    def _copy(self, path: Path, *, depth: int) -> None:
        if depth > 40:
            raise RuntimeError(f"{path}: too many levels of symlinks")
        current = Path("/")
        parts = path.parts[1:]
        for index, part in enumerate(parts):
            host = current / part
            target = self.inside(host)
            if host.is_symlink():
                link = str(host.readlink())
                if not target.is_symlink():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(link)
                resolved = Path(os.path.normpath(current / link))
                self._copy(resolved.joinpath(*parts[index + 1 :]), depth=depth + 1)
                return
            if index == len(parts) - 1:
                if host.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(host, target)
                return
            target.mkdir(parents=True, exist_ok=True)
            current = host

    def copy_tree(
        self, folder: str | Path, *, skip: Callable[[Path], bool] = lambda _: False
    ) -> None:
        """Copy a host folder (files and symlinks) unless ``skip(path)`` is true."""
        for directory, subdirectories, files in os.walk(folder):
            here = Path(directory)
            subdirectories[:] = sorted(d for d in subdirectories if not skip(here / d))
            self.copy_host(here)
            for name in sorted(files):
                if not skip(here / name):
                    self.copy_host(here / name)
            for name in subdirectories:
                if (here / name).is_symlink():
                    self.copy_host(here / name)

    def add_libraries(self, binaries: Iterable[Path]) -> None:
        """Copy every library the given files load, unless the image already bundles it."""
        for binary in binaries:
            for library in shared_libraries(binary):
                if not library.is_relative_to(self.root):
                    self.copy_host(library)

    def elf_files(self) -> list[Path]:
        return sorted(
            path
            for path in self.root.rglob("*")
            if path.is_file() and not path.is_symlink() and is_elf(path)
        )

    def write(self, path: str, text: str, *, mode: int = 0o644) -> None:
        target = self.inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def mkdir(self, path: str, *, mode: int = 0o755) -> None:
        target = self.inside(path)
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(mode)

    def symlink(self, path: str, target: str) -> None:
        link = self.inside(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)

    def install(self, host: Path, path: str, *, mode: int = 0o755) -> None:
        """Copy a host file to another place in the image."""
        target = self.inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host, target)
        target.chmod(mode)


def passwd(users: Iterable[tuple[str, int, int, str]]) -> str:
    """``/etc/passwd`` lines for ``(name, uid, gid, home)``, no login shell."""
    return "".join(f"{n}:x:{u}:{g}:{n}:{h}:/usr/sbin/nologin\n" for n, u, g, h in users)


def group(groups: Iterable[tuple[str, int]]) -> str:
    return "".join(f"{name}:x:{gid}:\n" for name, gid in groups)
