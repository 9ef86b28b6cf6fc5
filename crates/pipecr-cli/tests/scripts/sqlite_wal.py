"""sqlite3 in WAL mode: a writer process inserts rows (n, n*n) one transaction each, a
reader process reads the table in transactions of its own and checks it is never broken
(rows 1..max, every square right, never fewer than before), printing "reader N" for each
hundred rows it has seen. The parent waits for both, then prints
"done [0, 0] ROWS SUM ok" (exit codes, rows, their sum, integrity_check). Used by tests/restore_shared_real.rs."""
import os
import sqlite3
import sys
import time

ROWS = int(sys.argv[2])
db = sys.argv[1]


def writer():
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    for i in range(1, ROWS + 1):
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t (n, sq) VALUES (?, ?)", (i, i * i))
        con.execute("COMMIT")
        time.sleep(0.005)
    con.close()


def reader():
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    last = 0
    while last < ROWS:
        con.execute("BEGIN")
        n, total, bad = con.execute(
            "SELECT count(*), coalesce(max(n), 0), count(*) FILTER (WHERE sq != n * n) FROM t"
        ).fetchone()
        con.execute("COMMIT")
        if n != total or bad or n < last:
            print("reader saw a broken table", n, total, bad, last, flush=True)
            os._exit(1)
        for h in range(last // 100 + 1, n // 100 + 1):
            print("reader", h * 100, flush=True)
        last = n
        time.sleep(0.002)
    con.close()


con = sqlite3.connect(db, isolation_level=None)
assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, sq INTEGER)")
con.close()
kids = []
for f in (writer, reader):
    pid = os.fork()
    if pid == 0:
        f()
        os._exit(0)
    kids.append(pid)
codes = [os.waitpid(k, 0)[1] for k in kids]
con = sqlite3.connect(db)
n, s, ok = con.execute("SELECT count(*), sum(n), (SELECT integrity_check FROM pragma_integrity_check) FROM t").fetchone()
print("done", codes, n, s, ok, flush=True)
