"""psycopg 3 against the real eddy binary: the extended protocol, server-side prepared
statements, binary cursors, executemany, transactions, cancel and connect-time settings."""
import datetime as dt
import decimal
import threading
import time

import psycopg
import pytest
from psycopg import errors, sql



@pytest.fixture(scope="module")
def trades(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, "
                     "px double precision, qty bigint, ok boolean, amt numeric(10,2), day date)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO trades VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [("CL", dt.datetime(2024, 1, 1, 10, 0), 70.0, 1, True, decimal.Decimal("12.34"),
                  dt.date(2024, 1, 1)),
                 ("CL", dt.datetime(2024, 1, 1, 10, 1), 71.5, 2, False, decimal.Decimal("0.50"),
                  dt.date(2024, 1, 1)),
                 ("GC", dt.datetime(2024, 1, 1, 10, 0, 30), 2000.25, None, None, None, None)])
    return "trades"


def test_connect_time_parameters(eddy):
    with psycopg.connect(eddy.dsn(), application_name="superset") as conn:
        info = conn.info
        assert info.parameter_status("server_version") == "16.6"
        assert info.server_version == 160006
        assert info.parameter_status("client_encoding") == "UTF8"
        assert info.parameter_status("DateStyle") == "ISO, MDY"
        assert info.parameter_status("integer_datetimes") == "on"
        assert info.parameter_status("standard_conforming_strings") == "on"
        assert info.parameter_status("TimeZone") == "UTC"
        assert info.parameter_status("application_name") == "superset"
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == info.backend_pid
        conn.execute("SET application_name = 'grafana'")
        assert info.parameter_status("application_name") == "grafana", "ParameterStatus on SET"


def test_parameters_and_types(eddy, trades):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT sym, ts, px, qty, ok, amt, day FROM trades WHERE qty >= %s ORDER BY qty",
            (1,)).fetchall()
        assert rows == [
            ("CL", dt.datetime(2024, 1, 1, 10, 0), 70.0, 1, True, decimal.Decimal("12.34"),
             dt.date(2024, 1, 1)),
            ("CL", dt.datetime(2024, 1, 1, 10, 1), 71.5, 2, False, decimal.Decimal("0.50"),
             dt.date(2024, 1, 1)),
        ]
        assert conn.execute("SELECT count(*) FROM trades WHERE sym = %s", ("GC",)).fetchone() == (1,)
        # A string parameter compared with a timestamp column.
        assert conn.execute("SELECT count(*) FROM trades WHERE ts > %s",
                            ("2024-01-01 10:00:10",)).fetchone() == (2,)
    # Text output of floats is PostgreSQL's (70, not 70.0).
    rc, out, err = eddy.psql("-Atc", "SELECT px FROM trades ORDER BY px")
    assert rc == 0, err
    assert out.split() == ["70", "71.5", "2000.25"]


def test_binary_cursor(eddy, trades):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT sym, ts, px, qty, ok, amt, day FROM trades ORDER BY sym, ts")
            rows = cur.fetchall()
            assert rows[0] == ("CL", dt.datetime(2024, 1, 1, 10, 0), 70.0, 1, True,
                               decimal.Decimal("12.34"), dt.date(2024, 1, 1))
            assert rows[2] == ("GC", dt.datetime(2024, 1, 1, 10, 0, 30), 2000.25, None, None,
                               None, None)
            assert [d.type_code for d in cur.description] == [25, 1114, 701, 20, 16, 1700, 1082]


def test_prepared_statements_after_repeated_runs(eddy, trades):
    with psycopg.connect(eddy.dsn(), autocommit=True, prepare_threshold=2) as conn:
        q = "SELECT count(*) FROM trades WHERE qty >= %s"
        for i in range(6):
            assert conn.execute(q, (1,)).fetchone() == (2,)
        # psycopg has now prepared it server-side, under a name.
        assert conn._prepared._names, "psycopg did not prepare the statement"
        assert conn.execute(q, (2,)).fetchone() == (1,)
        conn.execute("DEALLOCATE ALL")


