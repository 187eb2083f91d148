"""Facts and rules every package of the toolkit shares: the repository root, safe names, the path rule, the file
digest, and the one-line wording of operating-system errors.

models/ sits at the top of the data flow (models -> export -> devices -> bench), so the rules live here and the
packages downstream import them; none of them keeps a copy.

The path rule: whatever the toolkit writes, replaces or deletes is first resolved (symlinks followed) and proven to
lie inside the folder it belongs to (`inside`). Names that become path components (run ids) match one pattern
(`check_name`), checked where they enter the toolkit.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
from pathlib import Path

from models.errors import ToolkitError

ROOT = Path(__file__).resolve().parent.parent

# A name that is safe as one path component everywhere: starts with a letter or digit, then letters, digits,
# '.', '_' or '-', at most 64 characters; never "." or "..", and never one of the toolkit's own reserved names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = frozenset({"latest"})

# Bounds of numeric command-line values (beyond them nothing sensible happens, and SQLite stores 64-bit ints).
MAX_SEED = 2**63 - 1


def check_name(value: str, what: str) -> str:
    """`value` if it is a safe path component (NAME_PATTERN, not reserved), else a ToolkitError naming `what`."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise ToolkitError(f"bad {what} {value!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit (no '/' and no '..')")
    if value in RESERVED_NAMES:
        raise ToolkitError(f"bad {what} {value!r}: the name is reserved by the toolkit")
    return value


def brief(value: object, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters: a value someone else wrote, quoted in a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def inside(path: str | Path, root: str | Path, what: str) -> Path:
    """`path` resolved, after proving it lies strictly inside `root` (both resolved, symlinks followed)."""
    root_r = Path(root).resolve()
    p = Path(path).resolve()
    if p == root_r or root_r not in p.parents:
        raise ToolkitError(f"{what} {path} resolves to {p}, outside {root_r}; refused")
    return p


def file_digest(path: str | Path) -> str:
    """sha256 of a file, or of a directory tree (relative paths and contents, in sorted order)."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        return h.hexdigest()
    with open(p, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def tree_size(path: str | Path) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return p.stat().st_size


def os_error_line(exc: OSError, path: str | Path, doing: str) -> str:
    """One line for an OSError: "disk full at <path>" for ENOSPC/EDQUOT, else what failed and why."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full at {path} ({doing})"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot {doing} at {path}: {reason}"


def finite_positive(option: str):
    """An argparse type for `option`: a finite number above zero. Raises ToolkitError (one line through cli_main),
    which argparse does not swallow into a usage message."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise ToolkitError(f"{option} takes a number of seconds, not {text[:40]!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise ToolkitError(f"{option} must be a finite number above 0, not {text[:40]!r}")
        return v

    parse.__name__ = "float"
    return parse


def bounded_int(option: str, lo: int, hi: int):
    """An argparse type for `option`: a whole number in [lo, hi] (at most 20 digits are even read)."""

    def parse(text: str) -> int:
        s = str(text).strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", s):
            raise ToolkitError(f"{option} takes a whole number from {lo} to {hi}, not {s[:40]!r}")
        v = int(s)
        if not lo <= v <= hi:
            raise ToolkitError(f"{option} takes a whole number from {lo} to {hi}, not {v}")
        return v

    parse.__name__ = "int"
    return parse


# --------------------------------------------------------------------------------------------- measurement facts
# A timed cell is unstable when its coefficient of variation is above UNSTABLE_CV or, with one thread, its median
# wall time is more than CONTENTION_BOUND above its median CPU time (a neighbour had the core). docs/bench.md has
# the measurements behind both numbers. Every package reads them from here.
UNSTABLE_CV = 0.10
CONTENTION_BOUND = 0.05


def median(values) -> float:
    """The median everywhere in the toolkit: the mean of the two middle values for an even count (numpy's)."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if not n:
        raise ValueError("median of no values")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# --------------------------------------------------------------------------------------------- provenance, files
def git_commit() -> str | None:
    """The toolkit's commit, with "+dirty" when tracked files differ from it (the same string everywhere)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary directory onto `final` (a sibling): the old one is renamed aside first and removed
    only afterwards, so a reader sees the old or the new directory, never half of one. The caller has proven that
    `final`, if present, is the toolkit's own."""
    import shutil

    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------- tables
def markdown_table(head: list[str], rows: list[list]) -> str:
    """The one Markdown table writer: a header row, the separator, one line per row. Every cell is text, escaped
    (models/escape.py), except cells that are Markdown already (`escape.Markdown`: the toolkit's own marks, a code
    span); a "|" in those is escaped too, so no cell can split the table or start a line of its own."""
    from models.escape import Markdown, escape

    def cell(c) -> str:
        if isinstance(c, Markdown):
            return re.sub(r"(?<!\\)\|", r"\\|", c).replace("\n", " ")
        return escape(c, "markdown")

    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def print_table(head: list[str], rows: list[list], *, title: str | None = None) -> None:
    """A table on the terminal (rich): aligned columns, no colour codes when the output is not a terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from models.escape import escape

    t = Table(title=title, box=None, pad_edge=False, header_style="bold", highlight=False)
    for h in head:
        t.add_column(h, overflow="fold")  # wrap a long cell, never cut it
    for r in rows:  # cells are text: no console markup, no control characters (models/escape.py)
        t.add_row(*(Text(escape(c, "terminal")) for c in r))
    Console(highlight=False, soft_wrap=True, width=max(120, Console().width)).print(t)
