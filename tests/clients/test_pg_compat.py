"""PostgreSQL behaviours drivers and BI tools rely on, each through a real client:
varchar(n)/char(n) typmods and length checks, timestamptz text and date_trunc in the
session TimeZone, Describe of a FETCH portal, ARRAY(subquery) over no rows,
pg_stat_activity's per-session state, and integer and interval arithmetic."""
import asyncio
import datetime as dt
import warnings

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors
from sqlalchemy import text, types

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def names(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE names (id bigint NOT NULL, name varchar(20), code char(3), "
                     "note varchar, body text)")
        conn.execute("INSERT INTO names VALUES (1, 'ann', 'ab', 'x', 'y')")
    return "names"


def test_varchar_typmod_in_catalog_and_row_description(eddy, names):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.attname, a.atttypid, a.atttypmod, "
            "pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'names' AND a.attnum > 0 ORDER BY a.attnum").fetchall()
        # (atttypid is described as regtype by the catalog crate, so it arrives as text.)
        rows = [(n, int(t), m, f) for n, t, m, f in rows]
        assert rows == [("id", 20, -1, "bigint"),
                        ("name", 1043, 24, "character varying(20)"),
                        ("code", 1042, 7, "character(3)"),
                        ("note", 1043, -1, "character varying"),
                        ("body", 25, -1, "text")]
        cur = conn.execute("SELECT name, code, note, body, name AS n2, upper(name) FROM names")
        # RowDescription: type OID and typmod as PostgreSQL sends them for table columns.
        assert [(d.name, d.type_code, d.display_size) for d in cur.description][:2] == [
            ("name", 1043, 20), ("code", 1042, 3)]
        assert cur.description[2].type_code == 1043 and cur.description[2].display_size is None
        assert cur.description[3].type_code == 25
        assert cur.description[4].type_code == 1043 and cur.description[4].display_size == 20
        assert cur.description[5].type_code == 25, "an expression is text"
        # char(n) is blank-padded, as in PostgreSQL.
        assert cur.fetchone()[:2] == ("ann", "ab ")


def test_values_too_long_are_refused(eddy, names):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        with pytest.raises(errors.StringDataRightTruncation) as e:  # 22001
            conn.execute("INSERT INTO names (id, name) VALUES (2, %s)", ("x" * 21,))
        assert e.value.sqlstate == "22001"
        assert str(e.value).startswith("value too long for type character varying(20)")
        with pytest.raises(errors.StringDataRightTruncation):
            conn.execute("INSERT INTO names (id, code) VALUES (2, 'abcd')")
        # Characters, not bytes; trailing spaces past the length are cut, as PostgreSQL does.
        conn.execute("INSERT INTO names (id, name, code) VALUES (3, %s, 'xy   ')", ("é" * 20,))
        assert conn.execute("SELECT name, code FROM names WHERE id = 3").fetchone() == (
            "é" * 20, "xy ")
        # COPY goes through the same check.
        with pytest.raises(errors.StringDataRightTruncation):
            with conn.cursor().copy("COPY names (id, name) FROM STDIN") as copy:
                copy.write_row((4, "y" * 30))
        assert conn.execute("SELECT count(*) FROM names WHERE id = 4").fetchone() == (0,)


