"""Arrow Flight SQL with real PyPI clients against the real eddy binary.

ADBC (adbc_driver_flightsql through the DBAPI: pandas/pyarrow results, parameters,
adbc_get_objects, adbc_get_table_schema, adbc_ingest), pyarrow.flight, errors, auth, and
results compared with psql's over pgwire.

    EDDY_BIN=target/debug/eddy .venv/bin/pytest tests/clients   (scripts/test.sh does this)
"""
import datetime as dt
import decimal
import subprocess

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as paflight
import pytest

from pgserver import Eddy as Server


class Eddy(Server):
    """eddy with its Flight SQL address; `psql` returns unaligned output of one query."""

    def __init__(self, config=None):
        super().__init__(config)
        self.pg_port = self.port
        self.flight = self.endpoints["flight"]
        self.uri = f"grpc://{self.flight}"

    def connect(self, **db_kwargs):
        return flightsql.connect(self.uri, db_kwargs=db_kwargs or None, autocommit=True)

    def psql(self, sql):
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "eddy", "-d", "eddy", "-X",
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout.rstrip("\n")


@pytest.fixture(scope="module")
def eddy():
    e = Eddy()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def trades(eddy):
    with eddy.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, "
                    "px double precision, qty bigint, ok boolean, amt numeric(10,2), day date, "
                    "PRIMARY KEY (sym, ts)) WITH (time_column = 'ts')")
        cur.execute("INSERT INTO trades VALUES "
                    "('CL', '2024-01-01 10:00:00', 70.5, 1, true, 12.34, '2024-01-01'), "
                    "('CL', '2024-01-01 10:01:00.250001', 71.25, 2, false, 0.5, '2024-01-01'), "
                    "('GC', '2024-01-01 10:00:30', 2000.125, NULL, NULL, NULL, NULL)")
    return "trades"


