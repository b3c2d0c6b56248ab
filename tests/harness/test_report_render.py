"""report.html in a real browser: headless Chromium loads it from file:// (never the network), its
script runs to the end without an error, zooming through the address works, and a screenshot comes
out. Skips when no Chromium is installed (Debian: apt-get install chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.model.checker import check
from harness.orchestration.report import write_run
from tests.harness.test_report import run_report, stale_read

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no chromium binary (as root: RAFTNET_WITH_CHROMIUM=1 make setup)")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--enable-logging=stderr", "--v=0")


def chromium(tmp: Path, url: str, *args: str) -> tuple[str, list[str]]:
    """Load ``url`` (a file: URL); the page's DOM or nothing, and its console lines."""
    assert url.startswith("file://")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    assert CHROMIUM is not None
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def script_errors(console: list[str]) -> list[str]:
    return [line for line in console if re.search(r"Uncaught|Error", line)]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    h = stale_read()
    return write_run(tmp_path / "run", run_report(ok=False, verdict="VERDICT: FAILED", history=h, check=check(h)))


def test_the_error_detector_sees_an_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><body><script>nosuch();</script></body>")
    _, console = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in script_errors(console))


def test_report_script_runs_to_the_end_without_errors(tmp_path: Path, report: Path) -> None:
    dom, console = chromium(tmp_path, report.as_uri(), "--dump-dom")
    assert script_errors(console) == []
    assert re.search(r"<body [^>]*data-ready=\"1\"", dom)
    assert "Showing <span id=\"range\">0 s to 9 s (the whole run)</span>" in dom
    for name in ("faults", "nodes", "timeline", "latency", "throughput", "violation"):
        assert f'id="{name}"' in dom


def test_the_address_zooms_every_chart(tmp_path: Path, report: Path) -> None:
    dom, console = chromium(tmp_path, report.as_uri() + "#t=2,4", "--dump-dom")
    assert script_errors(console) == []
    assert '<span id="range">2 s to 4 s</span>' in dom
    boxes = re.findall(r'<svg class="plot" [^>]*viewBox="([^"]+)"', dom)
    assert len(boxes) == 5
    x0, _, w, _ = map(float, boxes[0].split())
    assert x0 > 0 and w < 974 / 2  # the plots show 2 s of 9
    ticks = re.findall(r'<text x="[^"]+" y="16" text-anchor="middle">([^<]+)</text>', dom)
    assert ticks[:3] == ["2", "2.2", "2.4"]  # the axes were redrawn for the zoom


def test_screenshot(tmp_path: Path, report: Path) -> None:
    png = tmp_path / "report.png"
    _, console = chromium(tmp_path, report.as_uri(), f"--screenshot={png}", "--window-size=1400,2400")
    assert script_errors(console) == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000  # a blank page is a few kB
