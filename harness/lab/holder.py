"""A do-nothing process that owns a CLI cluster's allocation while it is up.

``raftnet up`` starts it detached and records it as the owner, so
``raftnet clean`` leaves the cluster alone until ``raftnet down`` stops it
(or it dies, which marks the cluster as left over).
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