def test_sqlalchemy_reflects_varchar_length(eddy, names):
    eng = sa.create_engine(f"postgresql+psycopg2://eddy@127.0.0.1:{eddy.port}/eddy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cols = {c["name"]: c["type"] for c in sa.inspect(eng).get_columns("names")}
        assert isinstance(cols["name"], types.VARCHAR) and cols["name"].length == 20
        assert isinstance(cols["code"], types.CHAR) and cols["code"].length == 3
        assert isinstance(cols["note"], types.VARCHAR) and cols["note"].length is None
        assert isinstance(cols["body"], types.TEXT)
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def events(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE tz_events (id bigint NOT NULL, ts timestamptz NOT NULL)")
        conn.execute("INSERT INTO tz_events VALUES (1, '2026-01-02T03:00:00Z'), "
                     "(2, '2026-03-15T12:00:00Z')")
    return "tz_events"


def test_timestamptz_text_is_read_in_session_time_zone(eddy, events):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        new_york_midnight = dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
        got = conn.execute("SELECT timestamptz '2026-01-01 00:00:00'").fetchone()[0]
        assert got == new_york_midnight
        # Comparisons with text: 2026-01-01 22:00 New York is 2026-01-02 03:00 UTC.
        assert conn.execute("SELECT id FROM tz_events WHERE ts = '2026-01-01 22:00:00'"
                            ).fetchall() == [(1,)]
        assert conn.execute("SELECT count(*) FROM tz_events WHERE ts < '2026-01-01 22:00:01'"
                            ).fetchone() == (1,)
        # An explicit offset or Z is kept.
        assert conn.execute("SELECT id FROM tz_events WHERE ts = '2026-01-02 03:00:00Z'"
                            ).fetchall() == [(1,)]
        assert conn.execute("SELECT id FROM tz_events WHERE ts = '2026-01-02 04:00:00+01:00'"
                            ).fetchall() == [(1,)]
        # INSERT of text without an offset: local time in New York (EDT in July).
        conn.execute("INSERT INTO tz_events VALUES (3, '2026-07-01 08:00:00')")
        assert conn.execute("SELECT ts FROM tz_events WHERE id = 3").fetchone()[0] == \
            dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
        conn.execute("SET TimeZone = 'UTC'")
        assert conn.execute("SELECT timestamptz '2026-01-01 00:00:00'").fetchone()[0] == \
            dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def test_date_trunc_timestamptz_in_session_time_zone(eddy, events):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        cur = conn.execute(
            "SELECT date_trunc('day', ts), date_trunc('month', ts), date_trunc('week', ts) "
            "FROM tz_events WHERE id = 1")
        assert cur.description[0].type_code == 1184, "still timestamptz"
        day, month, week = cur.fetchone()
        # 2026-01-02 03:00 UTC is 2026-01-01 22:00 in New York.
        assert day == dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
        assert month == dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
        assert week == dt.datetime(2025, 12, 29, 5, 0, tzinfo=UTC)
        # Across the DST change: 2026-03-15 12:00 UTC is 08:00 EDT; the day began at
        # 04:00 UTC, and the month (March 1st, EST) at 05:00 UTC.
        day, month = conn.execute("SELECT date_trunc('day', ts), date_trunc('month', ts) "
                                  "FROM tz_events WHERE id = 2").fetchone()
        assert day == dt.datetime(2026, 3, 15, 4, 0, tzinfo=UTC)
        assert month == dt.datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
        # Grouping by it, as Grafana and Superset do.
        rows = conn.execute("SELECT date_trunc('day', ts) AS d, count(*) FROM tz_events "
                            "WHERE id < 3 GROUP BY 1 ORDER BY 1").fetchall()
        assert [r[1] for r in rows] == [1, 1]
        conn.execute("SET TimeZone = 'UTC'")
        assert conn.execute("SELECT date_trunc('day', ts) FROM tz_events WHERE id = 1"
                            ).fetchone()[0] == dt.datetime(2026, 1, 2, 0, 0, tzinfo=UTC)


def test_describe_of_fetch_portal_psycopg3(eddy, names):
    with psycopg.connect(eddy.dsn()) as conn:
        conn.execute("DECLARE c CURSOR FOR SELECT id, name, 1.5::float8 AS f FROM names "
                     "ORDER BY id")
        # The extended protocol: Parse, Bind, Describe portal, Execute.
        cur = conn.execute("FETCH 10 FROM c", prepare=True)
        assert [d.name for d in cur.description] == ["id", "name", "f"]
        assert [d.type_code for d in cur.description] == [20, 1043, 701]
        rows = cur.fetchall()
        assert rows[0] == (1, "ann", 1.5)
        cur = conn.cursor(binary=True)
        cur.execute("FETCH 10 FROM c")
        assert cur.fetchall() == [], "the first FETCH took every row"
        assert [d.name for d in cur.description] == ["id", "name", "f"]
        with pytest.raises(errors.InvalidCursorName):  # 34000
            conn.execute("FETCH 1 FROM nope", prepare=True)
        conn.rollback()


def test_describe_of_fetch_statement_asyncpg(eddy, names):
    async def main():
        c = await asyncpg.connect(host="127.0.0.1", port=eddy.port, user="eddy",
                                  database="eddy")
        try:
            async with c.transaction():
                await c.execute("DECLARE c CURSOR FOR SELECT id, name FROM names WHERE id = 1")
                stmt = await c.prepare("FETCH 1 FROM c")
                assert [a.name for a in stmt.get_attributes()] == ["id", "name"]
                assert [a.type.name for a in stmt.get_attributes()] == ["int8", "varchar"]
                assert [tuple(r) for r in await stmt.fetch()] == [(1, "ann")]
                assert await stmt.fetch() == []
        finally:
            await c.close()
    asyncio.run(main())


def test_array_of_no_rows_is_empty(eddy, names):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT ARRAY(SELECT id FROM names WHERE false)").fetchone() == ([],)
        assert conn.execute("SELECT ARRAY(SELECT id FROM names WHERE id = 1)").fetchone() == ([1],)
        # Correlated: one empty array per outer row without matches, never NULL.
        rows = conn.execute(
            "SELECT n.id, ARRAY(SELECT m.name FROM names m WHERE m.id = n.id + 100) "
            "FROM names n ORDER BY n.id").fetchall()
        assert rows and all(r[1] == [] for r in rows), rows


def test_pg_stat_activity_shows_other_sessions(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True, application_name="worker-7") as worker, \
            psycopg.connect(eddy.dsn(), autocommit=True, application_name="watcher") as watcher:
        worker.execute("SELECT 42 AS marker")
        worker_pid = worker.info.backend_pid
        cols = ("datid, datname, pid, usename, application_name, client_addr, client_port, "
                "backend_start, xact_start, query_start, state_change, state, query, backend_type")
        row = watcher.execute(f"SELECT {cols} FROM pg_stat_activity WHERE pid = %s",
                              (worker_pid,)).fetchone()
        (datid, datname, pid, usename, app, addr, port, backend_start, xact_start, query_start,
         state_change, state, query, backend_type) = row
        assert (datname, pid, usename, app) == ("eddy", worker_pid, "eddy", "worker-7")
        assert datid is not None and addr == "127.0.0.1" and port > 0
        assert (state, query, backend_type) == ("idle", "SELECT 42 AS marker", "client backend")
        assert xact_start is None, "idle outside a transaction"
        assert backend_start <= query_start <= state_change
        # The watcher sees itself running this very statement.
        me = watcher.execute("SELECT state, query, xact_start IS NOT NULL FROM pg_stat_activity "
                             "WHERE pid = pg_backend_pid()").fetchone()
        assert me == ("active", "SELECT state, query, xact_start IS NOT NULL FROM "
                      "pg_stat_activity WHERE pid = pg_backend_pid()", True)
        # A transaction left open.
        worker.execute("BEGIN")
        worker.execute("SELECT 1")
        state, query, xact = watcher.execute(
            "SELECT state, query, xact_start FROM pg_stat_activity WHERE pid = %s",
            (worker_pid,)).fetchone()
        assert (state, query) == ("idle in transaction", "SELECT 1") and xact is not None
        worker.execute("COMMIT")
        assert watcher.execute("SELECT state, xact_start FROM pg_stat_activity WHERE pid = %s",
                               (worker_pid,)).fetchone() == ("idle", None)


@pytest.fixture(scope="module")
def nums(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE nums (id bigint NOT NULL, i4 integer, i2 smallint, f float8)")
        conn.execute("INSERT INTO nums VALUES (1, 2, 3, 1.5), (9223372036854775807, NULL, 32767, NULL)")
    return "nums"


def test_integer_overflow_is_out_of_range(eddy, nums):
    """bigint and smallint arithmetic fails with 22003 as in PostgreSQL, never wraps."""
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for q, msg in [("SELECT id + 1 FROM nums", "bigint out of range"),
                       ("SELECT id * 2 FROM nums", "bigint out of range"),
                       ("SELECT 9223372036854775807 + 1", "bigint out of range"),
                       ("SELECT i2 + i2 FROM nums", "smallint out of range"),
                       ("SELECT 2147483647 + 1", "integer out of range")]:
            with pytest.raises(errors.NumericValueOutOfRange, match=msg):
                conn.execute(q)
        row = conn.execute("SELECT id - 1, i2 * 2::smallint, 1 + 1 FROM nums WHERE id = 1").fetchone()
        assert row == (0, 6, 2)
        assert [d.type_code for d in conn.execute("SELECT 1 + 1, i2 + i2 FROM nums WHERE id = 1").description] == [23, 21]


def test_interval_times_number(eddy, nums):
    """interval * number, number * interval and interval / number, NULLs kept, in text
    and binary results."""
    q = ("SELECT interval '1 day' * i4, i2 * interval '1 hour', interval '1 mon' * f, "
         "interval '1 hour' / 3, CASE WHEN i4 IS NULL THEN NULL ELSE interval '-1 day 2 hours' END "
         "FROM nums ORDER BY id")
    day, hour = dt.timedelta(days=1), dt.timedelta(hours=1)
    want = [(2 * day, 3 * hour, 45 * day, hour / 3, -day + 2 * hour),
            (None, 32767 * hour, None, hour / 3, None)]
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            assert conn.cursor(binary=binary).execute(q).fetchall() == want
        # The text PostgreSQL prints.
        conn.adapters.register_loader("interval", psycopg.types.string.TextLoader)
        row = conn.execute(q + " LIMIT 1").fetchone()
        assert row == ("2 days", "03:00:00", "1 mon 15 days", "00:20:00", "-1 days +02:00:00")
        assert conn.execute(
            "SELECT now() - interval '1 day' * 7 < now() - interval '6 days'").fetchone() == (True,)
        with pytest.raises(errors.DatetimeFieldOverflow):
            conn.execute("SELECT interval '1 mon' * 3000000000")

    async def binary():
        c = await asyncpg.connect(host="127.0.0.1", port=eddy.port, user="eddy", database="eddy")
        try:
            return [tuple(r) for r in await c.fetch(q)]
        finally:
            await c.close()
    assert asyncio.run(binary()) == want


def test_pg_typeof_names_types_as_postgres_does(eddy, nums, events):
    """pg_typeof(x) prints the type RowDescription reports, an int literal is integer."""
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_typeof(id), pg_typeof(i4), pg_typeof(i2), pg_typeof(f), pg_typeof(1), "
            "pg_typeof(3000000000), pg_typeof('a'), pg_typeof(i4 + 1), pg_typeof(now()), "
            "pg_typeof(true), pg_typeof(interval '1 day'), "
            "pg_typeof(DATE '2026-01-01') FROM nums WHERE id = 1").fetchone()
        assert row == ("bigint", "integer", "smallint", "double precision", "integer",
                       "bigint", "text", "integer", "timestamp with time zone", "boolean",
                       "interval", "date")
        # A cast says what it says; negative and array constants are typed as PostgreSQL does.
        assert conn.execute(
            "SELECT pg_typeof(1::bigint), pg_typeof(1), pg_typeof(-5), pg_typeof(ARRAY[1, 2]), "
            "pg_typeof(ARRAY[1, 3000000000])").fetchone() == (
                "bigint", "integer", "integer", "integer[]", "bigint[]")
        # The same through the extended protocol with a parameter.
        assert conn.execute("SELECT pg_typeof(%s::int2)", (1,), prepare=True).fetchone() == ("smallint",)
        assert conn.execute(f"SELECT pg_typeof(ts) FROM {events} LIMIT 1").fetchone() == (
            "timestamp with time zone",)


def test_correlated_subqueries_in_a_select_list(eddy):
    """A correlated scalar subquery over eddy's tables in a select list is evaluated per
    row (it used to answer NULL)."""
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE ord (id bigint NOT NULL, PRIMARY KEY (id))")
        conn.execute("CREATE TABLE item (ord bigint, v bigint)")
        conn.execute("INSERT INTO ord VALUES (1), (2), (3)")
        conn.execute("INSERT INTO item VALUES (1, 10), (1, 20), (2, 5)")
        q = ("SELECT o.id, (SELECT count(*) FROM item i WHERE i.ord = o.id) AS n, "
             "(SELECT sum(v) FROM item i WHERE i.ord = o.id) AS total FROM ord o ORDER BY o.id")
        want = [(1, 2, 30), (2, 1, 5), (3, 0, None)]
        assert conn.execute(q).fetchall() == want
        assert conn.execute(q, prepare=True).fetchall() == want
        # An uncorrelated one still answers once per row.
        assert conn.execute(
            "SELECT id, (SELECT max(v) FROM item) FROM ord ORDER BY id").fetchall() == [
                (1, 20), (2, 20), (3, 20)]
