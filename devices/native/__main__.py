"""python -m devices.native build [--out DIR] [--arch aarch64] | compare ARTIFACT... [--rounds N ...]"""

from __future__ import annotations

import argparse
import sys

from models.common import bounded_int, finite_positive
from models.errors import cli_main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devices.native", description=(
        "The native ExecuTorch runner (et-bench, devices/native/runner.cpp): build it, or time .pte files with it "
        "and with executorch.runtime interleaved in one worker."),
        epilog="examples:\n  python -m devices.native build\n  python -m devices.native build --arch aarch64\n"
               "  python -m devices.native compare artifacts/mobileformer_26m/224x224/executorch-fp32",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build et-bench (cached by sources and executorch version); prints its path")
    b.add_argument("--out", metavar="DIR", help="build into DIR (default: the toolkit's cache folder)")
    b.add_argument("--arch", metavar="ARCH", help="cross-compile for another Linux machine (aarch64) against that "
                   "platform's executorch wheel, fetched with pip and cached (default: this machine)")
    c = sub.add_parser("compare", help="time each .pte through executorch.runtime and et-bench, interleaved in rounds")
    c.add_argument("artifacts", nargs="+", help="ExecuTorch artifact directories (with manifest.json) or .pte files")
    c.add_argument("--rounds", type=bounded_int("--rounds", 1, 10_000), default=10, help="rounds (default: 10)")
    c.add_argument("--per-round", type=bounded_int("--per-round", 1, 100_000), default=10,
                   help="timed iterations per member per round (default: 10)")
    c.add_argument("--warmup", type=bounded_int("--warmup", 0, 100_000), default=10,
                   help="untimed runs after loading (default: 10)")
    c.add_argument("--switch-warmup", type=bounded_int("--switch-warmup", 0, 100_000), default=2,
                   help="untimed runs before every chunk (default: 2)")
    c.add_argument("--threads", type=bounded_int("--threads", 1, 1024), default=1, help="threads (default: 1)")
    c.add_argument("--seed", type=bounded_int("--seed", 0, 2**31 - 1), default=0, help="round-order seed")
    c.add_argument("--timeout", type=finite_positive("--timeout"), default=1800.0,
                   help="seconds per file before the worker is killed (default: 1800)")
    c.add_argument("--native-runner", metavar="FILE", help="et-bench to use (default: the `make native` build)")
    c.add_argument("--json", metavar="FILE", help="also write every measurement (raw samples) as JSON")
    args = ap.parse_args(argv)

    if args.cmd == "build":
        from devices.native import build

        print(build(args.out, args.arch))
        return 0
    from devices.native.compare import compare

    compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "devices.native"))
