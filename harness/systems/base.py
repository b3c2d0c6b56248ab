"""The seam between the lab and a system under test.

The lab (namespaces, firewall, processes, nemesis, workload, checker) knows
nothing about any one system: it asks a ``System`` how to start node i,
which TCP ports its peers talk on (the faults match exactly these), whether
a node serves, optionally who leads, and for a client that performs
read / write / cas / delete and says of each completion whether it
happened (``ok``), definitely did not (``fail``) or may have (``info``).

Everything else is optional and announced in ``features``: a system that
reports status (role, term, leader, commit index) gets leader-targeted
faults, the one-leader-per-term check and convergence by index; one that
dumps its log gets the white-box invariants (identical committed prefixes,
nothing applied twice, every acknowledged write in the log); one with
membership hooks gets the membership nemesis; one whose disk survives a
FUSE mount gets power cuts; one whose clock libfaketime reaches gets clock
faults.

A Python adapter is one class: subclass ``BaseSystem`` (or
``CommandSystem`` when a command template is enough) and name it as
``package.module:Class`` in ``--system`` or in the cluster file.
"""

from __future__ import annotations

import enum
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.errors import HarnessError
from harness.model.history import OpType
from harness.model.invariants import NodeLog


class SystemError_(HarnessError):  # noqa: N801 - SystemError is a builtin
    """A system cannot be loaded or configured (unknown name, bad parameter, ...)."""


class Feature(enum.Enum):
    STATUS = "status"  # NodeStatus: leader-targeted faults, one leader per term, convergence by index
    LOG = "log"  # committed log dump: prefixes, duplicates, acknowledged writes in the log
    LOCAL_READ = "local-read"  # a node's own (possibly stale) value: replicas agree after heal
    MEMBERSHIP = "membership"  # add_member / remove_member: the membership nemesis
    POWER = "power"  # data dir on a powerfs disk (FUSE): power cuts
    CLOCK = "clock"  # reads the clock through libc, so libfaketime can skew it: clock faults (not Go)


# -- what the lab tells a system about a node ------------------------------------------------


@dataclass(frozen=True)
class Member:
    id: str  # "n1"
    ip: str
    client_port: int
    peer_port: int  # the same on every member in namespaces; one per member on 127.0.0.1


@dataclass(frozen=True)
class NodeSpec:
    """Node ``id`` as the lab placed it: its address, ports, data dir and cluster."""

    id: str
    ip: str
    client_port: int
    peer_port: int
    data_dir: Path
    members: tuple[Member, ...]  # the members it starts with (itself included unless joining)
    joining: bool = False  # added to a running cluster (after ``add_member``)
    join_via: str | None = None  # a live member's client address HOST:PORT, when joining

    @property
    def index(self) -> int:
        digits = "".join(ch for ch in self.id if ch.isdigit())
        return int(digits) if digits else 0

    @property
    def client_address(self) -> str:
        return f"{self.ip}:{self.client_port}"

    def fields(self) -> dict[str, str]:
        """The fields of a command template (see ``CommandSystem``)."""
        peers = ",".join(f"{m.id}={m.ip}:{m.peer_port}" for m in self.members)
        initial = ",".join(f"{m.id}=http://{m.ip}:{m.peer_port}" for m in self.members)
        return {
            "id": self.id, "index": str(self.index), "ip": self.ip,
            "client_port": str(self.client_port), "peer_port": str(self.peer_port),
            "client_url": f"http://{self.ip}:{self.client_port}", "peer_url": f"http://{self.ip}:{self.peer_port}",
            "data_dir": str(self.data_dir), "peers": peers, "initial_cluster": initial,
            "cluster_state": "existing" if self.joining else "new", "join": self.join_via or "",
            "python": sys.executable,
        }


@dataclass(frozen=True)
class Endpoint:
    """Where the lab reaches node ``id``'s client API (never cut by a network fault)."""

    id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# -- what a system tells the lab --------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    """One node's view, as far as the system reports it (None: not reported)."""

    role: str | None = None  # "leader" / "follower" / "candidate" / ...
    term: int | None = None
    leader: str | None = None  # the node id it follows (itself when leading)
    commit_index: int | None = None
    applied_index: int | None = None
    members: tuple[tuple[str, bool], ...] | None = None  # (id, voter)
    raw: Mapping[str, Any] = field(default_factory=dict)


def leader_of(statuses: Mapping[str, NodeStatus], pool_size: int) -> str | None:
    """The node that leads the highest term among ``statuses`` and that a peer follows in that term
    (or that needs no follower: the only voter, or the only node of a pool of one); None: no such one."""
    leaders = [(s.term or 0, n) for n, s in statuses.items() if s.role == "leader"]
    if not leaders:
        return None
    term, ld = max(leaders)
    members = statuses[ld].members
    alone = len([m for m, voter in members if voter]) == 1 if members is not None else pool_size == 1
    followed = any(n != ld and s.leader == ld and (s.term or 0) == term for n, s in statuses.items())
    return ld if followed or alone else None


@dataclass(frozen=True)
class Op:
    """An operation as the history records it: ``f`` in read / write / cas / delete; a cas's value is
    ``[expect, new]``."""

    f: str
    key: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Outcome:
    type: OpType
    value: Any = None
    index: int | None = None
    error: str | None = None
    node: str | None = None  # the node that answered (after a redirect: the leader)


class KVClient(Protocol):
    """An asyncio client of the system. ``call`` never raises for a failed operation: it classifies.

    ``endpoints`` maps every current node id to its Endpoint (a client that follows redirects
    looks the leader up there)."""

    async def call(self, node: str, op: Op, endpoints: Mapping[str, Endpoint]) -> Outcome: ...
    async def close(self) -> None: ...


