"""node-postgres (`pg`, pinned in tests/clients/node/package.json) against the real eddy binary.

Each case in tests/clients/node/pg_cases.js runs in its own `node` process and asserts what
PostgreSQL answers: the simple query protocol, untyped parameters the server infers
(`$1::int + 1`, `id = $1` with a JS number and a string), named prepared statements, pg's
result type parsing (int8 as string, float8, bool, timestamptz as Date, jsonb parsed), an
error's SQLSTATE and BEGIN/COMMIT.

The first run installs `pg` into tests/clients/node/node_modules with `npm ci` (from the
committed package-lock.json); later runs reuse it. Skipped only when `node` is not installed.
"""
import json
import os
import shutil
import subprocess

import psycopg
import pytest

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")

SETUP = [
    "CREATE TABLE node_t (id bigint PRIMARY KEY, sym text, price double precision)",
    "INSERT INTO node_t VALUES (1, 'CL', 71.5), (2, 'GC', 2000.25), (3, 'SI', 24.5)",
    "CREATE TABLE node_types (id bigint PRIMARY KEY, x double precision, ok boolean, ts timestamptz, doc jsonb)",
    "INSERT INTO node_types VALUES "
    "(9007199254740993, 1.5, true, '2024-01-01 10:00:00.123+00', '{\"k\": \"v\", \"n\": [1, 2]}'), "
    "(-5, -0.25, false, '2024-06-30 23:59:59+00', '[]'), "
    "(7, NULL, NULL, NULL, NULL)",
]


def pinned_pg_version():
    with open(os.path.join(NODE_DIR, "package.json")) as f:
        return json.load(f)["dependencies"]["pg"]


def ensure_node_modules():
    """`npm ci` when node_modules lacks the pinned pg (idempotent)."""
    installed = os.path.join(NODE_DIR, "node_modules", "pg", "package.json")
    want = pinned_pg_version()
    if os.path.exists(installed):
        with open(installed) as f:
            if json.load(f)["version"] == want:
                return
    npm = shutil.which("npm")
    assert npm, "node is installed but npm is not: install npm (Debian: apt-get install npm)"
    out = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{out.stdout}\n{out.stderr}"
    with open(installed) as f:
        assert json.load(f)["version"] == want


@pytest.fixture(scope="module")
def node_env(eddy):
    if shutil.which("node") is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs npm)")
    ensure_node_modules()
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for sql in SETUP:
            conn.execute(sql)
    return dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(eddy.port), PGUSER="eddy", PGDATABASE="eddy",
                PGSSLMODE="disable")


def run_case(env, name):
    out = subprocess.run(["node", "pg_cases.js", name], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"node pg_cases.js {name} exited {out.returncode}:\n{out.stdout}{out.stderr}"
    assert out.stdout.strip() == f"ok {name}", out.stdout


CASES = [
    "simple_query",
    "integer_literal_int4",
    "param_cast_inferred",
    "param_cast_plus_literal",
    "int4_overflow",
    "point_query_number",
    "point_query_string",
    "named_prepared_statement",
    "result_types",
    "jsonb_parsed",
    "error_sqlstate",
    "transaction",
]

# What eddy gets wrong today; each case still asserts PostgreSQL's answer.
XFAIL = {}


def test_every_case_is_listed():
    if shutil.which("node") is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs npm)")
    ensure_node_modules()
    out = subprocess.run(["node", "pg_cases.js", "--list"], cwd=NODE_DIR, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == CASES


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n])) if n in XFAIL else n for n in CASES])
def test_node_pg(node_env, name):
    run_case(node_env, name)
