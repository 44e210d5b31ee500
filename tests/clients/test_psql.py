"""psql meta-commands against the real eddy binary: the catalog queries psql sends for
\\dt, \\d, \\dn and \\l, and its display commands."""
import psycopg
import pytest

from pgserver import Eddy


@pytest.fixture(scope="module")
def eddy():
    e = Eddy()
    rc, _, err = e.psql("-c", "CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, "
                        "px double precision, qty bigint)")
    assert rc == 0, err
    rc, _, err = e.psql("-c", "CREATE TABLE orders (order_id bigint PRIMARY KEY, "
                        "total numeric(12,2), doc jsonb)")
    assert rc == 0, err
    rc, _, err = e.psql("-c", "CREATE TABLE names (id bigint NOT NULL, name varchar(20), "
                        "code char(3))")
    assert rc == 0, err
    yield e
    e.stop()


def psql(eddy, *args):
    rc, out, err = eddy.psql(*args)
    assert rc == 0 and "ERROR" not in err, err
    return out


def rows(out):
    """The data rows of psql's aligned output, as lists of stripped fields."""
    return [[f.strip() for f in l.split("|")] for l in out.splitlines()
            if "|" in l and not l.lstrip().startswith(("Schema", "Name", "Column", "Role"))]


def test_list_tables(eddy):
    out = psql(eddy, "-c", r"\dt")
    assert "List of relations" in out
    line = next(l for l in out.splitlines() if " trades " in l)
    assert [f.strip() for f in line.split("|")][:3] == ["public", "trades", "table"]
    # Only what is on search_path: not system.*, pg_catalog or information_schema.
    assert {r[0] for r in rows(out)} == {"public"}, out
    assert {r[1] for r in rows(out)} == {"names", "orders", "trades"}, out
    out = psql(eddy, "-c", r"\dt system.*")
    assert {r[1] for r in rows(out)} == {"tables", "segments", "sources", "rejected", "rollups",
                                         "alerts", "alert_rules"}, out
    out = psql(eddy, "-c", r"\dtS")
    assert "pg_am " in out and "trades" in out


def test_describe_table(eddy):
    out = psql(eddy, "-c", r"\d trades")
    assert 'Table "public.trades"' in out
    cols = {l.split("|")[0].strip(): l.split("|")[1].strip()
            for l in out.splitlines() if l.count("|") >= 2}
    assert cols["sym"] == "text"
    assert cols["ts"] == "timestamp without time zone"
    assert cols["px"] == "double precision"
    assert cols["qty"] == "bigint"


def test_describe_table_with_primary_key(eddy):
    out = psql(eddy, "-c", r"\d orders")
    assert 'Table "public.orders"' in out
    cols = {r[0]: r[1:] for r in rows(out) if len(r) >= 5}
    assert cols["order_id"][:3] == ["bigint", "", "not null"], out
    assert cols["total"][0] == "numeric(12,2)"
    assert cols["doc"][0] == "jsonb"
    assert "Indexes:" in out and '"orders_pkey" PRIMARY KEY, btree (order_id)' in out
    out = psql(eddy, "-c", r"\d+ orders")
    assert "Storage" in out and "Description" in out
    assert '"orders_pkey" PRIMARY KEY, btree (order_id)' in out
    out = psql(eddy, "-c", r"\di")
    assert ["public", "orders_pkey", "index", "postgres", "orders"] in rows(out), out


def test_verbose_listings_show_sizes(eddy):
    rc, _, err = eddy.psql("-c", "INSERT INTO orders VALUES (1, 9.99, '{}'), (2, 5.00, NULL)")
    assert rc == 0, err
    out = psql(eddy, "-c", r"\dt+")
    orders = next(r for r in rows(out) if r[1] == "orders")
    # The BE's own figure for the table (memtable and segments), pg_size_pretty'd.
    assert orders[6].endswith(("bytes", "kB", "MB")) and orders[6] != "0 bytes", out
    out = psql(eddy, "-c", r"\di+")
    assert ["public", "orders_pkey", "index", "postgres", "orders"] == rows(out)[0][:5], out
    out = psql(eddy, "-c", r"\l+")
    assert next(r for r in rows(out) if r[0] == "eddy")[8].endswith(("bytes", "kB", "MB")), out
    out = psql(eddy, "-c", r"\d+")
    assert "orders" in out