def pg_text(v):
    """A Python value as psql -At prints it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, float):
        # PostgreSQL prints whole floats without a fraction (71, not 71.0).
        return repr(v)[:-2] if repr(v).endswith(".0") else repr(v)
    if isinstance(v, dt.datetime):
        # PostgreSQL prints fractional seconds only when there are some, without
        # trailing zeros.
        text = v.strftime("%Y-%m-%d %H:%M:%S")
        return text + (f".{v.microsecond:06d}".rstrip("0") if v.microsecond else "")
    if isinstance(v, (dt.date, decimal.Decimal, int, str)):
        return str(v)
    raise TypeError(type(v))


def test_query_to_pyarrow_and_pandas(eddy, trades):
    with eddy.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT sym, ts, px, qty FROM trades ORDER BY sym, ts")
        table = cur.fetch_arrow_table()
        assert table.schema.field("ts").type == pa.timestamp("us")
        assert table.schema.field("px").type == pa.float64()
        assert table.num_rows == 3
        assert table.column("qty").to_pylist() == [1, 2, None]
        cur.execute("SELECT sym, sum(px) AS total FROM trades GROUP BY sym ORDER BY sym")
        df = cur.fetch_df()
        assert list(df["sym"]) == ["CL", "GC"]
        assert list(df["total"]) == [141.75, 2000.125]
        assert [d[0] for d in cur.description] == ["sym", "total"]


def test_results_equal_pgwire(eddy, trades):
    sql = "SELECT sym, ts, px, qty, ok, amt, day, px * qty AS notional FROM trades ORDER BY sym, ts"
    with eddy.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    flight_text = "\n".join("|".join(pg_text(v) for v in r) for r in rows)
    assert flight_text == eddy.psql(sql)


def test_parameters(eddy, trades):
    with eddy.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT sym, qty FROM trades WHERE sym = ? AND px > ? ORDER BY ts", ("CL", 71.0))
        assert cur.fetchall() == [("CL", 2)]
        cur.execute("SELECT count(*) FROM trades WHERE ts >= $1", (dt.datetime(2024, 1, 1, 10, 0, 30),))
        assert cur.fetchone() == (2,)
        cur.execute("CREATE TABLE params_t (id bigint, name text)")
        cur.executemany("INSERT INTO params_t VALUES (?, ?)", [(1, "a"), (2, "it's"), (3, None)])
        cur.execute("SELECT id, name FROM params_t ORDER BY id")
        assert cur.fetchall() == [(1, "a"), (2, "it's"), (3, None)]


def test_get_objects_and_table_schema(eddy, trades):
    with eddy.connect() as conn:
        objects = conn.adbc_get_objects(depth="all", catalog_filter="eddy").read_all().to_pylist()
        assert [c["catalog_name"] for c in objects] == ["eddy"]
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert {"public", "system"} <= set(schemas)
        tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
        assert tables["trades"]["table_type"] == "TABLE"
        cols = [c["column_name"] for c in tables["trades"]["table_columns"]]
        assert cols == ["sym", "ts", "px", "qty", "ok", "amt", "day"]
        schema = conn.adbc_get_table_schema("trades")
        assert schema.names == cols
        assert schema.field("amt").type == pa.decimal128(10, 2)
        assert not schema.field("sym").nullable
        assert "TABLE" in conn.adbc_get_table_types()
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "eddy"


def test_adbc_ingest(eddy):
    n = 200_000
    data = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "name": pa.array([f"n{i}" for i in range(n)], pa.string()),
        "ts": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i) for i in range(n)],
                       pa.timestamp("us")),
    })
    eddy.psql("CREATE TABLE ingest_t (id bigint NOT NULL, name text, ts timestamp)")
    with eddy.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("ingest_t", data, mode="append") == n
        cur.execute("SELECT count(*), count(DISTINCT name), max(ts) FROM ingest_t")
        assert cur.fetchone() == (n, n, dt.datetime(2024, 1, 1) + dt.timedelta(seconds=n - 1))
        # mode="create" makes the table from the Arrow schema.
        assert cur.adbc_ingest("ingest_new", data.slice(0, 10), mode="create") == 10
        assert eddy.psql("SELECT sum(id) FROM ingest_new") == "45"
        # Same validation as every write path: a NULL in a NOT NULL column rejects it all.
        bad = pa.table({"id": pa.array([1, None], pa.int64())})
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("ingest_t", bad, mode="append")
        assert 'row 2: null value in column "id" violates not-null constraint' in str(e.value)
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("no_such_table", bad, mode="append")
        assert 'relation "no_such_table" does not exist' in str(e.value)
    assert eddy.psql("SELECT count(*) FROM ingest_t") == str(n)


def test_errors_carry_status_and_psql_message(eddy, trades):
    cases = [
        ("SELEC 1", adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT),
        ("SELECT * FROM nope", adbc_driver_manager.AdbcStatusCode.NOT_FOUND),
        ("SELECT nope FROM trades", adbc_driver_manager.AdbcStatusCode.NOT_FOUND),
    ]
    with eddy.connect() as conn, conn.cursor() as cur:
        for sql, code in cases:
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.execute(sql)
                cur.fetchall()
            assert e.value.status_code == code, (sql, e.value)
            with pytest.raises(RuntimeError) as pg:
                eddy.psql(sql)
            psql_message = str(pg.value).split("ERROR:", 1)[1].strip().splitlines()[0]
            assert psql_message in str(e.value), (sql, str(e.value), psql_message)


def command_any(sql):
    """A CommandStatementQuery wrapped in google.protobuf.Any, encoded by hand."""
    def field(num, payload):
        out, n = bytearray([(num << 3) | 2]), len(payload)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out) + payload
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, field(1, sql.encode()))


def test_pyarrow_flight(eddy, trades):
    client = paflight.FlightClient(eddy.uri)
    actions = {a.type for a in client.list_actions()}
    assert "CreatePreparedStatement" in actions
    sql = "SELECT sym, px FROM trades ORDER BY sym, ts"
    info = client.get_flight_info(paflight.FlightDescriptor.for_command(command_any(sql)))
    assert info.schema.names == ["sym", "px"]
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.to_pydict() == {"sym": ["CL", "CL", "GC"], "px": [70.5, 71.25, 2000.125]}
    # NotFound arrives as pyarrow's KeyError-flavoured error.
    with pytest.raises(pa.ArrowKeyError) as e:
        client.get_flight_info(paflight.FlightDescriptor.for_command(command_any("SELECT * FROM nope")))
    assert 'relation "nope" does not exist' in str(e.value)


def test_auth_with_users():
    e = Eddy(config='[fe.users]\nann = "s3cret"\n')
    try:
        with e.connect(username="ann", password="s3cret") as conn, conn.cursor() as cur:
            cur.execute("SELECT 40 + 2")
            assert cur.fetchone() == (42,)
        with pytest.raises(adbc_driver_manager.Error) as err:
            with e.connect(username="ann", password="wrong") as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED
        with pytest.raises(adbc_driver_manager.Error) as err:
            with e.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        assert err.value.status_code == adbc_driver_manager.AdbcStatusCode.UNAUTHENTICATED

        # pyarrow.flight: basic auth handshake returns a bearer header used on later calls.
        client = paflight.FlightClient(e.uri)
        with pytest.raises(paflight.FlightUnauthenticatedError):
            client.authenticate_basic_token("ann", "wrong")
        header = client.authenticate_basic_token("ann", "s3cret")
        assert header[1].startswith(b"Bearer ")
        options = paflight.FlightCallOptions(headers=[header])
        info = client.get_flight_info(
            paflight.FlightDescriptor.for_command(command_any("SELECT 7 AS x")), options)
        assert client.do_get(info.endpoints[0].ticket, options).read_all().to_pydict() == {"x": [7]}
        with pytest.raises(paflight.FlightUnauthenticatedError):
            client.get_flight_info(paflight.FlightDescriptor.for_command(command_any("SELECT 1")))
    finally:
        e.stop()
