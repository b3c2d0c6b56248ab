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
    "OpType",
    "Operation",
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
    ok cas; None otherwise.
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
    if ret is not None and ret < inv.time:
        raise ValueError(f"process {inv.process}: completion at {ret} before invocation at {inv.time}")
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

