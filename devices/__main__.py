"""python -m devices list | describe NAME | run NAME ARTIFACT [--iters N --warmup N --threads N --timeout S]"""

from __future__ import annotations

import argparse
import json
import sys

from models.errors import cli_main


def main(argv: list[str] | None = None) -> int:
    import devices

    ap = argparse.ArgumentParser(prog="python -m devices", description=(
        "Devices that run exported artifacts and time them. Profiles live in devices/devices.toml; "
        "`host` (this machine) is built in."),
        epilog="examples:\n  python -m devices list\n  python -m devices describe host\n"
               "  python -m devices run host artifacts/mobileformer_26m/224x224/onnx-fp32 --iters 50",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="device profiles")
    d = sub.add_parser("describe", help="CPU, cores, OS and runtime versions of a device (JSON)")
    d.add_argument("name")
    r = sub.add_parser("run", help="time one artifact on a device and print its statistics")
    r.add_argument("name")
    r.add_argument("artifact", help="an artifact directory (with manifest.json) or its model file")
    r.add_argument("--iters", type=int, default=100)
    r.add_argument("--warmup", type=int, default=10)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--timeout", type=float, default=300.0, help="seconds before a hung runtime is killed")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for name, prof in devices.profiles().items():
            print(f"{name:<16} {prof.get('kind', 'host'):<6} {prof.get('description', '')}")
        return 0
    dev = devices.get(args.name)
    if args.cmd == "describe":
        print(json.dumps(dev.describe(), indent=2))
        return 0
    import statistics

    from export.core import resolve

    art = resolve(args.artifact)
    try:
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
