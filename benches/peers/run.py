#!/usr/bin/env python3
"""Side-by-side benchmark: eddy against DuckDB on the peer benchmark's data and queries (Q1-Q9).

    python benches/peers/run.py --eddy target/release/eddy [--rows 10m] [--events 10m] [--work DIR]
                                [--repeat 3] [--skip-gen] [--engines duckdb,eddy]
                                [--eddy-client flight|pgwire] [--skip-pgwire]

Steps: generate ticks + events (gen.py, NDJSON + Parquet, skipped when present) -> DuckDB (on-disk database,
NDJSON load, queries fetched as Arrow tables) -> eddy (standalone server; ticks over HTTP NDJSON, events over
COPY FROM STDIN, CHECKPOINT; queries fetched as Arrow tables over Flight SQL (ADBC), then again over the
PostgreSQL wire (psycopg2) for comparison) -> a Markdown table in WORK/results.md and raw numbers in
WORK/results.json. See benches/README.md.
"""
import argparse
import concurrent.futures as cf
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from fingerprint import compare_fp, fingerprint_arrow, fingerprint_rows  # noqa: E402

ALL_QUERIES = ["q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8a", "q8b", "q9"]
TICK_QUERIES = {"q1", "q2", "q3", "q4", "q5"}

# Column types as gen.py writes them (session_id is a string "s<digits>", product_id/amount are nullable).
TICKS_COLS = [("symbol", "VARCHAR"), ("ts", "TIMESTAMP"), ("price", "DOUBLE"), ("volume", "BIGINT")]
EVENTS_COLS = [("ts", "TIMESTAMP"), ("event_type", "VARCHAR"), ("user_id", "BIGINT"), ("session_id", "VARCHAR"),
               ("product_id", "BIGINT"), ("amount", "DOUBLE")]
DUCK_COLS = {"ticks": TICKS_COLS, "events": EVENTS_COLS}

EDDY_DDL = {
    "ticks": "CREATE TABLE ticks (symbol text NOT NULL, ts timestamp NOT NULL, price double precision NOT NULL, "
             "volume bigint NOT NULL) WITH (time_column = 'ts', partition_by = 'day')",
    "events": "CREATE TABLE events (ts timestamp NOT NULL, event_type text NOT NULL, user_id bigint NOT NULL, "
              "session_id text NOT NULL, product_id bigint, amount double precision) "
              "WITH (time_column = 'ts', partition_by = 'day')",
}

SLOW_WARMUP_S = 30.0  # like the peer benchmark: a warm-up slower than this gets only one timed run

# eddy's query clients: Flight SQL (ADBC, an Arrow table, like DuckDB's) and pgwire (psycopg2, text rows)
EDDY_CLIENTS = ("flight", "pgwire")
CLIENT_NAME = {"flight": "Flight SQL", "pgwire": "pgwire"}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fmt_runs(runs):
    """Load times as '2.10, 2.31, 2.05 s'."""
    return ", ".join(f"{r:.2f}" for r in runs) + " s"


def fmt_rate(r):
    if r is None:
        return "-"
    if r >= 1e6:
        return f"{r / 1e6:.2f} M/s"
    if r >= 1e3:
        return f"{r / 1e3:.0f} k/s"
    return f"{r:.0f}/s"


def num(n):
    if n is None:
        return "-"
    return f"{n:,}" if isinstance(n, int) else str(n)[:80].replace("|", "\\|")


def fmt_s(s):
    if s is None:
        return "-"
    return f"{s:.3f}" if s < 100 else f"{s:.0f}"


def read_sql(dialect, q):
    """The query text without full-line comments (q7's comment holds a ';') and without a trailing ';'."""
    with open(os.path.join(HERE, "queries", dialect, q + ".sql")) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def parse_size(s):
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


# ------------------------------------------------------------------------------------------------ data
def data_paths(a):
    d = os.path.join(a.work, "data")
    return {
        "dir": d,
        "ticks_jsonl": os.path.join(d, f"ticks_{a.rows}.jsonl"),
        "ticks_parquet": os.path.join(d, f"ticks_{a.rows}.parquet"),
        "events_jsonl": os.path.join(d, f"events_{a.events}.jsonl"),
        "events_parquet": os.path.join(d, f"events_{a.events}.parquet"),
        "events_csv": os.path.join(d, f"events_{a.events}.csv"),
        "manifest": os.path.join(d, "manifest.json"),
    }


def ensure_data(a, P):
    os.makedirs(P["dir"], exist_ok=True)
    need_ticks = not (os.path.exists(P["ticks_jsonl"]) and os.path.exists(P["ticks_parquet"]))
    need_events = not (os.path.exists(P["events_jsonl"]) and os.path.exists(P["events_parquet"]))
    if a.skip_gen:
        missing = [p for k, p in P.items() if k.endswith(("jsonl", "parquet")) and not os.path.exists(p)]
        if missing:
            raise BenchError("--skip-gen, but these files are missing: " + ", ".join(missing))
        return
    if not (need_ticks or need_events):
        log(f"data: present in {P['dir']} (delete it to regenerate)")
        return
    cmd = [sys.executable, os.path.join(HERE, "gen.py"), "--out", P["dir"],
           "--ticks", a.rows if need_ticks else "", "--events", a.events if need_events else ""]
    log("data: " + " ".join(cmd))
    t = time.time()
    r = subprocess.run(cmd, timeout=a.gen_timeout)
    if r.returncode != 0:
        raise BenchError(f"gen.py failed with exit code {r.returncode}")
    log(f"data: generated in {time.time() - t:.1f} s")


