#!/usr/bin/env python3
"""Materialized views side by side: eddy ingest with and without views, the OHLC job on
DuckDB and (when a PyFlink interpreter is given) on Flink, and Q1 from the view vs raw rows.

    .venv-bench/bin/python benches/rollups/run.py --eddy target/release/eddy
    .venv-bench/bin/python benches/rollups/run.py --eddy target/release/eddy --rows 1m --events 1m
    ... --flink-python venv-flink/bin/python      # also run the exact streaming OHLC job on Flink

It reuses the peer benchmark's data generator, loaders and DuckDB runner (benches/peers).
Steps, each printed with its progress:
 1. eddy without views: ticks and events over HTTP NDJSON (same chunks, same uploaders).
 2. eddy with three views defined first: 1-minute OHLC+VWAP bars on ticks, user sessions
    (30-minute gap) and product popularity per 5 minutes on events. Same load.
 3. Q1 (the peer benchmark's 1-minute OHLC query) on the second server, answered from the
    bars view by the rewrite, against the same query over raw rows (`FROM (SELECT * FROM
    ticks) ticks`, which the rewrite never answers from a view). Timed with EXPLAIN ANALYZE,
    which runs the whole query in the server and returns only the plan: the time is the
    server's, not the client's row transfer. The full fetch is timed once as well.
 4. DuckDB: load ticks and events from NDJSON, Q1.
 5. Flink (optional): the exact streaming OHLC job (event-time windows + Top-N for open and
    close) over the ticks NDJSON, parallelism 2.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
import run as peers  # noqa: E402

VIEWS = {
    "bars_1m": (
        "ticks",
        "SELECT symbol, date_trunc('minute', ts) AS bucket, first_value(price ORDER BY ts) AS open, "
        "max(price) AS high, min(price) AS low, last_value(price ORDER BY ts) AS close, "
        "sum(volume) AS volume, sum(price * volume) / sum(volume) AS vwap, count(*) AS trades "
        "FROM ticks GROUP BY symbol, date_trunc('minute', ts)",
    ),
    "user_sessions": (
        "events",
        "SELECT user_id, session_start, session_end, count(*) AS events, "
        "count(*) FILTER (WHERE event_type = 'page_view') AS page_views, "
        "sum(amount) FILTER (WHERE event_type = 'purchase') AS revenue "
        "FROM SESSION(events, user_id, ts, INTERVAL '30 minutes') GROUP BY 1, 2, 3",
    ),
    "product_5m": (
        "events",
        "SELECT product_id, date_bin(INTERVAL '5 minutes', ts) AS bucket, "
        "count(*) FILTER (WHERE event_type = 'page_view') AS views, "
        "count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts, "
        "count(*) FILTER (WHERE event_type = 'purchase') AS purchases, "
        "count(DISTINCT user_id) AS users FROM events GROUP BY 1, 2",
    ),
}


def log(msg):
    peers.log(msg)


def load_both(a, P, eddy, conn, label):
    """Ticks then events over HTTP NDJSON; -> {table: {rows, seconds, rows_per_s}}."""
    out = {}
    for table in ("ticks", "events"):
        path = P[f"{table}_jsonl"]
        chunks = peers.line_chunks(path, int(a.chunk_mb * 2**20))
        lines_of = peers.count_lines(path, chunks)
        t = time.perf_counter()
        rows = peers.http_load_ndjson(a, eddy, table, path, chunks, lines_of)
        secs = time.perf_counter() - t
        out[table] = {"rows": rows, "seconds": secs, "rows_per_s": rows / secs}
        log(f"eddy ({label}): {table}: {rows:,} rows in {secs:.2f} s = {peers.fmt_rate(rows / secs)}")
    return out


def eddy_run(a, P, with_views):
    label = "3 views" if with_views else "no views"
    eddy = peers.Eddy(a)
    res = {"label": label}
    try:
        eddy.start(wipe=True)
        conn = eddy.connect()
        for t in ("ticks", "events"):
            peers.pg_exec(a, eddy, conn, peers.EDDY_DDL[t], 60)
        if with_views:
            for name, (_, sql) in VIEWS.items():
                peers.pg_exec(a, eddy, conn, f"CREATE MATERIALIZED VIEW {name} AS {sql}", 60)
            log("eddy: views created: " + ", ".join(VIEWS))
        res["load"] = load_both(a, P, eddy, conn, label)
        if with_views:
            rows = peers.pg_exec(a, eddy, conn,
                                 "SELECT view_name, rows, state_bytes, late_rows_dropped, lag_rows, last_error "
                                 "FROM system.rollups ORDER BY 1", 60)
            res["views"] = [dict(zip(["view", "rows", "state_bytes", "late_dropped", "lag_rows", "error"], r))
                            for r in rows]
            for v in res["views"]:
                log(f"eddy: view {v['view']}: {v['rows']:,} rows, {v['state_bytes'] / 2**20:.1f} MiB state, "
                    f"{v['late_dropped']} late rows dropped, error {v['error']}")
            res["q1"] = q1_view_vs_raw(a, eddy, conn)
    finally:
        eddy.stop()
    return res


def timed(fn, repeat):
    """-> (first run s, median of `repeat` further runs s)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def q1_view_vs_raw(a, eddy, conn):
    q1 = peers.read_sql("eddy", "q1")
    raw = q1.replace("FROM ticks", "FROM (SELECT * FROM ticks) ticks")
    plan = "\n".join(r[1] for r in peers.pg_exec(a, eddy, conn, f"EXPLAIN {q1}", 60) if r[0] == "rollup_rewrite")
    log("eddy: Q1 rewrite: " + plan)
    out = {"rewrite": plan}
    for name, sql in (("view", q1), ("raw", raw)):
        first, secs = timed(lambda: peers.pg_exec(a, eddy, conn, f"EXPLAIN ANALYZE {sql}", a.query_timeout),
                            a.repeat)
        out[f"{name}_server_s"] = secs
        out[f"{name}_first_s"] = first
        log(f"eddy: Q1 from {name}: {secs * 1000:.1f} ms in the server (median of {a.repeat}; "
            f"first run after the load {first * 1000:.1f} ms)")
        t = time.perf_counter()
        n = len(peers.pg_exec(a, eddy, conn, sql, a.query_timeout))
        out[f"{name}_fetch_s"] = time.perf_counter() - t
        out[f"{name}_rows"] = n
        log(f"eddy: Q1 from {name}: {n:,} rows fetched over pgwire in {out[f'{name}_fetch_s']:.2f} s")
    return out


