"""The report of one run, rendered from the results store alone (so `python -m bench report` can redo it any time).

    reports/<run-id>/  results.csv  ratios.csv  report.md  report.html  latency.png  ratio.png  crossover.png
                       throughput.png
    reports/latest  -> <run-id>  (a symlink; a copy where links are not allowed)

This module only orchestrates: bench/analysis.py turns the stored rows into pairs, ratio curves, crossovers and the
answer; bench/plots.py draws the PNGs; bench/writers.py writes the CSV, Markdown and HTML files. The x axis of
every plot is the equivalent square side sqrt(H * W) in pixels, so a non-square input such as 192x256 sits at
222 px, beside 224x224, which has about the same number of pixels. Tables name the real H x W. Ratios are the
subject's median latency over a baseline's, per runtime (the families' roles come from the model registry).
Writing goes to a temporary directory renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench import analysis, plots, why_report, why_store, writers
from bench.store import Store


@dataclass(frozen=True)
class Rendered:
    """A written report: its folder, and its answer as the console prints it (one line per point)."""

    path: Path
    answer: list[str]


# --------------------------------------------------------------------------------------------- render
REPORT_FILES = frozenset({"results.csv", "ratios.csv", "latency.png", "ratio.png", "crossover.png",
                          "throughput.png", "report.md", "report.html"}) | why_report.FILES


def _ours(directory: Path) -> bool:
    """A real directory holding nothing but the files a report consists of (so replacing it deletes only ours)."""
    return (directory.is_dir() and not directory.is_symlink()
            and all(p.name in REPORT_FILES and p.is_file() and not p.is_symlink() for p in directory.iterdir()))


def render(store: Store, run_id: str, reports_root: str | Path) -> Path:
    """Write reports/<run-id>/ (atomically) and point reports/latest at it; return the directory."""
    return render_report(store, run_id, reports_root).path


def render_report(store: Store, run_id: str, reports_root: str | Path) -> Rendered:
    """Write reports/<run-id>/ (atomically) and point reports/latest at it; return the directory and the answer.

    The run id is checked against the one safe pattern and the folder proven to lie inside the reports root before
    anything is written; an existing report folder is replaced only when it holds nothing but a report's files.
    """
    import matplotlib

    from models.common import check_name, inside, os_error_line, replace_dir
    from models.errors import ToolkitError

    matplotlib.use("Agg")
    run = store.run(run_id)
    if run is None:
        raise ToolkitError(f"no run {run_id!r} in {store.path}; `python -m bench list` shows the runs")
    try:
        check_name(run_id, "run id")
    except ToolkitError as exc:
        raise ToolkitError(f"{exc}; run {run_id!r} in {store.path} cannot name a report folder") from None
    root = Path(reports_root)
    if root.exists() and not root.is_dir():
        raise ToolkitError(f"reports folder {root} is not a directory; pass another --reports")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(os_error_line(exc, root, "create the reports folder")) from None
    final = inside(root / run_id, root, "report folder")
    if (final.exists() or final.is_symlink()) and not _ours(final):
        raise ToolkitError(f"{final} holds files that are not a report's (or is not a plain folder); left "
                           "untouched: move them away to write this run's report")
    a = analysis.analyse(run, store.cells(run_id))
    tmp = final.with_name(f".{run_id}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        writers.write_csv(a, tmp / "results.csv")
        writers.write_ratios_csv(a, tmp / "ratios.csv")
        plots.write_plots(a, tmp)
        why_md = why_report.write(a, why_store.load_profiles(store, run_id), tmp)  # "" for a run without ablations
        md = writers.markdown(a) + ("\n" + why_md if why_md else "")
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(writers.html(md, tmp, f"Latency vs resolution: {run_id}"))
        replace_dir(tmp, final)  # _ours(final) was proven above
        _point_latest(root, run_id)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolkitError(os_error_line(exc, root, f"write the report of run {run_id}")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Rendered(final, analysis.console_lines(a))


def _point_latest(root: Path, run_id: str) -> None:
    """reports/latest -> <run-id>: a symlink swapped in atomically; a copy where links are not allowed. A `latest`
    that is neither our link nor our copy is left alone (and said so)."""
    from models.errors import ToolkitError

    latest = root / "latest"
    if latest.exists() and not latest.is_symlink() and not _ours(latest):
        raise ToolkitError(f"{latest} is not the toolkit's link or copy of a report; left untouched (the report is "
                           f"in {root / run_id})")
    link = root / f".latest.tmp-{os.getpid()}"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_id, target_is_directory=True)
        if latest.exists() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(link, latest)
    except OSError:  # no symlinks here: a copy
        if link.is_symlink():
            link.unlink()
        if latest.is_symlink():
            latest.unlink()
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(root / run_id, latest)

