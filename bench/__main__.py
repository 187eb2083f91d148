"""python -m bench run | report | compare | list  (the resolution sweep, its store and its report)"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from models import defaults
from models.common import MAX_SEED, ROOT, bounded_int, check_name, finite_positive, print_table
from models.errors import ToolkitError, cli_main
from models.escape import escape

DEFAULT_STORE = ROOT / "results" / "results.sqlite"
DEFAULT_REPORTS = ROOT / "reports"
DEFAULT_MODELS = ",".join(defaults.SWEEP_MODELS)
DEFAULT_FORMATS = defaults.SWEEP_FORMATS
DEFAULT_RES = defaults.SWEEP_RESOLUTIONS

EPILOG = f"""examples:
  python -m bench run --device host --models {DEFAULT_MODELS} \\
      --formats {DEFAULT_FORMATS} --res {DEFAULT_RES} --iters 100 --threads 1
  python -m bench run --models {defaults.SWEEP_MODELS[0]}:tokens=3,{defaults.SWEEP_MODELS[1]} --formats tflite \\
      --converter litert-torch,onnx2tf --res 128,192x256
  python -m bench report                      # re-render the latest run's report from the store
  python -m bench list
  python -m bench compare host-1a2b3c4d host-1a2b3c4d-2
  python -m bench import --tool benchmark_model --model {defaults.SWEEP_MODELS[0]} --format tflite --res 224 \
      --device pixel7 --run pixel7 bm_224.txt  # results measured by hand on a phone, as cells of run pixel7
  python -m bench report --run host-1a2b3c4d --run pixel7   # the devices side by side

The same `run` command twice resumes one run (only missing cells are measured); --new starts another."""

IMPORT_EPILOG = f"""examples:
  adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite --num_threads=1 > bm_224.txt
  python -m bench import --tool benchmark_model --model {defaults.SWEEP_MODELS[0]} --format tflite --res 224 \
      --device pixel7 bm_224.txt
  adb logcat -d -s ExecuTorch:I > et_160.txt    # after executor_runner --num_executions 50
  python -m bench import --tool executor_runner --model {defaults.SWEEP_MODELS[1]} --format executorch \
      --res 160 --device pixel7 --run pixel7-import --iters 50 et_160.txt
  xcrun xcresulttool get test-results metrics --path R.xcresult --compact > xc_224.json
  python -m bench import --tool xctest --model {defaults.SWEEP_MODELS[0]} --format coreml --res 224 \
      --device iphone15 xc_224.json
  python -m bench report --run pixel7-import

One file is one cell; the same file imported twice adds nothing (known by its sha256). benchmark_model and
onnxruntime_perf_test print aggregates only: such cells keep the printed median / mean and are marked in the
report (their ratios have no interval). executor_runner, the native runner and XCTest give raw samples."""


def _run_id(text: str) -> str:
    return check_name(text, "run id")


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (default: %(default)s)")


def _comparison() -> str:
    """"<subject> is slower than <baseline>, <baseline> and <baseline>", from the families' roles in the registry."""
    from bench.analysis import Roles

    roles = Roles.from_registry()
    return f"{roles.subject} is slower than {roles.baselines('and')}"


