"""The ios kind without an iPhone or a Mac: profiles, the XCTest harness rendered from devices/ios_template/, the
xcodebuild command line, parsing what it prints, and the refusal when the Mac profile means this Linux computer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UDID = "00008110-001A2B3C4D5E6F70"


def test_ios_profiles_are_checked(tmp_path):
    import devices
    from models.errors import ToolkitError

    p = tmp_path / "p.toml"
    p.write_text(f'[mac]\nkind = "macos"\nhost = "mac.local"\n\n'
                 f'[iphone]\nkind = "ios"\nmac = "mac"\nudid = "{UDID}"\nteam_id = "ABCDE12345"\n'
                 f'compute_units = ["CPU_AND_NE", "ALL"]\n\n'
                 f'[badudid]\nkind = "ios"\nmac = "mac"\nudid = "x; rm"\nteam_id = "ABCDE12345"\n\n'
                 f'[noteam]\nkind = "ios"\nmac = "mac"\nudid = "{UDID}"\n\n'
                 f'[through-board]\nkind = "ios"\nmac = "host"\nudid = "{UDID}"\nteam_id = "ABCDE12345"\n')
    dev = devices.get("iphone", p)
    assert dev.kind == "ios" and dev.compute_units == ("CPU_AND_NE", "ALL")
    assert dev.can_run("coreml") is None and "Core ML only" in dev.can_run("onnx")
    assert dev.mac().kind == "macos" and dev.mac().ssh.argv("true")[-2] == "mac.local"
    with pytest.raises(ToolkitError, match="is not a device identifier"):
        devices.get("badudid", p)
    with pytest.raises(ToolkitError, match="missing key 'team_id'"):
        devices.get("noteam", p)
    with pytest.raises(ToolkitError, match="is a host profile, not macos"):
        devices.get("through-board", p).mac()


def test_the_harness_renders_every_placeholder():
    from devices.ios import render_harness, xcodebuild_command

    files = render_harness("model.mlpackage", units="CPU_AND_NE", warmup=5, iters=100, height=224, width=160)
    assert set(files) == {"Package.swift", "Sources/BenchHost/BenchHost.swift", "Tests/BenchTests/BenchTests.swift"}
    test = files["Tests/BenchTests/BenchTests.swift"]
    assert "options.iterationCount = 100" in test and ".cpuAndNeuralEngine" in test
    assert "shape: [1, 3, 224, 160]" in test and 'forResource: "model", withExtension: "mlpackage"' in test
    assert '.copy("model.mlpackage")' in files["Package.swift"]
    assert not any("@" + k in t for t in files.values() for k in ("MODEL", "UNITS", "ITERS", "WARMUP"))
    cmd = xcodebuild_command("/tmp/pkg", UDID, "ABCDE12345", "/tmp/pkg/R.xcresult")
    assert cmd[:2] == ["xcodebuild", "test"] and f"id={UDID}" in cmd and "DEVELOPMENT_TEAM=ABCDE12345" in cmd


def test_what_the_harness_prints_is_parsed_from_its_values():
    from devices.parsers import parse

    out = ("Test Case '-[BenchTests.BenchTests test_latency]' measured [Clock Monotonic Time, s] average: 0.004, "
           "relative standard deviation: 17.201%, values: [0.005643, 0.004422, 0.003901], performanceMetricID:"
           "com.apple.dt.XCTMetric_Clock.time.monotonic, baselineName: \"\", baselineAverage: , polarity: "
           "prefers smaller, maxPercentRegression: 10.000%, maxPercentRelativeStandardDeviation: 10.000%, "
           "maxRegression: 0.100, maxStandardDeviation: 0.100\n")
    r = parse(out, "xctest", expected=3)
    assert r.samples_ms == pytest.approx([5.643, 4.422, 3.901]) and r.raw_samples


def test_an_iphone_through_this_linux_computer_is_refused_in_one_line(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("this computer is a Mac")
    p = tmp_path / "p.toml"
    p.write_text(f'[here]\nkind = "macos"\n\n[iphone]\nkind = "ios"\nmac = "here"\nudid = "{UDID}"\n'
                 'team_id = "ABCDE12345"\n')
    r = subprocess.run([sys.executable, "-m", "devices", "check", "iphone", "--profiles", str(p)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and "needs macOS" in problems[0] and "iphone" in problems[0], r.stderr
