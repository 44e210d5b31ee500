"""SQL cursors (psycopg2's named cursors, psql's FETCH_COUNT), pg_backend_pid() against
the BackendKeyData the driver got, and pg_cancel_backend / pg_terminate_backend."""
import threading
import time

import psycopg
import psycopg2
import pytest
from psycopg import errors


@pytest.fixture(scope="module")
def numbers(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE numbers (x bigint NOT NULL)")
        conn.execute("INSERT INTO numbers SELECT * FROM unnest(range(0, 2500))")
    return "numbers"


def pg2(eddy):
    return psycopg2.connect(host="127.0.0.1", port=eddy.port, user="eddy", dbname="eddy")


def test_psycopg2_named_cursor_pages_through_a_result(eddy, numbers):
    conn = pg2(eddy)
    try:
        cur = conn.cursor("pages")
        cur.itersize = 700  # FETCH FORWARD 700 FROM "pages", four times
        cur.execute("SELECT x FROM numbers ORDER BY x")
        assert [r[0] for r in cur] == list(range(2500))
        cur.close()
        conn.commit()
        # fetchmany / fetchone on a named cursor.
        cur = conn.cursor("one_by_one")
        cur.execute("SELECT x, x * 2 AS y FROM numbers WHERE x < 10 ORDER BY x")
        assert cur.fetchone() == (0, 0)
        assert cur.fetchmany(3) == [(1, 2), (2, 4), (3, 6)]
        assert len(cur.fetchall()) == 6
        cur.close()
        conn.rollback()
    finally:
        conn.close()


def test_cursors_keep_declared_types_and_postgres_names(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, code varchar(8), body jsonb)")
        conn.execute("INSERT INTO docs VALUES (1, 'a1', '{\"k\": [1, 2]}')")
    with psycopg.connect(eddy.dsn()) as conn:  # psycopg's server-side cursor: DECLARE + FETCH
        for binary in (False, True):
            with conn.cursor(name=f"docs_{int(binary)}", binary=binary) as cur:
                cur.execute("SELECT code, body, count(*) FROM docs GROUP BY code, body")
                row = cur.fetchone()
                assert [d.type_code for d in cur.description] == [1043, 3802, 20]
                assert [d.name for d in cur.description] == ["code", "body", "count"]
                assert row == ("a1", {"k": [1, 2]}, 1)
        conn.rollback()


def test_cursor_statements_and_errors(eddy, numbers):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        with pytest.raises(errors.NoActiveSqlTransaction):  # 25P01, as PostgreSQL
            conn.execute("DECLARE c CURSOR FOR SELECT 1")
        conn.execute("BEGIN")
        conn.execute("DECLARE c CURSOR FOR SELECT x FROM numbers ORDER BY x")
        cur = conn.execute("FETCH 2 FROM c")
        assert cur.fetchall() == [(0,), (1,)]
        assert cur.statusmessage == "FETCH 2"
        assert conn.execute("FETCH FORWARD 3 FROM c").fetchall() == [(2,), (3,), (4,)]
        assert conn.execute("FETCH NEXT FROM c").fetchall() == [(5,)]
        assert len(conn.execute("FETCH ALL FROM c").fetchall()) == 2494
        assert conn.execute("FETCH 5 FROM c").fetchall() == []
        conn.execute("CLOSE c")
        with pytest.raises(errors.InvalidCursorName):  # 34000
            conn.execute("FETCH 1 FROM c")
        conn.execute("ROLLBACK")
        # COMMIT closes cursors declared without HOLD, not those WITH HOLD.
        conn.execute("BEGIN")
        conn.execute("DECLARE held CURSOR WITH HOLD FOR SELECT x FROM numbers ORDER BY x")
        conn.execute("DECLARE gone CURSOR FOR SELECT 1")
        conn.execute("COMMIT")
        assert conn.execute("FETCH 1 FROM held").fetchall() == [(0,)]
        with pytest.raises(errors.InvalidCursorName):
            conn.execute("FETCH 1 FROM gone")
        conn.execute("CLOSE held")


def test_psql_fetch_count_uses_a_cursor(eddy, numbers):
    rc, out, err = eddy.psql("-v", "FETCH_COUNT=1000", "-A", "-t", "-c",
                             "SELECT x FROM numbers ORDER BY x")
    assert rc == 0, err
    assert out.split() == [str(i) for i in range(2500)]


def test_backend_pid_matches_backend_key_data(eddy):
    conn = pg2(eddy)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] == conn.get_backend_pid()
    finally:
        conn.close()
    with psycopg.connect(eddy.dsn()) as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == c.info.backend_pid


def test_terminate_backend_closes_that_connection(eddy):
    victim = pg2(eddy)
    victim.autocommit = True
    with psycopg.connect(eddy.dsn(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)",
                             (victim.get_backend_pid(),)).fetchone()[0] is True
        with pytest.raises(psycopg2.OperationalError):
            for _ in range(50):  # the close is asynchronous to the admin's statement
                victim.cursor().execute("SELECT 1")
                time.sleep(0.05)
        # An unknown pid is not an error, as on PostgreSQL.
        assert admin.execute("SELECT pg_terminate_backend(2147483000)").fetchone()[0] is False
        # The admin's own connection is unaffected.
        assert admin.execute("SELECT 1").fetchone()[0] == 1
    victim.close()


def test_cancel_backend_stops_the_running_statement(eddy, numbers):
    with psycopg.connect(eddy.dsn(), autocommit=True) as victim, \
            psycopg.connect(eddy.dsn(), autocommit=True) as admin:
        failure = {}

        def long_query():
            try:
                # The filter keeps the count from being read off exact row counts.
                victim.execute("SELECT count(*) FROM numbers a, numbers b, numbers c "
                               "WHERE a.x + b.x + c.x >= 0")
            except Exception as e:
                failure["error"] = e

        t = threading.Thread(target=long_query)
        t.start()
        time.sleep(1.0)
        assert admin.execute("SELECT pg_cancel_backend(%s)",
                             (victim.info.backend_pid,)).fetchone()[0] is True
        t.join(timeout=30)
        assert not t.is_alive()
        assert isinstance(failure.get("error"), errors.QueryCanceled)  # 57014
        # Cancel leaves the connection usable.
        assert victim.execute("SELECT 1").fetchone()[0] == 1