def ensure_events_csv(P):
    """events Parquet -> CSV for COPY: table column order, no header, ts as YYYY-MM-DD HH:MM:SS.ffffff,
    nulls as empty fields. Cached next to the Parquet file; not part of any timing."""
    src, dst = P["events_parquet"], P["events_csv"]
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    import polars as pl
    t = time.time()
    names = [c for c, _ in EVENTS_COLS]
    df = pl.read_parquet(src).select(names).with_columns(pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S%.6f"))
    tmp = dst + ".tmp"
    df.write_csv(tmp, include_header=False, null_value="")
    os.replace(tmp, dst)
    log(f"data: wrote {dst} ({os.path.getsize(dst) / 1e6:.0f} MB) in {time.time() - t:.1f} s")
    return dst


def load_manifest(P):
    try:
        with open(P["manifest"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ timing
def time_runs(fn, repeat):
    """1 warm-up + `repeat` timed runs (1 if the warm-up took > SLOW_WARMUP_S); fn() -> (result, extra)."""
    t = time.perf_counter()
    res, _ = fn()
    warm = time.perf_counter() - t
    runs, extras = [], []
    for _ in range(repeat if warm <= SLOW_WARMUP_S else 1):
        t = time.perf_counter()
        res, extra = fn()
        runs.append(time.perf_counter() - t)
        extras.append(extra)
    return res, {"warmup_s": warm, "runs_s": runs, "median_s": statistics.median(runs), "extra": extras}


# ------------------------------------------------------------------------------------------------ DuckDB
def run_duckdb(a, P, queries):
    import duckdb
    out = {"version": duckdb.__version__, "threads": a.duckdb_threads, "load": {}, "queries": {}}
    path = os.path.join(a.work, "duckdb.db")
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(path)
    con.execute(f"SET threads={a.duckdb_threads}")

    def with_timeout(fn, seconds):
        timer = threading.Timer(seconds, con.interrupt)
        timer.start()
        try:
            return fn()
        finally:
            timer.cancel()

    for table in ("ticks", "events"):
        src = P[f"{table}_jsonl"]
        cols = ", ".join(f"'{c}': '{t}'" for c, t in DUCK_COLS[table])
        sql = f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_json('{src}', format='newline_delimited', columns={{{cols}}})"
        log(f"duckdb: loading {table} from {os.path.basename(src)} ({os.path.getsize(src) / 1e6:.0f} MB)")
        warm_page_cache(src)
        try:
            runs = []
            for _ in range(a.load_repeat):
                t = time.perf_counter()
                with_timeout(lambda: (con.execute(sql), con.execute("CHECKPOINT")), a.load_timeout)
                runs.append(time.perf_counter() - t)
            secs = statistics.median(runs)
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            out["load"][table] = {"rows": rows, "seconds": secs, "rows_per_s": rows / secs, "runs_s": runs,
                                  "via": "read_json NDJSON + CHECKPOINT"}
            log(f"duckdb: {table}: {rows:,} rows in {secs:.2f} s (median of {fmt_runs(runs)}) = {fmt_rate(rows / secs)}")
        except Exception as e:  # noqa: BLE001
            out["load"][table] = {"error": f"{type(e).__name__}: {e}"}
            log(f"duckdb: loading {table} FAILED: {e}")

    for q in queries:
        sql = read_sql("duckdb", q)

        def once():
            rel = con.sql(sql)
            # to_arrow_table() is DuckDB 2.0's name for fetch_arrow_table() (deprecated there): the whole result
            tbl = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
            return tbl, None

        try:
            tbl, timing = with_timeout(lambda: time_runs(once, a.repeat), a.query_timeout)
            timing.pop("extra")
            out["queries"][q] = {**timing, "rows": tbl.num_rows, "fp": fingerprint_arrow(tbl)}
            log(f"duckdb: {q}: median {timing['median_s']:.3f} s, {tbl.num_rows:,} rows")
        except Exception as e:  # noqa: BLE001
            out["queries"][q] = {"error": f"{type(e).__name__}: {e}"}
            log(f"duckdb: {q} FAILED: {e}")
    con.close()
    return out


# ------------------------------------------------------------------------------------------------ eddy
class Eddy:
    """An `eddy standalone` subprocess with its endpoints."""

    def __init__(self, a):
        self.a = a
        self.data_dir = os.path.join(a.work, "eddy-data")
        self.log_path = os.path.join(a.work, "eddy.log")
        self.proc = None
        self.pg = self.http = self.flight = None
        self._log = None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join("    | " + ln for ln in lines[-n:])
        except OSError:
            return "    (no log)"

    def check_alive(self, what=""):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"eddy exited early with code {self.proc.returncode}{' ' + what if what else ''}; "
                             f"last lines of {self.log_path}:\n{self.log_tail()}")

    def start(self, wipe=True):
        import requests
        a = self.a
        if wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir, exist_ok=True)
        ep_path = os.path.join(self.data_dir, "endpoints.json")
        if os.path.exists(ep_path):
            os.remove(ep_path)
        cmd = [a.eddy, "standalone", "--data-dir", self.data_dir,
               "--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0",
               *a.eddy_arg]
        self._log = open(self.log_path, "wb" if wipe else "ab")  # a fresh log per benchmark run
        self._log.write(f"\n===== {dt.datetime.now().isoformat()} {' '.join(cmd)}\n".encode())
        self._log.flush()
        log("eddy: " + " ".join(cmd) + f"  (log: {self.log_path})")
        t0 = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = t0 + a.startup_timeout
        ep = None
        while time.time() < deadline:
            self.check_alive("during start-up")
            try:
                with open(ep_path) as f:
                    ep = json.load(f)
                if ep.get("pg") and ep.get("http") and ep.get("flight"):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise BenchError(f"eddy did not write {ep_path} with pg, http and flight within {a.startup_timeout} s "
                             f"(last: {ep}); log tail:\n{self.log_tail()}")
        self.pg, self.http, self.flight = ep["pg"], ep["http"], ep["flight"]
        last = None
        while time.time() < deadline:
            self.check_alive("during start-up")
            try:
                r = requests.get(f"http://{self.http}/health", timeout=2)
                if r.status_code == 200:
                    break
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.2)
        else:
            self.stop()
            raise BenchError(f"GET http://{self.http}/health did not return 200 within {a.startup_timeout} s "
                             f"(last: {last}); log tail:\n{self.log_tail()}")
        log(f"eddy: up in {time.time() - t0:.1f} s, pg={self.pg} http={self.http} flight={self.flight}")

    def connect(self):
        import psycopg2
        host, port = self.pg.rsplit(":", 1)
        try:
            conn = psycopg2.connect(host=host, port=int(port), user="eddy", dbname="eddy", connect_timeout=15,
                                    sslmode="disable", application_name="eddy-peer-bench")
        except psycopg2.Error as e:
            self.check_alive("while connecting")
            raise BenchError(f"cannot connect to eddy over pgwire at {self.pg}: {e}") from e
        conn.autocommit = True
        return conn

    def connect_flight(self):
        """An ADBC Flight SQL connection (autocommit: no transactions; no credentials on loopback)."""
        import adbc_driver_flightsql.dbapi as flightsql
        try:
            return flightsql.connect(f"grpc://{self.flight}", autocommit=True)
        except Exception as e:  # noqa: BLE001
            self.check_alive("while connecting over Flight SQL")
            raise BenchError(f"cannot connect to eddy over Flight SQL at grpc://{self.flight}: {e}") from e

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log("eddy: no exit 20 s after SIGTERM, killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        log(f"eddy: stopped (exit code {self.proc.returncode})")
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Watchdog:
    """Cancels the statement after `seconds` (PostgreSQL CancelRequest); if that does not end it within
    `grace` s more, kills eddy so that the blocked client call fails instead of hanging forever."""

    def __init__(self, conn, eddy, seconds, grace=15.0):
        self.conn, self.eddy, self.fired, self.killed = conn, eddy, False, False
        self.t1 = threading.Timer(seconds, self._cancel)
        self.t2 = threading.Timer(seconds + grace, self._kill)

    def _cancel(self):
        self.fired = True
        try:
            self.conn.cancel()
        except Exception:  # noqa: BLE001
            pass

    def _kill(self):
        self.killed = True
        log("eddy: statement still running after cancel; killing eddy")
        self.eddy.kill()

    def __enter__(self):
        self.t1.start()
        self.t2.start()
        return self

    def __exit__(self, *exc):
        for t in (self.t1, self.t2):
            t.cancel()
            t.join()  # a kill in progress must finish before the caller looks at the process
        return False


class KillTimer:
    """Kills eddy after `seconds`: the Flight SQL counterpart of Watchdog. A client-side ADBC cancel would
    not be sure to stop the server's work, so a query past the limit ends eddy, the blocked ADBC call
    fails, and the next query restarts eddy on the same data directory."""

    def __init__(self, eddy, seconds):
        self.eddy, self.seconds, self.fired = eddy, seconds, False
        self.t = threading.Timer(seconds, self._kill)

    def _kill(self):
        self.fired = True
        log(f"eddy: Flight SQL query still running after {self.seconds:g} s; killing eddy")
        self.eddy.kill()

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.t.cancel()
        self.t.join()  # a kill in progress must finish before the caller looks at the process
        return False


class Progress:
    """Prints `label: sent/total MB, rows, rows/s` every `every` seconds from a background thread."""

    def __init__(self, label, total_bytes, est_rows_total=None, every=3.0):
        self.label, self.total, self.est_rows_total, self.every = label, total_bytes, est_rows_total, every
        self.sent = 0
        self.rows = None  # exact rows accepted so far, when known
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.t0 = time.perf_counter()
        self.th = threading.Thread(target=self._loop, daemon=True)

    def add(self, nbytes, rows=None):
        with self.lock:
            self.sent += nbytes
            if rows is not None:
                self.rows = (self.rows or 0) + rows

    def line(self):
        el = time.perf_counter() - self.t0
        with self.lock:
            sent, rows = self.sent, self.rows
        pct = 100.0 * sent / self.total if self.total else 0.0
        if rows is None and self.est_rows_total:
            rows_txt, r = "~", self.est_rows_total * sent / max(self.total, 1)
        else:
            rows_txt, r = "", rows or 0
        return (f"{self.label}: {sent / 1e6:,.0f}/{self.total / 1e6:,.0f} MB ({pct:.0f}%), {rows_txt}{r:,.0f} rows, "
                f"{rows_txt}{fmt_rate(r / el if el > 0 else 0)} so far, {el:.1f} s")

    def _loop(self):
        while not self.stop_ev.wait(self.every):
            log(self.line())

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.th.join()
        return False


def warm_page_cache(path):
    """Reads `path` once, untimed, so that a timed load reads it from memory: the machine's page cache is small
    enough that the other data set's files evict it, which made loads vary by seconds run to run."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def line_chunks(path, chunk_bytes):
    """(offset, length) ranges of about chunk_bytes that end at line boundaries."""
    size = os.path.getsize(path)
    out, off = [], 0
    with open(path, "rb") as f:
        while off < size:
            end = off + chunk_bytes
            if end >= size:
                end = size
            else:
                f.seek(end)
                f.readline()  # move to the end of the current line
                end = min(f.tell(), size)
            out.append((off, end - off))
            off = end
    return out


def split_at_newline(data):
    """Two halves of `data` cut after a newline near the middle (None if it is one line)."""
    mid = data.find(b"\n", len(data) // 2)
    if mid < 0 or mid + 1 >= len(data):
        mid = data.rfind(b"\n", 0, len(data) // 2)
        if mid < 0:
            return None
    return data[:mid + 1], data[mid + 1:]


def count_lines(path, chunks):
    """{(offset, length): lines} for each chunk, to check eddy's answers against; counted before
    the load is timed, since the check is the bench's own work and not part of loading."""
    out = {}
    with open(path, "rb") as f:
        for off, length in chunks:
            f.seek(off)
            data = f.read(length)
            out[(off, length)] = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return out


def http_load_ndjson(a, eddy, table, path, chunks, lines_of):
    """POST the NDJSON file in ~chunk_mb pieces (line boundaries, from line_chunks) with
    `uploaders` threads. -> rows accepted."""
    import requests
    url = f"http://{eddy.http}/v1/tables/{table}/rows"
    total = os.path.getsize(path)
    local = threading.local()
    state = {"limit": None, "mismatch": 0}
    state_lock = threading.Lock()
    stop = threading.Event()

    def session():
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    def post(data, lines=None):
        """-> rows accepted; splits the body when eddy answers 413 (payload too large).
        `lines`: the body's line count when known in advance."""
        limit = state["limit"]
        if limit and len(data) > limit:
            parts = split_at_newline(bytes(data))
            if parts:
                return post(parts[0]) + post(parts[1])
        if stop.is_set():
            raise BenchError("aborted")
        try:
            r = session().post(url, data=data, headers={"Content-Type": "application/x-ndjson"},
                               timeout=(10, a.chunk_timeout))
        except requests.RequestException as e:
            eddy.check_alive(f"while loading {table}")
            raise BenchError(f"POST {url} ({len(data) / 1e6:.1f} MB): {e}") from e
        if r.status_code == 413 and len(data) > 256 * 1024:
            with state_lock:
                if not state["limit"] or state["limit"] >= len(data):
                    state["limit"] = len(data) // 2
                    log(f"eddy: HTTP 413 for a {len(data) / 1e6:.1f} MB body; splitting bodies to "
                        f"<= {state['limit'] / 1e6:.1f} MB from now on")
            return post(data, lines)
        if r.status_code // 100 != 2:
            raise BenchError(f"POST {url}: HTTP {r.status_code}: {r.text[:500]}")
        if lines is None:
            lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        try:
            rows = int(r.json()["rows"])
        except (ValueError, KeyError, TypeError):
            log(f"eddy: response without a 'rows' field ({r.text[:200]!r}); counting lines instead")
            rows = lines
        if rows != lines:
            with state_lock:
                state["mismatch"] += lines - rows
        return rows

    def upload(rng, prog):
        """Reads the chunk into this uploader's own buffer, reused from chunk to chunk as
        curl's would be: a fresh 128 MB object per chunk costs the client tens of
        thousands of page faults, on the same 2 cores as eddy."""
        off, length = rng
        if len(getattr(local, "buf", b"")) < length:
            local.buf = bytearray(length)
        view = memoryview(local.buf)[:length]
        with open(path, "rb") as f:
            f.seek(off)
            f.readinto(view)
        rows = post(view, lines_of[rng])
        prog.add(length, rows)
        return rows

    log(f"eddy: loading {table} over HTTP from {os.path.basename(path)} ({total / 1e6:.0f} MB, "
        f"{len(chunks)} chunks of ~{a.chunk_mb:g} MB, {a.uploaders} uploaders)")
    rows = 0
    with Progress(f"eddy: {table} HTTP", total) as prog, cf.ThreadPoolExecutor(a.uploaders) as ex:
        futs = [ex.submit(upload, c, prog) for c in chunks]
        deadline = time.time() + a.load_timeout
        try:
            for fut in cf.as_completed(futs, timeout=a.load_timeout):
                rows += fut.result()
                if time.time() > deadline:
                    raise cf.TimeoutError()
        except cf.TimeoutError:
            stop.set()
            for f in futs:
                f.cancel()
            raise BenchError(f"loading {table} over HTTP took longer than --load-timeout {a.load_timeout} s")
        except BaseException:
            stop.set()
            for f in futs:
                f.cancel()
            raise
    if state["mismatch"]:
        log(f"eddy: WARNING: {state['mismatch']:,} lines sent were not counted in the 'rows' answers")
    return rows


class CountingReader:
    def __init__(self, f, prog):
        self.f, self.prog = f, prog

    def read(self, n=-1):
        b = self.f.read(n)
        self.prog.add(len(b))
        return b

    def readline(self, n=-1):
        b = self.f.readline(n)
        self.prog.add(len(b))
        return b


def copy_load_csv(a, eddy, conn, table, path, est_rows):
    """COPY table FROM STDIN (FORMAT csv) -> rows (from the COPY command tag, else count(*))."""
    total = os.path.getsize(path)
    log(f"eddy: loading {table} with COPY FROM STDIN from {os.path.basename(path)} ({total / 1e6:.0f} MB)")
    cur = conn.cursor()
    with Progress(f"eddy: {table} COPY", total, est_rows_total=est_rows) as prog, open(path, "rb") as f, \
            Watchdog(conn, eddy, a.load_timeout) as wd:
        try:
            cur.copy_expert(f"COPY {table} FROM STDIN (FORMAT csv)", CountingReader(f, prog), size=8 * 2**20)
        except Exception as e:
            eddy.check_alive(f"during COPY into {table}")
            if wd.fired:
                raise BenchError(f"COPY into {table} took longer than --load-timeout {a.load_timeout} s") from e
            raise
    return cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else None


def pg_exec(a, eddy, conn, sql, timeout):
    with Watchdog(conn, eddy, timeout) as wd:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
        except Exception as e:
            eddy.check_alive(f"while running: {sql[:80]}")
            if wd.fired:
                raise BenchError(f"timed out after {timeout} s: {sql[:80]}") from e
            raise


class QueryTimeout(BenchError):
    pass


def close_quietly(conns):
    for c in conns:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


def flight_query(a, eddy, fconn, sql):
    """1 warm-up + `repeat` timed runs over Flight SQL: ADBC execute() + fetch_arrow_table(), i.e. the whole
    result as a pyarrow Table, the same materialisation as DuckDB's to_arrow_table(). -> the result dict."""
    def once():
        cur = fconn.cursor()
        try:
            cur.execute(sql)
            return cur.fetch_arrow_table(), None
        finally:
            cur.close()

    with KillTimer(eddy, a.query_timeout) as kt:
        try:
            tbl, timing = time_runs(once, a.repeat)
        except Exception as e:
            if kt.fired:
                raise QueryTimeout(f"timed out after {a.query_timeout:g} s (eddy killed)") from e
            eddy.check_alive("while running the query over Flight SQL")
            raise
    timing.pop("extra")
    return {**timing, "rows": tbl.num_rows, "fp": fingerprint_arrow(tbl)}


def pgwire_query(a, eddy, conn, sql):
    """1 warm-up + `repeat` timed runs over pgwire: psycopg2 execute() + fetchall() (text rows turned into
    Python objects); `exec_median_s` is execute() alone (server + transfer). -> the result dict."""
    def once():
        cur = conn.cursor()
        t = time.perf_counter()
        cur.execute(sql)  # libpq receives the whole result here
        t_exec = time.perf_counter() - t
        rows = cur.fetchall()  # ... and psycopg2 converts it to Python objects here
        return (rows, [d[0] for d in cur.description]), t_exec

    with Watchdog(conn, eddy, a.query_timeout) as wd:
        try:
            (rows, names), timing = time_runs(once, a.repeat)
        except Exception as e:
            if wd.killed:
                raise QueryTimeout(f"timed out after {a.query_timeout:g} s (eddy killed)") from e
            eddy.check_alive("while running the query over pgwire")
            if wd.fired:
                raise QueryTimeout(f"timed out after {a.query_timeout:g} s (cancelled)") from e
            raise
    execs = timing.pop("extra")
    timing["exec_median_s"] = statistics.median(execs)
    return {**timing, "rows": len(rows), "fp": fingerprint_rows(rows, names)}


QUERY_FNS = {"flight": flight_query, "pgwire": pgwire_query}


def run_eddy_query(a, eddy, conn, client, q, sql, notes):
    """One query over one client (flight or pgwire) -> its result dict, or {"error": ...} on failure."""
    name = CLIENT_NAME[client]
    try:
        r = QUERY_FNS[client](a, eddy, conn, sql)
        ex = f" (execute {r['exec_median_s']:.3f} s)" if "exec_median_s" in r else ""
        log(f"eddy: {q} over {name}: median {r['median_s']:.3f} s{ex}, {r['rows']:,} rows")
        return r
    except BenchError as e:
        r = {"error": str(e), **({"timed_out": True} if isinstance(e, QueryTimeout) else {})}
        log(f"eddy: {q} over {name} FAILED: {e}")
    except Exception as e:  # noqa: BLE001
        r = {"error": f"{type(e).__name__}: {str(e).strip()}"}
        log(f"eddy: {q} over {name} FAILED: {r['error']}")
        if eddy.proc is None or eddy.proc.poll() is not None:
            notes.append(f"eddy died during {q} ({name}); log tail:\n{eddy.log_tail(20)}")
            log(f"eddy: died during {q}; log tail:\n{eddy.log_tail(20)}")
    return r


def run_eddy(a, P, queries, manifest):
    out = {"binary": os.path.abspath(a.eddy), "load": {}, "queries": {}, "notes": []}
    try:
        v = subprocess.run([a.eddy, "--version"], capture_output=True, text=True, timeout=15)
        out["version"] = v.stdout.strip().splitlines()[0] if v.returncode == 0 and v.stdout.strip() else "?"
    except Exception:  # noqa: BLE001
        out["version"] = "?"
    eddy = Eddy(a)
    try:
        eddy.start(wipe=True)
        conn = eddy.connect()
        for t in ("ticks", "events"):
            pg_exec(a, eddy, conn, EDDY_DDL[t], 60)
        log("eddy: tables created")

        # ---- ticks: HTTP NDJSON
        def checkpoint(table, t_ingest):
            """CHECKPOINT, counted in the load time. -> (seconds in all, checkpoint seconds)"""
            t2 = time.perf_counter()
            pg_exec(a, eddy, conn, "CHECKPOINT", a.load_timeout)
            t_ckpt = time.perf_counter() - t2
            log(f"eddy: {table}: loaded in {t_ingest + t_ckpt:.2f} s (CHECKPOINT {t_ckpt:.2f} s)")
            return t_ingest + t_ckpt, t_ckpt

        def record(table, rows, runs, via):
            """The table's load figures: the median of `runs` ((seconds, checkpoint seconds) each)."""
            secs = statistics.median(r[0] for r in runs)
            t_ckpt = statistics.median(r[1] for r in runs)
            out["load"][table] = {"rows": rows, "seconds": secs, "rows_per_s": rows / secs,
                                  "checkpoint_s": t_ckpt, "runs_s": [r[0] for r in runs], "via": via}
            log(f"eddy: {table}: {rows:,} rows in {secs:.2f} s (median of {fmt_runs([r[0] for r in runs])}) "
                f"= {fmt_rate(rows / secs)}")

        def recreate(table, round_):
            """Before every load but the first: the table again, empty."""
            if round_:
                pg_exec(a, eddy, conn, f"DROP TABLE {table}", 60)
                pg_exec(a, eddy, conn, EDDY_DDL[table], 60)

        try:
            warm_page_cache(P["ticks_jsonl"])
            chunks = line_chunks(P["ticks_jsonl"], int(a.chunk_mb * 2**20))
            lines_of = count_lines(P["ticks_jsonl"], chunks)
            runs = []
            for round_ in range(a.load_repeat):
                recreate("ticks", round_)
                t = time.perf_counter()
                rows = http_load_ndjson(a, eddy, "ticks", P["ticks_jsonl"], chunks, lines_of)
                t_ingest = time.perf_counter() - t
                log(f"eddy: ticks: {rows:,} rows accepted in {t_ingest:.2f} s; CHECKPOINT ...")
                runs.append(checkpoint("ticks", t_ingest))
            record("ticks", rows, runs, f"HTTP NDJSON, {a.chunk_mb:g} MB chunks x {a.uploaders} + CHECKPOINT")
        except (BenchError, Exception) as e:  # noqa: BLE001
            out["load"]["ticks"] = {"error": f"{type(e).__name__}: {e}"}
            log(f"eddy: loading ticks FAILED: {e}")
            eddy.check_alive()

        # ---- events: COPY FROM STDIN (CSV)
        try:
            csv_path = ensure_events_csv(P)
            est = manifest.get(f"events_{a.events}", {}).get("rows") or parse_size(a.events)
            warm_page_cache(csv_path)
            runs = []
            for round_ in range(a.load_repeat):
                recreate("events", round_)
                t = time.perf_counter()
                rows = copy_load_csv(a, eddy, conn, "events", csv_path, est)
                t_ingest = time.perf_counter() - t
                if rows is None:
                    rows = pg_exec(a, eddy, conn, "SELECT count(*) FROM events", a.query_timeout)[0][0]
                    out["notes"].append("COPY returned no row count; events rows from count(*)")
                log(f"eddy: events: {rows:,} rows copied in {t_ingest:.2f} s; CHECKPOINT ...")
                runs.append(checkpoint("events", t_ingest))
            record("events", rows, runs, "COPY FROM STDIN (FORMAT csv) + CHECKPOINT")
        except (BenchError, Exception) as e:  # noqa: BLE001
            out["load"]["events"] = {"error": f"{type(e).__name__}: {e}"}
            log(f"eddy: loading events FAILED: {e}")
            eddy.check_alive()

        for t in ("ticks", "events"):
            try:
                n = pg_exec(a, eddy, conn, f"SELECT count(*) FROM {t}", a.query_timeout)[0][0]
                out["load"].setdefault(t, {})["count_after_load"] = n
                log(f"eddy: SELECT count(*) FROM {t} -> {n:,}")
            except Exception as e:  # noqa: BLE001
                out["load"].setdefault(t, {})["count_after_load"] = f"error: {e}"
                log(f"eddy: count(*) FROM {t} FAILED: {e}")
                eddy.check_alive()

        # ---- queries: each over Flight SQL (an Arrow table, like DuckDB's), then over pgwire for comparison
        clients = [c for c in EDDY_CLIENTS if not (c == "pgwire" and a.skip_pgwire)]
        out["clients"], out["primary_client"] = clients, a.eddy_client
        cx = {"pgwire": conn, "flight": eddy.connect_flight()}
        for q in queries:
            sql = read_sql("eddy", q)
            out["queries"][q] = {}
            for client in clients:
                if client == "pgwire" and out["queries"][q].get("flight", {}).get("timed_out"):
                    out["queries"][q]["pgwire"] = {"error": "skipped: the Flight SQL runs timed out"}
                    log(f"eddy: {q} over pgwire skipped (the Flight SQL runs timed out)")
                    continue
                if eddy.proc is None or eddy.proc.poll() is not None:
                    log("eddy: not running after the previous query; restarting it on the same data directory")
                    close_quietly(cx.values())
                    eddy.stop()
                    eddy.start(wipe=False)
                    cx = {"pgwire": eddy.connect(), "flight": eddy.connect_flight()}
                out["queries"][q][client] = run_eddy_query(a, eddy, cx[client], client, q, sql, out["notes"])
        close_quietly(cx.values())
    except BenchError as e:
        out["error"] = str(e)
        log(f"eddy: FAILED: {e}")
    finally:
        eddy.stop()
    return out


# ------------------------------------------------------------------------------------------------ report
def known_answer_notes(q, fp, manifest, a):
    """Checks against the generator's ground truth (Q6 session count, Q8b bot users)."""
    ev = manifest.get(f"events_{a.events}", {})
    if q == "q6" and ev.get("sessions") and fp["rows"] == 1 and fp["cols"]:
        got = fp["cols"][0]["sum"]
        return "" if got == ev["sessions"] else f"sessions {got:.0f} != generated {ev['sessions']}"
    if q == "q8b" and ev.get("bot_burst_users") is not None:
        return "" if fp["rows"] == ev["bot_burst_users"] else f"{fp['rows']} users != {ev['bot_burst_users']} bots"
    return ""


def check_one(q, d, e, manifest, a):
    """Notes for one eddy result (a fingerprinted Flight SQL table or pgwire rows) against DuckDB's
    fingerprint `d` and the known answers; "" when it agrees."""
    notes = []
    if d and "fp" in d:
        ok, msg = compare_fp(d["fp"], e["fp"])
        if not ok:
            notes.append(("ROW COUNT MISMATCH: " if d["rows"] != e["rows"] else "values differ: ") + msg)
    ka = known_answer_notes(q, e["fp"], manifest, a)
    if ka:
        notes.append(ka)
    return "; ".join(notes)


def check_cell(q, d, eq, manifest, a):
    """The check column: each eddy client's result (Flight SQL first) against DuckDB. `eq` maps client ->
    result dict; "ok" when every client's result agrees with DuckDB's."""
    ran = [(c, e) for c, e in eq.items() if e]
    if not ran:
        if d and "fp" in d:  # DuckDB alone: only the known answers
            ka = known_answer_notes(q, d["fp"], manifest, a)
            return f"DuckDB: {ka}" if ka else ("known answer ok" if q in ("q6", "q8b") else "")
        return ""
    parts, bad = [], False
    for c, e in ran:
        if "error" in e:
            msg, bad = "error: " + e["error"].splitlines()[0][:300], True
        else:
            msg = check_one(q, d, e, manifest, a)
            bad = bad or bool(msg)
        parts.append(f"{CLIENT_NAME[c]} {msg or 'ok'}")
    if bad:
        return "; ".join(parts).replace("|", "\\|")
    return "ok" if d and "fp" in d else "(no DuckDB result)"


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def eddy_results(E, q):
    """{client: eddy's result dict for query q, or None when that client did not run it}."""
    r = E.get("queries", {}).get(q) or {}
    return {c: r.get(c) for c in EDDY_CLIENTS}


def query_text(a, primary, has_pg):
    """The paragraph above the query table."""
    t = (f"Median of {a.repeat} timed runs after 1 warm-up (1 timed run when the warm-up took > {SLOW_WARMUP_S:.0f} s); "
         "every result fully fetched. DuckDB: `to_arrow_table()` (= `fetch_arrow_table()`) in-process. "
         "`eddy s`: Flight SQL on loopback through ADBC, `cursor.execute()` + `fetch_arrow_table()`, so eddy's result "
         "ends as a pyarrow Table, the same thing DuckDB's column measures. ")
    if has_pg:
        t += ("`eddy pgwire s`, for comparison: psycopg2 `cursor.execute()` + `fetchall()` (text protocol: the "
              "conversion to Python objects is included; `eddy exec s` is `execute()` alone, i.e. the server's work "
              "plus the transfer). ")
    else:
        t += "pgwire not measured (`--skip-pgwire`). "
    t += (f"Ratios = eddy time ÷ DuckDB time (< 1: eddy faster); the first geometric mean below uses the "
          f"{CLIENT_NAME[primary]} figure (`--eddy-client {primary}`). check: row count and column sums of each eddy "
          "result" + (" (the Flight SQL table and the pgwire rows)" if has_pg else "") + " against DuckDB's "
          "(relative tolerance 1e-6), plus the generator's known answers for Q6 and Q8b.")
    return t


def query_table(res, a, manifest, D, E, gms):
    """The query section's lines: paragraph, table, geometric means. Fills gms {client: geomean}."""
    queries = res["meta"]["queries"]
    primary = E.get("primary_client", a.eddy_client)
    has_pg = any(eddy_results(E, q)["pgwire"] for q in queries)
    cols = ["query", "DuckDB s", "eddy s (Flight SQL, Arrow)", "eddy/DuckDB" if primary == "flight" else "Flight/DuckDB"]
    if has_pg:
        cols += ["eddy pgwire s", "pgwire/DuckDB", "eddy exec s"]
    cols += ["rows", "check"]
    L = [query_text(a, primary, has_pg), "", "| " + " | ".join(cols) + " |",
         "|---|" + "---:|" * (len(cols) - 2) + "---|"]
    ratios, mism = {c: [] for c in EDDY_CLIENTS}, {c: 0 for c in EDDY_CLIENTS}
    for q in queries:
        d, eq = D.get("queries", {}).get(q), eddy_results(E, q)
        ds = d.get("median_s") if d else None
        cells = [q, fmt_s(ds)]
        for c in EDDY_CLIENTS:
            e = eq[c]
            es = e.get("median_s") if e else None
            ratio = es / ds if ds and es else None
            if ratio:
                ratios[c].append(ratio)
                mism[c] += d.get("rows") != e.get("rows")
            if c == "flight" or has_pg:
                cells += [fmt_s(es), f"{ratio:.2f}" if ratio else "-"]
        if has_pg:
            cells.append(fmt_s(eq["pgwire"].get("exec_median_s") if eq["pgwire"] else None))
        nrows = next((r["rows"] for r in (d, eq[primary], eq["flight"], eq["pgwire"]) if r and "rows" in r), None)
        check = check_cell(q, d, eq, manifest, a)
        if d and "error" in d:
            check = ("DuckDB error: " + d["error"].splitlines()[0][:200].replace("|", "\\|") + "; " + check).rstrip("; ")
        cells += [num(nrows), check]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    for c in sorted(EDDY_CLIENTS, key=lambda c: c != primary):  # the primary client first
        gm = gms[c] = geomean(ratios[c])
        how = {"flight": "eddy over Flight SQL (Arrow tables, like DuckDB's)",
               "pgwire": "eddy over pgwire (psycopg2 `fetchall()`)"}[c]
        over = (f" over {len(ratios[c])} of {len(queries)} queries"
                + (f" ({mism[c]} of them with mismatching row counts)" if mism[c] else "") + ".")
        if c == primary:
            L.append(f"**Geometric mean of eddy/DuckDB query time ratios, {how}: {gm:.2f}**{over}" if gm else
                     f"Geometric mean of eddy/DuckDB query time ratios, {how}: - (needs both engines).")
        elif gm:
            L += ["", f"For comparison, the geometric mean with {how}: {gm:.2f}{over}"]
    return L


def build_report(res, a, manifest):
    """-> (Markdown report, {client: geometric mean of its eddy/DuckDB query time ratios})."""
    D, E = res.get("duckdb") or {}, res.get("eddy") or {}
    gms = {}
    m = res["meta"]
    L = [f"# eddy vs DuckDB: ticks_{a.rows} / events_{a.events}", ""]
    L.append(f"Generated {m['finished']} by `benches/peers/run.py`. Machine: {m['machine']['cpu']}, "
             f"{m['machine']['cores']} cores, {m['machine']['memory']}; load average at start "
             f"{', '.join(f'{x:.1f}' for x in m['machine']['loadavg_at_start'])}.")
    L.append(f"DuckDB {D.get('version', '-')} ({D.get('threads', '-')} threads, on-disk database, in-process); "
             f"eddy `{E.get('version', '-')}` (standalone server on loopback: queries over Flight SQL and the "
             "PostgreSQL wire, loads over HTTP and the PostgreSQL wire).")
    if res.get("duckdb_reused_from"):
        L.append(f"DuckDB figures reused from the run of {res['duckdb_reused_from']} (same data set).")
    L.append("")
    if E.get("error"):
        L += [f"**eddy failed:** {E['error'].splitlines()[0]}", "", "```", E["error"], "```", ""]
    L += ["## Load", "",
          "DuckDB: `CREATE TABLE AS SELECT * FROM read_json(NDJSON, explicit columns)` + `CHECKPOINT`. "
          f"eddy: ticks as NDJSON over HTTP ({a.chunk_mb:g} MB bodies, {a.uploaders} concurrent uploaders), events with "
          "`COPY … FROM STDIN (FORMAT csv)` over pgwire; each followed by `CHECKPOINT`, which is included. "
          f"Each time is the median of {a.load_repeat} loads into an empty table (all of them in `results.json`). "
          "ratio = eddy rows/s ÷ DuckDB rows/s (> 1: eddy loads faster).", "",
          "| table | rows | DuckDB s | DuckDB rows/s | eddy s | eddy rows/s | of which CHECKPOINT s | eddy/DuckDB | eddy count(*) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in ("ticks", "events"):
        d, e = D.get("load", {}).get(t, {}), E.get("load", {}).get(t, {})
        ratio = e["rows_per_s"] / d["rows_per_s"] if "rows_per_s" in d and "rows_per_s" in e else None
        rows = d.get("rows", e.get("rows"))
        cnt = e.get("count_after_load")
        L.append(f"| {t} | {num(rows)} | {'error' if 'error' in d else fmt_s(d.get('seconds'))} | "
                 f"{fmt_rate(d.get('rows_per_s'))} | {'error' if 'error' in e else fmt_s(e.get('seconds'))} | "
                 f"{fmt_rate(e.get('rows_per_s'))} | {fmt_s(e.get('checkpoint_s'))} | "
                 f"{f'{ratio:.2f}' if ratio else '-'} | {num(cnt)} |")
    for side, name in ((D, "DuckDB"), (E, "eddy")):
        for t, v in side.get("load", {}).items():
            if "error" in v:
                L.append(f"\n{name} {t} load error: `{v['error'][:500]}`")
    L += ["", "## Queries", ""] + query_table(res, a, manifest, D, E, gms)
    notes = E.get("notes", [])
    if notes:
        L += ["", "Notes:", ""] + [f"- {n.splitlines()[0]}" for n in notes]
    L += ["", "Raw numbers: `results.json` next to this file. Absolute times are noisy on a shared 2-core machine; "
          "compare the ratios, ideally from one run.", ""]
    return "\n".join(L), gms


# ------------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eddy", help="path to the eddy binary (required unless --engines duckdb)")
    ap.add_argument("--rows", default="10m", help="ticks data set size, e.g. 100k, 1m, 10m (default 10m)")
    ap.add_argument("--events", default="10m", help="events data set size (default 10m)")
    ap.add_argument("--work", default=os.path.join(REPO, "target", "bench-data"),
                    help="work directory for data, databases, logs and results (default <repo>/target/bench-data)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per query after 1 warm-up (default 3)")
    ap.add_argument("--load-repeat", type=int, default=3,
                    help="loads of each table per engine; the median is reported (default 3: one load's time "
                         "varies by 20%% or more between runs on a shared 2-core VM)")
    ap.add_argument("--skip-gen", action="store_true", help="do not run gen.py; fail if the data files are missing")
    ap.add_argument("--engines", default="duckdb,eddy",
                    help="comma list out of duckdb,eddy (default both). With only eddy, DuckDB's figures are taken "
                         "from the previous WORK/results.json when it was made from the same data set")
    ap.add_argument("--queries", default=",".join(ALL_QUERIES), help="comma list of queries (default q1..q9)")
    ap.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 2, help="DuckDB threads (default: all cores)")
    ap.add_argument("--chunk-mb", type=float, default=128,
                    help="HTTP NDJSON body size for eddy's ticks load (default 128: ~1.5M rows, so each body is "
                         "a bulk write straight to a segment)")
    ap.add_argument("--uploaders", type=int, default=2, help="concurrent HTTP uploaders (default 2)")
    ap.add_argument("--eddy-client", choices=EDDY_CLIENTS, default="flight",
                    help="which eddy figure the eddy/DuckDB ratio's geometric mean uses: flight (Flight SQL via ADBC, "
                         "an Arrow table like DuckDB's; default) or pgwire (psycopg2 fetchall). The report shows both")
    ap.add_argument("--skip-pgwire", action="store_true",
                    help="run eddy's queries over Flight SQL only, not again over pgwire")
    ap.add_argument("--eddy-arg", action="append", default=[], help="extra argument for `eddy standalone` (repeatable)")
    ap.add_argument("--startup-timeout", type=float, default=60, help="s for eddy to write endpoints.json and be healthy")
    ap.add_argument("--load-timeout", type=float, default=1800, help="s for one table's load (default 1800)")
    ap.add_argument("--chunk-timeout", type=float, default=600, help="s for one HTTP body to be answered (default 600)")
    ap.add_argument("--query-timeout", type=float, default=900,
                    help="s for one query's warm-up + timed runs together (default 900)")
    ap.add_argument("--gen-timeout", type=float, default=3600, help="s for gen.py (default 3600)")
    a = ap.parse_args()
    a.rows, a.events = a.rows.lower(), a.events.lower()
    a.work = os.path.abspath(a.work)
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ("duckdb", "eddy")]
    if bad or not engines:
        ap.error(f"--engines: unknown {bad}; use duckdb, eddy or duckdb,eddy")
    queries = [q.strip() for q in a.queries.split(",") if q.strip()]
    if [q for q in queries if q not in ALL_QUERIES]:
        ap.error(f"--queries: choose from {','.join(ALL_QUERIES)}")
    if "eddy" in engines:
        if not a.eddy:
            ap.error("--eddy PATH is required (or use --engines duckdb)")
        a.eddy = os.path.abspath(a.eddy)
        if not (os.path.isfile(a.eddy) and os.access(a.eddy, os.X_OK)):
            ap.error(f"--eddy {a.eddy}: not an executable file")
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    if a.skip_pgwire and a.eddy_client == "pgwire":
        ap.error("--eddy-client pgwire needs the pgwire runs; drop --skip-pgwire")

    os.makedirs(a.work, exist_ok=True)
    P = data_paths(a)
    res_path = os.path.join(a.work, "results.json")
    previous = None
    if "duckdb" not in engines and os.path.exists(res_path):
        try:
            with open(res_path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None

    started = dt.datetime.now(dt.timezone.utc)
    res = {"meta": {"started": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "rows": a.rows, "events": a.events,
                    "repeat": a.repeat, "queries": queries, "engines": engines, "machine": machine_info(),
                    "args": {k: v for k, v in vars(a).items()}}}
    try:
        ensure_data(a, P)
        manifest = load_manifest(P)
        res["data"] = {k: manifest.get(k) for k in (f"ticks_{a.rows}", f"events_{a.events}")}
        if "duckdb" in engines:
            res["duckdb"] = run_duckdb(a, P, queries)
        elif previous and previous.get("meta", {}).get("rows") == a.rows and \
                previous.get("meta", {}).get("events") == a.events and previous.get("duckdb"):
            res["duckdb"] = previous["duckdb"]
            res["duckdb_reused_from"] = previous.get("duckdb_reused_from") or previous["meta"].get("started")
            log(f"duckdb: reusing the figures from {res['duckdb_reused_from']}")
        if "eddy" in engines:
            res["eddy"] = run_eddy(a, P, queries, manifest)
    except BenchError as e:
        log(f"FAILED: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130

    res["meta"]["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    md, gms = build_report(res, a, manifest)
    res["geomean_eddy_over_duckdb"] = gms.get(a.eddy_client)  # the --eddy-client figure
    res["geomean_by_eddy_client"] = gms
    with open(os.path.join(a.work, "results.md"), "w") as f:
        f.write(md)
    with open(res_path, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print()
    print(md)
    log(f"wrote {os.path.join(a.work, 'results.md')} and {res_path}")
    failed = [f"{eng} {kind} {k}" for eng in ("duckdb", "eddy") for kind in ("load", "queries")
              for k, v in ((res.get(eng) or {}).get(kind) or {}).items() if "error" in v]
    failed += [f"eddy {q} over {CLIENT_NAME[c]}" for q, v in ((res.get("eddy") or {}).get("queries") or {}).items()
               for c, r in v.items() if c in EDDY_CLIENTS and r and "error" in r]
    if (res.get("eddy") or {}).get("error"):
        failed.insert(0, "eddy")
    if failed:
        log("finished with errors: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
