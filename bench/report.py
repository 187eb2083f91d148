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

from bench import analysis, int8_report, optimized, plots, writers
from bench.store import Store
from bench.why import report as why_report
from bench.why import store as why_store


@dataclass(frozen=True)
class Rendered:
    """A written report: its folder, and its answer as the console prints it (one line per point)."""

    path: Path
    answer: list[str]


# --------------------------------------------------------------------------------------------- render
REPORT_FILES = frozenset({"results.csv", "ratios.csv", "latency.png", "ratio.png", "crossover.png",
                          "throughput.png", "report.md", "report.html", optimized.FILE}) | why_report.FILES


DEVICES_FILES = frozenset({"report.md", "ratio.png", "ratios.csv"})  # the report across devices (bench/across.py)


def _ours(directory: Path, files: frozenset[str] = REPORT_FILES) -> bool:
    """A real directory holding nothing but the files a report consists of (so replacing it deletes only ours)."""
    return (directory.is_dir() and not directory.is_symlink()
            and all(p.name in files and p.is_file() and not p.is_symlink() for p in directory.iterdir()))


def _report_folder(root: Path, name: str, files: frozenset[str]) -> Path:
    """reports/<name>, proven inside the reports root (created) and, if it exists, holding only a report's files."""
    from models.common import inside, os_error_line
    from models.errors import ToolkitError

    if root.exists() and not root.is_dir():
        raise ToolkitError(f"reports folder {root} is not a directory; pass another --reports")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(os_error_line(exc, root, "create the reports folder")) from None
    final = inside(root / name, root, "report folder")
    if (final.exists() or final.is_symlink()) and not _ours(final, files):
        raise ToolkitError(f"{final} holds files that are not a report's (or is not a plain folder); left "
                           "untouched: move them away to write this report")
    return final


def render_devices(store: Store, run_ids: list[str], reports_root: str | Path,
                   include_emulated: bool = False) -> Rendered:
    """The report of several runs side by side (bench/across.py), written atomically to
    reports/devices-<hash of the run ids>/ (report.md, ratio.png, ratios.csv); reports/latest is left alone."""
    import hashlib

    import matplotlib

    from bench import across
    from models.common import os_error_line, replace_dir
    from models.errors import ToolkitError

    matplotlib.use("Agg")
    runs = []
    for rid in run_ids:
        run = store.run(rid)
        if run is None:
            raise ToolkitError(f"no run {rid!r} in {store.path}; `python -m bench list` shows the runs")
        runs.append((run, store.cells(rid)))
    root = Path(reports_root)
    name = "devices-" + hashlib.sha256("\0".join(run_ids).encode()).hexdigest()[:8]
    final = _report_folder(root, name, DEVICES_FILES)
    ac = across.analyse_runs(runs, include_emulated=include_emulated)
    tmp = final.with_name(f".{name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        writers.write_rows(tmp / "ratios.csv", across.DEVICE_COLUMNS, across.ratio_rows_across(ac))
        plots.plot_devices(ac, tmp / "ratio.png")
        (tmp / "report.md").write_text(across.markdown(ac))
        replace_dir(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolkitError(os_error_line(exc, root, "write the report across devices")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Rendered(final, [f"- {s}" for s in across.answer(ac, analysis.plain)])


def render(store: Store, run_id: str, reports_root: str | Path) -> Path:
    """Write reports/<run-id>/ (atomically) and point reports/latest at it; return the directory."""
    return render_report(store, run_id, reports_root).path


def render_report(store: Store, run_id: str, reports_root: str | Path, include_emulated: bool = False) -> Rendered:
    """Write reports/<run-id>/ (atomically) and point reports/latest at it; return the directory and the answer.

    The run id is checked against the one safe pattern and the folder proven to lie inside the reports root before
    anything is written; an existing report folder is replaced only when it holds nothing but a report's files.
    """
    import matplotlib

    from models.common import check_name, os_error_line, replace_dir
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
    final = _report_folder(root, run_id, REPORT_FILES)
    a = analysis.analyse(run, store.cells(run_id), include_emulated=include_emulated)
    tmp = final.with_name(f".{run_id}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        writers.write_csv(a, tmp / "results.csv")
        writers.write_ratios_csv(a, tmp / "ratios.csv")
        plots.write_plots(a, tmp)
        why_md = why_report.write(a, why_store.load_profiles(store, run_id), tmp)  # "" for a run without ablations
        opt_md = optimized.write(a, tmp)  # "" for a run without optimized cells
        md = writers.markdown(a) + ("\n" + opt_md if opt_md else "") + ("\n" + why_md if why_md else "")
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
    return Rendered(final, analysis.console_lines(a) + [f"- {s}" for s in int8_report.answer_items(a, analysis.plain)])


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

