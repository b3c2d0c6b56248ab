"""Operation histories: events, paired operations, JSONL files, Jepsen logs.

A history is what the clients saw, in the order they saw it: one `Event`
when a process invokes an operation and one when it learns the outcome.
This module is pure apart from the explicit file helpers
(`History.write_jsonl`, `History.read_jsonl`, `parse_jepsen_log`).

Events
------
Every event names the operation ``f`` (``"read"``, ``"write"``, ``"cas"``,
``"delete"``) and the ``key``. The meaning of ``value`` depends on the
event:

=========  ===============================  ====================================
f          invoke value                     ok completion value
=========  ===============================  ====================================
read       None                             the value read; None when absent (404)
write      the string written               ignored (echo or None)
cas        ``[expect, new]``; expect None   ``True`` applied (200); ``False``
           means "only if absent"           precondition false, not applied (409)
delete     None                             ignored
=========  ===============================  ====================================

Completion types, as in Jepsen and STYLE.md:

- ``ok``: the outcome is known (200, a 404 read, a 409 cas with ``False``).
- ``fail``: the operation definitely did not take effect (307, 503, other
  4xx). The checker drops it.
- ``info``: indeterminate (504, timeouts, any exception after sending). The
  operation may take effect at any instant after its invocation, or never.
  An invocation that never gets a completion is treated the same way.

A process has at most one outstanding operation; `History.operations`
raises `ValueError` when a recording breaks that rule.

Operations
----------
`History.operations` pairs each invoke with its completion into an
`Operation` with ``call``/``ret`` times (``ret`` is None for ``info``), the
input ``value`` and the ``output`` (the read value, or the cas flag).
``end`` keeps the completion's time whatever its type: for an ``info`` op
it is when the client gave up (the op may still take effect later).

Processes, as in Jepsen: a process has one operation outstanding at a
time, and a client whose operation ended ``info`` goes on as a new process
(the recorders add the number of clients to its id), since the old one may
still be acting in the cluster.

Files
-----
`load_history` reads any of the formats below, telling them apart by their
first line: raftnet's JSONL (`History.write_jsonl`), a Jepsen log, or a
Jepsen/Knossos EDN history (one op map per line as Jepsen's
``history.edn``, or one vector of maps as Knossos's test data;
``:time`` in nanoseconds, or the op's position when absent; a ``:fail`` op
did not happen, as Knossos reads it).

Jepsen logs
-----------
`parse_jepsen_log` reads the porcupine/etcd corpus format (see
``shared/corpus/porcupine-etcd/README.md``): all operations act on one key,
values stay ints, and the line number is used as time. ``:fail :cas`` is an
ok cas whose precondition was false (etcd answered "compare failed"),
exactly as Porcupine reads it; ``:fail :read :timed-out`` and ``:info`` are
indeterminate.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

__all__ = [
    "FUNCTIONS",
    "Event",
    "History",
    "LoadedHistory",
    "OpType",
    "Operation",
    "load_history",
    "parse_edn_history",
    "parse_jepsen_log",
]

FUNCTIONS = frozenset({"read", "write", "cas", "delete"})


class OpType(enum.Enum):
    """The type of a history event, with Jepsen's JSON names."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


def _freeze(value: Any) -> Any:
    """Turn JSON lists into tuples, so values compare and hash alike."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Turn tuples back into lists for JSON."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history: an invocation or a completion."""

    process: int
    type: OpType
    f: str
    key: str
    value: Any
    time: float
    node: str | None = None
    index: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; optional fields are left out when None."""
        out: dict[str, Any] = {
            "process": self.process,
            "type": self.type.value,
            "f": self.f,
            "key": self.key,
            "value": _thaw(self.value),
            "time": self.time,
        }
        if self.node is not None:
            out["node"] = self.node
        if self.index is not None:
            out["index"] = self.index
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """Inverse of `to_json`; raises `ValueError` on a malformed record."""
        try:
            f = str(data["f"])
            if f not in FUNCTIONS:
                raise ValueError(f"unknown operation f={f!r}")
            return cls(
                process=int(data["process"]),
                type=OpType(data["type"]),
                f=f,
                key=str(data["key"]),
                value=_freeze(data.get("value")),
                time=float(data["time"]),
                node=data.get("node"),
                index=data.get("index"),
                error=data.get("error"),
            )
        except KeyError as e:
            raise ValueError(f"event lacks field {e.args[0]!r}: {data!r}") from None


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion.

    ``ret`` is None when the outcome is indeterminate (``status == "info"``):
    the operation may take effect at any time after ``call``, or never.
    ``output`` is the value read for an ok read and the applied flag for an
    ok cas; None otherwise. ``end`` is the completion's time whatever its
    type (for ``info``: when the client gave up); None when there was none.
    """

    process: int
    f: str
    key: str
    value: Any
    output: Any
    call: float
    ret: float | None
    status: str
    node: str | None = None
    index: int | None = None
    error: str | None = None
    end: float | None = None

    @property
    def finish(self) -> float | None:
        """When the client stopped waiting: ``ret``, else ``end`` (None: never)."""
        return self.ret if self.ret is not None else self.end

    def __str__(self) -> str:
        ret = "…" if self.ret is None else f"{self.ret:g}"
        if self.f == "read":
            what = f"read {self.key!r} -> {self.output!r}" if self.status == "ok" else f"read {self.key!r}"
        elif self.f == "write":
            what = f"write {self.key!r} := {self.value!r}"
        elif self.f == "cas":
            expect, new = self.value
            what = f"cas {self.key!r} {expect!r} -> {new!r}"
            if self.status == "ok":
                what += " applied" if self.output is not False else " not applied"
        else:
            what = f"delete {self.key!r}"
        where = f" @{self.node}" if self.node else ""
        return f"[{self.call:g}, {ret}] p{self.process}{where} {what} ({self.status})"


