"""64 concurrent psycopg connections for about 20 s (EDDY_SOAK_SECONDS), each mixing the
queries Superset and Grafana send with inserts of its own rows: the server stays up, no
statement fails, and every connection reads back exactly what it wrote."""
import datetime as dt
import os
import threading
import time

import psycopg

CONNECTIONS = 64
SECONDS = float(os.environ.get("EDDY_SOAK_SECONDS", "20"))


def worker(eddy, n, deadline, results):
    written = 0
    statements = 0
    try:
        with psycopg.connect(eddy.dsn(), autocommit=True, application_name=f"soak-{n}") as conn:
            base = dt.datetime(2026, 1, 1)
            while time.monotonic() < deadline:
                # An insert of 5 rows, sent as one prepared statement run 5 times.
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO soak VALUES (%s, %s, %s, %s)",
                        [(n, written + i, base + dt.timedelta(seconds=written + i),
                          float(written + i)) for i in range(5)])
                written += 5
                # What this connection wrote, read back exactly.
                count, total = conn.execute(
                    "SELECT count(*), sum(v) FROM soak WHERE conn = %s", (n,)).fetchone()
                assert count == written, (n, count, written)
                assert total == sum(range(written)), (n, total)
                # Grafana's time grouping and Superset's time grain over everything.
                conn.execute(
                    "SELECT floor(extract(epoch from ts)/60)*60 AS time, count(*) FROM soak "
                    "WHERE ts BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-02T00:00:00Z' "
                    "GROUP BY 1 ORDER BY 1").fetchall()
                conn.execute(
                    "SELECT DATE_TRUNC('minute', ts) AS __timestamp, max(v) FROM soak "
                    "GROUP BY DATE_TRUNC('minute', ts) ORDER BY 2 DESC LIMIT 1001").fetchall()
                # Catalog and session statements drivers send.
                conn.execute("SELECT pg_backend_pid(), current_schema(), version()").fetchone()
                conn.execute("SELECT c.relname FROM pg_catalog.pg_class c "
                             "WHERE c.relname = 'soak'").fetchall()
                assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
                statements += 8
        results[n] = ("ok", written, statements)
    except Exception as e:  # reported by the test below, with the connection that failed
        results[n] = ("error", repr(e), statements)


def test_64_connections_mixing_queries_and_inserts(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE soak (conn bigint NOT NULL, seq bigint NOT NULL, "
                     "ts timestamp NOT NULL, v double precision)")
    results = {}
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=worker, args=(eddy, n, deadline, results))
               for n in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)
    errors = {n: r for n, r in results.items() if r[0] != "ok"}
    assert not errors, errors
    assert len(results) == CONNECTIONS, "some connections never finished"
    assert eddy.proc.poll() is None, "eddy exited"
    written = sum(r[1] for r in results.values())
    assert all(r[1] > 0 for r in results.values())
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM soak").fetchone()[0] == written
        assert conn.execute("SELECT count(DISTINCT conn) FROM soak").fetchone()[0] == CONNECTIONS
