"""Orchestration: the clusters (namespace and 127.0.0.1), the workload, verify, check and the report."""
