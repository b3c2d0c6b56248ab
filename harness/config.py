"""The cluster file: ``raftnet.toml`` (or ``--config FILE``).

    [system]                 # what to run; see harness/systems/
    name = "etcd"            # raftnet | etcd | etcd-serializable | http-kv | package.module:Class
    ...                      # the system's own parameters

    [check]                  # defaults for `raftnet check` (flags win)
    nodes = 5
    time = 60
    clients = 10
    keys = 5
    nemesis = "all"
    seed = 1

Every field is checked: an unknown one, or one of the wrong type, is an
error naming it (the CLI exits 2 with that line).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.systems import by_name, from_table
from harness.systems.base import System

DEFAULT_FILE = "raftnet.toml"
_CHECK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "nodes": int, "time": (int, float), "clients": int, "keys": int, "nemesis": str, "seed": int,
}


class ConfigError(HarnessError):
    """A cluster file that cannot be used, with the field at fault."""


@dataclass
class ClusterFile:
    path: Path | None
    system: System
    check: dict[str, Any] = field(default_factory=dict)


def parse(data: Mapping[str, Any], path: Path | None = None) -> ClusterFile:
    where = str(path) if path else "cluster file"
    unknown = sorted(set(data) - {"system", "check"})
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: system, check)")
    table = data.get("system")
    if isinstance(table, str):
        table = {"name": table}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [system] is missing (it names the system: name = \"raftnet\" / \"etcd\" / ...)")
    check = data.get("check", {})
    if not isinstance(check, Mapping):
        raise ConfigError(f"{where}: check: expected a table")
    for k, v in check.items():
        want = _CHECK_FIELDS.get(k)
        if want is None:
            raise ConfigError(f"{where}: check.{k}: unknown field (fields: {', '.join(_CHECK_FIELDS)})")
        if isinstance(v, bool) or not isinstance(v, want):
            raise ConfigError(f"{where}: check.{k}: expected {_type_name(want)}, not {v!r}")
    try:
        system = from_table(table, path.parent if path else None)
    except HarnessError as e:
        raise ConfigError(f"{where}: {e}") from None
    return ClusterFile(path, system, dict(check))


def load(path: str | Path) -> ClusterFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read cluster file {p}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse(data, p.absolute())


def resolve(system: str | None = None, config: str | Path | None = None, cwd: Path | None = None) -> ClusterFile:
    """``--system NAME`` / ``--config FILE`` / ``./raftnet.toml`` / raftnet's node, in that order."""
    if system and config:
        raise ConfigError("give --system or --config, not both")
    if config:
        return load(config)
    if system:
        return ClusterFile(None, by_name(system))
    default = (cwd or Path.cwd()) / DEFAULT_FILE
    if default.is_file():
        return load(default)
    return ClusterFile(None, by_name("raftnet"))


def _type_name(t: type | tuple[type, ...]) -> str:
    return " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))
