"""raftnet harness: clusters of real node processes, faults, histories, checking."""