class History:
    """A list-like, append-only sequence of `Event` objects."""

    __slots__ = ("_events", "_pending")

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: list[Event] = []
        self._pending: dict[int, Event] = {}
        for event in events:
            self.append(event)

    # -- list-like ---------------------------------------------------------

    def append(self, event: Event) -> None:
        """Add one event at the end."""
        self._events.append(event)
        if event.type is OpType.INVOKE:
            self._pending[event.process] = event
        else:
            self._pending.pop(event.process, None)

    def extend(self, events: Iterable[Event]) -> None:
        """Add events at the end, in order."""
        for event in events:
            self.append(event)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    @overload
    def __getitem__(self, i: int) -> Event: ...
    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...
    def __getitem__(self, i: int | slice) -> Event | list[Event]:
        return self._events[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._events == other._events
        return NotImplemented

    def __repr__(self) -> str:
        return f"History({len(self._events)} events)"

    # -- recording helpers -------------------------------------------------

    def invoke(
        self, process: int, f: str, key: str, value: Any, time: float, node: str | None = None
    ) -> Event:
        """Record that ``process`` invokes ``f`` on ``key``."""
        if f not in FUNCTIONS:
            raise ValueError(f"unknown operation f={f!r}")
        event = Event(process, OpType.INVOKE, f, key, _freeze(value), time, node=node)
        self.append(event)
        return event

    def complete(
        self,
        process: int,
        type: OpType,
        value: Any,
        time: float,
        *,
        node: str | None = None,
        index: int | None = None,
        error: str | None = None,
    ) -> Event:
        """Record the completion of ``process``'s outstanding operation."""
        if type is OpType.INVOKE:
            raise ValueError("complete() takes ok, fail or info, not invoke")
        pending = self._pending.get(process)
        if pending is None:
            raise ValueError(f"process {process} has no outstanding operation")
        event = Event(
            process, type, pending.f, pending.key, _freeze(value), time,
            node=node if node is not None else pending.node, index=index, error=error,
        )
        self.append(event)
        return event

    # -- questions ---------------------------------------------------------

    def keys(self) -> list[str]:
        """Distinct keys, in order of first appearance."""
        return list(dict.fromkeys(e.key for e in self._events))

    def operations(self) -> list[Operation]:
        """Pair invocations with completions, in invocation order.

        An invocation without a completion becomes an ``info`` operation.
        Raises `ValueError` when a process has two outstanding operations,
        a completion has no invocation, or the two disagree on f or key.
        """
        ops: list[Operation | None] = []
        pending: dict[int, tuple[int, Event]] = {}
        for event in self._events:
            if event.type is OpType.INVOKE:
                if event.process in pending:
                    raise ValueError(
                        f"process {event.process} invokes at t={event.time} while an "
                        "operation is outstanding; record an info completion first"
                    )
                pending[event.process] = (len(ops), event)
                ops.append(None)
                continue
            slot = pending.pop(event.process, None)
            if slot is None:
                raise ValueError(
                    f"completion without invocation: process {event.process} at t={event.time}"
                )
            i, inv = slot
            if (inv.f, inv.key) != (event.f, event.key):
                raise ValueError(
                    f"process {event.process}: completion {event.f} {event.key!r} does not "
                    f"match invocation {inv.f} {inv.key!r}"
                )
            ops[i] = _pair(inv, event)
        for i, inv in pending.values():
            ops[i] = _pair(inv, None)
        return [op for op in ops if op is not None]

    # -- files -------------------------------------------------------------

    def write_jsonl(self, path: str | Path) -> None:
        """Write one JSON event per line."""
        with open(path, "w", encoding="utf-8") as fh:
            for event in self._events:
                fh.write(json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")))
                fh.write("\n")

    @classmethod
    def read_jsonl(cls, path: str | Path) -> History:
        """Read a file written by `write_jsonl`; blank lines are skipped."""
        history = cls()
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    history.append(Event.from_json(json.loads(line)))
                except (ValueError, TypeError) as e:
                    raise ValueError(f"{path}:{line_no}: {e}") from None
        return history


def _pair(inv: Event, done: Event | None) -> Operation:
    """Build the `Operation` for an invocation and its completion (or None)."""
    if done is None or done.type is OpType.INFO:
        status, ret, output = "info", None, None
    elif done.type is OpType.FAIL:
        status, ret, output = "fail", done.time, None
    else:
        status, ret = "ok", done.time
        if inv.f == "read":
            output = done.value
        elif inv.f == "cas":
            # Invariant: an ok cas is applied unless its completion says False.
            output = done.value is not False
        else:
            output = None
    if done is not None and done.time < inv.time:
        raise ValueError(f"process {inv.process}: completion at {done.time} before invocation at {inv.time}")
    last = done if done is not None else inv
    return Operation(
        process=inv.process,
        f=inv.f,
        key=inv.key,
        value=inv.value,
        output=output,
        call=inv.time,
        ret=ret,
        status=status,
        node=last.node if last.node is not None else inv.node,
        index=done.index if done is not None else None,
        error=done.error if done is not None else None,
        end=done.time if done is not None else None,
    )


# -- Jepsen logs --------------------------------------------------------------

_JEPSEN_RE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(?P<process>\d+)\s+:(?P<type>invoke|ok|fail|info)"
    r"\s+:(?P<f>read|write|cas)\s*(?P<value>.*?)\s*$"
)
_CAS_RE = re.compile(r"^\[\s*(\S+)\s+(\S+)\s*\]$")


def _jepsen_value(text: str) -> Any:
    """``nil`` -> None, an integer -> int, anything else stays a string."""
    if text == "nil":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def parse_jepsen_log(path: str | Path, key: str = "x") -> History:
    """Parse a Jepsen ``jepsen.util`` log of single-register operations.

    Time is the (0-based) line number as a float. Raises `ValueError` on a
    line that is neither blank nor an operation event.
    """
    history = History()
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh):
            if not line.strip():
                continue
            m = _JEPSEN_RE.match(line)
            if m is None:
                raise ValueError(f"{path}:{line_no + 1}: not a Jepsen op line: {line.rstrip()!r}")
            process, kind, f, text = int(m["process"]), m["type"], m["f"], m["value"]
            time = float(line_no)
            if kind == "invoke":
                if f == "read":
                    value: Any = None
                elif f == "write":
                    value = _jepsen_value(text)
                else:
                    cas = _CAS_RE.match(text)
                    if cas is None:
                        raise ValueError(f"{path}:{line_no + 1}: bad cas value {text!r}")
                    value = (_jepsen_value(cas[1]), _jepsen_value(cas[2]))
                history.append(Event(process, OpType.INVOKE, f, key, value, time))
            elif kind == "info" or text == ":timed-out":
                history.append(Event(process, OpType.INFO, f, key, None, time, error="timed-out"))
            elif kind == "ok":
                if f == "read":
                    value = _jepsen_value(text)
                elif f == "cas":
                    value = True
                else:
                    value = None
                history.append(Event(process, OpType.OK, f, key, value, time))
            elif f == "cas":
                # etcd's "compare failed": the precondition was false.
                history.append(Event(process, OpType.OK, f, key, False, time, error="cas_failed"))
            else:
                history.append(Event(process, OpType.FAIL, f, key, None, time))
    return history



