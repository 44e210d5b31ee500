"""psql meta-commands against the real eddy binary: the catalog queries psql sends for
\\dt, \\d, \\dn and \\l, and its display commands."""
import pytest

from pgserver import Eddy


@pytest.fixture(scope="module")
def eddy():
    e = Eddy()
    rc, _, err = e.psql("-c", "CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, "
                        "px double precision, qty bigint)")
    assert rc == 0, err
    yield e
    e.stop()


def psql(eddy, *args):
    rc, out, err = eddy.psql(*args)
    assert rc == 0 and "ERROR" not in err, err
    return out


def test_list_tables(eddy):
    out = psql(eddy, "-c", r"\dt")
    assert "List of relations" in out
    line = next(l for l in out.splitlines() if " trades " in l)
    assert [f.strip() for f in line.split("|")][:3] == ["public", "trades", "table"]


def test_describe_table(eddy):
    out = psql(eddy, "-c", r"\d trades")
    assert 'Table "public.trades"' in out
    cols = {l.split("|")[0].strip(): l.split("|")[1].strip()
            for l in out.splitlines() if l.count("|") >= 2}
    assert cols["sym"] == "text"
    assert cols["ts"] == "timestamp without time zone"
    assert cols["px"] == "double precision"
    assert cols["qty"] == "bigint"


def test_list_schemas_and_databases(eddy):
    out = psql(eddy, "-c", r"\dn")
    assert "public" in out and "system" in out
    out = psql(eddy, "-c", r"\l")
    assert "eddy" in out and "List of databases" in out


def test_expanded_timing_and_multi_statement_lines(eddy):
    out = psql(eddy, "-c", r"\x", "-c", r"\timing", "-c", "SELECT 1 AS a; SELECT 71.0::double precision AS b")
    assert "Expanded display is on." in out
    assert "Timing is on." in out
    assert "a | 1" in out
    assert "b | 71" in out and "71.0" not in out
    assert "Time:" in out
