"""python -m models list | info NAME[:key=value...] [--res 224|192x256] [--json]"""

from __future__ import annotations

import argparse
import json
import sys

import models
from models import common
from models.errors import ToolkitError, cli_main


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` (kept for older scripts): the same overrides as NAME:key=value."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ToolkitError(f"bad override {item!r}: expected key=value, e.g. tokens=3")
        out[key.strip()] = value.strip()
    return out


def model_and_overrides(name_arg: str, sets: list[str] | None) -> tuple[str, dict[str, str]]:
    """NAME[:key=value...] plus any --set key=value: the one override syntax, name:key=value."""
    name, ov = models.split_model_arg(name_arg)
    for k, v in parse_overrides(sets).items():
        if k in ov and ov[k] != v:
            raise ToolkitError(f"override {k} given twice ({ov[k]!r} and {v!r})")
        ov[k] = v
    return name, ov


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def table_rows() -> list[list[str]]:
    rows = []
    for name in models.list_models():
        s = models.spec(name)
        i = models.info(name, s.default_resolution)
        rows.append([name, s.family, f"{i.params:,}", f"{i.madds / 1e6:.1f}M",
                     f"{s.reported_params_m:g}M / {s.reported_madds_m:g}M", models.format_resolution(i.resolution)])
    return rows


HEAD = ["model", "family", "params", "MAdds (core)", "published params / MAdds", "default res"]


def markdown_table() -> str:
    return common.markdown_table(HEAD, table_rows())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models", description=(
        "Reference models of the toolkit: " + "; ".join(f"{f.display} ({f.role})" for f in models.families())
        + ". MAdds = multiply-adds of conv + linear + attention matmuls at batch 1. Overrides are written "
        "NAME:key=value everywhere, e.g. mobileformer_294m:tokens=3:bridge=false."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="table of every model: params, MAdds at its default resolution")
    ls.add_argument("--markdown", action="store_true", help="print a Markdown table (as in README.md)")
    inf = sub.add_parser("info", help="params, MAdds, input spec and valid resolutions of one model")
    inf.add_argument("name", help="a model name from `python -m models list`, with overrides as NAME:key=value "
                                  "(e.g. mobileformer_294m:tokens=1, :dyrelu=false, :bridge=false)")
    inf.add_argument("--res", default=None, help="N or HxW (height x width); default: the model's own")
    inf.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="the same as NAME:KEY=VALUE (kept for older scripts)")
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        if args.markdown:
            print(markdown_table())
            return 0
        common.print_table(["model", "family", "params", "MAdds", "published", "default res"], table_rows())
        return 0

    name, ov = model_and_overrides(args.name, args.set)
    s = models.spec(name)
    res = args.res if args.res is not None else s.default_resolution
    i = models.info(name, res, **ov)
    if args.json:
        print(json.dumps(i.as_dict(), indent=2))
        return 0
    print(f"{i.name} ({i.family}) at {models.format_resolution(i.resolution)}")
    print(f"  params            {i.params:,} ({_millions(i.params)})")
    print(f"  MAdds             {i.madds:,} ({i.madds / 1e6:.1f}M, conv + linear + attention matmuls)")
    print(f"  default res       {models.format_resolution(i.default_resolution)}")
    print(f"  valid res         {i.resolution_rule}")
    print(f"  input             NCHW float32, RGB in [0, 1], normalised with mean {i.mean} std {i.std}")
    print(f"  overrides         {i.overrides or 'none'} (allowed: {', '.join(s.overrides) or 'none'})")
    print(f"  source            {i.source}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "models"))
