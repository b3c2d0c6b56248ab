"""raftnet node: one Raft member per process (see node/raft for the core)."""