# -- EDN histories (Jepsen's history.edn, Knossos's test data) ------------------

_EDN_TOKEN = re.compile(
    r"""\s*(?:
        (?P<skip>[,\s]+|;[^\n]*)
      | (?P<open>\#\{|[\[\](){}])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<atom>[^\s,\[\](){}"]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_EDN_NUMBER = re.compile(r"^[+-]?\d+N?$|^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?M?$")


class _Keyword(str):
    """An EDN keyword (``:ok``), kept apart from a string with the same letters."""

    __slots__ = ()


def _edn_values(text: str) -> Iterator[Any]:
    """The top-level values of an EDN text: maps (as dicts with keyword keys), vectors and lists
    (as lists), keywords, strings, numbers, nil, booleans. Tags (``#jepsen.history.Op``) are
    dropped; their value is kept. Raises `ValueError` on anything else."""
    pos, n = 0, len(text)
    stack: list[tuple[str, list[Any]]] = []
    while pos < n:
        m = _EDN_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"EDN: cannot read {text[pos:pos + 30]!r}")
        pos = m.end()
        if m["skip"] is not None:
            continue
        value: Any
        if (tok := m["open"]) is not None:
            if tok in ("[", "(", "{", "#{"):
                stack.append((tok, []))
                continue
            if not stack:
                raise ValueError(f"EDN: unbalanced {tok!r}")
            kind, items = stack.pop()
            want = {"[": "]", "(": ")", "{": "}", "#{": "}"}[kind]
            if tok != want:
                raise ValueError(f"EDN: {kind!r} closed by {tok!r}")
            if kind == "{":
                if len(items) % 2:
                    raise ValueError("EDN: a map with an odd number of forms")
                value = {_freeze(k): v for k, v in zip(items[::2], items[1::2], strict=True)}
            else:
                value = items
        elif (tok := m["string"]) is not None:
            value = json.loads(tok)
        else:
            tok = m["atom"]
            if tok.startswith("#"):
                continue  # a tag: the next value stands for itself
            if tok.startswith(":"):
                value = _Keyword(tok[1:])
            elif tok == "nil":
                value = None
            elif tok in ("true", "false"):
                value = tok == "true"
            elif _EDN_NUMBER.match(tok):
                value = float(tok.rstrip("M")) if any(c in tok for c in ".eE") else int(tok.rstrip("N"))
            else:
                value = _Keyword(tok)  # a symbol
        if stack:
            stack[-1][1].append(value)
        else:
            yield value
    if stack:
        raise ValueError("EDN: the text ends inside a collection")


def parse_edn_history(text: str, key: str = "x") -> tuple[History, bool]:
    """A Jepsen/Knossos EDN history of one register: op maps with ``:process``, ``:type``,
    ``:f`` (read, write, cas) and ``:value``, one per line or in one vector.

    Returns the history and whether it has wall-clock times (``:time``, in
    nanoseconds; otherwise the op's position is its time). Ops of other
    processes (the nemesis: ``:process :nemesis``) are skipped. Raises
    `ValueError` on a malformed op.
    """
    ops: list[dict[Any, Any]] = []
    for top in _edn_values(text):
        for item in top if isinstance(top, list) else [top]:
            if not isinstance(item, dict):
                raise ValueError(f"EDN: expected an op map, got {item!r}")
            ops.append(item)
    timed = bool(ops) and all(isinstance(o.get("time"), int | float) for o in ops)
    history = History()
    for i, o in enumerate(ops):
        process = o.get("process")
        if not isinstance(process, int) or isinstance(process, bool):
            continue  # the nemesis, or a record without a client process
        kind, f = str(o.get("type", "")), str(o.get("f", ""))
        if kind not in ("invoke", "ok", "fail", "info"):
            raise ValueError(f"EDN op {i}: bad :type {o.get('type')!r}")
        if f not in ("read", "write", "cas"):
            raise ValueError(f"EDN op {i}: :f {o.get('f')!r} is not read, write or cas (a single register)")
        time = o["time"] / 1e9 if timed else float(i)
        raw = _freeze(o.get("value"))
        if f == "cas" and kind == "invoke" and not (isinstance(raw, tuple) and len(raw) == 2):
            raise ValueError(f"EDN op {i}: a cas value is [from to], not {o.get('value')!r}")
        value: Any = raw
        if kind == "invoke":
            value = None if f == "read" else raw
            history.append(Event(process, OpType.INVOKE, f, key, value, time))
        elif kind == "ok":
            value = raw if f == "read" else (True if f == "cas" else None)
            history.append(Event(process, OpType.OK, f, key, value, time))
        else:
            error = o.get("error")
            history.append(Event(process, OpType(kind), f, key, None, time,
                                 error=None if error is None else str(error)))
    return history, timed


@dataclass(frozen=True)
class LoadedHistory:
    """What `load_history` found: the history, its format, and whether times are seconds
    (``timed``) or mere positions in the file (a Jepsen log, an EDN history without ``:time``)."""

    history: History
    format: str  # "jsonl", "jepsen-log" or "edn"
    timed: bool


def load_history(path: str | Path) -> LoadedHistory:
    """Read a history file in any format this module knows (see the module docstring).

    Raises `OSError` when the file cannot be read and `ValueError` when it is
    not a history (with the file and line that says so).
    """
    text = Path(path).read_text(encoding="utf-8")
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith(";")), "")
    if not first:
        raise ValueError(f"{path}: empty, not a history")
    if first.startswith("{") and not first.startswith("{:"):
        history = History.read_jsonl(path)
        return LoadedHistory(history, "jsonl", True)
    if _JEPSEN_RE.match(first):
        return LoadedHistory(parse_jepsen_log(path), "jepsen-log", False)
    if first.startswith(("{", "[", "(")):
        try:
            history, timed = parse_edn_history(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return LoadedHistory(history, "edn", timed)
    raise ValueError(f"{path}: not a history (neither raftnet JSONL, a Jepsen log nor EDN): {first[:60]!r}")