def main(argv: list[str] | None = None) -> int:
    from export import FORMATS
    from export.core import DEFAULT_OUT

    ap = argparse.ArgumentParser(prog="python -m bench", description=(
        "Benchmark exported models across input resolutions on a device, store every cell in SQLite and render "
        f"the latency-vs-resolution report (where {_comparison()}, by how much, and where the crossover is)."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{run,why,report,compare,list,import}")

    r = sub.add_parser("run", help="run or resume a sweep, then write its report", description=(
        "Export (cached) and time every cell of models x formats x resolutions x threads. Cells run in a "
        "shuffled order; each finished cell is committed to the store at once, so Ctrl-C or kill -9 loses only "
        "the cell in progress and the same command resumes."), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--device", default="host", help="device profile from devices/devices.toml (default: host)")
    r.add_argument("--profiles", type=Path, metavar="FILE",
                   help="your device profiles (TOML); its tables add to and override devices/devices.toml")
    r.add_argument("--models", default=DEFAULT_MODELS,
                   help="comma list; overrides as name:key=value, e.g. "
                        f"{defaults.SWEEP_MODELS[0]}:tokens=3 (default: %(default)s)")
    r.add_argument("--formats", default=DEFAULT_FORMATS,
                   help=f"comma list of {', '.join(FORMATS)}, or all (default: %(default)s)")
    r.add_argument("--res", default=DEFAULT_RES, help="comma list of N or HxW (default: %(default)s)")
    r.add_argument("--iters", type=bounded_int("--iters", 2, 1_000_000), default=None,
                   help="timed iterations per cell, = rounds x per-round (default: 100)")
    r.add_argument("--rounds", type=bounded_int("--rounds", 1, 10_000), default=None,
                   help="interleaved rounds: the models compared at a resolution take turns, in a fresh random "
                        "order each round, so machine drift lands on all of them alike; 1 = one burst per cell "
                        "(default: 10)")
    r.add_argument("--per-round", type=bounded_int("--per-round", 1, 1_000_000), default=None,
                   help="timed iterations of each model per round (default: iters / rounds = 10)")
    r.add_argument("--max-rounds", type=bounded_int("--max-rounds", 1, 10_000), default=None,
                   help="a group whose ratio intervals stay wider than +-3%% gets more rounds, up to this many; "
                        "= --rounds turns that off (default: 2 x rounds)")
    r.add_argument("--passes", type=bounded_int("--passes", 1, 10_000), default=None,
                   help="spread each group's rounds over this many passes over all groups, so a ratio samples the "
                        "whole timing phase (must divide --rounds; default: 5 for 10 rounds)")
    r.add_argument("--switch-warmup", type=bounded_int("--switch-warmup", 0, 1000), default=None,
                   help="untimed iterations each time a model is switched in (default: 2, measured: docs/bench.md)")
    r.add_argument("--warmup", type=bounded_int("--warmup", 0, 1_000_000), default=10,
                   help="untimed runs of each model after loading, before the rounds (default: 10)")
    r.add_argument("--threads", default="1", help="runtime threads; a comma list sweeps several (default: 1)")
    r.add_argument("--converter", help="comma list of converters to use where a format has several, e.g. "
                                       "litert-torch,onnx2tf for tflite (default: each format's default)")
    r.add_argument("--compute-units", metavar="LIST",
                   help="Core ML compute units to sweep on a Mac or iPhone, a comma list of CPU_ONLY, CPU_AND_GPU, "
                        "CPU_AND_NE, ALL (default: the device profile's compute_units)")
    r.add_argument("--precision", "--precisions", dest="precision", default="fp32",
                   help="fp32, fp16, int8 or a comma list, e.g. fp32,int8 (int8: each format's own static "
                        "quantization, calibrated on photographs; docs/int8.md) (default: fp32)")
    r.add_argument("--optimize", default="off", metavar="off|on|both",
                   help="time the plain artifacts (off), the `export --optimize` ones (on), or both in the same "
                        "interleaved rounds, with a report section 'as exported vs optimized' (default: off)")
    r.add_argument("--probes", action="store_true",
                   help="add the measuring probes (the GEMM peak, the per-node cost chains) to every group, as "
                        "`bench why` does: the report then gives shares of the peak and nodes x per-node cost")
    r.add_argument("--timeout", type=finite_positive("--timeout"), default=300.0,
                   help="seconds a cell may take (load + warm-up + timing) before its runtime is killed and the "
                        "cell stored as failed (default: 300)")
    r.add_argument("--export-timeout", type=finite_positive("--export-timeout"), default=1800.0,
                   help="seconds one export may take before the converter is killed (default: 1800)")
    r.add_argument("--export-jobs", type=bounded_int("--export-jobs", 1, 64), default=min(2, os.cpu_count() or 1),
                   help="exports run in parallel before any timing starts (default: %(default)s)")
    _store_arg(r)
    r.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="reports root (default: %(default)s)")
    r.add_argument("--artifacts", type=Path, default=DEFAULT_OUT, help="artifacts root (default: %(default)s)")
    r.add_argument("--run-id", type=_run_id, help="work on this run id (created if new; must have the same arguments)")
    r.add_argument("--new", action="store_true", help="start a fresh run even if one with these arguments exists")
    r.add_argument("--seed", type=bounded_int("--seed", 0, MAX_SEED),
                   help="shuffle seed of a new run (default: random, recorded in the run)")
    r.add_argument("--retry-failed", action="store_true", help="measure the run's failed cells again")
    r.add_argument("--no-report", action="store_true", help="do not render the report at the end")
    r.add_argument("--wait", action="store_true",
                   help="if another sweep is timing on the device, wait for it (default: stop with one line)")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: export and time on this machine; ray: exports as tasks on any node of a Ray "
                        "cluster, timing on the node that offers the resource device:<name> (docs/cluster.md) "
                        "(default: %(default)s)")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster to join with --executor ray, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, "
                        "else the cluster started on this machine)")

    rep = sub.add_parser("report", help="re-render a run's report from the store (default: the latest run); "
                                        "with several --run, the devices side by side", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("--run", type=_run_id, action="append", metavar="RUN",
                     help="run id (default: the most recently created run); give it several times for one report "
                          "of several devices (ratio vs resolution per device and runtime, crossover per device)")
    _store_arg(rep)
    rep.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="reports root (default: %(default)s)")
    rep.add_argument("--include-emulated", action="store_true",
                     help="put cells timed on an emulated device (qemu-user) into the answer, ratios and plots; "
                          "they are left out by default: an emulator's time is no device's latency")

    cmp_ = sub.add_parser("compare", help="per-cell median ratios between two runs (B / A) and their spread")
    cmp_.add_argument("run_a", type=_run_id)
    cmp_.add_argument("run_b", type=_run_id)
    _store_arg(cmp_)

    ls = sub.add_parser("list", help="runs in the store: id, created, cells done/failed, arguments")
    _store_arg(ls)

    from devices.parsers import TOOLS

    im = sub.add_parser("import", help="turn saved output of benchmark_model, executor_runner, the native runner, "
                                       "onnxruntime_perf_test or an XCTest into cells of a run",
                        description="Parse each FILE (one program run of one model) and store it as a cell of the "
                                    "run (created if new). Bad files are one line each and import nothing.",
                        epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    im.add_argument("--tool", required=True, choices=TOOLS, help="the program that wrote the files")
    im.add_argument("--model", required=True, help="registered model name, overrides as name:key=value")
    im.add_argument("--format", required=True, help=f"the artifact's format: {', '.join(FORMATS)}")
    im.add_argument("--res", required=True, help="input resolution, N or HxW")
    im.add_argument("--device", required=True, help="the device's name (free text: letters, digits, '.', '_', '-')")
    im.add_argument("--run", type=_run_id, help="the run to add the cells to (default: <device>-import)")
    im.add_argument("--converter", help="the converter that made the artifact, where the format has several "
                                        "(default: unknown)")
    im.add_argument("--precision", default="fp32", help="fp32 or fp16 (default: fp32)")
    im.add_argument("--threads", type=bounded_int("--threads", 1, 1024),
                    help="threads the program used (default: what its output says, else unknown)")
    im.add_argument("--iters", type=bounded_int("--iters", 1, 100_000_000),
                    help="timed iterations the program was asked for; a file with another count is refused")
    _store_arg(im)
    im.add_argument("files", nargs="+", type=Path, metavar="FILE")

    from bench.why import run as why_run

    why_run.add_parser(sub, ",".join(defaults.WHY_MODELS), defaults.WHY_RESOLUTIONS, _store_arg, DEFAULT_REPORTS,
                       DEFAULT_OUT)
    args = ap.parse_args(argv)
    return {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "list": cmd_list,
            "import": cmd_import, "why": why_run.cmd_why}[args.cmd](args, argv)


def cmd_import(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench import importer
    from bench.store import Store

    target = importer.check_target(tool=args.tool, model=args.model, fmt=args.format, res=args.res,
                                   device=args.device, converter=args.converter, precision=args.precision,
                                   threads=args.threads, expected=args.iters)
    store = Store.open(args.store)
    try:
        res = importer.import_files(store, target, args.files, run_id=args.run,
                                    argv=["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    finally:
        store.close()
    for o in res.outcomes:  # a file name or an output may hold anything: each outcome stays one line
        if o.status == "bad":
            print(f"bench: error: {escape(o.line, 'terminal')}", file=sys.stderr)
        else:
            print(escape(o.line, "terminal"))
    added = sum(o.status == "added" for o in res.outcomes)
    print(f"run {res.run_id}: {added} cell(s) added, {sum(o.status == 'duplicate' for o in res.outcomes)} already "
          f"there, {len(res.failed)} file(s) refused; `python -m bench report --run {res.run_id}` renders it")
    return 2 if res.failed else 0


def cmd_run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench import sweep
    from devices.rounds import DEFAULT_SWITCH_WARMUP

    if args.ray_address and args.executor != "ray":
        raise ToolkitError("--ray-address needs --executor ray")
    models_arg = args.models
    if args.probes:
        import models

        probes = [n for n in models.list_models() if models.family_info(models.spec(n).family).role == "probe"]
        models_arg = ",".join(dict.fromkeys([*models_arg.split(","), *probes]))
    sweep_args = sweep.parse_args(device=args.device, models_arg=models_arg, formats=args.formats, res=args.res,
                                  iters=args.iters, warmup=args.warmup, threads=args.threads,
                                  converter=args.converter, precision=args.precision, rounds=args.rounds,
                                  per_round=args.per_round, max_rounds=args.max_rounds, passes=args.passes,
                                  compute_units=args.compute_units, optimize=args.optimize,
                                  switch_warmup=DEFAULT_SWITCH_WARMUP if args.switch_warmup is None
                                  else args.switch_warmup)
    opts = sweep.Options(store=args.store, reports=args.reports, artifacts=args.artifacts, run_id=args.run_id,
                         new=args.new, seed=args.seed, timeout=args.timeout, export_timeout=args.export_timeout,
                         export_jobs=args.export_jobs,
                         retry_failed=args.retry_failed, report=not args.no_report, wait=args.wait,
                         profiles=args.profiles, executor=args.executor, ray_address=args.ray_address,
                         argv=["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    res = sweep.run(sweep_args, opts)
    c = res.counts
    print(f"run {res.run_id}: {c.get('ok', 0)} measured, {c.get('failed', 0)} failed, {c.get('not run', 0)} not "
          f"run, {c.get('unstable', 0)} unstable; {res.measured} measured now in {res.seconds:.0f} s")
    if res.failures:
        print("failures:")
        for f in res.failures:
            print(f"  {escape(f, 'terminal')}")
    if res.report:
        if res.answer:
            print("\n".join(escape(line, "terminal") for line in res.answer))
        print(f"report: {res.report / 'report.md'} (and report.html, results.csv, *.png); latest: "
              f"{res.report.parent / 'latest'}")
    print(f"store:  {res.store} (run {res.run_id})")
    if res.report_error:
        print(f"bench: error: report not written: {escape(res.report_error, 'terminal')} (every cell is in the store; "
              f"`python -m bench report --run {res.run_id}` writes it later)", file=sys.stderr)
        return 2
    return 130 if res.interrupted else (3 if res.gone else 0)


def cmd_report(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench import report
    from bench.store import Store

    store = Store.open(args.store, readonly=True)
    run_ids = list(dict.fromkeys(args.run or []))
    if len(run_ids) > 1:
        combined = report.render_devices(store, run_ids, args.reports, args.include_emulated)
        if combined.answer:
            print("\n".join(escape(line, "terminal") for line in combined.answer))
        print(f"report: {combined.path / 'report.md'} (and {', '.join(sorted(report.DEVICES_FILES - {'report.md'}))})")
        return 0
    run_id = run_ids[0] if run_ids else None
    if run_id is None:
        runs = store.runs()
        if not runs:
            raise ToolkitError(f"no runs in {args.store}")
        run_id = runs[-1]["run_id"]
    rendered = report.render_report(store, run_id, args.reports, args.include_emulated)
    path = rendered.path
    if rendered.answer:
        print("\n".join(escape(line, "terminal") for line in rendered.answer))
    print(f"report: {path / 'report.md'} (and report.html, results.csv, *.png); latest: {path.parent / 'latest'}")
    return 0


def cmd_list(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench.store import Store

    runs = Store.open(args.store, readonly=True).runs()
    if not runs:
        print(f"no runs in {args.store}")
        return 0
    rows = []
    for r in runs:
        a = r["args"] if isinstance(r["args"], dict) else {}
        rounds = f" = {a['rounds']} x {a['per_round']}" if a.get("rounds") else ""
        summary = (f"{','.join(a.get('models', []))} | {','.join(a.get('formats', []))} | res "
                   f"{','.join(a.get('resolutions', []))} | iters {a.get('iterations')}{rounds} warmup "
                   f"{a.get('warmup')} threads {','.join(map(str, a.get('threads', [])))}")
        rows.append([r["run_id"], (r["created"] or "")[:19].replace("T", " "), f"{r['cells_done']}/{r['cells_total']}",
                     r["cells_ok"], r["cells_failed"], r["cells_not_run"], r["unstable"], summary])
    print_table(["run id", "created (UTC)", "done", "ok", "failed", "not run", "unstable", "arguments"], rows)
    return 0


def cmd_compare(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench import stats
    from bench.labels import model_label, res_label, runtime_label
    from bench.store import Store

    store = Store.open(args.store, readonly=True)
    cells = {}
    for rid in (args.run_a, args.run_b):
        if store.run(rid) is None:
            raise ToolkitError(f"no run {rid!r} in {args.store}; `python -m bench list` shows the runs")
        cells[rid] = {_match_key(c): c for c in store.cells(rid) if c["status"] == "ok" and c["median_ms"]}
    a, b = cells[args.run_a], cells[args.run_b]
    common = sorted(set(a) & set(b))
    if not common:
        raise ToolkitError(f"runs {args.run_a} and {args.run_b} have no measured cell in common")
    print(f"B / A median latency, A = {args.run_a}, B = {args.run_b}")
    ratios, stable, cpu, table = [], [], [], []
    for k in common:
        x, y = a[k], b[k]
        ratio = y["median_ms"] / x["median_ms"]
        ratios.append(ratio)
        flag = "unstable" if x["unstable"] or y["unstable"] else ""
        if not flag:
            stable.append(ratio)
        if x.get("cpu_median_ms") and y.get("cpu_median_ms") and x["threads"] == 1:
            cpu.append(y["cpu_median_ms"] / x["cpu_median_ms"])
        table.append([model_label(x["model"], x["overrides"]), runtime_label(x["format"], x["converter"],
                      x["precision"]), res_label(x["height"], x["width"]), x["threads"], f"{x['median_ms']:.3f}",
                      f"{y['median_ms']:.3f}", f"{ratio:.3f}", flag])
    print_table(["model", "runtime", "res", "t", "A ms", "B ms", "B/A", "flags"], table)
    for name, rs in (("all cells", ratios), ("stable cells", stable), ("CPU-time medians, 1 thread", cpu)):
        s = stats.spread(rs)
        if s["n"]:
            print(f"{name}: n={s['n']}, median |B/A - 1| = {s['median_abs_dev']:.1%}, max = {s['max_abs_dev']:.1%}, "
                  f"within 5%: {s['within_5pct']:.0%}")
        else:
            print(f"{name}: none")
    only = len(set(a) ^ set(b))
    if only:
        print(f"({only} measured cell(s) appear in only one of the runs)")
    _compare_ratios(store, args.run_a, args.run_b)
    return 0


def _compare_ratios(store, run_a: str, run_b: str) -> None:
    """The report's slowdown ratios of both runs, point by point: B/A, and whether B's ratio lies inside A's 95%
    interval (how far to trust one run's intervals about the next run)."""
    from bench import stats
    from bench.rounds_study import ratio_agreement

    rows, ratios, inside = ratio_agreement(store, run_a, run_b)
    if not rows:
        print("slowdown ratios: no subject / baseline point in common")
        return
    print(f"\nslowdown ratios (subject / baseline), A = {run_a}, B = {run_b}")
    print_table(["runtime", "pair", "res", "A ratio (95% CI)", "B ratio (95% CI)", "B/A", "B inside A's CI"], rows)
    s = stats.spread(ratios)
    print(f"slowdown ratios: n={s['n']}, median |B/A - 1| = {s['median_abs_dev']:.1%}, max = {s['max_abs_dev']:.1%}, "
          f"within 5%: {s['within_5pct']:.0%}; B's ratio inside A's 95% interval: {sum(inside)}/{len(inside)} "
          f"({sum(inside) / len(inside):.0%})")


def _match_key(c: dict) -> tuple:
    import json

    return (c["model"], json.dumps(c["overrides"], sort_keys=True), c["format"], c["converter"], c["precision"],
            c["threads"], c["height"], c["width"])


if __name__ == "__main__":
    sys.exit(cli_main(main, "bench"))