def test_prepared_statements_read_current_data_and_clock(eddy):
    """A prepared statement's plan is optimized once and reused: each run must still see
    rows written since, bind its own parameters, and call stable functions afresh."""
    with psycopg.connect(eddy.dsn(), autocommit=True, prepare_threshold=0) as conn:
        conn.execute("CREATE TABLE prep_kv (id bigint PRIMARY KEY, v text NOT NULL)")
        point = "SELECT id, v FROM prep_kv WHERE id = %s"
        upper = "SELECT upper(v) FROM prep_kv WHERE id = %s"
        for i in range(1, 6):
            assert conn.execute(point, (i,)).fetchall() == [], f"id {i} before insert"
            conn.execute("INSERT INTO prep_kv VALUES (%s, %s)", (i, f"v{i}"))
            assert conn.execute(point, (i,)).fetchall() == [(i, f"v{i}")]
            assert conn.execute(upper, (i,)).fetchall() == [(f"V{i}",)]
        conn.execute("INSERT INTO prep_kv VALUES (3, 'three')")  # an upsert
        assert conn.execute(point, (3,)).fetchall() == [(3, "three")]
        for _ in range(3):
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.execute("SELECT 1 + 1, upper('a')").fetchone() == (2, "A")
        assert len({conn.execute("SELECT random()").fetchone()[0] for _ in range(4)}) == 4
        assert conn._prepared._names, "psycopg did not prepare the statements"
        clock = "SELECT clock_timestamp() < now() + interval '1 hour', now()"
        first = conn.execute(clock).fetchone()[1]
        time.sleep(0.05)
        for _ in range(3):
            conn.execute(clock)
        assert conn.execute(clock).fetchone()[1] > first, "now() frozen in a reused plan"
        # The same in the simple protocol: every statement has its own start time.
        simple = [conn.execute("SELECT now(), statement_timestamp()", prepare=False).fetchone()
                  for _ in range(2) if time.sleep(0.02) is None]
        assert simple[1][0] > simple[0][0], "now() frozen across statements"
        assert simple[0][0] == simple[0][1]


def test_unaliased_columns_are_named_as_postgresql_names_them(eddy, trades):
    q = ("SELECT count(*), 1, upper(sym), sym, avg(px) AS mean, '7'::int, max(qty) + 1 "
         "FROM trades GROUP BY sym ORDER BY sym")
    want = ["count", "?column?", "upper", "sym", "mean", "int4", "?column?"]
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for prepare in (False, True, True):
            cur = conn.execute(q, prepare=prepare)
            assert [d.name for d in cur.description] == want
            assert cur.fetchall()[0][:4] == (2, 1, "CL", "CL")


def test_result_columns_may_share_a_name(eddy, trades):
    """PostgreSQL allows two result columns one name (`qty` and `qty::int` are both `qty`)."""
    cases = [
        ("SELECT qty, qty::int FROM trades ORDER BY qty LIMIT 1", ["qty", "qty"], (1, 1)),
        ("SELECT count(*), count(*) FROM trades", ["count", "count"], (3, 3)),
        ("SELECT sym, trades.sym, upper(sym) FROM trades ORDER BY 1 LIMIT 1",
         ["sym", "sym", "upper"], ("CL", "CL", "CL")),
        ("SELECT * FROM (SELECT qty, qty::bigint FROM trades) s ORDER BY 1 LIMIT 1",
         ["qty", "qty"], (1, 1)),
        ("SELECT qty, qty FROM trades WHERE qty = 1 UNION ALL SELECT 1, 2",
         ["qty", "qty"], None),
    ]
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for q, names, first in cases:
            for prepare in (False, True):
                cur = conn.execute(q, prepare=prepare)
                assert [d.name for d in cur.description] == names, q
                rows = cur.fetchall()
                if first is not None:
                    assert rows[0] == first, q
                else:
                    assert sorted(rows) == [(1, 1), (1, 2)], q


