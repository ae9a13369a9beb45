"""The host state a real node touches, snapshotted before it starts and put back after it stops.

A kubelet, kube-proxy, containerd and the CNI bridge plugin change the machine they run on:
sysctls (the kubelet's ``kernel.panic=10``, ``kernel.panic_on_oops=1``,
``vm.overcommit_memory=1``; the bridge plugin's ``ip_forward=1``), iptables chains and rules in
both families (KUBE-*, CNI-*), network interfaces (the bridge, veths), mounts (netns, overlay,
shm, tmpfs volumes), cgroups (``kubepods`` in every hierarchy) and a few well-known paths
(``/var/log/containers``, ``/var/lib/cni``, ``/run/containerd``, ``/var/run/netns``).

``HostSnapshot.take()`` records all of it; ``restore(before)`` undoes, with no knowledge of
which component did what, everything that differs from ``before``; ``compare(before, after)``
lists what still differs (the host check asserts it is empty). Only differences are touched, so
what existed before the node started is never removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: Keys that change on their own from one second to the next, whatever the node does.
VOLATILE_SYSCTL_PREFIXES = ("fs.", "kernel.random.", "kernel.ns_last_pid", "net.netfilter.")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Paths a kubelet, containerd or the CNI plugins create outside their configured folders.
WELL_KNOWN_PATHS = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/run/containerd",
    "/var/run/netns",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/var/lib/containerd",
)
IPTABLES = ("iptables", "ip6tables")


def _run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def sysctls() -> dict[str, str]:
    """Every readable sysctl except the volatile ones (``sysctl -a``, values whitespace-normed)."""
    values: dict[str, str] = {}
    for line in _run("sysctl", "-a").splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not key.startswith(VOLATILE_SYSCTL_PREFIXES):
            values[key] = " ".join(value.split())
    return values


@dataclass(frozen=True)
class Tables:
    """One family's iptables-save, as a set of chains and a set of rules per table."""

    chains: frozenset[tuple[str, str]]  # (table, chain)
    rules: frozenset[tuple[str, str]]  # (table, "-A CHAIN ...")


BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


def iptables(command: str) -> Tables:
    """Chains and rules of one family.

    A built-in chain with policy ACCEPT is left out: with the nf_tables backend the first rule
    anywhere creates its table's built-in chains, which then outlive the rule, and
    iptables-nft cannot delete a table. Empty and accepting, they filter nothing; a built-in
    chain with another policy is recorded with it.
    """
    chains: set[tuple[str, str]] = set()
    rules: set[tuple[str, str]] = set()
    table = ""
    for line in _run(f"{command}-save").splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if name not in BUILTIN_CHAINS:
                chains.add((table, name))
            elif policy != "ACCEPT":
                chains.add((table, f"{name} {policy}"))
        elif line.startswith("-A "):
            rules.add((table, line))
    return Tables(frozenset(chains), frozenset(rules))


def interfaces() -> frozenset[str]:
    return frozenset(name for name in os.listdir("/sys/class/net"))


def mounts() -> frozenset[str]:
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.add(line.split()[4].replace("\\040", " "))
    return frozenset(points)


def cgroups() -> frozenset[str]:
    """Top-level cgroup folders of every v1 hierarchy and the unified one."""
    found: set[str] = set()
    for hierarchy in CGROUP_ROOT.iterdir():
        with contextlib.suppress(OSError):
            found.update(str(child) for child in hierarchy.iterdir() if child.is_dir())
    return frozenset(found)


def paths() -> frozenset[str]:
    return frozenset(path for path in WELL_KNOWN_PATHS if os.path.lexists(path))


@dataclass(frozen=True)
class HostSnapshot:
    sysctls: dict[str, str]
    tables: dict[str, Tables]
    interfaces: frozenset[str]
    mounts: frozenset[str]
    cgroups: frozenset[str]
    paths: frozenset[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            sysctls=sysctls(),
            tables={command: iptables(command) for command in IPTABLES},
            interfaces=interfaces(),
            mounts=mounts(),
            cgroups=cgroups(),
            paths=paths(),
        )


