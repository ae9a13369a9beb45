"""``python -m bench`` (``make bench``): every benchmark of issues 6 and 15 in one run.

Order: windows run by ``maint run`` (through the counting proxy), the same windows the seed's
way, 50 Services sharing one start, 500 sharing another, the CLI's start-up, the reconcile pass
on 100,000 notices, then, once that control plane is stopped, what a client sees on the real
node (``bench.node``). Prints a table and writes ``bench/results.json``. ``--only`` runs a
subset (nothing is written then).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import node, reconcile, report, windows
from bench.lab import log, running_lab
from bench.servicewatch import ServiceWatch
from bench.startup import cli_startup
from maint.app import App
from maint.notices import NoticeStore
from maint.settings import Settings
from tests.support.fixtures_k8s import control_plane_assets

HERE = Path(__file__).parent
PARTS = ("scheduled", "seed", "shared", "large", "cli", "db", "node")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--windows", type=int, default=24, help="windows per lag benchmark (>= 20)")
    p.add_argument("--services", type=int, default=50, help="Services sharing one start")
    p.add_argument("--large", type=int, default=500, help="Services sharing one start, again")
    p.add_argument("--node-windows", type=int, default=12, help="windows on the real node")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs) afterwards")
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the reconcile pass; py-spy (if on PATH) `maint run` at the shared start",
    )
    args = p.parse_args()
    parts = set(args.only.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}")
    began = time.monotonic()
    load: dict[str, float] = {"start": os.getloadavg()[0]}
    images = (
        args.windows * (("scheduled" in parts) + ("seed" in parts))
        + args.services * ("shared" in parts)
        + args.large * ("large" in parts)
        + 10
    )
    phases: list[windows.PhaseResult] = []
    found: dict[str, windows.PhaseResult] = {}
    passes: dict[str, Any] = {}
    sweep: dict[str, float] = {}
    startup: dict[str, Any] = {}
    client: dict[str, Any] = {}
    with running_lab(control_plane_assets(), images=images) as lab:
        NoticeStore(lab.database_url).upgrade()
        watch = ServiceWatch(lab.k8s)
        watch.start()
        try:
            stagger = 30.0 / args.windows  # the starts cover one 30 s seed poll period
            if "scheduled" in parts:
                found["scheduled"] = windows.scheduled(
                    lab,
                    watch,
                    count=args.windows,
                    stagger=stagger,
                    length=10,
                    lead=12,
                    first_start_in=20,
                )
                load["after_scheduled"] = os.getloadavg()[0]
            if "seed" in parts:
                found["seed"] = windows.seed_style(
                    lab,
                    watch,
                    count=args.windows,
                    stagger=stagger,
                    # Longer than the 30 s poll plus a late preparation under load: a window
                    # that ends before the poll after its start is missed (rolled back).
                    length=45,
                    poll=30,
                    first_start_in=8,
                )
                load["after_seed"] = os.getloadavg()[0]
            if "shared" in parts:
                found["shared"] = windows.shared_start(
                    lab,
                    watch,
                    count=args.services,
                    length=15,
                    first_start_in=45,
                    profile=args.profile,
                )
                load["after_shared"] = os.getloadavg()[0]
            if "large" in parts:
                found["large"] = windows.shared_start(
                    lab,
                    watch,
                    count=args.large,
                    # Long enough for the switches' follow-ups (events, EndpointSlices) to
                    # settle before the restores are armed, 10 s before the end.
                    length=60,
                    # Every page prepared before the start: up to 0.45 s each on 2 cores.
                    first_start_in=45 + 0.45 * args.large,
                    name=f"shared_start_{args.large}",
                )
                load["after_large"] = os.getloadavg()[0]
            if "cli" in parts:
                store = NoticeStore(lab.database_url)
                listed = store.recent(limit=1)
                store.close()
                startup = cli_startup(
                    lab.maint_env(via_proxy=False),
                    notice_id=listed[0].id if listed else None,
                    workdir=lab.workdir,
                )
                load["after_cli"] = os.getloadavg()[0]
            if "db" in parts:
                settings = Settings(
                    kubeconfig=str(lab.plane.kubeconfig),
                    build_namespace=lab.build_namespace,
                    image_repository=lab.image_repository,
                    registry_insecure=True,
                )
                app = App(settings=settings)
                passes = reconcile.reconcile_pass(
                    api=app.api, settings=settings, profile=args.profile
                )
                try:
                    sweep = reconcile.sweep_by_services(app.api, lab.k8s)
                except Exception as e:  # an extra: never lose the rest of the run for it
                    log(f"sweep by Services failed: {e}")
                app.close()
                load["after_db"] = os.getloadavg()[0]
            stored = lab.images.still_stored()
            log(
                f"images handed out {len(lab.images.handed_out)}, "
                f"still in the registry {len(stored)}"
            )
        finally:
            watch.stop()
            if args.keep:
                log(f"work dir kept: {lab.workdir}")
        workdir = lab.workdir
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if "node" in parts:
        client = node.client_lag(
            control_plane_assets(), count=args.node_windows, lead=120, length=8, spacing=16
        )
        log(f"node: {client}")
        load["after_node"] = os.getloadavg()[0]
    load["end"] = os.getloadavg()[0]
    phases = list(found.values())
    log(f"done in {time.monotonic() - began:.0f}s")
    if set(PARTS) <= parts:
        data = report.results(
            scheduled=found["scheduled"],
            seed=found["seed"],
            shared=found["shared"],
            large=found["large"],
            startup=startup,
            passes=passes,
            sweep=sweep,
            client=client,
            load=load,
        )
        data["machine"]["images_left_in_registry"] = len(stored)
        data["machine"]["bench_seconds"] = round(time.monotonic() - began)
        print(report.table(data, phases))
        report.write(HERE / "results.json", data)
        log(f"wrote {HERE / 'results.json'}")
    else:
        for phase in phases:
            print(phase.name, report.lag_summary(phase, "switch_lag"))
            print(phase.name, report.lag_summary(phase, "restore_lag"))
            print(phase.name, "prepare", report.summary(phase.values("prepare")))
            if phase.api_requests:
                print(report.per_window(phase.api_requests, len(phase.windows)))
            print(phase)
        if passes:
            print(passes, sweep)
        if startup:
            print("cli start-up", startup)
        if client:
            print("client-visible lag on the real node", client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
