"""The SQL Superset's and Grafana's PostgreSQL support generate, sent verbatim.

Superset (superset/db_engine_specs/postgres.py, PostgresBaseEngineSpec): time grains are
`DATE_TRUNC('<grain>', {col})`, epoch columns become
`(timestamp 'epoch' + {col} * interval '1 second')`, and time range bounds are
`TO_TIMESTAMP('<dttm.isoformat(sep=" ", timespec="microseconds")>', 'YYYY-MM-DD HH24:MI:SS.US')`
or `TO_DATE('<date>', 'YYYY-MM-DD')`; SQL Lab cancels with
`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid='<pid>'`.

Grafana (pkg/tsdb/grafana-postgresql-datasource/macros.go): `$__timeFilter(c)` is
`c BETWEEN '<RFC3339Nano from>' AND '<RFC3339Nano to>'`, `$__timeGroup(c,'5m')` is
`floor(extract(epoch from c)/300)*300` (Go's %v prints 30 days as 2.592e+06),
`$__timeGroupAlias` adds `AS "time"`, `$__timeEpoch(c)` is `extract(epoch from c) as "time"`,
`$__unixEpochFilter(c)` is `c >= <from> AND c <= <to>` and `$__unixEpochGroup(c,'1m')` is
`floor((c)/60)*60`."""
import datetime as dt

import psycopg
import psycopg2
import pytest

UTC = dt.timezone.utc
# 2026-01-01 00:00:00 UTC as epoch seconds.
T0 = 1767225600


@pytest.fixture(scope="module")
def conn(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as c:
        c.execute("CREATE TABLE ticks (sym text NOT NULL, ts timestamp NOT NULL, "
                  "tstz timestamptz NOT NULL, day date NOT NULL, epoch_s bigint NOT NULL, "
                  "price double precision)")
        rows = []
        # One tick every 90 s for 3 hours, then one a month later.
        for i in range(120):
            t = T0 + 90 * i
            rows.append(("CL" if i % 2 else "GC", t, 70.0 + i))
        rows.append(("CL", T0 + 31 * 86400, 1000.0))
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO ticks VALUES (%s, %s, %s, %s, %s, %s)",
                [(s, dt.datetime.fromtimestamp(t, UTC).replace(tzinfo=None),
                  dt.datetime.fromtimestamp(t, UTC), dt.datetime.fromtimestamp(t, UTC).date(),
                  t, p) for s, t, p in rows])
        yield c


def one_col(conn, sql):
    return [r[0] for r in conn.execute(sql).fetchall()]


@pytest.mark.parametrize("grain,expected_buckets", [
    ("second", 120), ("minute", 120), ("hour", 3), ("day", 1), ("week", 1), ("month", 1),
    ("quarter", 1), ("year", 1)])
def test_superset_time_grains(conn, grain, expected_buckets):
    for col in ("ts", "tstz"):
        sql = (f"SELECT DATE_TRUNC('{grain}', {col}) AS __timestamp, sum(price) AS \"SUM(price)\" "
               f"FROM public.ticks "
               f"WHERE {col} >= TO_TIMESTAMP('2026-01-01 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US') "
               f"AND {col} < TO_TIMESTAMP('2026-01-02 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US') "
               f"GROUP BY DATE_TRUNC('{grain}', {col}) ORDER BY \"SUM(price)\" DESC LIMIT 10000")
        rows = conn.execute(sql).fetchall()
        assert len(rows) == expected_buckets, (grain, col, rows[:3])
        assert sum(r[1] for r in rows) == sum(70.0 + i for i in range(120))


def test_superset_week_and_quarter_start_where_postgres_puts_them(conn):
    # 2026-01-01 is a Thursday: PostgreSQL's week starts on Monday 2025-12-29.
    assert one_col(conn, "SELECT DATE_TRUNC('week', ts) FROM ticks LIMIT 1") == \
        [dt.datetime(2025, 12, 29)]
    assert one_col(conn, "SELECT DATE_TRUNC('quarter', ts) FROM ticks ORDER BY ts DESC LIMIT 1") == \
        [dt.datetime(2026, 1, 1)]


def test_superset_epoch_column_and_range_bounds(conn):
    sql = ("SELECT (timestamp 'epoch' + epoch_s * interval '1 second') AS __timestamp, price "
           "FROM ticks WHERE (timestamp 'epoch' + epoch_s * interval '1 second') >= "
           "TO_TIMESTAMP('2026-01-01 00:03:00.000000', 'YYYY-MM-DD HH24:MI:SS.US') "
           "ORDER BY __timestamp LIMIT 2")
    assert conn.execute(sql).fetchall() == [(dt.datetime(2026, 1, 1, 0, 3), 72.0),
                                            (dt.datetime(2026, 1, 1, 0, 4, 30), 73.0)]
    # Fractional seconds in the bound.
    sql = ("SELECT count(*) FROM ticks WHERE ts < "
           "TO_TIMESTAMP('2026-01-01 00:01:30.500000', 'YYYY-MM-DD HH24:MI:SS.US')")
    assert one_col(conn, sql) == [2]
    sql = ("SELECT count(*) FROM ticks WHERE day >= TO_DATE('2026-01-01', 'YYYY-MM-DD') "
           "AND day < TO_DATE('2026-02-01', 'YYYY-MM-DD')")
    assert one_col(conn, sql) == [120]


