"""`python -m bench why`: the attribution sweep (the subject's ablations, its feedback-path what-if at one and two
threads and in every execution mode a runtime declares, the baselines and the peak probe, all timed in interleaved
rounds), then one profiled pass per cell where the runtime can profile, then the report with its section "Why the
subject slows down on small images" (why.csv, fit.csv beside it). Decisions: docs/why.md."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import models
from bench import sweep
from bench.why import plan as why_plan
from bench.why import store as why_store
from models.errors import ToolkitError
from models.escape import escape

PROFILED = ("onnx", "executorch")  # formats whose runtime this toolkit profiles (LiteRT's Python API cannot)
PROFILE_TIMEOUT = 600.0


def expand_models(models_arg: str) -> str:
    """The --models list with every subject's ablation override sets and the probes added. The list must name a
    subject (what `bench why` explains) and may add baselines; nothing else is what it is for."""
    out: list[str] = []
    items = [t.strip() for t in models_arg.split(",") if t.strip()]
    if not items:
        raise ToolkitError(f"--models {models_arg!r} names no model")
    roles = {}
    for item in items:
        name, ov = models.split_model_arg(item)
        models.spec(name)
        roles[name] = why_plan.role_of(name)
        sets = why_plan.ablation_models(name) if not ov else [ov]
        out += [models.model_label(name, o) for o in sets]
    if "subject" not in roles.values():
        from bench.analysis import Roles

        raise ToolkitError(f"--models {models_arg!r} names no {Roles.from_registry().subject} model: bench why "
                           "explains the subject's slowdown (add a baseline beside it to compare)")
    extra = sorted(n for n, r in roles.items() if r not in ("subject", "baseline"))
    if extra:
        raise ToolkitError(f"--models: {', '.join(extra)} is not a subject or a baseline (the probes are added by "
                           "bench why itself)")
    out += [n for n in models.list_models() if why_plan.role_of(n) == "probe"]
    return ",".join(dict.fromkeys(out))


def build_args(ns: argparse.Namespace, device: Any) -> sweep.SweepArgs:
    from export import FORMATS

    base = parse_threads(ns.threads)
    top = getattr(device, "max_threads", lambda: 2)()
    for t in base:
        if hasattr(device, "check_threads"):
            device.check_threads(t)  # more threads than the device may use: one line naming it
    for fmt in sweep._split(ns.formats, "formats"):
        why = device.can_run(fmt) if fmt in FORMATS else None
        if why:
            raise ToolkitError(f"device {device.name} cannot run {fmt} ({why}): bench why times every cell it "
                               "plans, so pass formats it can run")
    threads = sorted(set(base) | {t for t in (1, 2) if t <= top})
    args = sweep.parse_args(device=ns.device, models_arg=expand_models(ns.models), formats=ns.formats, res=ns.res,
                            iters=ns.iters, warmup=ns.warmup, threads=",".join(map(str, threads)),
                            rounds=ns.rounds, max_rounds=ns.max_rounds or ns.rounds)
    modes = sorted({""} | {m for f in args.formats for m in FORMATS[f].modes})
    return dataclasses.replace(args, modes=tuple(modes), plan=why_plan.why_plan(tuple(base)))


def parse_threads(text: str) -> list[int]:
    """--threads: a comma list of whole numbers from 1 to 1024."""
    from models.common import bounded_int

    check = bounded_int("--threads", 1, 1024)
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ToolkitError(f"--threads {text!r} names no thread count")
    return sorted({check(t) for t in items})


def profile_pass(store, run_id: str, device: Any, say) -> int:
    """One profiled pass per cell of a profiling runtime (default mode, the ablation thread counts), after the
    timing: stored in the `profiles` table; cells already profiled are skipped (a resumed run goes on)."""
    from devices.subproc import Worker, WorkerError
    from export.hostlock import timing_cores

    if device.kind != "host":
        say(f"profiles: device {device.name} is a {device.kind}; the profilers run on the host only")
        return 0
    run = store.run(run_id)
    base = why_plan.plan_threads(run["args"].get("plan", ""))
    done = {k for k, _ in why_store.profiled_keys(store, run_id)}
    todo = [c for c in store.cells(run_id) if c["status"] == "ok" and c["format"] in PROFILED
            and not c.get("mode") and c["threads"] in base and c["cell_key"] not in done
            and why_plan.role_of(c["model"]) != "probe"]
    n = 0
    with timing_cores(f"profiles of run {run_id}", say=say):
        for threads in sorted({c["threads"] for c in todo}):
            env = {"OMP_NUM_THREADS": str(threads), "TOOLKIT_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TOOLKIT_PIN": "1" if getattr(device, "pin", True) else "0",
                   "TOOLKIT_CPUS": ",".join(map(str, getattr(device, "cpus", None) or []))}
            worker = Worker("bench.why.worker", env=env, label="profile worker")
            try:
                for c in (c for c in todo if c["threads"] == threads):
                    req = {"format": c["format"], "artifact": c["artifact"], "threads": threads, "model": c["model"],
                           "overrides": c["overrides"], "resolution": [c["height"], c["width"]],
                           "madds": c["format"] == "onnx"}
                    try:
                        reply = worker.call(req, PROFILE_TIMEOUT)
                    except WorkerError as exc:
                        say(f"  profile failed  {c['model']} {c['format']} {c['height']}: {exc}")
                        worker = Worker("bench.why.worker", env=env, label="profile worker")
                        continue
                    if not reply.get("ok"):
                        say(f"  profile failed  {c['model']} {c['format']} {c['height']}: {reply.get('error')}")
                        continue
                    p = reply["profile"]
                    why_store.save_profile(store, run_id, c["cell_key"], p["tool"], p)
                    say(f"  profiled  {models.model_label(c['model'], c['overrides'])} {c['format']} "
                        f"{c['height']}x{c['width']} t{threads}: {p['total_ms']:.2f} ms ({p['tool']})")
                    n += 1
            finally:
                worker.close()
    return n


def cmd_why(ns: argparse.Namespace, argv: list[str] | None) -> int:
    import sys

    import devices
    from bench import report
    from bench.store import Store

    check(ns)
    device = devices.get(ns.device, ns.profiles)
    args = build_args(ns, device)
    opts = sweep.Options(store=ns.store, reports=ns.reports, artifacts=ns.artifacts, new=ns.new, seed=ns.seed,
                         timeout=ns.timeout, export_jobs=ns.export_jobs, report=False, wait=ns.wait,
                         profiles=ns.profiles, argv=["python", "-m", "bench", *(argv if argv is not None
                                                                                else sys.argv[1:])])
    res = sweep.run(args, opts)
    c = res.counts
    print(f"run {res.run_id}: {c.get('ok', 0)} measured, {c.get('failed', 0)} failed, {c.get('not run', 0)} not run; "
          f"{res.measured} measured now in {res.seconds:.0f} s")
    for f in res.failures:
        print(f"  failed: {escape(f, 'terminal')}")
    if res.interrupted:
        return 130
    store = Store.open(ns.store)
    try:
        if not ns.no_profile:
            profile_pass(store, res.run_id, device, print)
        rendered = report.render_report(store, res.run_id, ns.reports)
    finally:
        store.close()
    md = (rendered.path / "report.md").read_text()
    section = md[md.find("## Why "):] if "## Why " in md else ""
    for line in section.splitlines():
        if line.startswith("- "):
            print(escape(line, "terminal"))
    print(f"report: {rendered.path / 'report.md'} (section 'Why ...'; why.csv, fit.csv beside it)")
    return 0


def add_parser(sub, defaults_models: str, defaults_res: str, store_arg, reports_default, artifacts_default) -> None:
    from models.common import MAX_SEED, bounded_int, finite_positive

    w = sub.add_parser("why", help="why the subject slows down on small images: ablations, fixed cost, peak, "
                                   "feedback path, profiles", description=__doc__)
    w.add_argument("--device", default="host", help="device profile to time on (default: host; see python -m "
                   "devices list)")
    w.add_argument("--profiles", type=Path, metavar="FILE", help="your device profiles (TOML)")
    w.add_argument("--models", default=defaults_models, help="comma list; each subject gets its ablations "
                                                              "(default: %(default)s)")
    w.add_argument("--formats", default="onnx,tflite,executorch", help="(default: %(default)s)")
    w.add_argument("--res", default=defaults_res, help="comma list of N or HxW (default: %(default)s)")
    w.add_argument("--iters", type=bounded_int("--iters", 2, 1_000_000), default=None,
                   help="timed iterations per cell (default: 100 = 10 rounds x 10)")
    w.add_argument("--rounds", type=bounded_int("--rounds", 1, 10_000), default=None,
                   help="interleaved rounds per cell (default: 10; --iters = rounds x per-round)")
    w.add_argument("--max-rounds", type=bounded_int("--max-rounds", 1, 10_000), default=None,
                   help="extra rounds for wide groups up to this many (default: none beyond --rounds)")
    w.add_argument("--warmup", type=bounded_int("--warmup", 0, 1_000_000), default=10,
                   help="untimed runs of each model after loading (default: 10)")
    w.add_argument("--threads", default="1", help="threads of the ablation cells; the feedback-path experiment "
                                                  "adds 1 and 2 (default: %(default)s)")
    w.add_argument("--timeout", type=finite_positive("--timeout"), default=300.0,
                   help="seconds per cell before a hung runtime is killed (default: 300)")
    w.add_argument("--export-jobs", type=bounded_int("--export-jobs", 1, 64), default=min(2, os.cpu_count() or 1),
                   help="exports in parallel before any timing (default: %(default)s)")
    w.add_argument("--new", action="store_true", help="start a fresh run even if one with these arguments exists")
    w.add_argument("--seed", type=bounded_int("--seed", 0, MAX_SEED), help="shuffle and round-order seed")
    w.add_argument("--wait", action="store_true", help="wait if another job is timing on the device")
    w.add_argument("--no-profile", action="store_true", help="skip the profiled passes")
    store_arg(w)
    w.add_argument("--reports", type=Path, default=reports_default, help="reports root (default: %(default)s)")
    w.add_argument("--artifacts", type=Path, default=artifacts_default, help="artifacts root (default: %(default)s)")


def check(ns: argparse.Namespace) -> None:
    """The command line, before a device is reached: threads, models (a subject among them), the round counts."""
    parse_threads(ns.threads)
    expand_models(ns.models)
    if ns.iters is not None and ns.rounds is not None and ns.iters % ns.rounds:
        raise ToolkitError(f"--iters {ns.iters} is not a multiple of --rounds {ns.rounds}")
