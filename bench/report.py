"""``results.json`` (the keys issues 6 and 15 ask for) and the table printed at the end of a run.

The targets are issue 15's; ``targets`` in ``results.json`` says which were met.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.stats import summary
from bench.windows import PhaseResult

SWITCH_TARGET_S = 0.025  # p95 of switch and restore lag, 24 staggered windows
SHARED_TARGET_S = {50: 0.3, 500: 2.0}  # p95 of switch and restore lag, Services at one start
PASS_TARGET_MS = {"sqlite": 5.0, "postgresql": 10.0}  # one pass at 100,000 notices
REQUESTS_TARGET = 16.0  # API requests per window per Service, preparation and cleanup included
SEED_RATIO_TARGET = 300.0  # the seed's way this many times slower at p50, at least
CLI_TARGET_S = 0.5  # start-up of `notice list` (p50)
CLIENT_TARGET_S = 0.1  # real node: start to the first 503, end to the first 200 (p95)


def _tree() -> str:
    """The maint code measured: commit, and whether maint/ had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "maint"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" + uncommitted maint/ changes" if dirty else "")


def machine(load: dict[str, float]) -> dict[str, Any]:
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_mb": memory_kb // 1024,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": {k: round(v, 2) for k, v in load.items()},
        "maint_tree": _tree(),
    }


def lag_summary(phase: PhaseResult, attribute: str) -> dict[str, Any]:
    out: dict[str, Any] = summary(phase.values(attribute))
    out["missing"] = phase.missing(attribute)
    logged = phase.values(attribute + "_log")
    if logged:
        out["event_log"] = {k: v for k, v in summary(logged).items() if k != "n"}
    return out


def per_window(counts: dict[str, dict[str, int]], windows: int) -> dict[str, Any]:
    by_verb = {
        verb: {resource: round(n / windows, 2) for resource, n in sorted(resources.items())}
        for verb, resources in sorted(counts.items())
    }
    total = sum(n for resources in counts.values() for n in resources.values())
    return {"windows": windows, "total": round(total / windows, 2), "by_verb": by_verb}


def results(
    *,
    scheduled: PhaseResult,
    seed: PhaseResult,
    shared: PhaseResult,
    large: PhaseResult,
    startup: dict[str, Any],
    passes: dict[str, Any],
    sweep: dict[str, float],
    client: dict[str, Any],
    load: dict[str, float],
) -> dict[str, Any]:
    switch = lag_summary(scheduled, "switch_lag")
    seed_switch = lag_summary(seed, "switch_lag")
    for p in ("p50", "p95"):
        seed_switch[f"ratio_{p}"] = (
            round(seed_switch[p] / switch[p], 1) if switch[p] and switch[p] > 0 else math.nan
        )
    shared_prepare = summary(shared.values("prepare"))
    at_once = {
        str(len(phase.windows)): {
            "switch_lag_s": lag_summary(phase, "switch_lag"),
            "restore_lag_s": lag_summary(phase, "restore_lag"),
            "prepare_s": summary(phase.values("prepare")),
            "prepared_after_start": sum(1 for w in phase.windows if not w.ready_before_start),
            "peak_rss_mb": round(phase.peak_rss_mb or math.nan, 1),
            "seconds": round(phase.seconds),
            **phase.extra,
        }
        for phase in (shared, large)
    }
    data: dict[str, Any] = {
        "switch_lag_s": switch,
        "restore_lag_s": lag_summary(scheduled, "restore_lag"),
        "seed_style_switch_lag_s": seed_switch,
        "prepare_s": {
            **{k: v for k, v in summary(scheduled.values("prepare")).items() if k != "max"},
            "shared_start_50": {k: shared_prepare[k] for k in ("p50", "p95", "n")},
        },
        "api_requests_per_window": per_window(scheduled.api_requests, len(scheduled.windows)),
        "reconcile_pass_ms": {
            backend: {
                "pass_ms": data[max(data, key=int)]["pass"]["p50"],
                "db_ms": data[max(data, key=int)]["due"]["p50"],
                "by_notices": data,
            }
            for backend, data in passes.items()
        }
        | {"sweep_ms_by_services": sweep},
        "fifty_services_switch_p95_s": summary(shared.values("switch_lag"))["p95"],
        "shared_start": at_once,
        "cli_startup_s": startup,
        "client_visible_lag_s": client,
        "peak_rss_mb": round(shared.peak_rss_mb or math.nan, 1),
        "machine": machine(load),
    }
    data["targets"] = targets(data)
    return data


