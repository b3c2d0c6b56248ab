"""Undo what crashed runs left behind: processes, namespaces, links, allocations.

``clean`` works from the allocation files (see ``alloc``) and from our
naming pattern (see ``topology``):

1. every allocation whose owner is gone (exited, zombie, or its pid now
   names another process) loses the processes inside its namespaces
   (SIGKILL), its namespaces (their rules, bridge and veths go with them),
   its root-side control link, and finally its allocation file;
   allocations of live owners are left alone (unless ``only_dead_owners``
   is False);
2. namespaces and root-side links that carry a slot with no allocation
   file at all (a crash between record and create cannot make one, since
   the record comes first, but a hand-made or half-removed one can) are
   removed the same way.

The orphan sweep judges against one base dir: do not sweep with a private
``RAFTNET_RUN_DIR`` while clusters recorded under another base dir run
(pass ``sweep_orphans=False``). Idempotent: a second run finds nothing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.lab import alloc, netns
from harness.model import topology


@dataclass
class CleanReport:
    """What ``clean`` removed, and what it kept."""

    slots: list[int] = field(default_factory=list)  # slots torn down
    kept: list[int] = field(default_factory=list)  # slots of live owners, untouched
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    allocations: list[int] = field(default_factory=list)  # allocation files removed
    errors: list[str] = field(default_factory=list)

    @property
    def removed_anything(self) -> bool:
        return bool(self.slots or self.netns or self.links or self.pids or self.allocations)

    def summary(self) -> str:
        """One line for the CLI."""
        parts = [
            f"{len(self.slots)} cluster(s) removed",
            f"{len(self.pids)} process(es) killed",
            f"{len(self.netns)} namespace(s)",
            f"{len(self.links)} link(s)",
            f"{len(self.allocations)} allocation(s)",
            f"{len(self.kept)} live cluster(s) kept",
        ]
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): " + "; ".join(self.errors))
        return ", ".join(parts)


def _tear_down(slot: int, report: CleanReport) -> bool:
    try:
        done = netns.destroy_cluster_net(topology.Topology(slot, ()))
    except Exception as e:  # keep going with the other slots; the file stays for a retry
        report.errors.append(f"slot {slot}: {type(e).__name__}: {e}")
        return False
    report.slots.append(slot)
    report.netns.extend(done.netns)
    report.links.extend(done.links)
    report.pids.extend(done.pids)
    return True


def _remove_stale_temp_files(base: Path) -> None:
    """Drop ``<slot>.tmp<pid>`` files of writers that died mid-write."""
    clusters = base / "clusters"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(clusters):
            stem, _, pid = name.partition(".tmp")
            if pid.isdigit() and stem.isdigit() and alloc.process_create_time(int(pid)) is None:
                with contextlib.suppress(FileNotFoundError):
                    (clusters / name).unlink()


def clean(
    base_dir: str | os.PathLike[str] | None = None,
    only_dead_owners: bool = True,
    sweep_orphans: bool = True,
) -> CleanReport:
    """Remove the clusters of dead owners (all clusters if not
    ``only_dead_owners``) and, if ``sweep_orphans``, unrecorded leftovers."""
    report = CleanReport()
    with alloc.lock(base_dir) as base:
        _remove_stale_temp_files(base)
        allocations = alloc.list_allocations(base)
        for a in allocations:
            if only_dead_owners and alloc.owner_alive(a):
                report.kept.append(a.slot)
                continue
            if _tear_down(a.slot, report):
                alloc.remove_record(base, a.slot)
                report.allocations.append(a.slot)
        if sweep_orphans:
            recorded = {a.slot for a in allocations}
            names = [*netns.list_netns(), *netns.root_links()]
            orphans = {s for s in map(topology.slot_of_name, names) if s is not None} - recorded
            for slot in sorted(orphans):
                _tear_down(slot, report)
    return report
