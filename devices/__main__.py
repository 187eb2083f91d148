"""python -m devices list | describe NAME | run NAME ARTIFACT [--iters N --warmup N --threads N --timeout S]"""

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
               "  python -m devices run host artifacts/<model>/224x224/onnx-fp32 --iters 50",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="device profiles")
    d = sub.add_parser("describe", help="CPU, cores, OS and runtime versions of a device (JSON)")
    d.add_argument("name")
    r = sub.add_parser("run", help="time one artifact on a device and print its statistics")
    r.add_argument("name")
    for p in (ls, d, r):
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

    if args.cmd == "list":
        print_table(["device", "kind", "description"], [[name, prof.get("kind", "host"), prof.get("description", "")]
                                                       for name, prof in devices.profiles(args.profiles).items()])
        return 0
    dev = devices.get(args.name, args.profiles)
    if args.cmd == "describe":
        print(json.dumps(dev.describe(), indent=2))
        return 0
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


if __name__ == "__main__":
    sys.exit(cli_main(main, "devices"))
