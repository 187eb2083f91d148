"""python -m export --model NAME --format {onnx,coreml,tflite,executorch,all} --res 224|192x256 [...]"""

from __future__ import annotations

import argparse
import sys

from models import defaults
from models.common import MAX_SEED, bounded_int
from models.errors import ToolkitError, cli_main


def main(argv: list[str] | None = None) -> int:
    from export.core import DEFAULT_OUT, FORMATS, PRECISIONS

    ap = argparse.ArgumentParser(prog="python -m export", description=(
        "Export a model to mobile formats at a static input resolution, then check the artifact against PyTorch "
        "on random inputs and real photographs. Each artifact directory holds the file(s) and manifest.json. "
        "A repeated identical export returns the cached artifact."),
        epilog=f"examples:\n  python -m export --model {defaults.EXPORT_MODEL} --format coreml --res 224\n"
               f"  python -m export --model {defaults.EXPORT_MODEL}:tokens=3 --format tflite --converter onnx2tf "
               "--res 192x256\n"
               f"  python -m export --model {defaults.SWEEP_MODELS[1]} --format all --precision fp16",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=defaults.EXPORT_MODEL,
                    help="a name from `python -m models list`, with overrides as NAME:key=value, e.g. "
                         f"{defaults.EXPORT_MODEL}:tokens=3 (default: %(default)s)")
    ap.add_argument("--format", required=True, help=f"{', '.join(FORMATS)} or all (comma-separated list allowed)")
    ap.add_argument("--res", default="224", help="N or HxW (height x width), e.g. 224 or 192x256 (default 224)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--checkpoint", help="local weights file (default: fixed-seed random weights)")
    ap.add_argument("--converter", help="tflite: litert-torch (default) or onnx2tf")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="the same as --model NAME:KEY=VALUE (kept for older scripts)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="artifacts root (default: %(default)s)")
    ap.add_argument("--seed", type=bounded_int("--seed", 0, MAX_SEED), default=0,
                    help="weights seed when no checkpoint is given (default 0)")
    ap.add_argument("--force", action="store_true", help="re-export even if a cached artifact matches")
    ap.add_argument("--dynamic", action="store_true",
                    help="symbolic height/width instead of a fixed shape (onnx only; parity checked at two sizes)")
    ap.add_argument("--optimize", nargs="?", const="on", default="off", metavar="on|off",
                    help="also write the optimized artifact beside the plain one (<leaf>-opt/): the family's export "
                         "form and the format's graph tools, checked against PyTorch and against the plain artifact "
                         "(`--optimize` = on; make export OPTIMIZE=1)")
    args = ap.parse_args(argv)

    from models.__main__ import model_and_overrides

    model, overrides = model_and_overrides(args.model, args.set)
    if args.optimize not in ("on", "off", "1", "0"):
        raise ToolkitError(f"--optimize takes on or off (or 1, 0), not {args.optimize!r}")

    fmts = list(FORMATS) if args.format == "all" else [f.strip() for f in args.format.split(",") if f.strip()]
    if not fmts:
        raise ToolkitError(f"--format names no format; valid: {', '.join(FORMATS)}, all")
    for f in fmts:
        if f not in FORMATS:
            raise ToolkitError(f"unknown format {f!r}; valid: {', '.join(FORMATS)}, all")
    if args.converter and len(fmts) != 1:
        raise ToolkitError("--converter applies to one format; name it with --format")
    import export as ex  # heavy imports only once the arguments are valid

    failed = 0
    for f in fmts:
        for optimize in (False, True) if args.optimize in ("on", "1") else (False,):
            try:
                art = ex.export(model, f, args.res, precision=args.precision, converter=args.converter,
                                checkpoint=args.checkpoint, overrides=overrides, out=args.out, seed=args.seed,
                                force=args.force, dynamic=args.dynamic, optimize=optimize)
            except ex.ExportFailed as exc:
                art = exc.artifact
                failed += 1
            _report(art)
    if failed:
        raise ToolkitError(f"{failed} artifact(s) failed the parity check (kept, marked failed in manifest.json)")
    return 0


def _report(art) -> None:
    from export.parity import summary

    m = art.manifest
    how = "cached" if art.cached else f"{m['export_seconds']:.1f}s"
    size = m["file_bytes"] / 1e6
    print(f"{m['format']:<10} {m['converter']:<12} {m['precision']}{' opt' if m.get('optimized') else ''}  "
          f"{size:6.1f} MB  {how:>7}  {summary(m['parity'])}")
    if m.get("optimized"):
        from export.optimize import describe

        print(f"           {describe(m)}")
    print(f"           {art.file}")


if __name__ == "__main__":
    sys.exit(cli_main(main, "export"))