def test_superset_cancels_through_pg_stat_activity(eddy, conn):
    victim = psycopg2.connect(host="127.0.0.1", port=eddy.port, user="eddy", dbname="eddy")
    pid = victim.get_backend_pid()
    rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE pid='{pid}'").fetchall()
    assert rows == [(True,)]
    with pytest.raises(psycopg2.OperationalError):
        for _ in range(50):
            victim.cursor().execute("SELECT 1")
    victim.close()


def test_grafana_time_series_panel(conn):
    # SELECT $__timeGroupAlias(ts,'5m'), avg(price) AS "price" FROM ticks
    # WHERE $__timeFilter(ts) GROUP BY 1 ORDER BY 1
    for col in ("ts", "tstz"):
        sql = (f"SELECT floor(extract(epoch from {col})/300)*300 AS \"time\", avg(price) AS \"price\" "
               f"FROM ticks WHERE {col} BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T01:00:00Z' "
               f"GROUP BY 1 ORDER BY 1")
        rows = conn.execute(sql).fetchall()
        assert [int(r[0]) for r in rows] == [T0 + 300 * i for i in range(12)] + [T0 + 3600], col
        # 00:00, 00:01:30, 00:03, 00:04:30 fall in the first 5 minutes.
        assert rows[0][1] == (70.0 + 71 + 72 + 73) / 4


def test_grafana_interval_printed_by_go_as_exponent(conn):
    # $__timeGroup(ts,'30d') with Go's %v formatting of 2592000.
    sql = ("SELECT floor(extract(epoch from ts)/2.592e+06)*2.592e+06 AS \"time\", count(*) "
           "FROM ticks GROUP BY 1 ORDER BY 1")
    rows = conn.execute(sql).fetchall()
    assert [(int(t), n) for t, n in rows] == [(1765152000, 120), (1767744000, 1)]


def test_grafana_epoch_macros_and_to_timestamp(conn):
    # $__timeEpoch(ts), $__unixEpochFilter(epoch_s), $__unixEpochGroupAlias(epoch_s,'1h')
    sql = (f"SELECT extract(epoch from ts) as \"time\", price FROM ticks "
           f"WHERE epoch_s >= {T0} AND epoch_s <= {T0 + 180} ORDER BY 1")
    assert [(int(t), p) for t, p in conn.execute(sql).fetchall()] == \
        [(T0, 70.0), (T0 + 90, 71.0), (T0 + 180, 72.0)]
    sql = (f"SELECT floor((epoch_s)/3600)*3600 AS \"time\", count(*) FROM ticks "
           f"WHERE epoch_s >= {T0} AND epoch_s <= {T0 + 86400} GROUP BY 1 ORDER BY 1")
    assert [(int(t), n) for t, n in conn.execute(sql).fetchall()] == \
        [(T0, 40), (T0 + 3600, 40), (T0 + 7200, 40)]
    sql = f"SELECT to_timestamp(epoch_s) AS \"time\" FROM ticks WHERE epoch_s = {T0 + 90}"
    assert one_col(conn, sql) == [dt.datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)]


def test_grafana_version_and_timescaledb_probes(conn):
    # The data source settings page asks for the version and whether TimescaleDB is there.
    assert one_col(conn, "SELECT current_setting('server_version_num')::int/100 as version") \
        == [1600]
    assert one_col(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") == []
    assert one_col(conn, "SELECT current_setting('nope', true)") == [None]
    with pytest.raises(psycopg.errors.Error):
        conn.execute("SELECT current_setting('nope')")


def test_grafana_table_panel_with_several_statements(eddy):
    # Grafana sends a query string as is; several statements run in order.
    with psycopg2.connect(host="127.0.0.1", port=eddy.port, user="eddy", dbname="eddy") as c:
        cur = c.cursor()
        cur.execute("SET TimeZone = 'UTC'; SELECT sym AS metric, count(*) FROM ticks "
                    "WHERE ts BETWEEN '2026-01-01T00:00:00Z' AND '2026-01-01T03:00:00Z' "
                    "GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [("CL", 60), ("GC", 60)]


def test_pg_stat_activity_lists_sessions(eddy, conn):
    with psycopg.connect(eddy.dsn(), application_name="Superset") as other:
        pid = other.info.backend_pid
        rows = conn.execute("SELECT pid, usename, application_name, datname, backend_type, "
                            "backend_start IS NOT NULL, client_addr FROM pg_stat_activity "
                            "ORDER BY pid").fetchall()
        mine = [r for r in rows if r[0] == pid]
        assert mine == [(pid, "eddy", "Superset", "eddy", "client backend", True, "127.0.0.1")]
        assert conn.info.backend_pid in [r[0] for r in rows]
