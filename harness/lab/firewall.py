"""Network faults as packet-filter rules inside each node's namespace.

Model: a grudge ``{dst: {src, ...}}`` (dst drops what src sends it, see
``topology``) plus loss ``{node: percent}``. From them ``node_rules``
derives, per node, a small list of ``Rule``s; a backend renders them
(pure, golden-tested), installs them atomically, reads them back and
checks that what is installed is what was rendered.

Semantics, for a transport where every node listens on TCP
``topology.NODE_PORT`` and talks to a peer only over a connection it opens
to the peer's port:

* ``src`` in ``grudge[dst]``: in dst's input chain, drop TCP packets from
  src to dst's node port. Connections src initiates die (requests and their
  ACKs); packets from src's node port, the replies on dst's own connections
  to src, pass. A one-way cut(a, b) is ``{b: {a}}``; a symmetric partition
  is the grudge in both directions and cuts every connection between them.
  The rules are stateless on purpose: conntrack starts in a namespace only
  when a rule there first needs it, and then picks up the connections that
  already exist mid-stream, taking their direction from whichever packet it
  sees first, so ``ct direction`` rules let some of them through.
* the grudge goes both ways (``src`` in ``grudge[dst]`` and ``dst`` in
  ``grudge[src]``: a partition, an isolation, a bridge): dst also drops TCP
  packets from src's node port, the data src sends on connections dst
  opened. A transport that sends on connections it accepted (etcd's peer
  streams: each node writes its messages to a peer on the connection that
  peer opened) would otherwise keep delivering on established connections,
  both ways, until TCP stalled for want of ACKs (a few hundred ms of
  messages after the "partition"). A one-way cut adds no such rule: it
  would stop the replies to dst's own requests, i.e. cut both ways. So a
  one-way cut means "src's connections to dst die" exactly as written above,
  which is "src's messages do not reach dst" only for a transport that sends
  on connections it opens (raftnet's node); for etcd it is not that.
* loss p% on x: in x's namespace drop p% (``numgen random``) of the
  packets that arrive on / leave by eth0, except those from / to the
  control address. So "peers" include nodes added later.

Rules only ever name peer addresses or exclude the control address: the
control path (harness, clients, CLI) is never cut by a rule. Link-down
(``netns.link_down``) is the one fault that cuts it, on purpose.

Backends:

* nft (preferred): table ``inet raftnet_{s}``, chains ``input``/``output``,
  replaced in one ``nft -f -`` transaction, read back with ``nft -j``.
* iptables: chains ``raftnet_{s}_in``/``raftnet_{s}_out`` jumped to from
  INPUT/OUTPUT, replaced in one ``iptables-restore --noflush``, read back
  with ``iptables-save``.

Nothing here installs a binary: a missing one raises
FirewallUnavailableError with the remedy.
"""

from __future__ import annotations

import enum
import json
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from harness.errors import HarnessError
from harness.lab import netns
from harness.model import topology
from harness.model.topology import Topology
from node.raft.types import NodeId

# Searched after $PATH: a non-root user's PATH often lacks the sbin dirs.
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_UNAVAILABLE = "neither nft nor iptables found; run `sudo make setup` or install nftables"


class FirewallError(HarnessError):
    """Rules could not be installed, or what is installed is not what was rendered."""


class FirewallUnavailableError(FirewallError):
    """No usable nft / iptables binary."""


class Backend(enum.Enum):
    NFT = "nft"
    IPTABLES = "iptables"


class Chain(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


class Field(enum.Enum):
    """What a match looks at; the declaration order is the rendering order."""

    IIFNAME = "iifname"
    OIFNAME = "oifname"
    SADDR = "saddr"
    DADDR = "daddr"
    TCP_DPORT = "tcp_dport"
    TCP_SPORT = "tcp_sport"
    RANDOM_BELOW = "random_below"  # numgen random mod 100 < value
    UNKNOWN = "unknown"  # read back but not understood; never rendered


_FIELD_ORDER = {f: i for i, f in enumerate(Field)}


class Match(NamedTuple):
    field: Field
    value: str | int
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    """``matches`` all hold -> drop. Matches are kept in canonical order."""

    chain: Chain
    matches: tuple[Match, ...]

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.matches, key=lambda m: (_FIELD_ORDER[m.field], str(m.value), m.negated)))
        object.__setattr__(self, "matches", ordered)


