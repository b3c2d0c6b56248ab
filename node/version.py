"""The package version, for ``--version``: the installed distribution's, else pyproject.toml's (a
source checkout that was never installed)."""

from __future__ import annotations

from pathlib import Path

DISTRIBUTION = "raftnet"


def version() -> str:
    import importlib.metadata  # here, not at start-up: a restart's imports are on its catch-up path
    import tomllib

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        doc = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
        return str(doc["project"]["version"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return "unknown"