def flink_run(a, P):
    if not a.flink_python:
        return {"skipped": "pass --flink-python (an interpreter with apache-flink) to run the Flink job"}
    out_json = os.path.join(a.work, "flink_q1.json")
    cmd = [a.flink_python, os.path.join(HERE, "flink_q1.py"), "--input", P["ticks_jsonl"],
           "--work", a.work, "--out", out_json]
    log("flink: " + " ".join(cmd))
    r = subprocess.run(cmd, timeout=a.load_timeout)
    if r.returncode != 0:
        return {"error": f"exit code {r.returncode}"}
    return json.load(open(out_json))


def report(a, plain, views, duck, flink):
    lines = [f"# eddy materialized views: ticks_{a.rows} / events_{a.events}", ""]
    lines += ["| step | ticks rows/s | events rows/s |", "|---|---:|---:|"]
    for r in (plain, views):
        lines.append(f"| eddy, {r['label']} | {peers.fmt_rate(r['load']['ticks']['rows_per_s'])} | "
                     f"{peers.fmt_rate(r['load']['events']['rows_per_s'])} |")
    dl = duck.get("load", {})
    if "ticks" in dl and "rows_per_s" in dl["ticks"]:
        lines.append(f"| DuckDB read_json (no views) | {peers.fmt_rate(dl['ticks']['rows_per_s'])} | "
                     f"{peers.fmt_rate(dl['events']['rows_per_s'])} |")
    tot = lambda r: sum(v["rows"] for v in r["load"].values()) / sum(v["seconds"] for v in r["load"].values())  # noqa: E731
    ratio = tot(views) / tot(plain)
    lines += ["", f"- ingest with three views / without: **{ratio:.2f}** (ticks {views['load']['ticks']['rows_per_s'] / plain['load']['ticks']['rows_per_s']:.2f}, "
                  f"events {views['load']['events']['rows_per_s'] / plain['load']['events']['rows_per_s']:.2f}; target >= 0.70)"]
    q = views.get("q1", {})
    if q:
        lines.append(f"- Q1 in the server: raw rows {q['raw_server_s'] * 1000:.0f} ms, from bars_1m {q['view_server_s'] * 1000:.1f} ms: "
                     f"**{q['raw_server_s'] / q['view_server_s']:.0f}x** (target >= 100x; first run after the load: "
                     f"{q['raw_first_s'] * 1000:.0f} ms vs {q['view_first_s'] * 1000:.1f} ms, "
                     f"{q['raw_first_s'] / q['view_first_s']:.0f}x); fetched over pgwire: "
                     f"{q['raw_fetch_s']:.2f} s vs {q['view_fetch_s']:.2f} s ({q['raw_rows']:,} / {q['view_rows']:,} rows)")
        lines.append(f"- rewrite: {q['rewrite']}")
    dq = duck.get("queries", {}).get("q1", {})
    if "median_s" in dq:
        lines.append(f"- DuckDB Q1 over raw rows: {dq['median_s'] * 1000:.0f} ms; eddy from the view is "
                     f"{dq['median_s'] / q['view_server_s']:.0f}x faster (server time vs DuckDB in-process)")
    bars_rate = views["load"]["ticks"]["rows_per_s"]
    if "rows_per_s_net" in flink:
        lines.append(f"- OHLC job: eddy ingesting ticks with the bars view {peers.fmt_rate(bars_rate)} vs Flink exact streaming "
                     f"{peers.fmt_rate(flink['rows_per_s_net'])}: **{bars_rate / flink['rows_per_s_net']:.1f}x** (target >= 10x)")
    else:
        lines.append(f"- Flink: {flink.get('skipped') or flink.get('error')}")
    for v in views.get("views", []):
        lines.append(f"- view {v['view']}: {v['rows']:,} rows, {v['state_bytes'] / 2**20:.1f} MiB state")
    text = "\n".join(lines) + "\n"
    path = os.path.join(a.work, "rollups.md")
    open(path, "w").write(text)
    print("\n" + text)
    log(f"report: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eddy", required=True)
    ap.add_argument("--rows", default="10m")
    ap.add_argument("--events", default="10m")
    ap.add_argument("--work", default="target/bench-data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-gen", action="store_true")
    ap.add_argument("--chunk-mb", type=float, default=32)
    ap.add_argument("--uploaders", type=int, default=2)
    ap.add_argument("--duckdb-threads", type=int, default=os.cpu_count())
    ap.add_argument("--flink-python")
    ap.add_argument("--eddy-arg", action="append", default=[])
    ap.add_argument("--startup-timeout", type=float, default=60)
    ap.add_argument("--load-timeout", type=float, default=1800)
    ap.add_argument("--chunk-timeout", type=float, default=600)
    ap.add_argument("--query-timeout", type=float, default=900)
    ap.add_argument("--gen-timeout", type=float, default=3600)
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)
    P = peers.data_paths(a)
    peers.ensure_data(a, P)
    plain = eddy_run(a, P, with_views=False)
    views = eddy_run(a, P, with_views=True)
    duck = peers.run_duckdb(a, P, ["q1"])
    flink = flink_run(a, P)
    json.dump({"plain": plain, "views": views, "duckdb": duck, "flink": flink},
              open(os.path.join(a.work, "rollups.json"), "w"), indent=1, default=str)
    report(a, plain, views, duck, flink)


if __name__ == "__main__":
    main()
