"""python -m models list | info NAME [--res 224|192x256] [--set key=value ...] [--json]"""

from __future__ import annotations

import argparse
import json
import sys

import models
from models.errors import ToolkitError, cli_main


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ToolkitError(f"bad override {item!r}: expected key=value, e.g. tokens=3")
        out[key.strip()] = value.strip()
    return out


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


def markdown_table() -> str:
    head = ["model", "family", "params", "MAdds (core)", "published params / MAdds", "default res"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models", description=(
        "Reference models of the toolkit: Mobile-Former (ours, the authors' architecture), MobileNetV3 and "
        "MobileViT (timm). MAdds = multiply-adds of conv + linear + attention matmuls at batch 1."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="table of every model: params, MAdds at its default resolution")
    ls.add_argument("--markdown", action="store_true", help="print a Markdown table (as in README.md)")
    inf = sub.add_parser("info", help="params, MAdds, input spec and valid resolutions of one model")
    inf.add_argument("name", help="a model name from `python -m models list`")
    inf.add_argument("--res", default=None, help="N or HxW (height x width); default: the model's own")
    inf.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="ablation override, e.g. tokens=1, dyrelu=false, bridge=false (Mobile-Former)")
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        if args.markdown:
            print(markdown_table())
            return 0
        head = ["model", "family", "params", "MAdds", "published", "default res"]
        rows = table_rows()
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        return 0

    s = models.spec(args.name)
    res = args.res if args.res is not None else s.default_resolution
    i = models.info(args.name, res, **parse_overrides(args.set))
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