# -- the model: grudge + loss -> rules (pure) ------------------------------------


def check_percent(percent: int) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"loss percent must be an integer 0..100, not {percent!r}")
    return percent


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer 1..65535, not {port!r}")
    return port


def node_rules(
    topo: Topology,
    node: str,
    grudge: Mapping[NodeId, Iterable[NodeId]],
    loss: Mapping[NodeId, int],
    *,
    port: int | Sequence[int] = topology.NODE_PORT,
) -> tuple[Rule, ...]:
    """The rules of ``node``'s namespace under ``grudge`` and ``loss``, for
    nodes whose peers connect to ``port`` (one port, or each of several)."""
    topo.check_node(node)
    ports = (port,) if isinstance(port, int) else tuple(port)
    if not ports:
        raise ValueError("no peer port to match")
    for pt in ports:
        check_port(pt)
    for n in (*grudge, *(s for srcs in grudge.values() for s in srcs), *loss):
        topo.check_node(n)
    rules: list[Rule] = []
    for src in topology.sorted_nodes(s for s in grudge.get(NodeId(node), ()) if s != node):
        for pt in ports:
            rules.append(Rule(Chain.INPUT, (Match(Field.SADDR, topo.address(src)), Match(Field.TCP_DPORT, pt))))
        if NodeId(node) in grudge.get(src, ()):  # both ways: what src sends on our connections dies too
            for pt in ports:
                rules.append(Rule(Chain.INPUT, (Match(Field.SADDR, topo.address(src)), Match(Field.TCP_SPORT, pt))))
    percent = check_percent(loss.get(NodeId(node), 0))
    if percent:
        ctl = topo.control_address
        rules.append(
            Rule(
                Chain.INPUT,
                (
                    Match(Field.IIFNAME, topology.NODE_LINK),
                    Match(Field.SADDR, ctl, negated=True),
                    Match(Field.RANDOM_BELOW, percent),
                ),
            )
        )
        rules.append(
            Rule(
                Chain.OUTPUT,
                (
                    Match(Field.OIFNAME, topology.NODE_LINK),
                    Match(Field.DADDR, ctl, negated=True),
                    Match(Field.RANDOM_BELOW, percent),
                ),
            )
        )
    return tuple(rules)


def cluster_rules(
    topo: Topology,
    grudge: Mapping[NodeId, Iterable[NodeId]],
    loss: Mapping[NodeId, int],
    *,
    port: int | Sequence[int] = topology.NODE_PORT,
) -> dict[NodeId, tuple[Rule, ...]]:
    """``node_rules`` of every node."""
    return {n: node_rules(topo, n, grudge, loss, port=port) for n in topo.nodes}


def _chain_rules(rules: Iterable[Rule], chain: Chain) -> list[Rule]:
    return [r for r in rules if r.chain is chain]


# -- nft rendering and parsing (pure) -----------------------------------------------


def _nft_match(m: Match) -> str:
    neg = "!= " if m.negated else ""
    if m.field is Field.IIFNAME or m.field is Field.OIFNAME:
        return f'{m.field.value} {neg}"{m.value}"'
    if m.field is Field.SADDR or m.field is Field.DADDR:
        return f"ip {m.field.value} {neg}{m.value}"
    if m.field is Field.TCP_DPORT and not m.negated:
        return f"tcp dport {m.value}"
    if m.field is Field.TCP_SPORT and not m.negated:
        return f"tcp sport {m.value}"
    if m.field is Field.RANDOM_BELOW and not m.negated:
        return f"numgen random mod 100 < {m.value}"
    raise ValueError(f"cannot render {m}")


