"""raftnet's pytest plugin: clusters of any system in network namespaces, as a fixture.

Installed with raftnet (entry point ``pytest11: raftnet``), so any project's
tests get, with no conftest of their own:

- the markers ``netns`` (needs network namespaces) and ``fuse`` (needs
  /dev/fuse: power cuts). A ``fuse`` test is skipped with one line when
  powerfs cannot mount here.
- rootless mode: run as an ordinary user where user namespaces are
  allowed, pytest executes the very same command again inside a private
  user + network + mount namespace (harness/lab/userns.py) before it
  collects anything; where neither root nor that works, ``netns`` tests
  are skipped with one line naming the setting that blocks them.
- once per session (the controller, as root): removal of what crashed
  runs left behind (clusters whose owner process is dead).
- the ``cluster`` fixture, a factory::

      @pytest.mark.netns
      def test_minority_cannot_write(cluster):
          c = cluster(3, system="etcd")          # or config="raftnet.toml", or a System
          leader = c.leader()
          c.partition([leader], [n for n in c.nodes if n != leader])
          with cluster.workload(c) as w: ...

  ``cluster(n=3, system=None, config=None, node_args=(), **kw)`` returns a
  started ``Cluster`` (harness/orchestration/cluster.py; ``kw`` goes to it,
  e.g. ``power=True``), once its leader is known when the system reports
  one. ``system``: None (raftnet's node, with ``node_args``), a built-in
  name ("etcd", ...), ``package.module:Class`` or a ``System``;
  ``config``: a cluster file (relative paths: next to the test file, else
  the invocation dir). A system that is not available here (its binary is
  missing: the adapter's ``unavailable_reason()``; its adapter cannot be
  imported; it refuses to start with a ``SystemError_``) SKIPS the test
  with that one line (a cluster file that cannot be read or parsed is an
  error, not a skip). ``cluster.workload(c, **kw)`` is a ``Workload`` whose
  history is kept; ``cluster.record()`` a History for the test's own
  operations, kept too. When the test fails, node logs, event logs and
  those histories go to ``runs/failed/<test>/``. Every cluster is
  destroyed at teardown. Names and subnets are unique per cluster, so
  ``pytest -n auto`` is safe.

Environment:

    RAFTNET_ROOTLESS=0     never re-execute pytest in a user namespace (for projects
                           that have raftnet installed but do not use it); netns tests
                           are then skipped unless run as root
    RAFTNET_FAILED_DIR     where failed tests' artefacts go (default: runs/failed under
                           the directory pytest was started in)

``pytest -p no:raftnet`` turns the whole plugin off.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

from harness.lab import userns

if TYPE_CHECKING:  # imported when a test asks for a cluster: the plugin stays light elsewhere
    from harness.model.history import History
    from harness.orchestration.cluster import Cluster
    from harness.orchestration.workload import Workload
    from harness.systems.base import System

ENV_ROOTLESS = "RAFTNET_ROOTLESS"
ENV_FAILED_DIR = "RAFTNET_FAILED_DIR"
NETNS_SKIP = "needs root for network namespaces (CAP_NET_ADMIN), or user namespaces (rootless mode)"
MARKERS = (
    "netns: needs network namespaces (root, or a user namespace: rootless mode)",
    "fuse: needs /dev/fuse (powerfs: power-cut tests)",
)

_skip_key = pytest.StashKey[str | None]()
_reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()


def rootless_enabled() -> bool:
    return os.environ.get(ENV_ROOTLESS, "1").strip().lower() not in ("0", "no", "false", "off")


# ---------------------------------------------------------------- session


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    config.stash[_skip_key] = None
    if os.geteuid() == 0 or userns.inside():
        return
    if not rootless_enabled():
        config.stash[_skip_key] = f"{NETNS_SKIP}; rootless mode is off ({ENV_ROOTLESS}=0)"
        return
    st = userns.status()  # in xdist workers too: they collect, so they need the reason
    if not st.available:
        config.stash[_skip_key] = userns.skip_reason(st)
        return
    if hasattr(config, "workerinput"):
        return
    # Enter a private world and run the very same pytest command there.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", f"/tmp/raftnet-userns-{os.getuid()}")
    os.makedirs(os.environ["PYTEST_DEBUG_TEMPROOT"], exist_ok=True)
    os.chdir(config.invocation_params.dir)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = userns.wrap([sys.executable, "-m", "pytest", *config.invocation_params.args])
    os.execvp(argv[0], argv)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The next run removes what crashed runs left (dead owners only): once, before any worker starts."""
    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return
    from harness.lab import cleanup

    try:
        cleanup.clean(sweep_orphans=False)
    except OSError:
        pass  # e.g. no /run/raftnet yet


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fuse = [item for item in items if "fuse" in item.keywords]
    if fuse:
        from harness.lab import powerfs

        reason = powerfs.unavailable_reason()  # e.g. /dev/fuse is 0600 root: not for a rootless user
        if reason:
            for item in fuse:
                item.add_marker(pytest.mark.skip(reason=reason))
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=config.stash.get(_skip_key, None) or NETNS_SKIP)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    rep = outcome.get_result()
    item.stash.setdefault(_reports_key, {})[rep.when] = rep