def targets(data: dict[str, Any]) -> dict[str, bool]:
    """Issue 15's targets, each met or not (a missing measurement is not met)."""

    def under(value: Any, limit: float) -> bool:
        return isinstance(value, int | float) and not math.isnan(value) and value <= limit

    s, r = data["switch_lag_s"], data["restore_lag_s"]
    met = {
        "switch_lag_p95": under(s["p95"], SWITCH_TARGET_S) and not s["missing"],
        "restore_lag_p95": under(r["p95"], SWITCH_TARGET_S) and not r["missing"],
        "seed_ratio_p50": data["seed_style_switch_lag_s"]["ratio_p50"] >= SEED_RATIO_TARGET,
        "api_requests_per_window": under(data["api_requests_per_window"]["total"], REQUESTS_TARGET),
    }
    for count, limit in SHARED_TARGET_S.items():
        found = data["shared_start"].get(str(count))
        met[f"shared_{count}_switch_p95"] = bool(found) and under(
            found["switch_lag_s"]["p95"], limit
        )
        met[f"shared_{count}_restore_p95"] = bool(found) and under(
            found["restore_lag_s"]["p95"], limit
        )
    for backend, limit in PASS_TARGET_MS.items():
        found = data["reconcile_pass_ms"].get(backend)
        met[f"reconcile_pass_{backend}"] = bool(found) and under(found["pass_ms"], limit)
    listed = data["cli_startup_s"].get("notice list")
    met["cli_notice_list"] = bool(listed) and under(listed["p50"], CLI_TARGET_S)
    client = data.get("client_visible_lag_s") or {}
    met["client_visible_lag_p95"] = (
        "switch_lag_s" in client
        and not client["missing"]
        and not client["connection_errors"]
        and under(client["switch_lag_s"]["p95"], CLIENT_TARGET_S)
        and under(client["restore_lag_s"]["p95"], CLIENT_TARGET_S)
    )
    return met


def client_lags(client: dict[str, Any]) -> str:
    """The real node's row: both lags, or why there is none."""
    if "switch_lag_s" not in client:
        return f"not measured: {client.get('not_measured', 'the node part did not run')}"
    s, r = client["switch_lag_s"], client["restore_lag_s"]
    return (
        f"first 503 p50 {s['p50']:.3f} p95 {s['p95']:.3f} max {s['max']:.3f} s, "
        f"first 200 again p50 {r['p50']:.3f} p95 {r['p95']:.3f} max {r['max']:.3f} s "
        f"({client['windows']} windows, {client['probes']} probes, "
        f"{client['connection_errors']} connection errors)"
    )


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def _lags(d: dict[str, Any]) -> str:
    return f"p50 {d['p50']:.3f}  p95 {d['p95']:.3f}  max {d['max']:.3f}" + (
        f"  ({d['missing']} not seen)" if d.get("missing") else ""
    )