def render_nft(table: str, rules: Iterable[Rule]) -> str:
    """One ``nft -f`` transaction that replaces ``inet <table>`` with ``rules``
    (the first two lines make the delete succeed whether or not it exists)."""
    rules = list(rules)
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    for i, chain in enumerate(Chain):
        if i:
            lines.append("")
        lines.append(f"\tchain {chain.value} {{")
        lines.append(f"\t\ttype filter hook {chain.value} priority filter; policy accept;")
        for r in _chain_rules(rules, chain):
            lines.append("\t\t" + " ".join(_nft_match(m) for m in r.matches) + " drop")
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_nft_clear(table: str) -> str:
    """One ``nft -f`` transaction that removes ``inet <table>`` if it exists."""
    return f"table inet {table}\ndelete table inet {table}\n"


def _nft_expr_match(expr: Mapping[str, Any]) -> Match:
    unknown = Match(Field.UNKNOWN, json.dumps(expr, sort_keys=True))
    m = expr.get("match")
    if not isinstance(m, dict):
        return unknown
    op, left, right = m.get("op"), m.get("left"), m.get("right")
    if not isinstance(left, dict):
        return unknown
    negated = op == "!="
    if isinstance(right, list) and len(right) == 1:
        right = right[0]
    if "payload" in left and op in ("==", "!="):
        p = left["payload"]
        if p.get("protocol") == "ip" and p.get("field") in ("saddr", "daddr") and isinstance(right, str):
            return Match(Field(p["field"]), right, negated)
        if p.get("protocol") == "tcp" and p.get("field") in ("dport", "sport") and not negated and type(right) is int:
            return Match(Field.TCP_DPORT if p["field"] == "dport" else Field.TCP_SPORT, right)
    elif "meta" in left and op in ("==", "!="):
        key = left["meta"].get("key")
        if key in ("iifname", "oifname") and isinstance(right, str):
            return Match(Field(key), right, negated)
    elif "numgen" in left and op == "<":
        g = left["numgen"]
        if g.get("mode") == "random" and g.get("mod") == 100 and g.get("offset", 0) == 0 and isinstance(right, int):
            return Match(Field.RANDOM_BELOW, right)
    return unknown


def parse_nft_json(text: str, table: str) -> tuple[Rule, ...] | None:
    """The rules of ``inet <table>`` in ``nft -j list ruleset`` output, or None
    when the table is absent. Raises FirewallError on a chain or verdict we
    never install (so a verification against our rules fails loudly)."""
    items = json.loads(text).get("nftables", [])
    ours = [
        (kind, body)
        for item in items
        for kind, body in item.items()
        if isinstance(body, dict) and body.get("family") == "inet" and table in (body.get("table"), body.get("name"))
    ]
    if not any(kind == "table" for kind, _ in ours):
        return None
    rules: list[Rule] = []
    for kind, body in ours:
        if kind == "chain":
            name = body.get("name")
            want = {"type": "filter", "hook": name, "prio": 0, "policy": "accept"}
            got = {k: body.get(k) for k in want}
            if name not in ("input", "output") or got != want:
                raise FirewallError(f"unexpected chain in table {table}: {json.dumps(body, sort_keys=True)}")
        elif kind == "rule":
            exprs = body.get("expr", [])
            if not exprs or exprs[-1] != {"drop": None}:
                raise FirewallError(f"unexpected rule in table {table}: {json.dumps(body, sort_keys=True)}")
            try:
                chain = Chain(body.get("chain"))
            except ValueError:
                raise FirewallError(f"rule in unexpected chain: {json.dumps(body, sort_keys=True)}") from None
            rules.append(Rule(chain, tuple(_nft_expr_match(e) for e in exprs[:-1])))
        elif kind != "table":
            raise FirewallError(f"unexpected {kind} in table {table}: {json.dumps(body, sort_keys=True)}")
    return tuple(rules)


# -- iptables rendering and parsing (pure) ---------------------------------------


