#!/usr/bin/env python3
"""pgwire round trips: eddy next to a local PostgreSQL, same table, same clients.

    .venv-bench/bin/python benches/pgwire/run.py --eddy target/release/eddy
    .venv-bench/bin/python benches/pgwire/run.py --eddy target/release/eddy --rows 100k --seconds 3   # smoke run

One run starts `eddy standalone` and a PostgreSQL server (initdb into a temporary directory,
postgres on a free loopback port), loads the same table into both with COPY FROM STDIN

    t (id bigint PRIMARY KEY, sym text NOT NULL, ts timestamptz NOT NULL, price double precision)

and then, for each server, with 1 and 16 concurrent clients (each client a process with its
own psycopg 3 connection and server-side prepared statements):

  - `SELECT 1`: the bare round trip (parse-free execute of a prepared statement);
  - `SELECT * FROM t WHERE id = $1` with uniformly random ids: a point query, whose one row
    is checked against the id asked for.

The servers take turns cell by cell (eddy, then PostgreSQL, for each workload and client
count), so background load on the machine falls on both. It prints queries/s for both and
the ratio eddy/PostgreSQL (above 1 means eddy answers more queries per second), with
progress lines, and writes WORK/pgwire.md and WORK/pgwire.json (WORK = target/bench-data).

PostgreSQL: `--pg-bindir`, else `postgres` and `initdb` on PATH, else the newest
/usr/lib/postgresql/*/bin. When none is found and the script runs as root it installs
Debian's `postgresql` package with apt-get; otherwise it says what to install and exits 2.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (or
`nobody`) in a directory it owns.
"""
import argparse
import datetime as dt
import glob
import json
import multiprocessing as mp
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

DDL = "CREATE TABLE t (id bigint PRIMARY KEY, sym text NOT NULL, ts timestamptz NOT NULL, price double precision)"
POINT = "SELECT * FROM t WHERE id = %s"
SELECT1 = "SELECT 1"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_size(s):
    s = str(s).strip().lower()
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_busy():
    """-> (busy jiffies, total jiffies) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def cpu_of(pids):
    """User + system CPU seconds of these processes (those still alive)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# ------------------------------------------------------------------------------------------------ data
def ensure_data(path, rows):
    """The COPY text file for `rows` rows (seed 42), made once per size."""
    if os.path.exists(path):
        return
    log(f"data: writing {rows:,} rows to {path}")
    rng = random.Random(42)
    syms = [f"SYM{i:03d}" for i in range(100)]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        buf = []
        for i in range(rows):
            ts = T0 + dt.timedelta(milliseconds=i * 10)
            buf.append(f"{i}\t{syms[i % 100]}\t{ts.strftime('%Y-%m-%d %H:%M:%S.%f')}+00\t{rng.uniform(10, 1000):.4f}\n")
            if len(buf) >= 100_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    os.replace(tmp, path)


def copy_load(conn, path, label):
    t = time.perf_counter()
    sent = 0
    size = os.path.getsize(path)
    last = t
    with conn.cursor() as cur, open(path, "rb") as f:
        with cur.copy("COPY t (id, sym, ts, price) FROM STDIN") as cp:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                cp.write(chunk)
                sent += len(chunk)
                if time.perf_counter() - last > 3:
                    last = time.perf_counter()
                    log(f"{label}: COPY {100 * sent / size:.0f}% sent")
    return time.perf_counter() - t


# ------------------------------------------------------------------------------------------------ servers
class Eddy:
    name = "eddy"

    def __init__(self, a):
        self.a = a
        self.dir = os.path.join(a.work, "pgwire-eddy")
        self.proc = None
        self.log_path = os.path.join(a.work, "pgwire-eddy.log")

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        cmd = [self.a.eddy, "standalone", "--data-dir", self.dir, "--pg-listen", "127.0.0.1:0",
               "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"]
        log("eddy: " + " ".join(cmd) + f"  (log: {self.log_path})")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        ep_path = os.path.join(self.dir, "endpoints.json")
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"eddy exited with code {self.proc.returncode}; see {self.log_path}")
            try:
                with open(ep_path) as f:
                    ep = json.load(f)
                if ep.get("pg"):
                    break
            except (OSError, ValueError):
                pass
            if time.time() > deadline:
                raise BenchError(f"eddy did not write {ep_path} within 60 s; see {self.log_path}")
            time.sleep(0.05)
        host, port = ep["pg"].rsplit(":", 1)
        self.dsn = f"host={host} port={port} user=eddy dbname=eddy"
        wait_connect(self.dsn, self.proc, "eddy")
        log(f"eddy: up, pg={ep['pg']}")

    def version(self, conn):
        out = subprocess.run([self.a.eddy, "--version"], capture_output=True, text=True)
        return out.stdout.strip() or "eddy (unknown version)"

    def after_load(self, conn):
        conn.execute("CHECKPOINT")  # seal the memtable into segments, as a table that has been running would be

    def server_pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            log(f"eddy: stopped (exit code {self.proc.returncode})")
        if self.proc:
            self._log.close()
        self.proc = None


