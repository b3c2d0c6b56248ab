"""The ``http-kv`` system: any HTTP key-value service, described by the ``[system]`` table of a
cluster file. No Python from the user: the table says how to start a node, how to ask whether it
serves, optionally who leads, and how each operation maps to a request and back to ok / fail /
info.

Schema (every table rejects unknown fields; errors name the field, e.g. ``system.write.ok``)::

    [system]
    name = "http-kv"             # optional; selects this adapter (nothing else is accepted)
    label = "my-kv"              # optional; the name reports use (default "http-kv")
    command = "..."              # required; CommandSystem's template ({id}, {ip}, {client_port},
    join_command = "..."         #   {peers}, {data_dir}, {join}, {python}, ...) plus {config_dir},
                                 #   the cluster file's folder; a string (split like a shell would)
                                 #   or a list of words. join_command: a node added to a running cluster
    env = { VAR = "..." }        # optional, templated like command
    client_port = 7000           # required
    peer_ports = [7000]          # optional (default [client_port]): the ports the faults match
    headers = { Name = "..." }   # optional: sent with every request, as written (no fields)
    clock = true                 # optional (default false): its processes read the clock through
                                 #   libc, so libfaketime can skew it (Feature.CLOCK; not Go programs)

    [system.ready]               # required: the node serves
    [system.status]              # optional: role, term, leader, commit and applied index (Feature.STATUS)
    [system.redirect]            # optional: "not the leader, it is over there"
    [system.read]                # required
    [system.write]               # required
    [system.cas]                 # optional; without it the workload must not issue cas
    [system.delete]              # optional; likewise (see ``HttpKvSystem.ops``)

Every request table has ``method`` (default GET for ready, status and read; required for write,
cas and delete), ``path`` (required) and the status list ``ok`` (default ``["2xx"]``). An
operation (read, write, cas, delete) adds ``body``, ``headers`` and the lists ``fail``
(definitely not applied) and ``info`` (maybe applied); read adds ``absent`` (ok, value None) and
``value`` (where the value is in an ok answer, default ``"value"``); cas adds ``mismatch`` (ok,
result False) and ``result`` (optional: where a boolean outcome is in an ok answer, for a service
that answers 200 either way).

- A status list holds codes (``404``) and classes (``"4xx"``); an exact code wins over a class, and
  a code or class in two lists of one table (``system.redirect.status`` counts as a list of every
  operation) is an error. A status in no list is ``info`` for write / cas / delete and ``fail``
  for read (a read changes nothing, so dropping it is exact); ``info`` on a read is recorded as
  ``fail`` for the same reason.
- Templates: in an operation's ``path``, ``body`` and ``headers``, ``{name}`` of a known field is
  filled in and every other brace is literal, so JSON bodies need no escaping. Fields: ``{key}``,
  ``{client_id}``, ``{seq}`` (a number per call of a client, kept across redirects: an
  exactly-once session), ``{value}`` (write, cas) and ``{expect}`` (cas; None means "only if
  absent"). In ``path`` they are URL-quoted (a key is one path segment), in ``body`` they are JSON
  (strings quoted, None as null; the filled body must be JSON), and ``headers`` take only
  ``{client_id}`` and ``{seq}``, as text. ready and status take no fields.
- Where-paths (``value``, ``result``, the status fields, ``redirect.leader``) are dotted paths into
  the JSON answer: ``"leader.id"``; a number picks a list item (``"nodes.0.id"``).
- ``[system.status]``: ``path``, ``role``, ``leader_role`` (the value of role that means leader:
  a string, or true for a boolean "is leader"), ``term``, ``leader`` (the leader's node id),
  ``commit_index``, ``applied_index``; at least one of them.
- ``[system.redirect]``: ``status`` (a status list) and ``leader`` (where the leader's node id is).
  A client that follows redirects re-sends the same request there (up to 4 hops); one that does not
  records ``fail`` (not applied where it was sent).

Connections: refused (or not opened in time) is ``fail``; a timeout or a broken connection after
sending is ``info`` for write / cas / delete and ``fail`` for read. Membership hooks, the log dump
and local reads are not offered.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from harness.model.history import OpType
from harness.systems.base import (
    CommandSystem,
    Endpoint,
    Feature,
    KVClient,
    Member,
    NodeSpec,
    NodeStatus,
    Op,
    Outcome,
    SystemError_,
    fill_template,
)

__all__ = ["Codes", "HttpKvClient", "HttpKvSystem", "Redirect", "Request", "StatusSpec", "Template", "quote_key"]

MAX_HOPS = 4
_ROOT = "system"
_TOP = ("name", "label", "command", "join_command", "env", "client_port", "peer_ports", "headers",
        "ready", "status", "redirect", "read", "write", "cas", "delete", "clock")
_STATUS_WHERE = ("role", "term", "leader", "commit_index", "applied_index")
_OP_METHOD = {"ready": "GET", "status": "GET", "read": "GET"}  # the others must say
_OP_FIELDS = {
    "read": {"key", "client_id", "seq"},
    "write": {"key", "client_id", "seq", "value"},
    "cas": {"key", "client_id", "seq", "value", "expect"},
    "delete": {"key", "client_id", "seq"},
}
_PATH_FIELDS = frozenset({"key", "client_id", "seq"})
_HEADER_FIELDS = frozenset({"client_id", "seq"})
_SAMPLE_FIELDS: dict[str, Any] = {"key": "k", "value": "v", "expect": "e", "client_id": "c", "seq": 1}


def _fail(where: str, message: str) -> SystemError_:
    return SystemError_(f"{where}: {message}")


# -- pieces of the schema --------------------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    """A status list: exact codes and classes (4 for ``"4xx"``)."""

    exact: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, raw: Any, where: str) -> Codes:
        if not isinstance(raw, list):
            raise _fail(where, "expected a list of status codes")
        exact: set[int] = set()
        classes: set[int] = set()
        for item in raw:
            if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
                exact.add(item)
            elif isinstance(item, str) and re.fullmatch(r"[1-5]xx", item.lower()):
                classes.add(int(item[0]))
            else:
                raise _fail(where, f"{item!r} is neither a status code (100..599) nor a class like \"4xx\"")
        return cls(frozenset(exact), frozenset(classes))


@dataclass(frozen=True)
class Verdicts:
    """Which list of a request table a status falls in; an exact code wins over a class."""

    exact: Mapping[int, str]
    classes: Mapping[int, str]

    @classmethod
    def build(cls, lists: Mapping[str, Codes], where: str) -> Verdicts:
        exact: dict[int, str] = {}
        classes: dict[int, str] = {}
        for name, codes in lists.items():
            for code in sorted(codes.exact):
                if code in exact:
                    raise _fail(where, f"status {code} is in both {exact[code]} and {name}")
                exact[code] = name
            for c in sorted(codes.classes):
                if c in classes:
                    raise _fail(where, f"status class \"{c}xx\" is in both {classes[c]} and {name}")
                classes[c] = name
        return cls(exact, classes)

    def of(self, status: int) -> str | None:
        """The list ``status`` is in (``"ok"``, ``"fail"``, ...), or None."""
        return self.exact.get(status) or self.classes.get(status // 100)


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Template:
    """A request template: ``{name}`` of a known field is filled in, every other brace is literal."""

    text: str
    fields: frozenset[str]

    @classmethod
    def parse(cls, text: Any, allowed: frozenset[str], where: str) -> Template:
        if not isinstance(text, str):
            raise _fail(where, "expected a string")
        used = {m.group(1) for m in _FIELD.finditer(text)}
        for name in sorted(used - allowed):
            known = ", ".join("{" + f + "}" for f in sorted(allowed)) or "none"
            raise _fail(where, f"unknown field {{{name}}} (fields here: {known})")
        return cls(text, frozenset(used))

    def fill(self, values: Mapping[str, str]) -> str:
        return _FIELD.sub(lambda m: values[m.group(1)], self.text)


def quote_key(text: str) -> str:
    """``text`` as one URL path segment: everything but unreserved characters percent-encoded, and a
    segment of dots too (a raw ``.`` or ``..`` would be normalised away)."""
    if text and not text.strip("."):
        return text.replace(".", "%2E")
    return quote(text, safe="")


_ABSENT = object()


def _where_path(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, str):
        raise _fail(where, "expected a dotted path into the JSON answer, like \"leader.id\"")
    parts = tuple(raw.split("."))
    if not all(parts):
        raise _fail(where, f"{raw!r} is not a dotted path (empty part)")
    return parts


def dig(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a JSON document, or ``_ABSENT``."""
    for part in path:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isascii() and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _ABSENT
    return doc


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Request:
    """One request table: how to ask, and what the answer's status means."""

    f: str  # "ready", "status", "read", "write", "cas", "delete"
    method: str
    path: Template
    body: Template | None
    headers: Mapping[str, Template]
    verdicts: Verdicts
    value: tuple[str, ...] | None = None  # read: where the value is
    result: tuple[str, ...] | None = None  # cas: where a boolean outcome is

    def render(self, values: Mapping[str, Any]) -> tuple[str, bytes | None, dict[str, str]]:
        """(path, body, headers) with ``values`` filled in: URL-quoted, JSON, text."""
        path = self.path.fill({k: quote_key(str(values[k])) for k in self.path.fields})
        body = None
        if self.body is not None:
            body = self.body.fill({k: json.dumps(values[k]) for k in self.body.fields}).encode()
        headers = {name: t.fill({k: str(values[k]) for k in t.fields}) for name, t in self.headers.items()}
        if body is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/json"
        return path, body, headers


