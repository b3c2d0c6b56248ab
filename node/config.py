"""The node's frozen configuration, parsed from flags (see node/__main__.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .raft import CoreConfig

TICK_MS = 25  # the core's clock: 40 wake-ups a second at idle; election timeouts in steps of 25 ms
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1 << 20


class ConfigError(ValueError):
    """A flag value that cannot work; the process exits 2 with this message."""


@dataclass(frozen=True)
class Config:
    id: str
    host: str
    port: int
    data_dir: Path
    peers: dict[str, str] | None = None  # id -> host:port, static bootstrap
    join: str | None = None
    heartbeat_ms: int = 50
    election_ms: tuple[int, int] = (300, 600)
    snapshot_every: int = 10_000
    snapshot_catchup_entries: int = 5_000  # entries kept below a snapshot for lagging followers
    secret: str | None = field(default=None, repr=False)
    log_level: str = "info"
    request_timeout_s: float = 5.0
    max_value_bytes: int = MAX_VALUE_BYTES

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def core_config(self) -> CoreConfig:
        tick = min(TICK_MS, self.heartbeat_ms)
        lo, hi = (max(1, round(ms / tick)) for ms in self.election_ms)
        hb = max(1, round(self.heartbeat_ms / tick))
        return CoreConfig(election_ticks=(lo, max(hi, lo + 1)), heartbeat_ticks=hb,
                          snapshot_catchup_entries=self.snapshot_catchup_entries)

    @property
    def tick_s(self) -> float:
        return min(TICK_MS, self.heartbeat_ms) / 1000.0

    def cluster_id(self) -> str:
        """Derived from the initial member list, so all bootstrapped members agree."""
        peers = self.peers or {self.id: self.address}
        text = ",".join(f"{k}={v}" for k, v in sorted(peers.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_peers(text: str) -> dict[str, str]:
    peers: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        node_id, sep, addr = item.partition("=")
        if not sep or not valid_id(node_id):
            raise ConfigError(f"--peers: expected ID=HOST:PORT, got {item!r}")
        parse_host_port(addr, "--peers")
        if node_id in peers:
            raise ConfigError(f"--peers: {node_id} listed twice")
        peers[node_id] = addr
    if not peers:
        raise ConfigError("--peers: empty list")
    return peers


def parse_election(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        a, b = int(lo), int(hi if sep else lo) * (2 if not sep else 1)
    except ValueError:
        raise ConfigError(f"--election-timeout-ms: expected MIN:MAX, got {text!r}") from None
    if not 0 < a < b:
        raise ConfigError(f"--election-timeout-ms: need 0 < MIN < MAX, got {text!r}")
    return a, b


def valid_id(node_id: str) -> bool:
    return 0 < len(node_id) <= 64 and all(c.isalnum() or c in "-_." for c in node_id)
