"""python -m export.matrix: export a grid of models x resolutions x formats and tabulate what came out.

The coverage table of the export issue is this command's output (defaults below). Every cell goes through
export.export, so cached artifacts cost nothing and a rerun only exports what is missing; a cell that fails (a
converter crash, a failed parity check) is a row with its error, never the end of the run. The table is printed as
the cells finish and written to reports/export-matrix.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from export.parity import worst
from models import defaults
from models.common import markdown_table
from models.errors import ToolkitError, cli_main

DEFAULT_MODELS = ",".join(defaults.COVERAGE_MODELS)
DEFAULT_TARGETS = "onnx,tflite,tflite:onnx2tf,executorch,coreml"
HEAD = ["model", "res", "format", "converter", "prec", "export s", "MB", "max_rel", "cosine", "top-1", "parity",
        "delegation / ops"]


def _delegation(m: dict[str, Any]) -> str:
    m = {**m, **(m.get("details") or {})}
    d = m.get("delegation")
    if isinstance(d, dict) and d.get("summary"):
        return str(d["summary"])
    if isinstance(d, str):
        return d
    if "nodes" in m:
        return f"{m['nodes']} nodes"
    return ""


def row(m: dict[str, Any]) -> list[str]:
    p = m.get("parity", {})
    r, i = p.get("random"), p.get("images")
    figs = ["", "", ""]
    if r and i:
        w = worst(p)
        figs = [f"{w['max_rel']:.1e}", f"{w['cosine']:.6f}", f"{w['top1']:.0%}"]
    res = "x".join(str(v) for v in m["resolution"])
    return [m["model"], res, m["format"], m["converter"], m["precision"], f"{m['export_seconds']:.1f}",
            f"{m['file_bytes'] / 1e6:.1f}", *figs, p.get("verdict", ""), _delegation(m)]


def markdown(rows: list[list[str]]) -> str:
    return markdown_table(HEAD, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--res", default="128,224,192x256", help="comma list of N or HxW (default: %(default)s)")
    ap.add_argument("--targets", default=DEFAULT_TARGETS, help="format or format:converter (default: %(default)s)")
    ap.add_argument("--precision", default="fp32", help="fp32, fp16 or fp32,fp16")
    ap.add_argument("--out", default=None, help="artifacts root (default: ./artifacts)")
    ap.add_argument("--table", default="reports/export-matrix", help="output path stem (.md and .json)")
    args = ap.parse_args(argv)

    import export
    import models

    names = [m for m in args.models.split(",") if m]
    for n in names:
        models.spec(n)
    targets = []
    for t in args.targets.split(","):
        fmt, _, conv = t.partition(":")
        export.format_spec(fmt).converter(conv or None)
        targets.append((fmt, conv or None))
    cells = [(n, r, f, c, p) for n in names for r in args.res.split(",") for f, c in targets
             for p in args.precision.split(",")]
    rows, records, t0 = [], [], time.perf_counter()
    print("| " + " | ".join(HEAD) + " |", flush=True)
    for k, (name, res, fmt, conv, prec) in enumerate(cells, 1):
        try:
            art = export.export(name, fmt, res, precision=prec, converter=conv, out=args.out)
            m = art.manifest
        except export.ExportFailed as exc:
            m = exc.artifact.manifest
        except ToolkitError as exc:
            m = None
            r = [name, res, fmt, conv or export.format_spec(fmt).default_converter, prec, "", "", "", "", "",
                 "error", str(exc)[:160]]
        if m is not None:
            r = row(m)
            records.append({k2: m.get(k2) for k2 in ("model", "resolution", "format", "converter", "precision",
                                                     "export_seconds", "file_bytes", "parity", "status")}
                           | {"delegation": _delegation(m)})
        else:
            records.append({"model": name, "resolution": res, "format": fmt, "error": r[-1]})
        rows.append(r)
        print("| " + " | ".join(r) + f" |  [{k}/{len(cells)}, {time.perf_counter() - t0:.0f}s]", flush=True)
    stem = Path(args.table)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown(rows) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(records, indent=1, default=str))
    bad = sum(1 for r in rows if r[10] not in ("passed", "not run: needs macOS"))
    print(f"\n{len(rows)} cells, {bad} not passed; table: {stem.with_suffix('.md')}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "export.matrix"))
