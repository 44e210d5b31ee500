#!/usr/bin/env python3
"""Result transfer: one large result fetched over Arrow Flight SQL, over pgwire, and from DuckDB's
in-process Arrow export, in one run; plus bulk ingest over ADBC.

    python benches/flight/run.py --eddy target/release/eddy [--rows 10m] [--repeat 3]

Steps: make ROWS ticks rows (symbol, ts, price, volume; numpy, seed 42) -> start eddy standalone ->
ADBC adbc_ingest them (timed: ingest rows/s) -> CHECKPOINT -> DuckDB table from the same Arrow data ->
fetch `SELECT * FROM ticks` REPEAT times each way (median): ADBC Flight SQL to a pyarrow Table,
psycopg2 (libpq, simple query protocol, text rows) fetchall in chunks, DuckDB `.to_arrow_table()`.
Every fetch is checked: row count and sum(volume). Prints rows/s and ratios; writes WORK/results.json.
See benches/README.md.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DDL = ("CREATE TABLE ticks (symbol text NOT NULL, ts timestamp NOT NULL, price double precision NOT NULL, "
       "volume bigint NOT NULL) WITH (time_column = 'ts', partition_by = 'day')")
QUERY = "SELECT symbol, ts, price, volume FROM ticks"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_size(s):
    s = s.lower()
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(s[-1], 1)
    return int(float(s.rstrip("kmg")) * mult)


def make_data(rows):
    """ticks like benches/peers: 20 symbols, one row every 10 ms from 2024-01-01, random walk prices."""
    rng = np.random.default_rng(42)
    symbols = np.array([f"SYM{i:02d}" for i in range(20)])
    ts = np.datetime64("2024-01-01T00:00:00", "us") + np.arange(rows, dtype=np.int64) * 10_000
    price = 100.0 + np.cumsum(rng.normal(0, 0.01, rows))
    return pa.table({
        "symbol": pa.array(symbols[rng.integers(0, 20, rows)], pa.string()),
        "ts": pa.array(ts, pa.timestamp("us")),
        "price": pa.array(price, pa.float64()),
        "volume": pa.array(rng.integers(1, 1000, rows), pa.int64()),
    })


def start_eddy(binary, data_dir, log_path, extra):
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    args = [binary, "standalone", "--data-dir", data_dir, "--pg-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0", *extra]
    logf = open(log_path, "wb")
    proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
    endpoints = os.path.join(data_dir, "endpoints.json")
    deadline = time.time() + 60
    while not os.path.exists(endpoints):
        if proc.poll() is not None:
            sys.exit(f"eddy exited: see {log_path}")
        if time.time() > deadline:
            proc.kill()
            sys.exit("eddy did not start within 60 s")
        time.sleep(0.05)
    with open(endpoints) as f:
        return proc, json.load(f)


def median_time(name, fn, repeat, check):
    """One warm-up, then `repeat` timed runs; returns the median seconds."""
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        check(result)
        label = "warm-up" if i == 0 else f"run {i}/{repeat}"
        log(f"  {name}: {label} {elapsed:.2f} s")
        if i > 0:
            times.append(elapsed)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eddy", required=True, help="the eddy binary (build with cargo build --release)")
    ap.add_argument("--rows", default="10m", help="rows of the fetched table (10m, 1m, 100k, ...)")
    ap.add_argument("--repeat", type=int, default=3, help="timed fetches per client, after one warm-up")
    # 250k rows of this table are ~8 MB: ADBC's Go driver refuses messages over 16 MB.
    ap.add_argument("--ingest-batch-rows", default="250k",
                    help="rows per adbc_ingest call (each call is one durable, all-or-nothing write)")
    ap.add_argument("--work", default=os.path.join(REPO, "target", "bench-data", "flight"))
    ap.add_argument("--eddy-arg", action="append", default=[], help="extra argument for eddy standalone")
    a = ap.parse_args()
    rows, chunk = parse_size(a.rows), parse_size(a.ingest_batch_rows)
    os.makedirs(a.work, exist_ok=True)

    log(f"making {rows:,} rows")
    data = make_data(rows)
    want_volume = pc.sum(data["volume"]).as_py()

    def check(t):
        n, vol = t
        assert n == rows, f"fetched {n} rows, expected {rows}"
        assert vol == want_volume, f"sum(volume) {vol} != {want_volume}"

    log("starting eddy")
    proc, ep = start_eddy(os.path.abspath(a.eddy), os.path.join(a.work, "eddy-data"),
                          os.path.join(a.work, "eddy.log"), a.eddy_arg)
    results = {"rows": rows, "machine_cores": os.cpu_count()}
    try:
        uri = f"grpc://{ep['flight']}"
        conn = flightsql.connect(uri, autocommit=True)
        cur = conn.cursor()
        cur.execute(DDL)

        log(f"ingesting over ADBC (adbc_ingest, {chunk:,} rows per call)")
        t0 = time.perf_counter()
        done = 0
        for off in range(0, rows, chunk):
            done += cur.adbc_ingest("ticks", data.slice(off, chunk), mode="append")
            log(f"  ingested {done:,} / {rows:,} rows")
        ingest_s = time.perf_counter() - t0
        assert done == rows, f"ingested {done} rows, expected {rows}"
        results["ingest_s"] = ingest_s
        log(f"  ingest: {rows / ingest_s:,.0f} rows/s")
        t0 = time.perf_counter()
        cur.execute("CHECKPOINT")
        cur.fetchall()
        log(f"  CHECKPOINT {time.perf_counter() - t0:.1f} s")

        def flight_fetch():
            cur.execute(QUERY)
            t = cur.fetch_arrow_table()
            return t.num_rows, pc.sum(t["volume"]).as_py()

        pg = psycopg2.connect(host="127.0.0.1", port=int(ep["pg"].rsplit(":", 1)[1]), user="eddy", dbname="eddy")
        pg.autocommit = True

        def pg_fetch():
            with pg.cursor() as c:
                c.execute(QUERY)
                n = vol = 0
                while True:
                    part = c.fetchmany(200_000)
                    if not part:
                        break
                    n += len(part)
                    vol += sum(r[3] for r in part)
            return n, vol

        duck = duckdb.connect()
        duck.register("src", data)
        duck.execute("CREATE TABLE ticks AS SELECT * FROM src")
        duck.unregister("src")

        def duck_fetch():
            t = duck.execute(QUERY).to_arrow_table()
            return t.num_rows, pc.sum(t["volume"]).as_py()

        log(f"fetching {QUERY!r} ({rows:,} rows)")
        results["flight_s"] = median_time("Flight SQL (ADBC)", flight_fetch, a.repeat, check)
        results["duckdb_s"] = median_time("DuckDB Arrow export", duck_fetch, a.repeat, check)
        results["pgwire_s"] = median_time("pgwire (psycopg2)", pg_fetch, a.repeat, check)
        pg.close()
        cur.close()
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    rate = {k: rows / results[f"{k}_s"] for k in ("flight", "pgwire", "duckdb")}
    results["rows_per_s"] = rate
    results["ingest_rows_per_s"] = rows / results["ingest_s"]
    lines = [
        f"rows: {rows:,}   cores: {os.cpu_count()}   median of {a.repeat}",
        "",
        "| fetch SELECT * (4 columns) | seconds | rows/s |",
        "|---|---|---|",
        f"| eddy Flight SQL (ADBC -> pyarrow) | {results['flight_s']:.2f} | {rate['flight']:,.0f} |",
        f"| eddy pgwire (psycopg2, text rows) | {results['pgwire_s']:.2f} | {rate['pgwire']:,.0f} |",
        f"| DuckDB in-process Arrow export | {results['duckdb_s']:.2f} | {rate['duckdb']:,.0f} |",
        "",
        f"Flight SQL / pgwire rows/s: {rate['flight'] / rate['pgwire']:.1f}x   (target >= 10x)",
        f"DuckDB / Flight SQL time:   {results['flight_s'] / results['duckdb_s']:.2f}x   (target <= 2x)",
        f"ADBC bulk ingest: {results['ingest_rows_per_s']:,.0f} rows/s   (target >= 1,000,000)",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(a.work, "results.md"), "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
