"""Linearizability checker for key-value histories (Porcupine-style WGL).

Pure: no asyncio and no I/O. The only outside thing it looks at is the
monotonic clock, and only when a ``timeout`` is given.

Model
-----
Each key is an independent register whose state is its value, or None when
absent; it starts absent. Keys are checked one by one (P-compositionality:
a history is linearizable iff every key's sub-history is).

========  ========================================  ==========================
f         legal when                                new state
========  ========================================  ==========================
read      output == state                           unchanged
write     always                                    value
cas       output True: state == expect              new
          output False: state != expect             unchanged
delete    always                                    None
========  ========================================  ==========================

A cas input is ``(expect, new)``; ``expect`` None means "only if absent".
Representation of cas outcomes: an ok cas completion carries ``True``
(applied, HTTP 200) or ``False`` (precondition false, HTTP 409). A cas that
returned False is still an ok operation: it is a read that says "the value
was not ``expect``" and must be linearized like any other ok operation.
(The 409 body's ``current`` is not used.) In the Jepsen corpus
``:fail :cas`` is exactly this outcome; see `harness.model.history`.

Which operations are checked:

- ``ok``: must take effect once, between ``call`` and ``ret``.
- ``fail``: dropped; it did not happen.
- ``info`` (and never-completed) writes, cas and deletes: may take effect
  once at any instant after ``call``, or never. Like Porcupine, they have
  no return entry (``ret`` = +inf), so they never force a backtrack, and the
  search ends as soon as every ok operation is placed.
- ``info`` reads: dropped; they constrain nothing.

Algorithm (Wing & Gong, with Lowe's cache, as in Porcupine)
-----------------------------------------------------------
All call and return entries of one key are sorted by time (a call before a
return at the same instant, so touching intervals count as concurrent) and
threaded into a doubly linked list. Invariant: the list holds exactly the
entries of the operations not yet placed (linearized), in time order, so
the calls before the first return are the operations that may go next.

The search places operations one at a time, depth first. Each
configuration (set of placed operations as an int bitset, state) is cached
and never explored twice. At a configuration it makes two passes over the
list from its head:

1. closure: place every *observation* (ok read, cas that returned False)
   that is legal in the current state. Placing one now is never worse than
   later: it leaves the state alone and no unplaced op must precede it. So
   these placements are forced, not alternatives.
2. branching: try each state-changing operation in turn; for each that the
   model accepts, push it, *lift* its call and return out of the list and
   start again at 1. On reaching a return entry, the operation it closes
   could not be placed in time: pop back to the last non-forced choice,
   *unlift* and try the next entry after it.

Success when every ok operation is placed; ILLEGAL when the stack empties.

Pruning, each sound (a pruned branch has no completion, or a kept branch is
at least as good):

- doomed states: a branch dies at once when a pending observation or ok
  cas needs a value that no unplaced op can produce any more, and a
  state-changing op is not tried when it would leave a value that some
  unplaced op still needs and nothing can restore. With unique values this
  catches a wrong order of concurrent writes right away.
- absorption: a blind update (write, delete) of a value nobody ever looks
  for (no read returned it, no cas expects it) is placed, as a forced
  extra, right before any other blind update placed while it is callable;
  such an info update is left out altogether. Only used for keys with no
  cas that returned False, since that can tell "any value but e" from e.
- no-op info operations (write of the current value, cas whose expect does
  not match, delete of an absent key) are never placed;
- identical info operations (same f and input) are placed in call order:
  swapping two of them in any linearization gives another one.

On ILLEGAL the result names the key and a window of at most ~20 operations
around the furthest frontier (first unplaced return) any dead end reached:
the operation that could not be placed there (``culprit``; or, when it was
held back because a later op still needed the value it would overwrite,
that later op), the writers of the values the focused reads returned, the
few ops that completed just before, and the ops concurrent with them.
It also gives, as Porcupine's visualisation does, the linearization that
dead end had reached (``prefix``, in linearization order: the longest
linearizable prefix the search found) and the value it ends in
(``prefix_state``); `step` replays the model along it.
"""