def table(data: dict[str, Any], phases: list[PhaseResult]) -> str:
    s, r, seed = data["switch_lag_s"], data["restore_lag_s"], data["seed_style_switch_lag_s"]
    prep, api, met = data["prepare_s"], data["api_requests_per_window"], data["targets"]
    rows = [
        ("metric", "value", "target", ""),
        (
            f"switch lag (s), {s['n']} windows",
            _lags(s),
            f"p95 <= {SWITCH_TARGET_S} s",
            _ok(met["switch_lag_p95"]),
        ),
        (
            f"restore lag (s), {r['n']} windows",
            _lags(r),
            f"p95 <= {SWITCH_TARGET_S} s",
            _ok(met["restore_lag_p95"]),
        ),
        (
            f"seed-style switch lag (s), {seed['n']}",
            _lags(seed),
            f"x{SEED_RATIO_TARGET:g} at p50: x{seed['ratio_p50']} (p95 x{seed['ratio_p95']})",
            _ok(met["seed_ratio_p50"]),
        ),
    ]
    for count, d in data["shared_start"].items():
        limit = SHARED_TARGET_S.get(int(count))
        for kind in ("switch", "restore"):
            rows.append(
                (
                    f"{count} Services, one start: {kind} (s)",
                    _lags(d[f"{kind}_lag_s"]),
                    f"p95 <= {limit} s" if limit else "",
                    _ok(met.get(f"shared_{count}_{kind}_p95", False)) if limit else "",
                )
            )
    rows += [
        (
            "prepare, render to Pod Ready (s)",
            f"p50 {prep['p50']:.3f}  p95 {prep['p95']:.3f}",
            "  ".join(
                f"{n} at once: p50 {d['prepare_s']['p50']:.1f} p95 {d['prepare_s']['p95']:.1f}"
                for n, d in data["shared_start"].items()
            ),
            "",
        ),
        (
            "API requests per window",
            f"{api['total']:.1f} in all",
            f"<= {REQUESTS_TARGET:g}",
            _ok(met["api_requests_per_window"]),
        ),
    ]
    for verb, resources in api["by_verb"].items():
        listed = ", ".join(f"{res} {n:g}" for res, n in resources.items())
        rows.append(("", f"{verb}: {listed}", "", ""))
    for backend, d in data["reconcile_pass_ms"].items():
        if backend == "sweep_ms_by_services":
            rows.append(
                (
                    "forced-restore sweep (ms)",
                    "  ".join(f"{n} Services: {ms:g}" for n, ms in d.items()),
                    "own job, every poll",
                    "",
                )
            )
            continue
        sizes = sorted(d["by_notices"], key=int)
        growth = "  ".join(
            f"{int(n) // 1000}k: pass {d['by_notices'][n]['pass']['p50']:.1f} "
            f"db {d['by_notices'][n]['due']['p50']:.1f}"
            for n in sizes
        )
        rows.append(
            (
                f"reconcile pass (ms), {backend}",
                f"pass {d['pass_ms']:.1f}  db part {d['db_ms']:.1f}",
                f"<= {PASS_TARGET_MS.get(backend, math.nan):g} ms at 100k",
                _ok(met.get(f"reconcile_pass_{backend}", False)),
            )
        )
        rows.append(("", growth, "", ""))
    for command, d in data["cli_startup_s"].items():
        rows.append(
            (
                f"CLI start-up: {command} (s)",
                f"p50 {d['p50']:.3f}  p95 {d['p95']:.3f}",
                f"<= {CLI_TARGET_S} s" if command == "notice list" else "",
                _ok(met["cli_notice_list"]) if command == "notice list" else "",
            )
        )
    rows.append(
        (
            "peak RSS of maint run",
            "  ".join(
                f"{n} Services: {d['peak_rss_mb']:.1f} MB" for n, d in data["shared_start"].items()
            ),
            "",
            "",
        )
    )
    client = data.get("client_visible_lag_s") or {}
    rows.append(
        (
            "client-visible lag (real node)",
            client_lags(client),
            f"p95 <= {CLIENT_TARGET_S} s",
            _ok(met["client_visible_lag_p95"]),
        )
    )
    m = data["machine"]
    rows.append(
        (
            "machine",
            f"{m['cores']} cores, {m['memory_mb']} MB, Python {m['python']}",
            f"maint {m['maint_tree']}",
            "",
        )
    )
    rows.append(
        (
            "load average, 1 min",
            ", ".join(f"{k} {v}" for k, v in m["load_avg_1m"].items()),
            "",
            "",
        )
    )
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for phase in phases:
        states: dict[str, int] = {}
        for w in phase.windows:
            states[w.state] = states.get(w.state, 0) + 1
        late = sum(1 for w in phase.windows if not w.ready_before_start)
        switch, restore = summary(phase.values("switch_lag")), summary(phase.values("restore_lag"))
        lines.append(
            f"{phase.name}: {phase.seconds:.0f}s, load {phase.load[0]:.2f}->{phase.load[1]:.2f}, "
            f"switch p50/p95 {switch['p50']}/{switch['p95']}s, "
            f"restore p50/p95 {restore['p50']}/{restore['p95']}s, "
            f"states {states}, prepared after start {late}, leftovers {phase.leftovers}"
            + (f", {phase.extra}" if phase.extra else "")
            + (f", peak RSS {phase.peak_rss_mb:.1f} MB" if phase.peak_rss_mb else "")
            + ("; " + "; ".join(phase.notes) if phase.notes else "")
        )
    return "\n".join(lines)


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")