def test_row_description_carries_type_sizes(eddy, trades):
    """RowDescription's typlen is pg_type.typlen, as PostgreSQL sends it (None: variable)."""
    q = ("SELECT qty, px, sym, ok, ts, day, amt, qty::int AS i4, qty::smallint AS i2, "
         "px::real AS f4, interval '1 day' FROM trades LIMIT 1")
    want = [8, 8, None, 1, 8, 4, None, 4, 2, 4, 16]
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for prepare in (False, True):
            cur = conn.execute(q, prepare=prepare)
            assert [d.internal_size for d in cur.description] == want


def test_transactions_and_aborted_state(eddy, trades):
    with psycopg.connect(eddy.dsn()) as conn:  # not autocommit: psycopg sends BEGIN
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (3,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT * FROM missing")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.commit()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_errors_carry_sqlstate(eddy, trades):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        with pytest.raises(errors.UndefinedColumn):
            conn.execute("SELECT nope FROM trades WHERE qty = %s", (1,))
        with pytest.raises(errors.SyntaxError):
            conn.execute("SELEC 1")
        with pytest.raises(errors.UndefinedFunction, match="no_such_fn"):
            conn.execute("SELECT no_such_fn(1)")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_and_statement_timeout(eddy):
    slow = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3"
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        threading.Timer(0.5, conn.cancel).start()
        started = time.time()
        with pytest.raises(errors.QueryCanceled):
            conn.execute(slow)
        assert time.time() - started < 20
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("SET statement_timeout = '300ms'")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300",)
        with pytest.raises(errors.QueryCanceled, match="statement timeout"):
            conn.execute(slow)
        conn.execute("RESET statement_timeout")
        assert conn.execute("SELECT %s::bigint + 1", (41,)).fetchone() == (42,)


def test_session_settings(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("SET extra_float_digits = 3")
        assert conn.execute("SHOW extra_float_digits").fetchone() == ("3",)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier("system")))
        assert conn.execute("SELECT current_schema()").fetchone() == ("system",)
        conn.execute("DISCARD ALL")
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert "PostgreSQL 16.6" in conn.execute("SELECT version()").fetchone()[0]