def _ipt_match(m: Match) -> list[str]:
    neg = ["!"] if m.negated else []
    if m.field is Field.IIFNAME:
        return [*neg, "-i", str(m.value)]
    if m.field is Field.OIFNAME:
        return [*neg, "-o", str(m.value)]
    if m.field is Field.SADDR:
        return [*neg, "-s", f"{m.value}/32"]
    if m.field is Field.DADDR:
        return [*neg, "-d", f"{m.value}/32"]
    if m.field is Field.TCP_DPORT and not m.negated:
        return ["-p", "tcp", "--dport", str(m.value)]
    if m.field is Field.TCP_SPORT and not m.negated:
        return ["-p", "tcp", "--sport", str(m.value)]
    if m.field is Field.RANDOM_BELOW and not m.negated and isinstance(m.value, int):
        return ["-m", "statistic", "--mode", "random", "--probability", f"{m.value / 100:.2f}"]
    raise ValueError(f"cannot render {m}")


def render_iptables(slot: int, rules: Iterable[Rule], *, jumps: bool = True) -> str:
    """One ``iptables-restore --noflush`` transaction: (re)declare our chains
    (which flushes them), fill them, and add the INPUT/OUTPUT jumps if
    ``jumps`` (pass False when they are already installed)."""
    rules = list(rules)
    chain_in, chain_out = topology.iptables_chains(slot)
    names = {Chain.INPUT: chain_in, Chain.OUTPUT: chain_out}
    lines = ["*filter", f":{chain_in} - [0:0]", f":{chain_out} - [0:0]"]
    for chain in Chain:
        for r in _chain_rules(rules, chain):
            words = [w for m in r.matches for w in _ipt_match(m)]
            lines.append(" ".join(["-A", names[chain], *words, "-j", "DROP"]))
    if jumps:
        lines.append(f"-A INPUT -j {chain_in}")
        lines.append(f"-A OUTPUT -j {chain_out}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_iptables_clear(slot: int, state: IptablesState) -> str | None:
    """The transaction that removes our chains and jumps, or None if there is
    nothing to remove."""
    chain_in, chain_out = topology.iptables_chains(slot)
    if not state.chains and not state.jumps_in and not state.jumps_out:
        return None
    lines = ["*filter"]
    lines += [f":{c} - [0:0]" for c in (chain_in, chain_out)]  # flush (or create) both
    lines += [f"-D INPUT -j {chain_in}"] * state.jumps_in
    lines += [f"-D OUTPUT -j {chain_out}"] * state.jumps_out
    lines += [f"-X {chain_in}", f"-X {chain_out}", "COMMIT"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class IptablesState:
    """What ``iptables-save`` shows of ours in the filter table."""

    chains: frozenset[str]
    jumps_in: int
    jumps_out: int
    rules: tuple[Rule, ...]


def _ipt_words_to_matches(words: list[str]) -> list[Match] | None:
    """Parse the option words of one of our rules (without -A CHAIN and -j
    DROP); None when a word is not one we render. ``-p tcp`` only counts
    with the ``--dport`` or ``--sport`` it comes with (iptables-save adds ``-m tcp``)."""
    out: list[Match] = []
    i, negated, tcp = 0, False, False
    flags = {"-i": Field.IIFNAME, "-o": Field.OIFNAME, "-s": Field.SADDR, "-d": Field.DADDR}
    while i < len(words):
        w = words[i]
        if w == "!":
            negated = True
            i += 1
            continue
        if w in flags and i + 1 < len(words):
            value = words[i + 1]
            if flags[w] in (Field.SADDR, Field.DADDR):
                if not value.endswith("/32"):
                    return None
                value = value[: -len("/32")]
            out.append(Match(flags[w], value, negated))
            i += 2
        elif w == "-p" and i + 1 < len(words) and words[i + 1] == "tcp" and not negated and not tcp:
            tcp = True
            i += 2
        elif w == "-m" and i + 1 < len(words) and (words[i + 1] == "statistic" or (words[i + 1] == "tcp" and tcp)):
            i += 2
            continue
        elif w in ("--dport", "--sport") and i + 1 < len(words) and tcp and not negated and words[i + 1].isdigit():
            out.append(Match(Field.TCP_DPORT if w == "--dport" else Field.TCP_SPORT, int(words[i + 1])))
            i += 2
        elif w == "--mode" and i + 1 < len(words) and words[i + 1] == "random":
            i += 2
            continue
        elif w == "--probability" and i + 1 < len(words) and not negated:
            try:
                p = float(words[i + 1]) * 100
            except ValueError:
                return None
            percent = round(p)
            if abs(p - percent) > 1e-4:  # the kernel stores p * 2^31
                return None
            out.append(Match(Field.RANDOM_BELOW, percent))
            i += 2
        else:
            return None
        negated = False
    if tcp and sum(m.field in (Field.TCP_DPORT, Field.TCP_SPORT) for m in out) != 1:
        return None
    return out


def parse_iptables_save(text: str, slot: int) -> IptablesState:
    """Our chains, jumps and rules in ``iptables-save -t filter`` output."""
    chain_in, chain_out = topology.iptables_chains(slot)
    mine = {chain_in: Chain.INPUT, chain_out: Chain.OUTPUT}
    chains: set[str] = set()
    jumps = {"INPUT": 0, "OUTPUT": 0}
    rules: list[Rule] = []
    table = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "filter":
            continue
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name in mine:
                chains.add(name)
            continue
        words = shlex.split(line)
        if len(words) < 2 or words[0] != "-A":
            continue
        chain = words[1]
        target = {"INPUT": chain_in, "OUTPUT": chain_out}.get(chain)
        if target is not None and words[2:] == ["-j", target]:
            jumps[chain] += 1
        elif chain in mine:
            body = words[2:]
            matches: list[Match] | None = None
            if body[-2:] == ["-j", "DROP"]:
                matches = _ipt_words_to_matches(body[:-2])
            if matches is None:
                matches = [Match(Field.UNKNOWN, " ".join(body))]
            rules.append(Rule(mine[chain], tuple(matches)))
    return IptablesState(frozenset(chains), jumps["INPUT"], jumps["OUTPUT"], tuple(rules))


# -- acting ------------------------------------------------------------------------


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def detect_backend(preferred: Backend | str | None = None) -> Backend:
    """nft when present, else iptables; ``preferred`` (or $RAFTNET_FIREWALL)
    forces one. Raises FirewallUnavailableError when the binary is missing."""
    choice = preferred or os.environ.get("RAFTNET_FIREWALL") or None
    if choice is not None:
        backend = Backend(choice)
        if not _binaries_present(backend):
            raise FirewallUnavailableError(f"{backend.value} requested but not found; {_UNAVAILABLE}")
        return backend
    for backend in Backend:
        if _binaries_present(backend):
            return backend
    raise FirewallUnavailableError(_UNAVAILABLE)


def _binaries(backend: Backend) -> tuple[str, ...]:
    return ("nft",) if backend is Backend.NFT else ("iptables-restore", "iptables-save")


def _binaries_present(backend: Backend) -> bool:
    return all(_which(b) for b in _binaries(backend))


def _run(ns: str, argv: list[str], script: str | None = None) -> str:
    exe = _which(argv[0])
    if exe is None:
        raise FirewallUnavailableError(_UNAVAILABLE)
    result = netns.run_in_netns(ns, [exe, *argv[1:]], input=script.encode() if script is not None else None, timeout=30)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise FirewallError(f"`{' '.join(argv)}` failed in netns {ns} (exit {result.returncode}): {err}")
    return result.stdout.decode()


def installed_rules(topo: Topology, node: str, backend: Backend) -> tuple[Rule, ...] | None:
    """Read back our rules in ``node``'s namespace; None when none are installed."""
    ns = topo.netns(topo.check_node(node))
    if backend is Backend.NFT:
        return parse_nft_json(_run(ns, ["nft", "-j", "list", "ruleset"]), topo.nft_table)
    state = parse_iptables_save(_run(ns, ["iptables-save", "-t", "filter"]), topo.slot)
    if not state.chains and not state.jumps_in and not state.jumps_out:
        return None
    if state.chains != frozenset(topo.iptables_chains) or (state.jumps_in, state.jumps_out) != (1, 1):
        raise FirewallError(
            f"iptables in {ns}: chains {sorted(state.chains)}, jumps INPUT={state.jumps_in} OUTPUT={state.jumps_out}"
        )
    return state.rules


def describe(rules: Iterable[Rule] | None) -> str:
    """Rules as nft-like lines, for messages ("(none)" for no table)."""
    if rules is None:
        return "(none)"
    lines = []
    for r in rules:
        words = [_nft_match(m) if m.field is not Field.UNKNOWN else f"<{m.value}>" for m in r.matches]
        lines.append(f"{r.chain.value}: {' '.join(words)} drop")
    return "; ".join(lines) or "(empty)"


def _verify(topo: Topology, node: str, backend: Backend, want: tuple[Rule, ...] | None) -> None:
    got = installed_rules(topo, node, backend)
    if got != want:
        raise FirewallError(
            f"{backend.value} rules in {topo.netns(node)} differ from what was rendered:\n"
            f"  rendered:  {describe(want)}\n  installed: {describe(got)}"
        )


def apply_node(topo: Topology, node: str, rules: tuple[Rule, ...], backend: Backend) -> None:
    """Replace ``node``'s rules by ``rules`` atomically, then verify by reading back.

    No rules means no table/chains at all (as after ``clear``).
    """
    if not rules:
        clear(topo, node, backend)
        return
    ns = topo.netns(topo.check_node(node))
    if backend is Backend.NFT:
        _run(ns, ["nft", "-f", "-"], render_nft(topo.nft_table, rules))
    else:
        state = parse_iptables_save(_run(ns, ["iptables-save", "-t", "filter"]), topo.slot)
        if (state.jumps_in, state.jumps_out) not in ((0, 0), (1, 1)):
            clear(topo, node, backend)
            state = IptablesState(frozenset(), 0, 0, ())
        script = render_iptables(topo.slot, rules, jumps=state.jumps_in == 0)
        _run(ns, ["iptables-restore", "--noflush", "--wait"], script)
    _verify(topo, node, backend, rules)


def clear(topo: Topology, node: str, backend: Backend) -> None:
    """Remove every rule of ours from ``node``'s namespace (idempotent), verified."""
    ns = topo.netns(topo.check_node(node))
    if backend is Backend.NFT:
        _run(ns, ["nft", "-f", "-"], render_nft_clear(topo.nft_table))
    else:
        state = parse_iptables_save(_run(ns, ["iptables-save", "-t", "filter"]), topo.slot)
        script = render_iptables_clear(topo.slot, state)
        if script is not None:
            _run(ns, ["iptables-restore", "--noflush", "--wait"], script)
    _verify(topo, node, backend, None)


def apply(
    topo: Topology,
    grudge: Mapping[NodeId, Iterable[NodeId]],
    loss: Mapping[NodeId, int] | None = None,
    backend: Backend | None = None,
    *,
    port: int | Sequence[int] = topology.NODE_PORT,
) -> dict[NodeId, tuple[Rule, ...]]:
    """Install the complete rule set of every node (each node atomically, all
    verified); returns what was installed. ``apply(topo, {})`` heals."""
    backend = backend or detect_backend()
    planned = cluster_rules(topo, grudge, loss or {}, port=port)
    for node, rules in planned.items():
        apply_node(topo, node, rules, backend)
    return planned


def clear_all(topo: Topology, backend: Backend | None = None) -> None:
    """``clear`` every node."""
    backend = backend or detect_backend()
    for node in topo.nodes:
        clear(topo, node, backend)