def markdown(data: dict[str, Any]) -> str:
    """The README's table (``python -m bench.report``): one row per target of issue 15."""
    met, s, r = data["targets"], data["switch_lag_s"], data["restore_lag_s"]
    seed, api = data["seed_style_switch_lag_s"], data["api_requests_per_window"]

    def lags(d: dict[str, Any]) -> str:
        return f"p50 {d['p50']:.3f} s, p95 {d['p95']:.3f} s, max {d['max']:.3f} s"

    def verdict(key: str) -> str:
        return "met" if met.get(key) else "**missed**"

    rows = [
        ("metric", "result", "target"),
        (
            f"switch lag, {s['n']} staggered windows",
            lags(s),
            f"p95 ≤ {SWITCH_TARGET_S} s: " + verdict("switch_lag_p95"),
        ),
        (
            f"restore lag, {r['n']} staggered windows",
            lags(r),
            f"p95 ≤ {SWITCH_TARGET_S} s: " + verdict("restore_lag_p95"),
        ),
        (
            "the seed's way (30 s poll, build at start), same windows",
            lags(seed),
            f"≥ x{SEED_RATIO_TARGET:g} at p50: x{seed['ratio_p50']:g}, "
            + verdict("seed_ratio_p50"),
        ),
    ]
    for count, d in data["shared_start"].items():
        limit = SHARED_TARGET_S.get(int(count))
        for kind in ("switch", "restore"):
            rows.append(
                (
                    f"{count} Services at one start: {kind}",
                    lags(d[f"{kind}_lag_s"]),
                    f"p95 ≤ {limit} s: " + verdict(f"shared_{count}_{kind}_p95") if limit else "—",
                )
            )
    verbs = ", ".join(f"{verb} {sum(res.values()):g}" for verb, res in api["by_verb"].items())
    rows.append(
        (
            "Kubernetes API requests per window per Service",
            f"{api['total']:g} ({verbs})",
            f"≤ {REQUESTS_TARGET:g}: " + verdict("api_requests_per_window"),
        )
    )
    for backend in ("sqlite", "postgresql"):
        d = data["reconcile_pass_ms"].get(backend)
        if d:
            by = d["by_notices"]
            small = min(by, key=int)
            rows.append(
                (
                    f"one reconcile pass, 100,000 notices, {backend}",
                    f"{d['pass_ms']:.1f} ms ({int(small):,}: {by[small]['pass']['p50']:.1f} ms)",
                    f"≤ {PASS_TARGET_MS[backend]:g} ms: " + verdict(f"reconcile_pass_{backend}"),
                )
            )
    for command, d in data["cli_startup_s"].items():
        rows.append(
            (
                f"`maint {command}` start to exit",
                f"p50 {d['p50']:.2f} s, p95 {d['p95']:.2f} s",
                f"≤ {CLI_TARGET_S} s: " + verdict("cli_notice_list")
                if command == "notice list"
                else "—",
            )
        )
    rss = ", ".join(
        f"{n} Services {d['peak_rss_mb']:.0f} MB" for n, d in data["shared_start"].items()
    )
    rows.append(("peak RSS of `maint run`", rss, "—"))
    rows.append(
        (
            "client-visible lag on the real node (planned start → first 503, end → first 200)",
            client_lags(data.get("client_visible_lag_s") or {}),
            f"p95 ≤ {CLIENT_TARGET_S} s: " + verdict("client_visible_lag_p95"),
        )
    )
    lines = [f"| {' | '.join(rows[0])} |", "|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows[1:]]
    load = data["machine"]["load_avg_1m"]
    lines.append("")
    lines.append(
        "1-minute load average: "
        + ", ".join(f"{k} {v}" for k, v in load.items())
        + f"; maint {data['machine']['maint_tree']}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads((Path(__file__).parent / "results.json").read_text())))
