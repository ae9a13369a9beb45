"""``results.json`` (the keys issue 6 asks for) and the table printed at the end of a run."""

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

SWITCH_TARGET_S = 1.0
FIFTY_TARGET_S = 3.0
PASS_TARGET_MS = 50.0
# A window needs a handful of GETs (the Service at add, prepare, switch, restore; the Pod
# before the switch); dozens per window means something polls.
GET_STORM = 15


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
    passes: dict[str, Any],
    sweep: dict[str, float],
    load: dict[str, float],
) -> dict[str, Any]:
    switch = lag_summary(scheduled, "switch_lag")
    seed_switch = lag_summary(seed, "switch_lag")
    for p in ("p50", "p95"):
        seed_switch[f"ratio_{p}"] = (
            round(seed_switch[p] / switch[p], 1) if switch[p] and switch[p] > 0 else math.nan
        )
    shared_prepare = summary(shared.values("prepare"))
    return {
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
        "peak_rss_mb": round(shared.peak_rss_mb or math.nan, 1),
        "machine": machine(load),
    }


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def table(data: dict[str, Any], phases: list[PhaseResult]) -> str:
    s, r, seed = data["switch_lag_s"], data["restore_lag_s"], data["seed_style_switch_lag_s"]
    prep, api = data["prepare_s"], data["api_requests_per_window"]
    gets = sum(api["by_verb"].get("get", {}).values())
    rows = [
        ("metric", "value", "target", ""),
        (
            f"switch lag (s), {s['n']} windows",
            f"p50 {s['p50']:.3f}  p95 {s['p95']:.3f}  max {s['max']:.3f}",
            "p95 <= 1 s",
            _ok(s["p95"] <= SWITCH_TARGET_S and not s["missing"]),
        ),
        (
            f"restore lag (s), {r['n']} windows",
            f"p50 {r['p50']:.3f}  p95 {r['p95']:.3f}  max {r['max']:.3f}",
            "p95 <= 1 s",
            _ok(r["p95"] <= SWITCH_TARGET_S and not r["missing"]),
        ),
        (
            f"seed-style switch lag (s), {seed['n']}",
            f"p50 {seed['p50']:.3f}  p95 {seed['p95']:.3f}  max {seed['max']:.3f}",
            f"ratio p50 x{seed['ratio_p50']}, p95 x{seed['ratio_p95']}",
            "",
        ),
        (
            "prepare, render to Pod Ready (s)",
            f"p50 {prep['p50']:.3f}  p95 {prep['p95']:.3f}",
            f"50 at once: p50 {prep['shared_start_50']['p50']:.2f} "
            f"p95 {prep['shared_start_50']['p95']:.2f}",
            "",
        ),
        (
            "API requests per window",
            f"{api['total']:.1f} in all",
            "waits are watches, no polling storm",
            "met" if gets <= GET_STORM else f"MISSED: {gets:.0f} GETs",
        ),
    ]
    for verb, resources in api["by_verb"].items():
        listed = ", ".join(f"{res} {n:g}" for res, n in resources.items())
        rows.append(("", f"{verb}: {listed}", "", ""))
    for backend, d in data["reconcile_pass_ms"].items():
        if backend == "sweep_ms_by_services":
            in_pass = any(
                size.get("sweep_in_pass", True)
                for b, by in data["reconcile_pass_ms"].items()
                if b != backend
                for size in by["by_notices"].values()
            )
            rows.append(
                (
                    "forced-restore sweep (ms)",
                    "  ".join(f"{n} Services: {ms:g}" for n, ms in d.items()),
                    "in every pass" if in_pass else "own job, every poll",
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
                "< 50 ms, flat",
                _ok(d["pass_ms"] < PASS_TARGET_MS),
            )
        )
        rows.append(("", growth, "", ""))
    rows.append(
        (
            "50 Services, one start: switch p95 (s)",
            f"{data['fifty_services_switch_p95_s']:.3f}",
            "<= 3 s",
            _ok(data["fifty_services_switch_p95_s"] <= FIFTY_TARGET_S),
        )
    )
    rows.append(("peak RSS of maint run, 50 Services", f"{data['peak_rss_mb']:.1f} MB", "", ""))
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