@dataclass
class Differences:
    items: list[str] = field(default_factory=list)

    def add(self, what: str, values: object) -> None:
        if values:
            self.items.append(f"{what}: {values}")


def compare(before: HostSnapshot, after: HostSnapshot) -> list[str]:
    """What differs, one line per kind (empty when the host is as it was).

    Sysctls are compared on the keys that existed before: a kernel module loaded on the way
    (bridge, conntrack, overlay) adds keys, and a module load is not undone.
    """
    found = Differences()
    found.add(
        "sysctls changed",
        {
            key: (value, after.sysctls.get(key))
            for key, value in before.sysctls.items()
            if after.sysctls.get(key, value) != value
        },
    )
    for command, tables in before.tables.items():
        now = after.tables[command]
        found.add(f"{command} chains added", sorted(now.chains - tables.chains))
        found.add(f"{command} chains removed", sorted(tables.chains - now.chains))
        found.add(f"{command} rules added", sorted(now.rules - tables.rules))
        found.add(f"{command} rules removed", sorted(tables.rules - now.rules))
    found.add("interfaces added", sorted(after.interfaces - before.interfaces))
    found.add("interfaces removed", sorted(before.interfaces - after.interfaces))
    found.add("mounts added", sorted(after.mounts - before.mounts))
    found.add("cgroups added", sorted(after.cgroups - before.cgroups))
    found.add("paths added", sorted(after.paths - before.paths))
    return found.items


def restore(before: HostSnapshot) -> list[str]:
    """Undo every difference from ``before``; returns what could not be undone (best effort)."""
    problems: list[str] = []
    for step in (_restore_mounts, _restore_iptables, _restore_interfaces, _restore_cgroups):
        try:
            step(before)
        except (OSError, RuntimeError) as error:
            problems.append(f"{step.__name__}: {error}")
    _restore_paths(before)
    _restore_sysctls(before, problems)
    return problems


def _restore_sysctls(before: HostSnapshot, problems: list[str]) -> None:
    now = sysctls()
    for key, value in before.sysctls.items():
        if key in now and now[key] != value:
            path = Path("/proc/sys") / key.replace(".", "/")
            try:
                path.write_text(value.replace(" ", "\t") + "\n")
            except OSError as error:
                problems.append(f"sysctl {key}={value}: {error}")


def _restore_mounts(before: HostSnapshot) -> None:
    # Deepest first, so a mount inside another one goes before its parent; lazily when busy.
    for point in sorted(mounts() - before.mounts, key=lambda p: p.count("/"), reverse=True):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _restore_iptables(before: HostSnapshot) -> None:
    for command, tables in before.tables.items():
        now = iptables(command)
        script: list[str] = []
        for table in sorted({table for table, _ in now.chains | now.rules}):
            new_rules = [rule for t, rule in sorted(now.rules - tables.rules) if t == table]
            new_chains = [
                chain
                for t, chain in sorted(now.chains - tables.chains)
                if t == table and " " not in chain
            ]
            if not new_rules and not new_chains:
                continue
            script.append(f"*{table}")
            # A rule in a new chain goes with the chain; the others are deleted one by one.
            script += ["-D" + rule[2:] for rule in new_rules if rule.split()[1] not in new_chains]
            script += [f"-F {chain}" for chain in new_chains]
            script += [f"-X {chain}" for chain in new_chains]
            script.append("COMMIT")
        if script:
            subprocess.run(
                [f"{command}-restore", "--noflush"],
                input="\n".join(script) + "\n",
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )


def _restore_interfaces(before: HostSnapshot) -> None:
    for name in sorted(interfaces() - before.interfaces):
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)


def _remove_cgroup(path: Path) -> None:
    """rmdir a cgroup tree bottom-up (cgroupfs refuses to remove a folder with children)."""
    for child in path.iterdir():
        if child.is_dir():
            _remove_cgroup(child)
    with contextlib.suppress(OSError):
        path.rmdir()


def _restore_cgroups(before: HostSnapshot) -> None:
    for path in sorted(cgroups() - before.cgroups):
        _remove_cgroup(Path(path))


def _restore_paths(before: HostSnapshot) -> None:
    for path in sorted(paths() - before.paths):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
