"""SQLAlchemy's postgresql dialect with psycopg2 (Superset's path) against the real eddy
binary: engine first-connect, ping, Inspector and the statements SQL Lab sends."""
import warnings

import pytest
import sqlalchemy as sa
from sqlalchemy import text, types



@pytest.fixture(scope="module")
def engine(eddy):
    eng = sa.create_engine(f"postgresql+psycopg2://eddy@127.0.0.1:{eddy.port}/eddy")
    with eng.begin() as c:
        c.execute(text("CREATE TABLE trades (sym text NOT NULL, ts timestamptz NOT NULL, "
                       "px double precision, qty bigint, amt numeric(10,2), day date, "
                       "ok boolean, f4 real, i4 integer, i2 smallint, PRIMARY KEY (sym, ts))"))
        c.execute(text("INSERT INTO trades (sym, ts, px, qty) VALUES "
                       "('CL', '2026-01-01T00:00:00Z', 70, 1), ('GC', '2026-01-01T00:01:00Z', 2000.5, 2)"))
    yield eng
    eng.dispose()


def test_first_connect_and_ping(engine):
    with engine.connect() as c:
        # version() parsed by SQLAlchemy's regex; current_schema(); the hstore probe ran.
        assert engine.dialect.server_version_info[:2] == (16, 6)
        assert engine.dialect.default_schema_name == "public"
        assert c.execute(text("show standard_conforming_strings")).scalar() == "on"
        assert c.execute(text("show transaction isolation level")).scalar() == "read committed"
        assert c.execute(text("SELECT pg_backend_pid()")).scalar() > 0
    # The pool pings a connection when it checks it out (pool_pre_ping).
    raw = engine.raw_connection()
    try:
        assert engine.dialect.do_ping(raw.dbapi_connection)
    finally:
        raw.close()


def test_inspector_tables_and_columns(engine):
    insp = sa.inspect(engine)
    assert {"public", "system"} <= set(insp.get_schema_names())
    assert "trades" in insp.get_table_names()
    assert insp.get_view_names() == []
    assert insp.has_table("trades")
    assert not insp.has_table("missing")
    with warnings.catch_warnings():
        # "did not recognize type" would be a warning: make it fail the test.
        warnings.simplefilter("error")
        cols = {c["name"]: c["type"] for c in insp.get_columns("trades")}
    expected = {
        "sym": types.TEXT, "ts": types.TIMESTAMP, "px": types.DOUBLE_PRECISION,
        "qty": types.BIGINT, "amt": types.NUMERIC, "day": types.DATE, "ok": types.BOOLEAN,
        "f4": types.REAL, "i4": types.INTEGER, "i2": types.SMALLINT,
    }
    assert list(cols) == list(expected)
    for name, t in expected.items():
        assert isinstance(cols[name], t), (name, cols[name])
    assert cols["ts"].timezone is True
    assert insp.get_foreign_keys("trades") == []
    assert insp.get_table_comment("trades") == {"text": None}


def test_sql_lab_statements(engine):
    with engine.connect() as c:
        c.execute(text("set search_path = public"))
        rows = c.execute(text("SELECT sym, px FROM trades ORDER BY sym LIMIT 1001")).all()
        assert rows == [("CL", 70.0), ("GC", 2000.5)]
        # Bound parameters go through psycopg2's client-side interpolation.
        assert c.execute(text("SELECT count(*) FROM trades WHERE qty >= :q"), {"q": 2}).scalar() == 1


def test_inspector_keys_nullability_and_typmods(engine):
    with engine.begin() as c:
        c.execute(text("CREATE TABLE orders (order_id bigint PRIMARY KEY, region text NOT NULL, "
                       "total numeric(12,2), doc jsonb, note text)"))
        c.execute(text("CREATE TABLE pairs (a text NOT NULL, b bigint NOT NULL, v double precision, "
                       "PRIMARY KEY (b, a))"))
    insp = sa.inspect(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cols = {c["name"]: c for c in insp.get_columns("orders")}
    assert [cols[n]["nullable"] for n in ("order_id", "region", "total", "doc", "note")] == \
        [False, False, True, True, True]
    assert isinstance(cols["total"]["type"], types.NUMERIC)
    assert (cols["total"]["type"].precision, cols["total"]["type"].scale) == (12, 2)
    assert isinstance(cols["doc"]["type"], sa.dialects.postgresql.JSONB)

    assert insp.get_pk_constraint("orders") == {
        "constrained_columns": ["order_id"], "name": "orders_pkey", "comment": None,
        "dialect_options": {"postgresql_include": []}}
    # Key columns in key order, not table order.
    assert insp.get_pk_constraint("pairs")["constrained_columns"] == ["b", "a"]
    assert insp.get_pk_constraint("trades")["constrained_columns"] == ["sym", "ts"]
    # A primary key's index is not reported as an index (as on PostgreSQL), and eddy has
    # no other indexes, unique or foreign key constraints.
    assert insp.get_indexes("orders") == []
    assert insp.get_unique_constraints("orders") == []
    assert insp.get_foreign_keys("orders") == []
    assert insp.get_check_constraints("orders") == []
    # A table without a key.
    with engine.begin() as c:
        c.execute(text("CREATE TABLE nokey (x bigint)"))
    assert insp.get_pk_constraint("nokey")["constrained_columns"] == []
    # Reflecting a whole table runs all of the above.
    t = sa.Table("orders", sa.MetaData(), autoload_with=engine)
    assert [c.name for c in t.primary_key.columns] == ["order_id"]
    assert t.c.region.nullable is False


def test_catalog_views_of_keys(engine):
    with engine.connect() as c:
        assert c.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders'")).all() == [
            ("orders_pkey", "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (order_id)")]
        assert c.execute(text(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'pairs'::regclass")).all() == [("pairs_pkey", "p", "PRIMARY KEY (b, a)")]