def test_timestamps_print_like_postgres_in_the_session_time_zone(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE stamps (n bigint, ts timestamp, tz timestamptz)")
        conn.execute("INSERT INTO stamps VALUES (1, '2024-01-01 00:00:00', '2024-01-01 00:00:00Z'), "
                     "(2, '2024-01-01 00:00:00.5', '2024-07-01 12:00:00.123456Z')")
        # Text results as psql shows them: what the server printed, untouched.
        raw = "SELECT ts, tz FROM stamps ORDER BY n"

        def text_rows():
            with conn.cursor() as cur:
                cur.execute(raw)
                # psycopg parses; read the wire text through the loader-less path.
                return [tuple(cur.pgresult.get_value(i, j).decode() for j in range(2))
                        for i in range(cur.pgresult.ntuples)]

        assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
        assert text_rows() == [("2024-01-01 00:00:00", "2024-01-01 00:00:00+00"),
                               ("2024-01-01 00:00:00.5", "2024-07-01 12:00:00.123456+00")]
        conn.execute("SET TimeZone = 'America/New_York'")
        assert conn.info.parameter_status("TimeZone") == "America/New_York"
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "America/New_York"
        assert text_rows() == [("2024-01-01 00:00:00", "2023-12-31 19:00:00-05"),
                               ("2024-01-01 00:00:00.5", "2024-07-01 08:00:00.123456-04")]
        # Text cast to timestamptz is local time in the session's zone, as in PostgreSQL.
        with conn.cursor() as cur:
            cur.execute("SELECT '2024-07-01 08:00:00'::timestamptz")
            assert cur.pgresult.get_value(0, 0).decode() == "2024-07-01 08:00:00-04"
        # psycopg decodes the text with the offset: the same instants.
        tz = conn.execute(raw).fetchall()[1][1]
        assert tz == dt.datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
        conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        assert text_rows()[0][1] == "2024-01-01 05:30:00+05:30"
        # Binary results carry the instant; the time zone does not change them.
        with conn.cursor(binary=True) as cur:
            cur.execute(raw)
            rows = cur.fetchall()
        assert rows[0][0] == dt.datetime(2024, 1, 1)
        assert rows[1][0] == dt.datetime(2024, 1, 1, 0, 0, 0, 500000)
        assert rows[1][1] == dt.datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SET TimeZone = 'Mars/Olympus_Mons'")
        conn.execute("RESET TimeZone")
        assert text_rows()[0][1] == "2024-01-01 00:00:00+00"


def test_computed_columns_are_described_with_postgresql_types(eddy):
    """JSON computed in a query is json (114) or jsonb (3802), so psycopg parses it as it
    would from PostgreSQL; `::json` keeps its text as written. Ranking window functions
    are bigint (ntile integer) rather than numeric, and `SELECT NULL` is text."""
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE wdocs (id bigint PRIMARY KEY, doc jsonb)")
        conn.execute("""INSERT INTO wdocs VALUES (1, '{"a": {"b": [1, 2]}}'), (2, '{"a": 3}')""")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("""SELECT doc -> 'a', doc #> '{a,b}', doc ->> 'a', '{"x":1}'::jsonb,
                                      '{"x":1}'::json -> 'x', json_build_object('k', id),
                                      jsonb_extract_path(doc, 'a')
                               FROM wdocs ORDER BY id""")
                assert [d.type_code for d in cur.description] == [3802, 3802, 25, 3802, 114, 114, 3802]
                assert cur.fetchall() == [
                    ({"b": [1, 2]}, [1, 2], '{"b": [1, 2]}', {"x": 1}, 1, {"k": 1}, {"b": [1, 2]}),
                    (3, None, "3", {"x": 1}, 1, {"k": 2}, 3),
                ], binary
            with conn.cursor(binary=binary) as cur:
                cur.execute("""SELECT row_number() OVER (ORDER BY id), rank() OVER (ORDER BY id),
                                      dense_rank() OVER (ORDER BY id), ntile(2) OVER (ORDER BY id),
                                      count(*) OVER (), NULL
                               FROM wdocs ORDER BY id""")
                assert [d.type_code for d in cur.description] == [20, 20, 20, 23, 20, 25]
                assert [d.name for d in cur.description] == [
                    "row_number", "rank", "dense_rank", "ntile", "count", "?column?"]
                assert cur.fetchall() == [(1, 1, 1, 1, 2, None), (2, 2, 2, 2, 2, None)], binary
        with conn.cursor() as cur:
            cur.execute("""SELECT '{"a":1,  "b":[2]}'::json::text""")
            assert cur.fetchone() == ('{"a":1,  "b":[2]}',)


def test_jsonb_is_parsed_in_text_and_binary(eddy):
    """psycopg loads jsonb (type 3802) into Python objects, from text and from binary (a
    version byte, then the JSON text)."""
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE pdocs (id bigint PRIMARY KEY, doc jsonb)")
        conn.execute("""INSERT INTO pdocs VALUES (1, '{"k": [1, 2], "s": "v"}'), (2, NULL)""")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT id, doc FROM pdocs ORDER BY id")
                assert cur.fetchall() == [(1, {"k": [1, 2], "s": "v"}), (2, None)], binary
                assert [d.type_code for d in cur.description] == [20, 3802]
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT 1 AS one, 2147483648 AS big")
                assert cur.fetchone() == (1, 2147483648)
                assert [d.type_code for d in cur.description] == [23, 20]