# ---------------------------------------------------------------- the cluster fixture


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-limit:]


def failed_dir(config: pytest.Config) -> Path:
    env = os.environ.get(ENV_FAILED_DIR)
    return Path(env) if env else Path(config.invocation_params.dir) / "runs" / "failed"


def unavailable(system: System) -> str | None:
    """The system's own one-line reason why it cannot run here (``unavailable_reason()`` on the
    system or in its adapter's module; ``binary`` passed on when both have it), else None."""
    fn = getattr(system, "unavailable_reason", None)
    kw: dict[str, Any] = {}
    if not callable(fn):
        fn = getattr(sys.modules.get(type(system).__module__), "unavailable_reason", None)
        if not callable(fn):
            return None
        binary = getattr(system, "binary", None)
        try:
            takes_binary = "binary" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_binary = False
        if takes_binary and isinstance(binary, str):
            kw["binary"] = binary
    reason = fn(**kw)
    return str(reason) if reason else None


class ClusterFactory:
    """What the ``cluster`` fixture gives a test: clusters it creates, histories it records."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.clusters: list[Cluster] = []
        self.histories: dict[str, History] = {}

    def __call__(self, n: int = 3, system: str | System | None = None, config: str | os.PathLike[str] | None = None,
                 node_args: tuple[str, ...] | list[str] = (), *, leader_timeout: float = 30.0, **kw: Any) -> Cluster:
        """A started cluster of ``n`` nodes (with a leader when the system reports one); ``kw``: Cluster's."""
        from harness.orchestration.cluster import Cluster
        from harness.systems.base import SystemError_

        sysobj = self._system(system, config)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.request.node.name)[:60]
        c = Cluster(n, workdir=self.tmp / f"cluster{len(self.clusters)}", name=name, node_args=node_args,
                    system=sysobj, **kw)
        self.clusters.append(c)
        try:
            c.start()
        except SystemError_ as e:
            pytest.skip(f"{c.system.name} unavailable: {e}")
        if c.knows_leader:
            c.leader(timeout=leader_timeout)
        return c

    def _system(self, system: str | System | None, config: str | os.PathLike[str] | None) -> System | None:
        if system is not None and config is not None:
            raise ValueError("cluster(): give system= or config=, not both")
        from harness import config as cluster_file
        from harness.systems import by_name
        from harness.systems.base import SystemError_

        sysobj: System | None
        try:
            if config is not None:
                sysobj = cluster_file.load(self._config_path(Path(config))).system
            elif isinstance(system, str):
                sysobj = by_name(system)
            else:
                sysobj = system
        except ImportError as e:  # a built-in adapter that is not there
            pytest.skip(f"system {system or config} unavailable: {e}")
        except SystemError_ as e:  # the system's own refusal (cannot import package.module:Class, ...)
            pytest.skip(str(e))
        if sysobj is None:
            return None
        reason = unavailable(sysobj)
        if reason:
            pytest.skip(reason)
        return sysobj

    def _config_path(self, p: Path) -> Path:
        if p.is_absolute():
            return p
        here = Path(self.request.path).parent / p
        return here if here.exists() else Path(self.request.config.invocation_params.dir) / p

    def workload(self, c: Cluster, **kw: Any) -> Workload:
        """Background clients on ``c`` (``Workload``'s arguments); the history is kept with the artefacts."""
        from harness.orchestration.workload import Workload

        w = Workload(c, **kw)
        self.histories[f"history{len(self.histories)}"] = w.history
        return w

    def record(self) -> History:
        """An empty History for the test's own operations, kept with the artefacts."""
        from harness.model.history import History

        h = History()
        self.histories[f"history{len(self.histories)}"] = h
        return h

    def save_artifacts(self) -> Path:
        dest = failed_dir(self.request.config) / _slug(self.request.node.nodeid, 120)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(self.clusters):
            c.save_events()
            for f in c.workdir.glob("*.log"):
                shutil.copy(f, dest / f"cluster{i}-{f.name}")
            for f in c.workdir.glob("events*.jsonl"):
                shutil.copy(f, dest / f"cluster{i}-{f.name}")
        for name, h in self.histories.items():
            h.write_jsonl(dest / f"{name}.jsonl")
        return dest


Lab = ClusterFactory  # the name raftnet's own tests use


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterFactory]:
    """Factory: ``c = cluster(3, system="etcd")`` -> a started Cluster (see the module docstring)."""
    lab = ClusterFactory(request, tmp_path)
    request.node.lab = lab
    try:
        yield lab
    finally:
        try:
            faults = sum(1 for c in lab.clusters for e in c.events if e.kind == "fault")
            ops = sum(len(h.operations()) for h in lab.histories.values())
            request.node.user_properties += [("faults", faults), ("operations", ops)]
            rep = request.node.stash.get(_reports_key, {}).get("call")
            if rep is not None and rep.failed:
                dest = lab.save_artifacts()
                request.node.add_report_section("teardown", "artifacts", f"node logs, events and histories: {dest}")
                request.node.user_properties.append(("artifacts", str(dest)))
                print(f"\nartifacts of the failed test: {dest}")
        finally:
            for c in lab.clusters:
                c.destroy()
