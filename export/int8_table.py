"""The int8 tables of docs/int8.md, generated from the manifests under an artifacts root.

    python -m export.int8_table --out /path/to/artifacts [--res 224] > tables.md

Three tables, one row per int8 artifact found at that resolution (every model, format and converter exported):
parity against the quantized reference (the gated figures) and against fp32 PyTorch (recorded), the cross-check of
the twins that carry one set of scales (the ONNX `pt2e` file and the `.pte`), and what stayed float per op kind.
Nothing is run: the figures are the ones each export wrote into its manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.common import markdown_table
from models.errors import ToolkitError, cli_main


def manifests(root: Path, res: str) -> list[dict[str, Any]]:
    """The int8 manifests under root at resolution res (e.g. "224x224"), sorted by model, format, converter."""
    found = []
    for p in sorted(root.glob(f"*/{res}/*int8*/manifest.json")):
        try:
            m = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # a folder being written or not ours: the table lists what it can read
        if isinstance(m, dict) and m.get("precision") == "int8":
            found.append(m)
    return sorted(found, key=lambda m: (m.get("model", ""), m.get("format", ""), m.get("converter", "")))


def _f(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "-"


def parity_table(ms: list[dict[str, Any]]) -> str:
    rows = []
    for m in ms:
        p = m.get("parity") or {}
        q = p.get("quantized") or {}
        qi, qr, fp = q.get("images") or {}, q.get("random") or {}, p.get("images") or {}
        rows.append([m["model"], f"{m['format']} / {m['converter']}", p.get("verdict", "?"),
                     f"{_f(qr.get('p50_steps'), '.0f')} / {_f(qi.get('p50_steps'), '.0f')}",
                     f"{_f(qr.get('within_one_step'), '.0%')} / {_f(qi.get('within_one_step'), '.0%')}",
                     f"{_f(qr.get('max_steps'), '.0f')} / {_f(qi.get('max_steps'), '.0f')}",
                     f"{_f(qr.get('cosine'), '.4f')} / {_f(qi.get('cosine'), '.4f')}",
                     _f(qi.get("top1"), ".0%"), _f(fp.get("cosine"), ".4f"), _f(fp.get("top1"), ".0%"),
                     _f(fp.get("top5"), ".0%")])
    return markdown_table(["model", "format / converter", "verdict", "median steps (random / photos)",
                           "within one step", "max steps", "cosine vs quantized ref", "top-1 vs ref (photos)",
                           "cosine vs fp32 (photos)", "top-1 vs fp32", "top-5 vs fp32"], rows)


def cross_table(ms: list[dict[str, Any]]) -> str:
    rows = []
    for m in ms:
        c = (m.get("parity") or {}).get("cross_check")
        if not isinstance(c, dict):
            continue
        for key in ("random", "images"):
            f = c.get(key) or {}
            rows.append([m["model"], f"{m['format']} / {m['converter']}", c.get("twin", "?"), key,
                         _f(f.get("p50_steps"), ".0f"), _f(f.get("within_one_step"), ".0%"),
                         _f(f.get("max_steps"), ".0f"), _f(f.get("cosine"), ".5f"), _f(f.get("top1"), ".0%")])
    return markdown_table(["model", "artifact", "twin", "inputs", "median steps", "within one step", "max steps",
                           "cosine", "top-1 agreement"], rows)


def float_table(ms: list[dict[str, Any]]) -> str:
    rows = []
    for m in ms:
        q = (m.get("details") or {}).get("int8") or {}
        kinds = q.get("float_op_kinds") or {}
        top = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])) or "none"
        rows.append([m["model"], f"{m['format']} / {m['converter']}", _f(q.get("int8_ops"), "d"),
                     _f(q.get("float_ops"), "d"), _f(q.get("conversions"), "d"), top])
    return markdown_table(["model", "format / converter", "int8 ops", "float ops", "int8<->float conversions",
                           "float op kinds"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.int8_table", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the artifacts root the int8 exports were written to")
    ap.add_argument("--res", default="224", help="resolution, N or HxW (default: 224)")
    args = ap.parse_args(argv)
    res = args.res if "x" in args.res else f"{args.res}x{args.res}"
    root = Path(args.out)
    if not root.is_dir():
        raise ToolkitError(f"--out {root}: not a folder")
    ms = manifests(root, res)
    if not ms:
        raise ToolkitError(f"no int8 artifacts at {res} under {root}: export some first "
                           "(python -m export --precision int8 ...)")
    print(f"<!-- generated: python -m export.int8_table --out {root} --res {args.res} -->\n")
    print("### Parity\n\n" + parity_table(ms) + "\n")
    print("### Cross-check\n\n" + cross_table(ms) + "\n")
    print("### What stayed float\n\n" + float_table(ms))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "export.int8_table"))
