"""asyncpg against the real eddy binary: it prepares every statement (Parse/Describe/Flush
before Sync), reads every result in binary, and fetches cursors in portal-sized pieces."""
import asyncio
import datetime as dt
import decimal

import asyncpg
import pytest



def run(coro):
    return asyncio.run(coro)


async def connect(eddy):
    return await asyncpg.connect(host="127.0.0.1", port=eddy.port, user="eddy", database="eddy")


@pytest.fixture(scope="module")
def trades(eddy):
    async def setup():
        c = await connect(eddy)
        await c.execute("CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, "
                        "px double precision, qty bigint, ok boolean, amt numeric(10,2), "
                        "day date, f4 real, i4 integer, i2 smallint)")
        await c.executemany(
            "INSERT INTO trades VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [("CL", dt.datetime(2024, 1, 1, 10, 0), 70.0, 1, True, decimal.Decimal("12.34"),
              dt.date(2024, 1, 1), 1.5, 10, 1),
             ("CL", dt.datetime(2024, 1, 1, 10, 1), 71.5, 2, False, decimal.Decimal("0.50"),
              dt.date(2024, 1, 2), 2.5, 20, 2),
             ("GC", dt.datetime(2024, 1, 1, 10, 0, 30), 2000.25, 3, None, None, None, None,
              None, None)])
        await c.close()
    run(setup())
    return "trades"


def test_binary_results_for_every_type(eddy, trades):
    async def go():
        c = await connect(eddy)
        rows = await c.fetch("SELECT sym, ts, px, qty, ok, amt, day, f4, i4, i2 FROM trades "
                             "ORDER BY ts")
        assert tuple(rows[0]) == ("CL", dt.datetime(2024, 1, 1, 10, 0), 70.0, 1, True,
                                  decimal.Decimal("12.34"), dt.date(2024, 1, 1), 1.5, 10, 1)
        assert tuple(rows[1])[:4] == ("GC", dt.datetime(2024, 1, 1, 10, 0, 30), 2000.25, 3)
        assert rows[1]["ok"] is None
        await c.close()
    run(go())


def test_parameter_and_result_types_are_reported(eddy, trades):
    async def go():
        c = await connect(eddy)
        st = await c.prepare("SELECT sym, px, qty FROM trades WHERE qty > $1 AND sym = $2")
        assert [t.name for t in st.get_parameters()] == ["int8", "text"]
        assert [(a.name, a.type.name) for a in st.get_attributes()] == [
            ("sym", "text"), ("px", "float8"), ("qty", "int8")]
        assert [tuple(r) for r in await st.fetch(1, "CL")] == [("CL", 71.5, 2)]
        assert [tuple(r) for r in await st.fetch(0, "GC")] == [("GC", 2000.25, 3)]
        assert await c.fetchval("SELECT $1::bigint * 2", 21) == 42
        await c.close()
    run(go())


def test_cursor_fetches_through_portal_row_limits(eddy, trades):
    async def go():
        c = await connect(eddy)
        async with c.transaction():
            seen = [r["qty"] async for r in c.cursor("SELECT qty FROM trades ORDER BY qty",
                                                     prefetch=2)]
            assert seen == [1, 2, 3]
            cur = await c.cursor("SELECT qty FROM trades ORDER BY qty")
            assert [r["qty"] for r in await cur.fetch(2)] == [1, 2]
            assert [r["qty"] for r in await cur.fetch(2)] == [3]
        await c.close()
    run(go())


def test_errors_and_transactions(eddy, trades):
    async def go():
        c = await connect(eddy)
        with pytest.raises(asyncpg.UndefinedTableError):
            await c.fetch("SELECT * FROM missing WHERE x = $1", 1)
        tr = c.transaction()
        await tr.start()
        with pytest.raises(asyncpg.UndefinedColumnError):
            await c.fetch("SELECT nope FROM trades")
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await c.fetch("SELECT 1")
        await tr.rollback()
        assert await c.fetchval("SELECT 1") == 1
        await c.close()
    run(go())


def test_settings_and_cancel_by_timeout(eddy):
    async def go():
        c = await connect(eddy)
        assert c.get_server_version().major == 16
        assert await c.fetchval("SHOW DateStyle") == "ISO, MDY"
        # asyncpg's own timeout cancels the query with a CancelRequest.
        with pytest.raises(asyncio.TimeoutError):
            await c.fetchval("SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) "
                             "WHERE x % 7 = 3", timeout=0.5)
        assert await c.fetchval("SELECT 1") == 1
        await c.close()
    run(go())


def test_jsonb_and_integer_literals_decode_as_on_postgres(eddy):
    """A jsonb column is described as jsonb (3802) and sent in binary with its version
    byte, which asyncpg strips; an integer literal that fits is int4."""
    async def go():
        c = await connect(eddy)
        await c.execute("CREATE TABLE docs (id bigint PRIMARY KEY, doc jsonb)")
        await c.execute("""INSERT INTO docs VALUES (1, '{"k": [1, 2]}'), (2, NULL)""")
        st = await c.prepare("SELECT id, doc FROM docs ORDER BY id")
        assert [a.type.name for a in st.get_attributes()] == ["int8", "jsonb"]
        rows = [tuple(r) for r in await st.fetch()]
        assert rows == [(1, '{"k": [1, 2]}'), (2, None)]
        st = await c.prepare("SELECT 1 AS one, 2147483648 AS big")
        assert [a.type.name for a in st.get_attributes()] == ["int4", "int8"]
        assert tuple(await st.fetchrow()) == (1, 2147483648)
        await c.close()
    run(go())
