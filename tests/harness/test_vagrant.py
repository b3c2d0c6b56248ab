"""The Vagrant set-up: the Vagrantfile parses, the provision script is valid shell."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT = Path(__file__).resolve().parents[2] / "vagrant"


def test_provision_script_is_valid_bash() -> None:
    r = subprocess.run(["bash", "-n", str(VAGRANT / "provision.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby not installed (sudo make setup-dev installs it)")
def test_vagrantfile_is_valid_ruby() -> None:
    r = subprocess.run(["ruby", "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True)
    assert r.returncode == 0 and "Syntax OK" in r.stdout, r.stderr


def test_vagrantfile_provisions_with_the_shared_script() -> None:
    text = (VAGRANT / "Vagrantfile").read_text()
    assert 'path: "provision.sh"' in text and '"/raftnet"' in text
    assert "debian/bookworm64" in text


def test_provision_refuses_non_root_in_one_line(tmp_path: Path) -> None:
    script = (VAGRANT / "provision.sh").read_text().replace('"$(id -u)"', '"1000"')
    fake = tmp_path / "provision.sh"
    fake.write_text(script)
    r = subprocess.run(["bash", str(fake)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
