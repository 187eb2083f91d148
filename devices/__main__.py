"""python -m devices list | describe NAME | check NAME | provision NAME | parity NAME ARTIFACT | emulate [arm64]
| run NAME ARTIFACT [--iters N ...]"""

from __future__ import annotations

import argparse
import json
import sys

from models.common import bounded_int, finite_positive, print_table
from models.errors import cli_main


def main(argv: list[str] | None = None) -> int:
    import devices

    ap = argparse.ArgumentParser(prog="python -m devices", description=(
        "Devices that run exported artifacts and time them. Profiles live in devices/devices.toml; "
        "`host` (this machine) is built in."),
        epilog="examples:\n  python -m devices list\n  python -m devices describe host\n"
               "  python -m devices check pi --profiles my-devices.toml\n"
               "  python -m devices provision pi --profiles my-devices.toml\n"
               "  python -m devices run host artifacts/<model>/224x224/onnx-fp32 --iters 50\n"
               "  python -m devices emulate arm64          # an aarch64 board under qemu-user (root)\n\n"
               "A profile of your own (--profiles FILE) adds tables to devices/devices.toml and overrides them; "
               "docs/devices.md explains each kind (host, ssh, macos) and its keys.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="device profiles (with --executor ray: the devices a Ray cluster's nodes offer)")
    ls.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="ray: the devices the nodes of a Ray cluster offer (their device:<name> resource) and on "
                         "which node (docs/cluster.md) (default: %(default)s, the profiles)")
    ls.add_argument("--ray-address", metavar="ADDR", help="the Ray cluster (default: RAY_ADDRESS, else the one "
                                                          "started on this machine)")
    d = sub.add_parser("describe", help="CPU, cores, OS and runtime versions of a device (JSON)")
    d.add_argument("name")
    c = sub.add_parser("check", help="is the device ready: reachable, runtimes there, formats it runs, free disk "
                       "(exit 0 only when ready)")
    c.add_argument("name")
    pv = sub.add_parser("provision", help="create a venv with the runtimes on a board (ssh kinds) from "
                        "devices/requirements-board.txt")
    pv.add_argument("name")
    pv.add_argument("--with-executorch", action="store_true",
                    help="also install executorch and torch (its Python runtime imports torch; large)")
    pv.add_argument("--online", action="store_true",
                    help="let the board's pip download from the package index itself (default: the wheels are "
                    "fetched here for the board's machine, pushed and installed offline)")
    pa = sub.add_parser("parity", help="check an artifact against PyTorch on the device (e.g. Core ML on a Mac) and "
                        "record the verdict in its manifest")
    pa.add_argument("name")
    pa.add_argument("artifact", help="an artifact directory (with manifest.json)")
    pa.add_argument("--units", help="Core ML compute units (macos): CPU_ONLY, CPU_AND_GPU, CPU_AND_NE or ALL")
    em = sub.add_parser("emulate", help="start an emulated aarch64 board (qemu-user, Debian arm64 root, its own "
                        "sshd on 127.0.0.1) and print its profiles file; --stop NAME ends it (as root)")
    em.add_argument("arch", nargs="?", default="arm64", help="the board's architecture (arm64)")
    em.add_argument("--name", help="the board's device name (default: the architecture)")
    em.add_argument("--cpu", default=None, help="qemu's CPU model for every process on the board (default "
                    "cortex-a76: ARMv8.2-A with FP16 arithmetic and dot product, like a phone's big core)")
    em.add_argument("--stop", metavar="NAME", help="stop the emulated board NAME and remove its temporary folder")
    pr = sub.add_parser("parity-report", help="write the page of what differs between this computer's numerics and "
                        "the devices' (from the manifests' device parity checks)")
    pr.add_argument("--artifacts", default="artifacts", help="artifacts root to read (default: artifacts)")
    pr.add_argument("--out", default="docs/parity-arm.md", help="the page to write (default: docs/parity-arm.md)")
    r = sub.add_parser("run", help="time one artifact on a device and print its statistics")
    r.add_argument("name")
    for p in (ls, d, c, pv, pa, r):
        p.add_argument("--profiles", metavar="FILE",
                       help="your device profiles (TOML); its tables add to and override devices/devices.toml")
    r.add_argument("artifact", help="an artifact directory (with manifest.json) or its model file")
    r.add_argument("--iters", type=bounded_int("--iters", 2, 1_000_000), default=100,
                   help="timed iterations (default: 100)")
    r.add_argument("--warmup", type=bounded_int("--warmup", 0, 1_000_000), default=10,
                   help="untimed runs before timing (default: 10)")
    r.add_argument("--threads", type=bounded_int("--threads", 1, 1024), default=1,
                   help="runtime threads, at most the cores the device may use (default: 1)")
    r.add_argument("--timeout", type=finite_positive("--timeout"), default=300.0,
                   help="seconds before a hung runtime is killed (default: 300)")
    r.add_argument("--wait", action="store_true", help="wait if another job is timing on the device")
    args = ap.parse_args(argv)

    if args.cmd == "list" and args.executor == "ray":
        from devices.cluster import nodes_table

        profs = devices.profiles(args.profiles)
        rows = [[name, node, addr, profs.get(name, {}).get("kind", "no profile here")]
                for name, node, addr in nodes_table(args.ray_address)]
        if not rows:
            print("no node of the Ray cluster offers a device (start one with --resources '{\"device:<name>\": 1}')")
            return 0
        print_table(["device", "node id", "node address", "kind"], rows)
        return 0
    if args.cmd == "list":
        print_table(["device", "kind", "description"], [[name, prof.get("kind", "host"), prof.get("description", "")]
                                                       for name, prof in devices.profiles(args.profiles).items()])
        return 0
    if args.cmd == "parity-report":
        from devices import parity_report

        out, n = parity_report.write(args.artifacts, args.out, "python -m devices parity-report "
                                     f"--artifacts {args.artifacts} --out {args.out}")
        print(f"{n} device check(s) of artifacts under {args.artifacts}: {out}")
        return 0
    if args.cmd == "emulate":
        from devices import emulate

        if args.stop:
            emulate.stop(args.stop)
        else:
            emulate.start(args.arch, args.name, args.cpu or emulate.DEFAULT_CPU)
        return 0
    dev = devices.get(args.name, args.profiles)
    try:
        if args.cmd == "describe":
            print(json.dumps(dev.describe(), indent=2))
            return 0
        if args.cmd == "check":
            return _check(dev)
        if args.cmd == "parity":
            from devices.verify import check_on_device, figure_sets

            if args.units:
                from devices.apple import check_units

                check_units([args.units], "--units")
            rec = check_on_device(dev, args.artifact, units=args.units)
            where = f"{dev.name} ({rec['device'].get('machine', '?')})"
            for who, figures in ((where, rec), (f"this computer ({(rec.get('host') or {}).get('machine')})",
                                                rec.get("host") or {})):
                for key, f in figure_sets(figures).items():
                    print(f"{key} on {who} vs PyTorch: max_rel {f['max_rel']:.2e}, cosine {f['cosine']:.6f}, "
                          f"top-1 {f['top1']:.0%}, {f['n']} inputs")
            for key, f in (rec.get("vs_host") or {}).items():
                print(f"{key}: {dev.name} vs this computer: max_abs {f['max_abs']:.2e}, max_rel {f['max_rel']:.2e}, "
                      f"cosine {f['cosine']:.6f}, top-1 agreement {f['top1']:.0%}")
            q = rec.get("quantized") or {}  # int8: the gate, in output steps (devices/verify.py)
            for key, f in ((k, v) for k, v in q.items() if isinstance(v, dict) and "p50_steps" in v):
                print(f"{key}: {dev.name} vs {q['reference']}: median {f['p50_steps']:.0f} output steps, at most "
                      f"{f['max_steps']:.0f}, {f['within_one_step']:.0%} within one step, cosine {f['cosine']:.4f}")
            print(f"parity on {dev.name}: {rec['verdict']}" + (f" ({rec['reason']})" if rec.get("reason") else "")
                  + f"; written to {args.artifact}/manifest.json (device_parity.{dev.name})")
            return 0 if rec["verdict"] == "passed" else 1
        if args.cmd == "provision":
            if not hasattr(dev, "provision"):
                print(f"devices: error: device {dev.name} is of kind {dev.kind}, which has nothing to provision",
                      file=sys.stderr)
                return 2
            python = dev.provision(with_executorch=args.with_executorch, online=args.online)
            print(f"provisioned {dev.name}: {python} (used by default from now on; "
                  f"`python -m devices check {dev.name}` says what it can run)")
            return _check(dev)
    finally:
        if args.cmd != "run":
            dev.close()
    import contextlib
    import statistics

    from export.core import resolve
    from export.hostlock import DeviceLock, timing_cores

    art = resolve(args.artifact)  # the manifest's file must lie in its directory and match its size and hash
    dev.check_threads(args.threads)
    try:
        with DeviceLock(dev.name, f"`python -m devices run {dev.name}`", wait=args.wait), \
                (timing_cores("`python -m devices run`") if dev.kind == "host" else contextlib.nullcontext()):
            m = dev.run(art, iterations=args.iters, warmup=args.warmup, threads=args.threads, timeout=args.timeout)
    finally:
        dev.close()
    xs = m.samples_ms
    print(f"{art.file}: median {statistics.median(xs):.3f} ms, mean {statistics.fmean(xs):.3f} ms, "
          f"min {min(xs):.3f}, max {max(xs):.3f} ({len(xs)} runs); load {m.load_ms:.1f} ms, "
          f"first {m.first_ms:.1f} ms, peak RSS {m.peak_rss_mb} MB, harness {m.overhead_us:.2f} us/iter, "
          f"cores {m.cpus}")
    return 0


def _check(dev) -> int:
    """Facts on stdout, one line per problem on stderr; 0 only when the device is ready."""
    from models.escape import escape

    facts, problems = dev.check()  # a device's own words (getprop, uname, its errors): one line each, as text
    for line in facts:
        print(f"{dev.name}: {escape(line, 'terminal')}")
    for line in problems:
        print(f"problem: {escape(line, 'terminal')}", file=sys.stderr)
    print(f"{dev.name}: {'ready' if not problems else f'NOT ready ({len(problems)} problem(s))'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(cli_main(main, "devices"))