from __future__ import annotations

import enum
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.model.history import History, Operation

__all__ = ["CheckResult", "Result", "check", "step"]

WINDOW_LIMIT = 20
_BUDGET_EVERY = 4096  # search steps between two budget checks
MAX_CONFIGS = 2_000_000  # cached configurations per key before giving up (memory)

# Operation kinds in the search; the MAYBE_* ones are indeterminate.
# Observations (never change the state) come first, then the ok updates.
_READ, _CAS_FAILED, _WRITE, _CAS, _DELETE, _MAYBE_WRITE, _MAYBE_CAS, _MAYBE_DELETE = range(8)
_ABSORBED = 2  # the forced flag of a frame placed just before the op above it


class Result(enum.Enum):
    """The verdict on a history."""

    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"  # the time or step budget ran out


@dataclass(frozen=True)
class CheckResult:
    """What `check` found.

    ``key`` is the offending key (ILLEGAL) or the first key left undecided
    (UNKNOWN); ``window`` is the operations to look at, by call time;
    ``culprit`` is the operation that could not be linearized. For ILLEGAL,
    ``prefix`` is the linearization the search had reached where it got
    furthest (in linearization order; the culprit cannot follow it) and
    ``prefix_state`` the key's value after it (None: absent).
    """

    result: Result
    key: str | None = None
    window: tuple[Operation, ...] = ()
    ops_checked: int = 0
    keys_checked: int = 0
    culprit: Operation | None = None
    message: str = ""
    steps: int = field(default=0, compare=False)
    elapsed: float = field(default=0.0, compare=False)
    prefix: tuple[Operation, ...] = field(default=(), compare=False)
    prefix_state: Any = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True when the history is linearizable."""
        return self.result is Result.OK

    def explain(self) -> str:
        """A few human-readable lines: the message and the window."""
        lines = [self.message or self.result.value]
        for op in self.window:
            mark = ">" if op is self.culprit else " "
            lines.append(f"  {mark} {op}")
        return "\n".join(lines)


def check(
    history: History | Sequence[Operation],
    *,
    timeout: float | None = None,
    max_steps: int | None = None,
) -> CheckResult:
    """Check a key-value history for linearizability, key by key.

    ``timeout`` (seconds) and ``max_steps`` (search steps) bound the whole
    check; when either runs out, or one key's search caches more than
    `MAX_CONFIGS` configurations (a memory bound), the result is UNKNOWN,
    unless some key was already found ILLEGAL. Keys are checked smallest first. Raises
    `ValueError` on an operation with an unknown status, or an ok one
    without a return time.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    ops = history.operations() if isinstance(history, History) else history
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.status not in ("ok", "fail", "info"):
            raise ValueError(f"unknown status {op.status!r}: {op}")
        if op.status == "ok" and op.ret is None:
            raise ValueError(f"ok operation without a return time: {op}")
        if op.status == "fail" or (op.f == "read" and op.status != "ok"):
            continue
        by_key[op.key].append(op)
    budget = max_steps
    total_steps = 0
    checked = 0
    keys = 0
    undecided: str | None = None
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        key_ops = by_key[key]
        keys += 1
        checked += len(key_ops)
        result, blamed, steps, (path, end_state) = _search(key_ops, deadline, budget)
        total_steps += steps
        if budget is not None:
            budget = max(budget - steps, 0)
        if result is Result.ILLEGAL:
            focus = [key_ops[i] for i in blamed]
            culprit = focus[0] if focus else None
            window = _window(key_ops, focus)
            message = f"key {key!r} is not linearizable"
            if culprit is not None:
                message += f": no order of the operations fits {culprit}"
            return CheckResult(
                Result.ILLEGAL, key, window, checked, keys, culprit, message,
                total_steps, time.monotonic() - started,
                prefix=tuple(key_ops[i] for i in path), prefix_state=end_state,
            )
        if result is Result.UNKNOWN and undecided is None:
            undecided = key
    elapsed = time.monotonic() - started
    if undecided is not None:
        message = f"budget ran out after {total_steps} steps; key {undecided!r} undecided"
        return CheckResult(
            Result.UNKNOWN, undecided, (), checked, keys, None, message, total_steps, elapsed
        )
    message = f"linearizable: {checked} operations over {keys} keys"
    return CheckResult(Result.OK, None, (), checked, keys, None, message, total_steps, elapsed)


