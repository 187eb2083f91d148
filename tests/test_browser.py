"""report.html in a real browser (Debian's chromium, headless; installed through need_program as root or in CI):
the files a user imports carry script in their name and in their contents that would change `document.title` if it
ran. A control page with the same payloads left raw shows the browser does run them; the report, loaded the same
way, keeps its own title (issue 18, break 1).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from _system import need_program

from bench.__main__ import main as bench_main
from models.errors import cli_main

NAME_PAYLOAD = "<img src=x onerror=\"document.title='pwned by a file name'\">.json"
VERSION_PAYLOAD = "<script>document.title='pwned by a tool_version'</script>"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=3000"]


def loaded_title(browser: str, page: Path, profile: Path) -> str:
    """The page's <title> after the browser loaded it and ran whatever it runs (its DOM as chromium dumps it)."""
    proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    m = re.search(r"<title>(.*?)</title>", proc.stdout, re.S)
    return m.group(1) if m else ""


def test_imported_script_does_not_run_in_report_html(tmp_path, capsys):
    browser = need_program("chromium", "chromium")
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>control</title></head><body>{VERSION_PAYLOAD}"
                       f"{NAME_PAYLOAD}</body></html>")
    assert loaded_title(browser, control, tmp_path / "profile-control").startswith("pwned by")  # the check can see

    evil = tmp_path / NAME_PAYLOAD
    evil.write_text(json.dumps({"tool": "et-bench", "tool_version": VERSION_PAYLOAD, "threads": 1, "warmup": 2,
                                "iters": 3, "samples_ms": [4.0, 4.1, 4.2]}) + "\n")
    store, reports = tmp_path / "s.sqlite", tmp_path / "reports"
    assert cli_main(bench_main, "bench", ["import", "--tool", "native", "--model", "mobileformer_26m", "--format",
                                          "executorch", "--res", "96", "--device", "pixel7", "--store", str(store),
                                          str(evil)]) == 0
    assert cli_main(bench_main, "bench", ["report", "--run", "pixel7-import", "--store", str(store), "--reports",
                                          str(reports)]) == 0
    page = reports / "pixel7-import" / "report.html"
    assert "&lt;script&gt;document.title=" in page.read_text() and "&lt;img src=x onerror=" in page.read_text()
    assert loaded_title(browser, page, tmp_path / "profile-report") == "Latency vs resolution: pixel7-import"
