"""A child that commits numbered rows into a SQLite WAL database and prints
each number once its commit returned: ``python sqlite_writer.py DB FULL|OFF``.
``python sqlite_writer.py DB count`` prints ``ROWS INTEGRITY`` instead.

The test SIGKILLs it and cuts the power at some point; every printed number
is a transaction SQLite acknowledged. Both run inside the mount namespace:
SQLite resolves symbolic links in a database path, so /proc/PID/root/...
from outside would lead it to the host's empty directory.
"""

import os
import sqlite3
import sys


def main() -> None:
    db, sync = sys.argv[1], sys.argv[2]
    if sync == "count":
        if not os.path.exists(db):
            print("0 no-database", flush=True)
            return
        con = sqlite3.connect(db)
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        try:
            rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        except sqlite3.OperationalError:
            rows = 0  # the table itself was lost
        print(f"{rows} {ok}", flush=True)
        return
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("PRAGMA wal_autocheckpoint=50")  # checkpoints (and their syncs) happen during the run
    con.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, pad TEXT)")
    # SQLite syncs the directory after creating the WAL, never after creating the
    # database file itself: an application must (the node does, after creating raft.db).
    d = os.open(os.path.dirname(os.path.abspath(db)), os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    n = con.execute("SELECT coalesce(max(n), 0) FROM t").fetchone()[0]
    print(f"start {n}", flush=True)
    while True:
        n += 1
        con.execute("BEGIN")
        con.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * (n % 3000)))
        con.execute("COMMIT")
        print(n, flush=True)


if __name__ == "__main__":
    main()