@runtime_checkable
class System(Protocol):
    name: str
    client_port: int
    peer_port: int
    features: frozenset[Feature]

    @property
    def peer_ports(self) -> tuple[int, ...]:
        """The TCP ports nodes open connections to, to reach each other: the faults match these."""
        ...

    def argv(self, node: NodeSpec) -> list[str]: ...
    def env(self, node: NodeSpec) -> dict[str, str]: ...
    def ready(self, node: Endpoint, timeout: float) -> bool: ...
    def status(self, node: Endpoint, timeout: float) -> NodeStatus | None: ...
    def client(self, *, timeout: float, client_id: str, follow_redirects: bool) -> KVClient: ...
    def log(self, node: Endpoint, timeout: float) -> NodeLog: ...
    def local_read(self, node: Endpoint, key: str, timeout: float) -> Any: ...
    def add_member(self, via: Endpoint, node: NodeSpec, timeout: float) -> None: ...
    def promoted(self, via: Endpoint, node_id: str, timeout: float) -> bool: ...
    def remove_member(self, via: Endpoint, node_id: str, timeout: float) -> None: ...
    def describe(self) -> str: ...


class NotSupportedError(HarnessError):
    """The system does not offer this optional hook (see ``features``)."""


class BaseSystem:
    """Defaults for the optional hooks; a subclass sets name, ports and features and implements
    ``argv``, ``ready`` and ``client``."""

    name: str = "system"
    client_port: int = 0
    peer_port: int = 0
    extra_peer_ports: tuple[int, ...] = ()
    features: frozenset[Feature] = frozenset()

    @property
    def peer_ports(self) -> tuple[int, ...]:
        return (self.peer_port, *(p for p in self.extra_peer_ports if p != self.peer_port))

    def argv(self, node: NodeSpec) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__}.argv")

    def env(self, node: NodeSpec) -> dict[str, str]:
        return {}

    def ready(self, node: Endpoint, timeout: float) -> bool:
        raise NotImplementedError(f"{type(self).__name__}.ready")

    def status(self, node: Endpoint, timeout: float) -> NodeStatus | None:
        return None

    def client(self, *, timeout: float, client_id: str, follow_redirects: bool) -> KVClient:
        raise NotImplementedError(f"{type(self).__name__}.client")

    def log(self, node: Endpoint, timeout: float) -> NodeLog:
        raise NotSupportedError(f"{self.name} does not dump its log")

    def local_read(self, node: Endpoint, key: str, timeout: float) -> Any:
        raise NotSupportedError(f"{self.name} has no local read")

    def add_member(self, via: Endpoint, node: NodeSpec, timeout: float) -> None:
        raise NotSupportedError(f"{self.name} has no membership hooks")

    def promoted(self, via: Endpoint, node_id: str, timeout: float) -> bool:
        return True

    def remove_member(self, via: Endpoint, node_id: str, timeout: float) -> None:
        raise NotSupportedError(f"{self.name} has no membership hooks")

    def describe(self) -> str:
        return self.name


class CommandSystem(BaseSystem):
    """A system whose node i runs ``command`` with the fields of ``NodeSpec.fields`` filled in:
    ``{id}``, ``{index}``, ``{ip}``, ``{client_port}``, ``{peer_port}``, ``{client_url}``,
    ``{peer_url}``, ``{data_dir}``, ``{peers}`` (``n1=IP:PEER_PORT,...``), ``{initial_cluster}``
    (``n1=http://IP:PEER_PORT,...``), ``{cluster_state}`` (new / existing), ``{join}`` (a live
    member's client address when joining) and ``{python}``. The template is split like a shell
    would (no shell runs); each word is filled in on its own."""

    def __init__(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None,
                 join_command: str | Sequence[str] | None = None) -> None:
        self.command = _words(command, "command")
        self.join_command = _words(join_command, "join_command") if join_command is not None else None
        self.extra_env = dict(env or {})
        for w in (*self.command, *(self.join_command or ())):
            fill_template(w, _SAMPLE)  # an unknown {field} is a configuration error, found at load

    def argv(self, node: NodeSpec) -> list[str]:
        words = self.join_command if (node.joining and self.join_command) else self.command
        f = node.fields()
        return [fill_template(w, f) for w in words]

    def env(self, node: NodeSpec) -> dict[str, str]:
        f = node.fields()
        return {k: fill_template(v, f) for k, v in self.extra_env.items()}


def _words(command: str | Sequence[str], what: str) -> list[str]:
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError as e:
            raise SystemError_(f"{what}: {e}") from None
    else:
        words = [str(w) for w in command]
    if not words:
        raise SystemError_(f"{what} is empty")
    return words


_SAMPLE = NodeSpec("n1", "10.0.0.1", 1, 2, Path("/data"), (Member("n1", "10.0.0.1", 1, 2),)).fields()


def fill_template(word: str, fields: Mapping[str, str]) -> str:
    """``word`` with each ``{field}`` replaced; ``{{`` and ``}}`` are literal braces."""
    try:
        return word.format_map(_Strict(fields))
    except KeyError as e:
        raise SystemError_(f"unknown field {{{e.args[0]}}} in {word!r} (fields: "
                           f"{', '.join('{' + k + '}' for k in sorted(fields))})") from None
    except (ValueError, IndexError, AttributeError) as e:
        raise SystemError_(f"bad template {word!r}: {e}") from None


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)