def test_roles_and_functions(eddy):
    out = psql(eddy, "-c", r"\du")
    assert "List of roles" in out
    # Without [fe.users], the names sessions connect as; every eddy user is a superuser.
    eddy_role = next(r for r in rows(out) if r[0] == "eddy")
    assert "Superuser" in eddy_role[1], out
    out = psql(eddy, "-c", r"\df")
    assert "List of functions" in out
    # Built-in functions with their signatures.
    out = psql(eddy, "-c", r"\dfS length")
    assert ["pg_catalog", "length", "integer", "text", "func"] in rows(out), out


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


def test_describe_varchar_and_char(eddy):
    out = psql(eddy, "-c", r"\d names")
    cols = {r[0]: r[1:] for r in rows(out) if len(r) >= 5}
    assert cols["id"][:3] == ["bigint", "", "not null"], out
    assert cols["name"][0] == "character varying(20)", out
    assert cols["code"][0] == "character(3)", out


def titled(out, title):
    """The rows under a psql table titled `title`."""
    assert title in out, out
    return rows(out)


def test_types_privileges_and_schemas(eddy):
    # No user-defined types; the built-in ones with PostgreSQL's descriptions.
    assert titled(psql(eddy, "-c", r"\dT"), "List of data types") == []
    out = psql(eddy, "-c", r"\dTS integer")
    assert titled(out, "List of data types") == [
        ["pg_catalog", "integer", "-2 billion to 2 billion integer, 4-byte storage"]], out
    out = psql(eddy, "-c", r"\dn+")
    got = titled(out, "List of schemas")
    assert {r[0] for r in got} == {"public", "system"}, out
    assert all(len(r) == 4 for r in got), out


def test_privileges(eddy):
    # No GRANTs and no row security policies: PostgreSQL's answer for tables without
    # them (the policies come from pg_policy, which eddy keeps empty).
    out = psql(eddy, "-c", r"\dp")
    got = titled(out, "Access privileges")
    assert ["public", "names", "table", "", "", ""] in got, out
    assert {r[1] for r in got} == {"names", "orders", "trades"}, out
    out = psql(eddy, "-c", r"\dp orders")
    assert titled(out, "Access privileges") == [["public", "orders", "table", "", "", ""]], out
    # The policies column is the empty string PostgreSQL's array_to_string('{}') gives,
    # not NULL.
    out = psql(eddy, "-At", "-P", "null=(null)", "-c",
               "SELECT c.relname, pg_catalog.array_to_string(ARRAY(SELECT polname || "
               "pg_catalog.array_to_string(ARRAY(SELECT rolname FROM pg_catalog.pg_roles "
               "WHERE oid = ANY (polroles) ORDER BY 1), ', ') FROM pg_catalog.pg_policy pol "
               "WHERE polrelid = c.oid), E'\\n') AS p FROM pg_catalog.pg_class c "
               "WHERE c.relname = 'names'")
    assert out == "names|\n", out


def test_event_triggers_descriptions_conversions_and_operators(eddy):
    assert titled(psql(eddy, "-c", r"\dy"), "List of event triggers") == []
    # No comments on eddy's objects (no COMMENT ON).
    assert titled(psql(eddy, "-c", r"\dd"), "Object descriptions") == []
    assert titled(psql(eddy, "-c", r"\dc"), "List of conversions") == []
    out = psql(eddy, "-c", r"\dcS utf8_to_iso_8859_1")
    assert titled(out, "List of conversions") == [
        ["pg_catalog", "utf8_to_iso_8859_1", "UTF8", "LATIN1", "yes"]], out
    assert titled(psql(eddy, "-c", r"\do"), "List of operators") == []
    out = psql(eddy, "-c", r"\doS +")
    got = titled(out, "List of operators")
    assert ["pg_catalog", "+", "bigint", "bigint", "bigint", "add"] in got, out
    assert ["pg_catalog", "+", "date", "integer", "date", "add"] in got, out