def step(state: Any, op: Operation) -> Any:
    """The register's value after ``op`` takes effect in ``state`` (the model's table above;
    an info op that takes effect is applied like an ok one). Does not check that ``op`` is legal."""
    if op.f == "write":
        return op.value
    if op.f == "delete":
        return None
    if op.f == "cas":
        expect, new = op.value
        applied = op.output is not False if op.status == "ok" else state == expect
        return new if applied else state
    return state


def _kind(op: Operation) -> tuple[int, Any, Any]:
    """The search kind and arguments of one operation."""
    if op.status == "ok":
        if op.f == "read":
            return _READ, op.output, None
        if op.f == "write":
            return _WRITE, op.value, None
        if op.f == "delete":
            return _DELETE, None, None
        expect, new = op.value
        return (_CAS if op.output is not False else _CAS_FAILED), expect, new
    if op.f == "write":
        return _MAYBE_WRITE, op.value, None
    if op.f == "delete":
        return _MAYBE_DELETE, None, None
    if op.f == "cas":
        expect, new = op.value
        return _MAYBE_CAS, expect, new
    raise ValueError(f"cannot check {op}")


def _search(
    ops: Sequence[Operation], deadline: float | None, budget: int | None
) -> tuple[Result, tuple[int, ...], int, tuple[tuple[int, ...], Any]]:
    """WGL search over one key.

    Returns the result, the indices of the ops to blame when ILLEGAL (the
    op that could not be placed first, then ops it blocked), the steps, and
    when ILLEGAL the linearization reached at the furthest dead end (op
    indices in order) with the state it ends in.
    """
    n_ops = len(ops)
    kind = [0] * n_ops
    arg_a: list[Any] = [None] * n_ops
    arg_b: list[Any] = [None] * n_ops
    finite = [0] * n_ops
    after = [-1] * n_ops  # previous identical info op, to be linearized first
    need = [-1] * n_ops  # value id an ok read or applied cas needs as the state
    made = [-1] * n_ops  # value id the op may set the state to
    value_ids: dict[Any, int] = {}
    for i, op in enumerate(ops):
        kind[i], arg_a[i], arg_b[i] = _kind(op)
    # Blind updates (write, delete) of a value no op ever looks for: an ok
    # one is absorbed right before the next blind update placed while it is
    # callable; an info one is left out. Sound only without failed cas ops,
    # which can tell "any value but e" apart from e.
    blind = [k in (_WRITE, _DELETE, _MAYBE_WRITE, _MAYBE_DELETE) for k in kind]
    absorbable = [False] * n_ops
    left_out = [False] * n_ops
    if _CAS_FAILED not in kind:
        looked_for = {arg_a[i] for i, k in enumerate(kind) if k in (_READ, _CAS, _MAYBE_CAS)}
        for i, k in enumerate(kind):
            if blind[i] and arg_a[i] not in looked_for:
                if k <= _DELETE:
                    absorbable[i] = True
                else:
                    left_out[i] = True
    absorbing = any(absorbable)
    raw: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        if left_out[i]:
            continue
        k, a, b = kind[i], arg_a[i], arg_b[i]
        if k in (_READ, _CAS):
            need[i] = value_ids.setdefault(a, len(value_ids))
        if k in (_WRITE, _MAYBE_WRITE):
            made[i] = value_ids.setdefault(a, len(value_ids))
        elif k in (_CAS, _MAYBE_CAS):
            made[i] = value_ids.setdefault(b, len(value_ids))
        elif k in (_DELETE, _MAYBE_DELETE):
            made[i] = value_ids.setdefault(None, len(value_ids))
            arg_a[i] = None
        raw.append((op.call, 0, i))
        if k <= _DELETE:
            assert op.ret is not None  # check() refuses ok ops without one
            finite[i] = 1
            raw.append((op.ret, 1, i))
    raw.sort()
    # Identical info ops in call order: link each to its predecessor.
    last_same: dict[tuple[int, Any, Any], int] = {}
    for _, _order, i in raw:
        if not finite[i]:
            sig = (kind[i], arg_a[i], arg_b[i])
            after[i] = last_same.get(sig, -1)
            last_same[sig] = i
    # producers[v]: unlinearized ops that may still set the state to value v;
    # demand[v]: unlinearized ops that need the state to be v at their point.
    producers = [0] * len(value_ids)
    demand = [0] * len(value_ids)
    for v in made:
        if v >= 0:
            producers[v] += 1
    demanders: list[list[int]] = [[] for _ in value_ids]
    for i, v in enumerate(need):
        if v >= 0:
            demand[v] += 1
            demanders[v].append(i)
    # For the report: the value whose demand last blocked an op, and where.
    block_v = [-1] * n_ops
    block_lin = [0] * n_ops

    def blame(dead: int, lin: int) -> tuple[tuple[int, ...], int]:
        """Ops to show for a dead end at return entry ``dead``, and the op that held the first back.

        The op returning there, unless it (or another op in the window) was
        held back because an unplaced op still needed the state it would
        overwrite: then that waiting op comes first, as the likelier anomaly,
        and the op holding it back is returned too (else -1): placing it
        next is legal and leaves a state the waiting op cannot follow.
        """
        o = e_op[dead]
        held: list[int] = []
        a = nxt[head]
        while a != dead and a >= 0 and a < n:
            x = e_op[a]
            if not is_ret[a] and block_v[x] >= 0 and block_lin[x] == lin:
                held.append(x)
            a = nxt[a]
        if block_v[o] >= 0 and block_lin[o] == lin:
            held.insert(0, o)
        focus: list[int] = []
        by = -1
        for x in held[:3]:
            waiting = [i for i in demanders[block_v[x]] if i != x and not lin & bits[i]]
            if waiting:
                if not focus:
                    by = x
                focus.append(min(waiting, key=lambda i: ops[i].call))
        focus.append(o)
        focus.extend(held[:3])
        return tuple(dict.fromkeys(focus)), by

    def state_after(x: int, st: Any) -> Any:
        """The state once the state-changing op ``x`` is placed in ``st`` (legal there)."""
        k = kind[x]
        if k in (_WRITE, _MAYBE_WRITE):
            return arg_a[x]
        if k in (_CAS, _MAYBE_CAS):
            return arg_b[x]
        if k in (_DELETE, _MAYBE_DELETE):
            return None
        return st

    n = len(raw)
    head, tail = n, n + 1
    e_op = [i for _, _, i in raw] + [-1, -1]
    is_ret = [r == 1 for _, r, _ in raw] + [False, True]
    ret_pos = {i: pos for pos, (_, r, i) in enumerate(raw) if r == 1}
    match = [ret_pos.get(i, -1) if r == 0 else -1 for _, r, i in raw]
    nxt = [pos + 1 for pos in range(n)] + [0, -1]
    prv = [pos - 1 for pos in range(n)] + [-1, n - 1]
    if n:
        nxt[n - 1] = tail
        prv[0] = head
    else:
        nxt[head] = tail
        prv[tail] = head
    bits = [1 << i for i in range(n_ops)]

    remaining = sum(finite)
    if remaining == 0:
        return Result.OK, (), 0, ((), None)
    state: Any = None
    lin = 0
    # Frames: (call entry, state before it, forced). A forced frame is an
    # observation placed by a closure pass; it is never an alternative.
    stack: list[tuple[int, Any, int]] = []
    cache: set[tuple[int, Any]] = set()
    best = -1  # furthest frontier (first return entry left) of any dead end
    culprit: tuple[int, ...] = ()
    reached: tuple[tuple[int, ...], Any] = ((), None)  # the linearization at ``best``, and its state

    def placed() -> tuple[int, ...]:
        """The ops on the stack in linearization order (absorbed ones just before their op)."""
        order: list[int] = []
        at = 0
        for fr in stack:
            if fr[2] == _ABSORBED:  # pushed right after its op: goes before it
                order.insert(at, e_op[fr[0]])
                at += 1
            else:
                at = len(order)
                order.append(e_op[fr[0]])
        return tuple(order)

    steps = 0
    next_check = 0  # check the budget before the first step too
    closing = True
    entry = nxt[head]
    while True:
        if steps == next_check:
            if (
                (budget is not None and steps >= budget)
                or (deadline is not None and time.monotonic() >= deadline)
                or len(cache) > MAX_CONFIGS
            ):
                return Result.UNKNOWN, (), steps, ((), None)
            next_check += _BUDGET_EVERY
            if budget is not None:
                next_check = min(next_check, budget)
        steps += 1
        if is_ret[entry]:
            if closing:
                # Every observation legal here is placed: now branch on the
                # state-changing operations, from the head.
                closing = False
                entry = nxt[head]
                continue
            # Dead end: the op returning here was not placed before its
            # response. Undo the last choice and the observations above it.
            if best < entry < n:
                best = entry
                culprit, by = blame(entry, lin)
                if by >= 0:  # the prefix goes on with the op that left the waiting one behind
                    reached = ((*placed(), by), state_after(by, state))
                else:
                    reached = (placed(), state)
            while True:
                if not stack:
                    return Result.ILLEGAL, culprit, steps, reached
                entry, state, forced = stack.pop()
                o = e_op[entry]
                lin ^= bits[o]
                r = match[entry]
                if r >= 0:
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry
                remaining += finite[o]
                v = made[o]
                if v >= 0:
                    producers[v] += 1
                v = need[o]
                if v >= 0:
                    demand[v] += 1
                if not forced:
                    break
            entry = nxt[entry]
            continue
        o = e_op[entry]
        k = kind[o]
        if closing:
            # Closure pass: place every observation legal in this state
            # (placing it now is never worse: no unplaced op must precede
            # it), and give up if some pending op needs a value that no
            # unplaced op can produce any more.
            if k == _READ:
                if state != arg_a[o]:
                    if producers[need[o]]:
                        entry = nxt[entry]
                        continue
                    doomed = True
                else:
                    doomed = False
            elif k == _CAS_FAILED:
                if state == arg_a[o]:
                    entry = nxt[entry]
                    continue
                doomed = False
            elif k == _CAS and state != arg_a[o] and not producers[need[o]]:
                doomed = True
            else:
                entry = nxt[entry]
                continue
            if doomed:
                f = entry
                while not is_ret[f]:
                    f = nxt[f]
                if best < f < n:
                    best = f
                    culprit = (o,)
                    reached = (placed(), state)
                closing = False
                entry = tail
                continue
            new = state
        elif k <= _CAS_FAILED:
            # Known illegal here: the closure pass placed the legal ones.
            entry = nxt[entry]
            continue
        elif k == _WRITE:
            new = arg_a[o]
        elif k == _CAS:
            if state != arg_a[o]:
                entry = nxt[entry]
                continue
            new = arg_b[o]
        elif k == _DELETE:
            new = None
        else:
            p = after[o]
            if p >= 0 and not lin & bits[p]:
                entry = nxt[entry]
                continue
            if k == _MAYBE_WRITE:
                new = arg_a[o]
                skip = new == state
            elif k == _MAYBE_CAS:
                new = arg_b[o]
                skip = state != arg_a[o] or new == state
            else:
                new = None
                skip = state is None
            if skip:
                entry = nxt[entry]
                continue
        if not closing and new != state:
            # Leaving the state for good while some unplaced op still needs
            # it (a cas placed here needs it itself) dooms the branch.
            v = value_ids.get(state, -1)
            if v >= 0 and not producers[v] and demand[v] > (k == _CAS):
                block_v[o] = v
                block_lin[o] = lin
                entry = nxt[entry]
                continue
        nl = lin | bits[o]
        absorbed: list[int] | tuple[()] = ()
        if absorbing and blind[o] and not closing:
            absorbed = []
            a = nxt[head]
            while not is_ret[a]:
                if absorbable[e_op[a]] and a != entry:
                    absorbed.append(a)
                    nl |= bits[e_op[a]]
                a = nxt[a]
        size = len(cache)
        cache.add((nl, new))
        if len(cache) == size:
            if closing:
                # Seen and failed before; this configuration fails with it.
                closing = False
                entry = tail
            else:
                entry = nxt[entry]
            continue
        stack.append((entry, state, closing))
        state = new
        lin = nl
        # Lift the call and its return out of the list.
        p = prv[entry]
        q = nxt[entry]
        nxt[p] = q
        prv[q] = p
        r = match[entry]
        if r >= 0:
            pr = prv[r]
            q = nxt[r]
            nxt[pr] = q
            prv[q] = pr
        v = made[o]
        if v >= 0:
            producers[v] -= 1
        v = need[o]
        if v >= 0:
            demand[v] -= 1
        remaining -= finite[o]
        for a in absorbed:
            # Placed just before o; undone together with it (forced frames).
            stack.append((a, new, _ABSORBED))
            pa = prv[a]
            q = nxt[a]
            nxt[pa] = q
            prv[q] = pa
            r = match[a]
            pr = prv[r]
            q = nxt[r]
            nxt[pr] = q
            prv[q] = pr
            producers[made[e_op[a]]] -= 1
            remaining -= 1
        if not remaining:
            return Result.OK, (), steps, ((), None)
        if closing:
            entry = nxt[p]  # p is still linked; the state did not change
        else:
            closing = True
            entry = nxt[head]