def find_pg_bindir(a):
    if a.pg_bindir:
        for tool in ("postgres", "initdb"):
            if not os.access(os.path.join(a.pg_bindir, tool), os.X_OK):
                raise BenchError(f"--pg-bindir {a.pg_bindir} has no {tool}")
        return a.pg_bindir
    pg, initdb = shutil.which("postgres"), shutil.which("initdb")
    if pg and initdb:
        d = os.path.dirname(os.path.realpath(pg))
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if cands:
        return os.path.dirname(cands[-1])
    return None


def ensure_pg_bindir(a):
    d = find_pg_bindir(a)
    if d:
        return d
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("postgresql: no server binaries found; installing Debian's postgresql package (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        d = find_pg_bindir(a)
        if d:
            return d
    raise BenchError("no PostgreSQL server found (postgres and initdb). Install Debian's server package: "
                     "`sudo apt-get install postgresql` (binaries in /usr/lib/postgresql/<version>/bin), "
                     "or pass --pg-bindir DIR")


class Postgres:
    name = "PostgreSQL"

    def __init__(self, a):
        self.a = a
        self.proc = None
        self.log_path = os.path.join(a.work, "pgwire-postgres.log")

    def start(self):
        bindir = ensure_pg_bindir(self.a)
        self.dir = tempfile.mkdtemp(prefix="eddy-bench-pg-")
        data = os.path.join(self.dir, "data")
        run_as = {}
        if os.geteuid() == 0:  # postgres will not run as root
            try:
                u = pwd.getpwnam("postgres")
            except KeyError:
                u = pwd.getpwnam("nobody")
            os.chown(self.dir, u.pw_uid, u.pw_gid)
            run_as = dict(user=u.pw_uid, group=u.pw_gid, extra_groups=[])
            log(f"postgresql: running as user {u.pw_name} (this script runs as root)")
        out = subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                              "-E", "UTF8", "--locale=C", "--no-sync"],
                             capture_output=True, text=True, cwd=self.dir, **run_as)
        if out.returncode != 0:
            raise BenchError(f"initdb failed:\n{out.stdout}\n{out.stderr}")
        port = free_port()
        cmd = [os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
               "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=100",
               "-c", "shared_buffers=256MB"]
        log("postgresql: " + " ".join(cmd) + f"  (log: {self.log_path})")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.dir, **run_as)
        self.dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        wait_connect(self.dsn, self.proc, "postgresql")
        log(f"postgresql: up, pg=127.0.0.1:{port}")

    def version(self, conn):
        return conn.execute("SELECT version()").fetchone()[0]

    def after_load(self, conn):
        conn.execute("VACUUM ANALYZE t")

    def server_pids(self):
        pids = [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            log(f"postgresql: stopped (exit code {self.proc.returncode})")
        if self.proc:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        self.proc = None


def wait_connect(dsn, proc, label):
    import psycopg
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{label} exited with code {proc.returncode} during start-up")
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
            return
        except psycopg.OperationalError as e:
            if time.time() > deadline:
                raise BenchError(f"cannot connect to {label}: {e}") from e
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ clients
def client(dsn, workload, rows, seed, warmup, seconds, go, release, progress, out):
    """One client process: connect, prepare, warm up, say "ready", wait for `go`, run `seconds`,
    report, and keep the connection until the parent has read the servers' CPU time (`release`)."""
    import psycopg
    try:
        rng = random.Random(seed)
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.cursor()

            def once():
                if workload == "select1":
                    cur.execute(SELECT1, prepare=True)
                    r = cur.fetchall()
                    if r != [(1,)]:
                        raise BenchError(f"SELECT 1 returned {r!r}")
                else:
                    k = rng.randrange(rows)
                    cur.execute(POINT, (k,), prepare=True)
                    r = cur.fetchall()
                    if len(r) != 1 or r[0][0] != k:
                        raise BenchError(f"id = {k} returned {r!r}")

            end = time.monotonic() + warmup
            while time.monotonic() < end:
                once()
            out.put({"ready": True})
            if not go.wait(timeout=180):
                raise BenchError("no start signal within 180 s")
            lat = []
            cpu0 = time.process_time()
            t0 = time.monotonic()
            end = t0 + seconds
            n = 0
            now = t0
            while now < end:
                once()
                t = time.monotonic()
                lat.append(t - now)
                now = t
                n += 1
                if n & 63 == 0:
                    progress.value = n
            progress.value = n
            elapsed = now - t0
            cpu = time.process_time() - cpu0
            lat.sort()
            out.put({"ok": True, "n": n, "elapsed": elapsed, "cpu": cpu,
                     "p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))]})
            release.wait(timeout=60)
    except BaseException as e:  # the parent reports it
        out.put({"ok": False, "error": f"{type(e).__name__}: {e}"})


def measure(a, server, workload, clients, rows):
    ctx = mp.get_context("spawn")  # no inherited sockets or threads
    go, release = ctx.Event(), ctx.Event()
    out = ctx.Queue()
    progress = [ctx.Value("q", 0, lock=False) for _ in range(clients)]
    procs = [ctx.Process(target=client, args=(server.dsn, workload, rows, 1000 * clients + i, a.warmup,
                                              a.seconds, go, release, progress[i], out), daemon=True)
             for i in range(clients)]
    label = f"{server.name}: {workload}, {clients} client{'s' if clients > 1 else ''}"
    for p in procs:
        p.start()
    try:
        for _ in procs:
            r = out.get(timeout=180)
            if not r.get("ready"):
                raise BenchError(f"{label}: a client failed before the run: {r.get('error')}")
        pids = server.server_pids()
        srv0 = cpu_of(pids)
        busy0, total0 = cpu_busy()
        t0 = time.monotonic()
        go.set()
        while time.monotonic() < t0 + a.seconds - 0.1:
            time.sleep(min(a.progress_every, max(0.05, t0 + a.seconds - time.monotonic())))
            el = time.monotonic() - t0
            if el < a.seconds - 0.1:
                done = sum(v.value for v in progress)
                log(f"{label}: {el:4.1f}/{a.seconds:g} s, {done:,} queries, {done / el:,.0f} q/s so far")
        results = [out.get(timeout=a.seconds + 60) for _ in procs]
        busy1, total1 = cpu_busy()
        srv1 = cpu_of(pids)
        wall = time.monotonic() - t0
    finally:
        go.set()
        release.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if not r["ok"]]
    if errors:
        raise BenchError(f"{label}: {len(errors)} client(s) failed: {errors[0]}")
    qps = sum(r["n"] / r["elapsed"] for r in results)
    ncpu = os.cpu_count()
    res = {
        "server": server.name, "workload": workload, "clients": clients, "queries": sum(r["n"] for r in results),
        "qps": qps,
        "p50_ms": 1000 * statistics.median(r["p50"] for r in results),
        "p99_ms": 1000 * max(r["p99"] for r in results),
        "client_cpu_cores": sum(r["cpu"] for r in results) / a.seconds,
        "server_cpu_cores": (srv1 - srv0) / wall,
        "machine_busy_cores": ncpu * (busy1 - busy0) / max(1, total1 - total0),
    }
    log(f"{label}: {qps:,.0f} q/s (p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms; CPU cores: "
        f"server {res['server_cpu_cores']:.2f}, clients {res['client_cpu_cores']:.2f}, "
        f"machine {res['machine_busy_cores']:.2f} of {ncpu})")
    return res


# ------------------------------------------------------------------------------------------------ report
WORKLOADS = {"select1": "`SELECT 1`", "point": "`SELECT * FROM t WHERE id = $1`"}


def paired_ratio(runs):
    """eddy/PostgreSQL per pair of back-to-back runs: the median, and the range as the
    noise of this machine shows it. Pairs cancel load that drifts between repeats, which a
    ratio of the two medians does not."""
    r = sorted(e["qps"] / p["qps"] for e, p in zip(runs["eddy"], runs["PostgreSQL"]))
    return {"median": statistics.median(r), "min": r[0], "max": r[-1], "pairs": r}


def report(a, meta, cells, ratios):
    lines = [
        "# pgwire: eddy vs PostgreSQL",
        "",
        f"{meta['date']}, {meta['rows']:,} rows in `t`, {a.seconds:g} s per cell after {a.warmup:g} s warm-up, "
        f"{meta['repeat']} run(s) per cell, the servers taking turns in ABBA order (median q/s; eddy/PostgreSQL is "
        f"the median of the back-to-back pairs' ratios, with their range). Clients: psycopg {meta['psycopg']} with server-side "
        f"prepared statements, one process and one connection per client, over loopback TCP.",
        "",
        f"- machine: {meta['cpus']} cores ({meta['cpu_model']}), {meta['mem_gb']:.0f} GB; load average at the "
        f"start {meta['loadavg_start']}, at the end {meta['loadavg_end']}",
        f"- eddy: `{meta['eddy_cmd']}` ({meta['eddy_version']})",
        f"- PostgreSQL: {meta['pg_version']} (initdb defaults, shared_buffers=256MB)",
        f"- load: COPY FROM STDIN of the same {meta['rows']:,} rows: eddy {meta['load_s']['eddy']:.1f} s "
        f"(+ CHECKPOINT {meta['after_load_s']['eddy']:.1f} s), PostgreSQL {meta['load_s']['PostgreSQL']:.1f} s "
        f"(+ VACUUM ANALYZE {meta['after_load_s']['PostgreSQL']:.1f} s)",
        "",
        "| query | clients | eddy q/s | PostgreSQL q/s | eddy/PostgreSQL (pairs) | eddy p50 / p99 ms | PostgreSQL p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (w, c), by in cells.items():
        e, p = by["eddy"], by["PostgreSQL"]
        rt = ratios[(w, c)]
        lines.append(f"| {WORKLOADS[w]} | {c} | {e['qps']:,.0f} | {p['qps']:,.0f} | "
                     f"{rt['median']:.2f} ({rt['min']:.2f}-{rt['max']:.2f}) | "
                     f"{e['p50_ms']:.2f} / {e['p99_ms']:.2f} | {p['p50_ms']:.2f} / {p['p99_ms']:.2f} |")
    lines += [
        "",
        "CPU used during each cell, in cores (server process(es), the Python clients, the whole machine):",
        "",
        "| query | clients | eddy: server / clients / machine | PostgreSQL: server / clients / machine |",
        "|---|---:|---:|---:|",
    ]
    for (w, c), by in cells.items():
        e, p = by["eddy"], by["PostgreSQL"]
        lines.append(f"| {WORKLOADS[w]} | {c} | {e['server_cpu_cores']:.2f} / {e['client_cpu_cores']:.2f} / "
                     f"{e['machine_busy_cores']:.2f} | {p['server_cpu_cores']:.2f} / {p['client_cpu_cores']:.2f} / "
                     f"{p['machine_busy_cores']:.2f} |")
    lines += [
        "",
        f"On this {meta['cpus']}-core machine the clients, the server and anything else running share the cores: with "
        "16 clients the Python processes take a large part of the CPU, so the 16-client figures are a floor for "
        "both servers rather than their ceiling. Compare the ratio, not the absolute numbers, across machines. "
        "PostgreSQL's server CPU is the postmaster and its child processes (the backends of the cell's clients and "
        "the background workers).",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eddy", required=True, help="the eddy binary")
    ap.add_argument("--rows", default="1m", help="rows in t (100k, 1m, ...; default 1m)")
    ap.add_argument("--clients", default="1,16", help="client counts (default 1,16)")
    ap.add_argument("--workloads", default="select1,point", help="select1, point or both (default)")
    ap.add_argument("--seconds", type=float, default=10, help="measured seconds per cell (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up seconds per client before each cell")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell, median kept (default 1)")
    ap.add_argument("--work", default=os.path.join(REPO, "target", "bench-data"))
    ap.add_argument("--pg-bindir", help="directory with postgres and initdb")
    ap.add_argument("--progress-every", type=float, default=3, help="seconds between progress lines")
    a = ap.parse_args()
    a.eddy = os.path.abspath(a.eddy)
    if not os.access(a.eddy, os.X_OK):
        print(f"no eddy binary at {a.eddy}", file=sys.stderr)
        return 2
    try:
        import psycopg
    except ImportError:
        print("psycopg 3 is missing: pip install -r benches/pgwire/requirements.txt", file=sys.stderr)
        return 2
    rows = parse_size(a.rows)
    clients = [int(c) for c in a.clients.split(",")]
    workloads = [w for w in a.workloads.split(",")]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, f"pgwire-t-{rows}.tsv")
    try:
        ensure_pg_bindir(a)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open("/proc/loadavg") as f:
        load_start = " ".join(f.read().split()[:3])
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "rows": rows, "repeat": a.repeat,
            "psycopg": psycopg.__version__, "cpus": os.cpu_count(), "loadavg_start": load_start,
            "cpu_model": cpu_model(), "mem_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "eddy_cmd": os.path.relpath(a.eddy, REPO) if a.eddy.startswith(REPO) else a.eddy,
            "load_s": {}, "after_load_s": {}, "python": platform.python_version()}
    # SIGTERM (e.g. `timeout`) stops both servers through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = [Eddy(a), Postgres(a)]
    cells, ratios = {}, {}
    status = 0
    try:
        ensure_data(data, rows)
        for s in servers:
            s.start()
            with psycopg.connect(s.dsn, autocommit=True) as conn:
                v = s.version(conn)
                meta["eddy_version" if s.name == "eddy" else "pg_version"] = v.split(",")[0]
                conn.execute("DROP TABLE IF EXISTS t")
                conn.execute(DDL)
                log(f"{s.name}: loading {rows:,} rows with COPY FROM STDIN")
                secs = copy_load(conn, data, s.name)
                meta["load_s"][s.name] = secs
                t = time.perf_counter()
                s.after_load(conn)
                meta["after_load_s"][s.name] = time.perf_counter() - t
                n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
                if n != rows:
                    raise BenchError(f"{s.name}: count(*) = {n}, loaded {rows}")
                log(f"{s.name}: {rows:,} rows in {secs:.1f} s ({rows / secs:,.0f} rows/s), after-load step "
                    f"{meta['after_load_s'][s.name]:.1f} s")
        for w in workloads:
            for c in clients:
                runs = {s.name: [] for s in servers}
                for r in range(a.repeat):
                    # Take turns, in ABBA order, so that background load and its drift fall on both.
                    for s in (servers if r % 2 == 0 else servers[::-1]):
                        runs[s.name].append(measure(a, s, w, c, rows))
                cells[(w, c)] = {n: sorted(v, key=lambda x: x["qps"])[len(v) // 2] for n, v in runs.items()}
                ratios[(w, c)] = paired_ratio(runs)
                e, p = cells[(w, c)]["eddy"], cells[(w, c)]["PostgreSQL"]
                rt = ratios[(w, c)]
                log(f"==> {w}, {c} client(s): eddy {e['qps']:,.0f} q/s, PostgreSQL {p['qps']:,.0f} q/s, "
                    f"eddy/PostgreSQL {rt['median']:.2f} (pairs {rt['min']:.2f}-{rt['max']:.2f})")
    except (BenchError, psycopg.Error) as e:
        log(f"error: {type(e).__name__}: {e}")
        status = 1
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"{s.name}: stop failed: {e}")
    with open("/proc/loadavg") as f:
        meta["loadavg_end"] = " ".join(f.read().split()[:3])
    if cells and all(len(v) == 2 for v in cells.values()) and "pg_version" in meta:
        md = report(a, meta, cells, ratios)
        path = os.path.join(a.work, "pgwire.md")
        with open(path, "w") as f:
            f.write(md)
        with open(os.path.join(a.work, "pgwire.json"), "w") as f:
            json.dump({"meta": meta, "cells": [dict(workload=w, clients=c, ratio=ratios[(w, c)],
                                                    **{k: v for k, v in by.items()})
                                               for (w, c), by in cells.items()]}, f, indent=1)
        print()
        print(md)
        log(f"report: {path}")
    return status


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