@dataclass(frozen=True)
class StatusSpec:
    request: Request
    where: Mapping[str, tuple[str, ...]]  # role, term, leader, commit_index, applied_index
    leader_role: str | bool = "leader"

    def parse(self, doc: Any) -> NodeStatus:
        def at(name: str) -> Any:
            path = self.where.get(name)
            v = dig(doc, path) if path is not None else _ABSENT
            return None if v is _ABSENT else v

        role = at("role")
        if isinstance(self.leader_role, bool):
            role = None if not isinstance(role, bool) else ("leader" if role is self.leader_role else "follower")
        elif role is not None:
            role = "leader" if role == self.leader_role else str(role)
        return NodeStatus(
            role=role, term=_as_int(at("term")), leader=_node_id(at("leader")),
            commit_index=_as_int(at("commit_index")), applied_index=_as_int(at("applied_index")),
            raw=doc if isinstance(doc, dict) else {},
        )


def _as_int(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.isascii() and v.isdigit():  # some services send 64-bit numbers as strings
        return int(v)
    return None


def _node_id(v: Any) -> str | None:
    """A node id from an answer: a non-empty string or a number."""
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        return None
    return str(v)


@dataclass(frozen=True)
class Redirect:
    """An answer that says "not here": follow it to ``leader`` (None: not named, or unknown)."""

    leader: str | None
    status: int


# -- reading the table -----------------------------------------------------------------------


def _check_known(t: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
    for k in t:
        if k not in known:
            raise _fail(f"{where}.{k}", f"unknown field (known: {', '.join(known)})")


def _sub_table(t: Mapping[str, Any], key: str, where: str, *, required: bool) -> Mapping[str, Any] | None:
    v = t.get(key)
    if v is None:
        if required:
            raise _fail(f"{where}.{key}", "required table missing")
        return None
    if not isinstance(v, Mapping):
        raise _fail(f"{where}.{key}", "expected a table")
    return v


def _string(t: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = t.get(key, default)
    if v is None:
        raise _fail(f"{where}.{key}", "required field missing")
    if not isinstance(v, str) or not v:
        raise _fail(f"{where}.{key}", "expected a non-empty string")
    return v


def _port(v: Any, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
        raise _fail(where, "expected a port number (1..65535)")
    return v


def _str_table(t: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    v = t.get(key, {})
    if not isinstance(v, Mapping) or not all(isinstance(x, str) for x in v.values()):
        raise _fail(f"{where}.{key}", "expected a table of strings")
    return dict(v)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _headers(t: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]) -> dict[str, Template]:
    out: dict[str, Template] = {}
    for name, value in _str_table(t, key, where).items():
        if not _TOKEN.fullmatch(name):
            raise _fail(f"{where}.{key}", f"{name!r} is not a header name")
        if not value.isascii() or not value.isprintable():
            raise _fail(f"{where}.{key}.{name}", "a header value is printable ASCII")
        out[name] = Template.parse(value, allowed, f"{where}.{key}.{name}")
    return out


def _request(t: Mapping[str, Any], f: str, where: str, redirect: Codes | None = None) -> Request:
    op = f in _OP_FIELDS
    known: tuple[str, ...] = ("method", "path", "ok")
    if op:
        known += ("fail", "info", "body", "headers")
    if f == "read":
        known += ("absent", "value")
    if f == "cas":
        known += ("mismatch", "result")
    _check_known(t, where, known)
    method = _string(t, "method", where, _OP_METHOD.get(f)).upper()
    if not _TOKEN.fullmatch(method):
        raise _fail(f"{where}.method", f"{method!r} is not an HTTP method")
    fields = frozenset(_OP_FIELDS.get(f, ()))
    path = Template.parse(_string(t, "path", where), fields & _PATH_FIELDS, f"{where}.path")
    if not path.text.startswith("/") or not path.text.isascii() or not path.text.isprintable() or " " in path.text:
        raise _fail(f"{where}.path", "expected an ASCII path starting with /, without spaces (percent-encode them)")
    body = None
    if "body" in t:
        body = Template.parse(t["body"], fields, f"{where}.body")
        try:
            json.loads(body.fill({k: json.dumps(_SAMPLE_FIELDS[k]) for k in body.fields}))
        except ValueError as e:
            raise _fail(f"{where}.body", f"not JSON once filled in ({e}); put {{value}} outside quotes") from None
    headers = _headers(t, "headers", where, fields & _HEADER_FIELDS) if op else {}
    lists = {"ok": Codes(classes=frozenset({2}))}  # the default
    lists.update((name, Codes.parse(t[name], f"{where}.{name}"))
                 for name in ("ok", "absent", "mismatch", "fail", "info") if name in t)
    if redirect is not None:
        lists["redirect"] = redirect  # so a redirect code, like any other, is in one list only
    value = _where_path(t.get("value", "value"), f"{where}.value") if f == "read" else None
    result = _where_path(t["result"], f"{where}.result") if "result" in t else None
    return Request(f, method, path, body, headers, Verdicts.build(lists, where), value, result)


def _status(t: Mapping[str, Any], where: str) -> StatusSpec:
    _check_known(t, where, ("method", "path", "ok", *_STATUS_WHERE, "leader_role"))
    request = _request({k: v for k, v in t.items() if k in ("method", "path", "ok")}, "status", where)
    paths = {k: _where_path(t[k], f"{where}.{k}") for k in _STATUS_WHERE if k in t}
    if not paths:
        raise _fail(where, f"name at least one of {', '.join(_STATUS_WHERE)}")
    leader_role = t.get("leader_role", "leader")
    if not isinstance(leader_role, (str, bool)) or leader_role == "":
        raise _fail(f"{where}.leader_role", "expected a string, or true for a boolean role")
    return StatusSpec(request, paths, leader_role)


def _words(raw: Any, where: str, config_dir: Path) -> list[str]:
    if isinstance(raw, str):
        try:
            words = shlex.split(raw)
        except ValueError as e:
            raise _fail(where, str(e)) from None
    elif isinstance(raw, list) and all(isinstance(w, str) for w in raw):
        words = list(raw)
    else:
        raise _fail(where, "expected a string or a list of strings")
    if not words:
        raise _fail(where, "is empty")
    return [_fill_config_dir(w, where, config_dir) for w in words]


_SAMPLE_NODE = NodeSpec("n1", "10.0.0.1", 1, 2, Path("/data"), (Member("n1", "10.0.0.1", 1, 2),)).fields()


def _fill_config_dir(word: str, where: str, config_dir: Path) -> str:
    """``word`` with ``{config_dir}`` filled in (the other fields are left to CommandSystem)."""
    try:
        fill_template(word, {**_SAMPLE_NODE, "config_dir": str(config_dir)})
    except SystemError_ as e:
        raise _fail(where, str(e)) from None
    escaped = str(config_dir).replace("{", "{{").replace("}", "}}")
    return re.sub(r"\{\{|\}\}|\{config_dir\}", lambda m: escaped if m.group() == "{config_dir}" else m.group(),
                  word)


# -- the system ------------------------------------------------------------------------------


class HttpKvSystem(CommandSystem):
    """Any HTTP key-value service, from the ``[system]`` table of a cluster file (see the module
    docstring); ``ops`` names the operations it offers."""

    def __init__(self, *, label: str, command: list[str], join_command: list[str] | None, env: Mapping[str, str],
                 client_port: int, peer_ports: tuple[int, ...], headers: Mapping[str, str], ready: Request,
                 status: StatusSpec | None, redirect_leader: tuple[str, ...] | None,
                 requests: Mapping[str, Request], clock: bool = False) -> None:
        super().__init__(command, env=env, join_command=join_command)
        self.name = label
        self.client_port = client_port
        self.peer_port = peer_ports[0]
        self.extra_peer_ports = peer_ports[1:]
        self.headers = dict(headers)
        self.ready_request = ready
        self.status_spec = status
        self.redirect_leader = redirect_leader  # where a redirect names the leader
        self.requests = dict(requests)
        self.ops: frozenset[str] = frozenset(requests)
        self.features = frozenset({Feature.STATUS} if status is not None else ()) | (
            {Feature.CLOCK} if clock else set())

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, base_dir: Path) -> HttpKvSystem:
        """The system a ``[system]`` table describes; ``SystemError_`` naming the field when it is wrong.
        ``base_dir`` (the cluster file's folder) fills ``{config_dir}``."""
        w = _ROOT
        if not isinstance(table, Mapping):
            raise _fail(w, "expected a table")
        _check_known(table, w, _TOP)
        if table.get("name", "http-kv") != "http-kv":
            raise _fail(f"{w}.name", "expected \"http-kv\" (or no name) for this adapter")
        label = _string(table, "label", w, "http-kv")
        if "command" not in table:
            raise _fail(f"{w}.command", "required field missing")
        command = _words(table["command"], f"{w}.command", base_dir)
        join = _words(table["join_command"], f"{w}.join_command", base_dir) if "join_command" in table else None
        env = {k: _fill_config_dir(v, f"{w}.env.{k}", base_dir) for k, v in _str_table(table, "env", w).items()}
        for k in env:
            if not k or "=" in k or "\0" in k:
                raise _fail(f"{w}.env", f"{k!r} is not a variable name")
        if "client_port" not in table:
            raise _fail(f"{w}.client_port", "required field missing")
        client_port = _port(table["client_port"], f"{w}.client_port")
        raw_peers = table.get("peer_ports", [client_port])
        if not isinstance(raw_peers, list) or not raw_peers:
            raise _fail(f"{w}.peer_ports", "expected a non-empty list of port numbers")
        peer_ports = tuple(dict.fromkeys(_port(p, f"{w}.peer_ports") for p in raw_peers))
        headers = {k: t.text for k, t in _headers(table, "headers", w, frozenset()).items()}
        ready_t = _sub_table(table, "ready", w, required=True)
        assert ready_t is not None
        ready = _request(ready_t, "ready", f"{w}.ready")
        status_t = _sub_table(table, "status", w, required=False)
        status = _status(status_t, f"{w}.status") if status_t is not None else None
        codes, leader = None, None
        redirect_t = _sub_table(table, "redirect", w, required=False)
        if redirect_t is not None:
            rw = f"{w}.redirect"
            _check_known(redirect_t, rw, ("status", "leader"))
            for k in ("status", "leader"):
                if k not in redirect_t:
                    raise _fail(f"{rw}.{k}", "required field missing")
            codes = Codes.parse(redirect_t["status"], f"{rw}.status")
            leader = _where_path(redirect_t["leader"], f"{rw}.leader")
        clock = table.get("clock", False)
        if not isinstance(clock, bool):
            raise _fail(f"{w}.clock", "expected true or false")
        requests: dict[str, Request] = {}
        for f in ("read", "write", "cas", "delete"):
            t = _sub_table(table, f, w, required=f in ("read", "write"))
            if t is not None:
                requests[f] = _request(t, f, f"{w}.{f}", codes)
        return cls(label=label, command=command, join_command=join, env=env, client_port=client_port,
                   peer_ports=peer_ports, headers=headers, ready=ready, status=status, redirect_leader=leader,
                   requests=requests, clock=clock)

    # -- the lab's questions ------------------------------------------------------------------

    def describe(self) -> str:
        return f"{self.name} (http-kv: {' '.join(self.command)})"

    def ready(self, node: Endpoint, timeout: float) -> bool:
        got = self._fetch(node, self.ready_request, timeout)
        return got is not None and self.ready_request.verdicts.of(got[0]) == "ok"

    def status(self, node: Endpoint, timeout: float) -> NodeStatus | None:
        if self.status_spec is None:
            return None
        got = self._fetch(node, self.status_spec.request, timeout)
        if got is None or self.status_spec.request.verdicts.of(got[0]) != "ok":
            return None
        doc = _json(got[1])
        return self.status_spec.parse(doc) if isinstance(doc, (dict, list)) else None

    def client(self, *, timeout: float, client_id: str, follow_redirects: bool) -> KVClient:
        return HttpKvClient(self, timeout=timeout, client_id=client_id, follow_redirects=follow_redirects)

    def _fetch(self, node: Endpoint, req: Request, timeout: float) -> tuple[int, bytes] | None:
        """(status, body) of ``req`` on ``node``; None when it could not be asked or answered."""
        path, body, headers = req.render({})
        conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
        try:
            conn.request(req.method, path, body=body, headers={**self.headers, **headers})
            r = conn.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    # -- answers -> outcomes (pure) -------------------------------------------------------------

    def classify(self, f: str, status: int, payload: bytes, node: str | None = None) -> Outcome | Redirect:
        """What an answer to operation ``f`` means: an Outcome, or a Redirect (``status`` is in
        ``system.redirect.status``)."""
        req = self.requests[f]
        verdict = req.verdicts.of(status)
        if verdict == "redirect" and self.redirect_leader is not None:
            return Redirect(_node_id(dig(_json(payload), self.redirect_leader)), status)
        maybe = OpType.FAIL if f == "read" else OpType.INFO
        if verdict == "ok":
            if f == "read":
                assert req.value is not None
                value = dig(_json(payload), req.value)
                if value is _ABSENT:
                    return Outcome(OpType.FAIL, error=f"HTTP {status} without {'.'.join(req.value)}", node=node)
                return Outcome(OpType.OK, value, node=node)
            if f == "cas" and req.result is not None:
                applied = dig(_json(payload), req.result)
                if not isinstance(applied, bool):
                    return Outcome(maybe, error=f"HTTP {status} without a boolean {'.'.join(req.result)}", node=node)
                return Outcome(OpType.OK, applied, node=node)
            return Outcome(OpType.OK, True if f == "cas" else None, node=node)
        if verdict == "absent":
            return Outcome(OpType.OK, None, node=node)
        if verdict == "mismatch":
            return Outcome(OpType.OK, False, node=node)
        if verdict == "fail":
            return Outcome(OpType.FAIL, error=f"HTTP {status}", node=node)
        return Outcome(maybe, error=f"HTTP {status}", node=node)  # info, or in no list


# -- the client ------------------------------------------------------------------------------


class HttpKvClient:
    """An asyncio client of an http-kv system; the aiohttp session is made on first use."""

    def __init__(self, system: HttpKvSystem, *, timeout: float, client_id: str, follow_redirects: bool) -> None:
        self.system = system
        self.timeout = timeout
        self.client_id = client_id
        self.follow_redirects = follow_redirects
        self.seq = 0  # one per call, kept across redirects: {seq} of an exactly-once session
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            # aiohttp silently re-sends a PUT or DELETE on a new connection when a pooled one breaks after
            # the request went out; the re-send's connect error (or its answer) would then stand for an
            # operation whose first copy may still apply. No public switch: turn the private one off, so
            # a broken connection surfaces as `info`.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def call(self, node: str, op: Op, endpoints: Mapping[str, Endpoint]) -> Outcome:
        req = self.system.requests.get(op.f)
        if req is None:
            offers = ", ".join(sorted(self.system.ops))
            raise SystemError_(f"{self.system.name} does not offer {op.f} (it offers {offers})")
        self.seq += 1
        values: dict[str, Any] = {"key": op.key, "client_id": self.client_id, "seq": self.seq}
        if op.f == "write":
            values["value"] = op.value
        elif op.f == "cas":
            values["expect"], values["value"] = op.value
        path, body, headers = req.render(values)
        headers = {**self.system.headers, **headers}
        session = self._open()
        maybe = OpType.FAIL if op.f == "read" else OpType.INFO
        deadline = time.monotonic() + self.timeout
        for _hop in range(MAX_HOPS):
            ep = endpoints.get(node)
            if ep is None:
                return Outcome(OpType.FAIL, error=f"unknown node {node}", node=node)
            remaining = deadline - time.monotonic()
            if remaining <= 0:  # before sending again; the hops before were redirects, not applied
                return Outcome(OpType.FAIL, error="timeout before sending", node=node)
            host = f"[{ep.host}]" if ":" in ep.host else ep.host
            url = yarl.URL(f"http://{host}:{ep.port}{path}", encoded=True)  # the key stays as quoted
            try:
                async with session.request(
                    req.method, url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=remaining, connect=min(1.0, remaining)),
                ) as resp:
                    status = resp.status
                    payload = await resp.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:  # nothing was sent
                return Outcome(OpType.FAIL, error=f"connect: {e}"[:200], node=node)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:  # it may have reached the node
                return Outcome(maybe, error=f"{type(e).__name__} after send"[:200], node=node)
            got = self.system.classify(op.f, status, payload, node)
            if isinstance(got, Outcome):
                return got
            if not self.follow_redirects:
                return Outcome(OpType.FAIL, error=f"not leader (HTTP {status})", node=node)
            if got.leader is None or got.leader == node or got.leader not in endpoints:
                return Outcome(OpType.FAIL, error=f"not leader; leader {got.leader or 'unknown'}", node=node)
            node = got.leader
        return Outcome(OpType.FAIL, error="too many redirects", node=node)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