def _writes(op: Operation, value: Any) -> bool:
    """Whether ``op`` may have set the register to ``value``."""
    if op.f == "write":
        return bool(op.value == value)
    if op.f == "cas":
        return bool(op.value[1] == value) and op.output is not False
    if op.f == "delete":
        return value is None
    return False


def _window(ops: Sequence[Operation], focus: Sequence[Operation]) -> tuple[Operation, ...]:
    """At most ~WINDOW_LIMIT operations that show why ``focus[0]`` fails.

    The focus ops, the writers of the values focused reads returned, the
    few ops that completed just before the first focus op, then the ops
    concurrent with each focus op (nearest first).
    """
    if not focus:
        return tuple(sorted(ops, key=lambda op: op.call)[:WINDOW_LIMIT])
    chosen: dict[int, Operation] = {id(op): op for op in focus}

    def take(candidates: list[Operation], limit: int) -> None:
        taken = 0
        for op in candidates:
            if len(chosen) >= WINDOW_LIMIT or taken >= limit:
                return
            if id(op) not in chosen:
                chosen[id(op)] = op
                taken += 1

    culprit = focus[0]
    c_call = culprit.call
    for center in focus:
        if center.f == "read":
            writers = [op for op in ops if _writes(op, center.output)]
            writers.sort(key=lambda op: abs(op.call - center.call))
            take(writers, 2 if center is culprit else 1)
    before = [op for op in ops if op.ret is not None and op.ret < c_call]
    before.sort(key=lambda op: -op.ret)  # type: ignore[operator]  # op.ret is not None: filtered just above
    take(before, 3)
    share = max(2, (WINDOW_LIMIT - len(chosen)) // len(focus))
    for center in focus:
        end = center.ret if center.ret is not None else float("inf")
        concurrent = [
            op for op in ops
            if op.call <= end and (op.ret is None or op.ret >= center.call)
        ]
        concurrent.sort(key=lambda op: abs(op.call - center.call))
        take(concurrent, share)
    take(before[3:], WINDOW_LIMIT)
    return tuple(sorted(chosen.values(), key=lambda op: (op.call, op.process)))
