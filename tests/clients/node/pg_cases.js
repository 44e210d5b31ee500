// node-postgres (pg) cases against a PostgreSQL-wire server, one case per run:
//
//   PGHOST=127.0.0.1 PGPORT=5433 PGUSER=eddy PGDATABASE=eddy node pg_cases.js <case>
//
// tests/clients/test_node_pg.py creates the tables (node_t, node_types) and runs every case
// against eddy. Each case asserts what PostgreSQL itself answers; exit code 0 means it passed,
// 1 that an assertion or query failed (the error, with its SQLSTATE, is printed), 2 a usage error.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

async function withClient(fn) {
  // Connection settings come from the standard PG* variables.
  const client = new Client({ application_name: 'eddy-node-pg-tests' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const CASES = {
  // No values: pg sends a simple Query message.
  async simple_query(c) {
    const r = await c.query("SELECT 'x' AS s, sym, price FROM node_t WHERE id = 1");
    assert.equal(r.command, 'SELECT');
    assert.equal(r.rowCount, 1);
    assert.deepEqual(r.rows, [{ s: 'x', sym: 'CL', price: 71.5 }]);
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]), [['s', 25], ['sym', 25], ['price', 701]]);
    // Several statements in one simple query: pg returns one result per statement.
    const multi = await c.query("SELECT 'a' AS a; SELECT sym AS b FROM node_t WHERE id = 2");
    assert.ok(Array.isArray(multi), 'one result per statement');
    assert.deepEqual(multi.map((m) => m.rows), [[{ a: 'a' }], [{ b: 'GC' }]]);
  },

  // `SELECT 1` is int4 in PostgreSQL, which pg turns into a JS number.
  async integer_literal_int4(c) {
    const r = await c.query('SELECT 1 AS one');
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]), [['one', 23]]);
    assert.deepEqual(r.rows, [{ one: 1 }]);
  },

  // pg sends every parameter as text with type OID 0: the server infers it from `$1::int`.
  async param_cast_inferred(c) {
    const r = await c.query('SELECT $1::int AS n', [41]);
    assert.deepEqual(r.rows, [{ n: 41 }]);
    assert.equal(r.fields[0].dataTypeID, 23, '$1::int is int4');
    const s = await c.query('SELECT $1::int + $2::int AS n', ['41', 1]);
    assert.deepEqual(s.rows, [{ n: 42 }]);
    assert.equal(s.fields[0].dataTypeID, 23, 'int4 + int4 is int4');
  },

  // `$1::int + 1`: int4 + an integer literal (int4) is int4 in PostgreSQL.
  async param_cast_plus_literal(c) {
    const r = await c.query('SELECT $1::int + 1 AS n', [41]);
    assert.equal(r.fields[0].dataTypeID, 23, 'int4 + 1 is int4');
    assert.deepEqual(r.rows, [{ n: 42 }]);
    const s = await c.query('SELECT $1::int + 1 AS n', ['41']);
    assert.deepEqual(s.rows, [{ n: 42 }]);
  },

  // int4 arithmetic that leaves int4's range is an error (22003), not a wrapped value;
  // with a bigint operand or a literal beyond int4 it is int8, and does not overflow.
  async int4_overflow(c) {
    await assert.rejects(c.query('SELECT $1::int + 1 AS n', [2147483647]), (e) => {
      assert.equal(e.code, '22003', `SQLSTATE, got ${e.code}: ${e.message}`);
      assert.equal(e.message, 'integer out of range');
      return true;
    });
    await assert.rejects(c.query('SELECT $1::int * 2 AS n', [-1073741825]), (e) => {
      assert.equal(e.code, '22003', `SQLSTATE, got ${e.code}: ${e.message}`);
      return true;
    });
    const big = await c.query('SELECT $1::bigint + 1 AS a, $2::int + 3000000000 AS b', [2147483647, 1]);
    assert.deepEqual(big.fields.map((f) => f.dataTypeID), [20, 20], 'int8 + 1 and int4 + 3000000000 are int8');
    assert.deepEqual(big.rows, [{ a: '2147483648', b: '3000000001' }]);
  },

  // Untyped $1 compared with a bigint column, the value given as a JS number.
  async point_query_number(c) {
    const r = await c.query('SELECT id, sym, price FROM node_t WHERE id = $1', [2]);
    assert.deepEqual(r.rows, [{ id: '2', sym: 'GC', price: 2000.25 }]);
    const none = await c.query('SELECT id FROM node_t WHERE id = $1', [99]);
    assert.equal(none.rowCount, 0);
    assert.deepEqual(none.rows, []);
  },

  // The same, the value given as a string.
  async point_query_string(c) {
    const r = await c.query('SELECT id, sym, price FROM node_t WHERE id = $1', ['3']);
    assert.deepEqual(r.rows, [{ id: '3', sym: 'SI', price: 24.5 }]);
  },

  // A named statement: parsed once per connection, then only Bind/Execute.
  async named_prepared_statement(c) {
    for (let i = 0; i < 10; i++) {
      const id = (i % 3) + 1;
      const r = await c.query({ name: 'node_point', text: 'SELECT id, sym FROM node_t WHERE id = $1', values: [id] });
      assert.equal(r.rowCount, 1);
      assert.equal(r.rows[0].id, String(id));
    }
  },

  // pg's default type parsers: int8 as a string, float8 as a number, bool, timestamptz as a
  // Date, NULL as null (multi-row; jsonb in its own case below).
  async result_types(c) {
    const r = await c.query('SELECT id, x, ok, ts FROM node_types ORDER BY id');
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]),
      [['id', 20], ['x', 701], ['ok', 16], ['ts', 1184]]);
    assert.equal(r.rowCount, 3);
    const [b, n, a] = r.rows;
    assert.equal(a.id, '9007199254740993', 'int8 beyond 2^53 kept exact as a string');
    assert.equal(a.x, 1.5);
    assert.equal(a.ok, true);
    assert.ok(a.ts instanceof Date, `timestamptz as a Date, got ${typeof a.ts}: ${a.ts}`);
    assert.equal(a.ts.toISOString(), '2024-01-01T10:00:00.123Z');
    assert.equal(b.id, '-5');
    assert.equal(b.x, -0.25);
    assert.equal(b.ok, false);
    assert.equal(b.ts.toISOString(), '2024-06-30T23:59:59.000Z');
    assert.deepEqual(n, { id: '7', x: null, ok: null, ts: null });
    // The same through the extended protocol (a parameter makes pg use Parse/Bind).
    const p = await c.query('SELECT id, x, ok, ts FROM node_types WHERE id = $1', ['9007199254740993']);
    assert.deepEqual(p.rows, [a]);
  },

  // A jsonb column has type OID 3802, which pg parses with JSON.parse.
  async jsonb_parsed(c) {
    const r = await c.query('SELECT id, doc FROM node_types ORDER BY id');
    assert.deepEqual(r.fields.map((f) => [f.name, f.dataTypeID]), [['id', 20], ['doc', 3802]]);
    assert.deepEqual(r.rows.map((row) => row.doc), [[], null, { k: 'v', n: [1, 2] }]);
  },

  // Errors carry the SQLSTATE in `code`, and the connection stays usable.
  async error_sqlstate(c) {
    await assert.rejects(c.query('SELECT * FROM node_no_such_table'), (e) => {
      assert.equal(e.code, '42P01', `SQLSTATE, got ${e.code}: ${e.message}`);
      assert.equal(e.severity, 'ERROR');
      return true;
    });
    await assert.rejects(c.query('SELECT * FROM node_no_such_table WHERE id = $1', [1]), (e) => {
      assert.equal(e.code, '42P01', `SQLSTATE (extended protocol), got ${e.code}: ${e.message}`);
      return true;
    });
    const r = await c.query('SELECT sym FROM node_t WHERE id = 1');
    assert.deepEqual(r.rows, [{ sym: 'CL' }]);
  },

  // BEGIN / INSERT / COMMIT, with the transaction status pg sees.
  async transaction(c) {
    assert.equal((await c.query('BEGIN')).command, 'BEGIN');
    await c.query('INSERT INTO node_t (id, sym, price) VALUES ($1, $2, $3)', [100, 'TX', 1.25]);
    const inside = await c.query('SELECT sym FROM node_t WHERE id = $1', [100]);
    assert.deepEqual(inside.rows, [{ sym: 'TX' }]);
    assert.equal((await c.query('COMMIT')).command, 'COMMIT');
    const after = await withClient((other) => other.query('SELECT sym, price FROM node_t WHERE id = 100'));
    assert.deepEqual(after.rows, [{ sym: 'TX', price: 1.25 }]);
  },
};

async function main() {
  const name = process.argv[2];
  if (!CASES[name]) {
    console.error(`usage: node pg_cases.js <case>; cases: ${Object.keys(CASES).join(', ')}`);
    process.exit(2);
  }
  try {
    await withClient(CASES[name]);
    console.log(`ok ${name}`);
  } catch (e) {
    console.error(`FAILED ${name}: ${e.stack || e}`);
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) console.error(`SQLSTATE ${e.code}`);
    process.exit(1);
  }
}

if (process.argv[2] === '--list') {
  console.log(Object.keys(CASES).join('\n'));
} else {
  main();
}
