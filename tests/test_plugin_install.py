"""raftnet's pytest plugin as another project gets it: installed from this
checkout into a fresh venv, and the etcd example suite, copied out of the
repository, run there with no conftest of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[1]
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".vagrant")


def etcd_unavailable() -> str | None:
    try:
        from harness.systems import etcd
    except ImportError as e:
        return f"the etcd adapter is not in this checkout: {e}"
    reason: str | None = etcd.unavailable_reason()
    return reason


def clean_env(tmp: Path) -> dict[str, str]:
    """Our environment without what would make the child use this checkout or this pytest run."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
           and not (k.startswith("PYTEST_") and k != "PYTEST_DEBUG_TEMPROOT")}
    env["RAFTNET_FAILED_DIR"] = str(tmp / "failed")
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_etcd_example_passes_from_a_fresh_install(tmp_path: Path) -> None:
    reason = etcd_unavailable()
    if reason:
        pytest.skip(reason)
    env = clean_env(tmp_path)
    # A copy of the checkout, so that building the wheel leaves nothing in the repository.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_COPIED)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    pip = run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", str(src), "pytest"],
              tmp_path, env, 1200)
    assert pip.returncode == 0, f"pip install failed:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}"

    work = tmp_path / "project"
    suite = work / "etcd"
    shutil.copytree(ROOT / "examples" / "etcd", suite, ignore=NOT_COPIED)

    # The plugin comes from the fresh venv, through its entry point.
    ver = run([py, "-m", "pytest", "-VV", "-p", "no:cacheprovider"], work, env, 120)
    assert f"raftnet-0.1.0 at {venv}" in ver.stdout + ver.stderr, ver.stdout + ver.stderr
    fixtures = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--fixtures", str(suite)], work, env, 120)
    assert fixtures.returncode == 0 and "cluster -- " in fixtures.stdout, fixtures.stdout + fixtures.stderr

    done = run([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(suite)], work, env, 1800)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    last = out.strip().splitlines()[-1]
    assert "passed" in last and "failed" not in last and "error" not in last and "skipped" not in last, out[-6000:]