def test_show_function_definition(eddy):
    out = psql(eddy, "-c", r"\sf now")
    assert out == ("CREATE OR REPLACE FUNCTION pg_catalog.now()\n"
                   " RETURNS timestamp with time zone\n"
                   " LANGUAGE internal\n"
                   " STABLE PARALLEL SAFE STRICT\n"
                   "AS $function$now$function$\n"), out
    out = psql(eddy, "-c", r"\sf pg_backend_pid")
    assert out == ("CREATE OR REPLACE FUNCTION pg_catalog.pg_backend_pid()\n"
                   " RETURNS integer\n"
                   " LANGUAGE internal\n"
                   " STABLE PARALLEL RESTRICTED STRICT\n"
                   "AS $function$pg_backend_pid$function$\n"), out
    # An aggregate has no definition, as in PostgreSQL.
    rc, _, err = eddy.psql("-c", r"\sf bool_and")
    assert rc != 0 and '"bool_and" is an aggregate function' in err, err
    # A name several functions share needs its argument types, as in PostgreSQL.
    rc, _, err = eddy.psql("-c", r"\sf date_trunc")
    assert rc != 0 and 'more than one function named "date_trunc"' in err, err
    rc, _, err = eddy.psql("-c", r"\sf no_such_function")
    assert rc != 0 and 'function "no_such_function" does not exist' in err, err


def test_show_function_definition_by_signature(eddy):
    # With an argument list psql looks the function up as
    # '<name>(<args>)'::pg_catalog.regprocedure: the one built-in with exactly those
    # argument types, whichever way SQL spells them.
    out = psql(eddy, "-c", r"\sf now()")
    assert out.startswith("CREATE OR REPLACE FUNCTION pg_catalog.now()\n"), out
    out = psql(eddy, "-c", r"\sf date_trunc(text, timestamp with time zone)")
    assert out == ("CREATE OR REPLACE FUNCTION pg_catalog.date_trunc(text, timestamp with time zone)\n"
                   " RETURNS timestamp with time zone\n"
                   " LANGUAGE internal\n"
                   " STABLE PARALLEL SAFE STRICT\n"
                   "AS $function$timestamptz_trunc$function$\n"), out
    out = psql(eddy, "-c", r"\sf pg_catalog.date_trunc(text, interval)")
    assert out.startswith("CREATE OR REPLACE FUNCTION pg_catalog.date_trunc(text, interval)\n"), out
    assert "$function$interval_trunc$function$" in out, out
    out = psql(eddy, "-c", r"\sf length(character(3))")
    assert out.startswith("CREATE OR REPLACE FUNCTION pg_catalog.length(character)\n"), out
    assert "$function$bpcharlen$function$" in out, out
    # No such signature: PostgreSQL's error, with the text as given.
    rc, _, err = eddy.psql("-c", r"\sf now(int)")
    assert rc != 0 and 'function "now(int)" does not exist' in err, err
    rc, _, err = eddy.psql("-c", r"\sf length(nosuchtype)")
    assert rc != 0 and 'type "nosuchtype" does not exist' in err, err


def test_regprocedure_errors_carry_sqlstates(eddy):
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        oid = conn.execute("SELECT 'length(text)'::pg_catalog.regprocedure::pg_catalog.oid").fetchone()[0]
        assert oid == 1317
        for sql, state, message in [
            ("SELECT 'now(int)'::regprocedure::oid", "42883", 'function "now(int)" does not exist'),
            ("SELECT 'no_such_function()'::regprocedure::oid", "42883",
             'function "no_such_function()" does not exist'),
            ("SELECT 'now(nosuchtype)'::regprocedure::oid", "42704", 'type "nosuchtype" does not exist'),
        ]:
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            assert e.value.sqlstate == state, (sql, e.value)
            assert e.value.diag.message_primary == message, (sql, e.value)
