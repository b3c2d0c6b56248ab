"""Systems under test: how to run a cluster of them and talk to it (``base.System``).

Built in: ``raftnet`` (the node, every white-box hook), ``etcd`` and
``etcd-serializable`` (Debian's etcd-server; the latter reads locally, so
it can serve stale reads), and ``http-kv`` (any HTTP key-value service,
described by a cluster file). Anything else: ``package.module:Class``, a
class with the System protocol (``BaseSystem`` gives the defaults).

A system is built from the ``[system]`` table of a cluster file (see
harness/config.py) or from a bare name; ``source_of`` gives back what
re-builds it (the CLI re-attaches a running cluster from another shell).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.systems.base import BaseSystem, System, SystemError_

BUILT_IN = ("raftnet", "etcd", "etcd-serializable", "http-kv")
_SOURCE = "_raftnet_source"


def from_table(table: Mapping[str, Any], base_dir: Path | None = None) -> System:
    """The system a cluster file's ``[system]`` table describes (``name`` picks it)."""
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise SystemError_(f"system.name: expected one of {', '.join(BUILT_IN)} or package.module:Class")
    base = base_dir or Path.cwd()
    system: System
    if name == "raftnet":
        from harness.systems.raftnet import RaftnetSystem

        system = RaftnetSystem.from_table(table)
    elif name in ("etcd", "etcd-serializable"):
        from harness.systems.etcd import EtcdSystem

        system = EtcdSystem.from_table(table, serializable=name == "etcd-serializable")
    elif name == "http-kv":
        from harness.systems.httpkv import HttpKvSystem

        system = HttpKvSystem.from_table(table, base_dir=base)
    elif ":" in name:
        system = _import(name, table)
    else:
        raise SystemError_(f"unknown system {name!r} (built in: {', '.join(BUILT_IN)}; "
                           f"or package.module:Class for your own adapter)")
    setattr(system, _SOURCE, {"table": dict(table), "base_dir": str(base)})
    return system


def by_name(name: str) -> System:
    """``--system NAME``: a built-in system with its defaults, or ``package.module:Class``."""
    return from_table({"name": name})


def _import(ref: str, table: Mapping[str, Any]) -> System:
    mod_name, _, cls_name = ref.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise SystemError_(f"system {ref!r}: cannot import {mod_name}: {e}") from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise SystemError_(f"system {ref!r}: {mod_name} has no {cls_name}")
    params = {k: v for k, v in table.items() if k != "name"}
    try:
        if hasattr(cls, "from_table"):
            system = cls.from_table(table)
        else:
            system = cls(**params)
    except SystemError_:
        raise
    except TypeError as e:
        raise SystemError_(f"system {ref!r}: bad parameters {sorted(params)}: {e}") from None
    if not isinstance(system, System):
        raise SystemError_(f"system {ref!r}: {cls_name} does not implement the System protocol "
                           f"(subclass harness.systems.base.BaseSystem)")
    return system


def load_system(source: Mapping[str, Any]) -> System:
    """Re-build a system from ``source_of``'s record."""
    base = source.get("base_dir")
    return from_table(source["table"], Path(base) if base else None)


def source_of(system: System) -> dict[str, Any]:
    src = getattr(system, _SOURCE, None)
    return dict(src) if src else {"table": {"name": system.name}}


__all__ = ["BUILT_IN", "BaseSystem", "System", "SystemError_", "by_name", "from_table", "load_system", "source_of"]
