#!/usr/bin/env bash
# Apache Superset against a real eddy, through Superset's own, unmodified Python code.
#
# Proves that Superset can:
#   1. register eddy as a database: TestConnectionDatabaseCommand, then CreateDatabaseCommand
#      (its connection test and the catalog/schema discovery it does for permissions);
#   2. add `public.ticks` as a dataset and sync its columns: CreateDatasetCommand (which
#      reflects the table) and SqlaTable.fetch_metadata(), with `ts` recognised as temporal
#      (is_dttm) and price/volume as numeric;
#   3. run time-series chart queries: SqlaTable.query() with granularity `ts`, the PT1H time
#      grain and a time range, and the QueryContext -> ChartDataCommand path of an ECharts
#      time-series chart (x-axis `ts` with the P1D grain, TEMPORAL_RANGE filter, `sym` as
#      series, pivot post-processing); bucket counts and sums are checked against the rows
#      inserted. The SQL Superset generated and the results are printed.
# Superset runs in-process, without a web server: a generated superset_config.py with a
# SQLite metadata DB, `superset db upgrade`, `superset init`, then create_app()'s context.
#
# Slow, and not part of CI (scripts/test.sh does not run it): the first run installs
# apache-superset into a venv (about 2-5 minutes); later runs re-use it and take about a
# minute, mostly `superset db upgrade` + `superset init` on a fresh metadata DB.
# Needs Python 3.10-3.12 (what apache-superset supports; PYTHON=/path/to/python picks one)
# and PyPI on the first run.
#
# Usage: tests/clients/superset.sh [--eddy PATH] [--venv DIR] [--keep]
#   --eddy PATH  eddy binary (default: ${CARGO_TARGET_DIR:-<repo>/target}/debug/eddy)
#   --venv DIR   venv for Superset (default: <repo>/.venv-superset; created if missing)
#   --keep       keep the scratch dir (eddy data + log, Superset config + metadata DB)
set -euo pipefail

SUPERSET_VERSION=6.1.0

main() {
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  EDDY="${CARGO_TARGET_DIR:-$REPO/target}/debug/eddy"
  VENV="$REPO/.venv-superset"
  KEEP=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --eddy) EDDY=${2:?--eddy needs a path}; shift 2 ;;
      --eddy=*) EDDY=${1#*=}; shift ;;
      --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
      --venv=*) VENV=${1#*=}; shift ;;
      --keep) KEEP=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "superset.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  START=$SECONDS
  [ -x "$EDDY" ] || die "no eddy binary at $EDDY (build it with 'cargo build' or pass --eddy PATH)"
  EDDY=$(cd "$(dirname "$EDDY")" && pwd)/$(basename "$EDDY")
  case "$VENV" in /*) ;; *) VENV=$PWD/$VENV ;; esac

  install_superset
  PYBIN=$VENV/bin/python

  WORK=$(mktemp -d "${TMPDIR:-/tmp}/eddy-superset.XXXXXX")
  EDDY_PID=""
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  write_driver "$WORK/drive.py"

  start_eddy

  step "creating and filling public.ticks over psycopg2"
  "$PYBIN" "$WORK/drive.py" load || die "loading ticks into eddy failed"

  setup_superset

  step "driving Superset in-process (database, dataset, time-series queries)"
  "$PYBIN" "$WORK/drive.py" superset || die "Superset against eddy failed (see above)"
  step "all checks passed"
}

usage() { sed -n '/^# Usage:/,/^#   --keep/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
step() { printf '==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '\nsuperset.sh: FAILED: %s\n' "$*" >&2; exit 1; }

supported_python() {
  "$1" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null
}

# The venv: created if missing; pip runs only when a pinned top-level package is missing or
# at another version. All of Superset's dependencies are constrained to the set this script
# was last run with (pins below), since a plain `pip install apache-superset==6.1.0`
# resolves newer releases that break it.
install_superset() {
  if [ ! -x "$VENV/bin/python" ]; then
    local py="" cand
    for cand in ${PYTHON:-} python3 python3.12 python3.11 python3.10; do
      if command -v "$cand" >/dev/null 2>&1 && supported_python "$cand"; then py=$cand; break; fi
    done
    [ -n "$py" ] || die "apache-superset $SUPERSET_VERSION needs Python 3.10-3.12 and none was found (python3 is $(python3 --version 2>&1)); install one or set PYTHON=/path/to/python3.12"
    step "creating venv $VENV with $("$py" --version 2>&1)"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  fi
  supported_python "$VENV/bin/python" \
    || die "$VENV has $("$VENV/bin/python" --version 2>&1); Superset needs 3.10-3.12 (remove it or pass --venv)"
  local want=("apache-superset==$SUPERSET_VERSION" $(pins | tr ' ' '\n' | grep -iE '^(psycopg2-binary|rich|cachetools|flask-caching)=='))
  if "$VENV/bin/python" - "${want[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, ver = pin.split("==")
    assert version(name) == ver, pin
EOF
  then
    step "re-using $VENV (apache-superset $SUPERSET_VERSION installed)"
    return
  fi
  step "installing ${want[*]} into $VENV (several minutes)"
  pins | tr ' ' '\n' | grep . >"$VENV/superset-constraints.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    -c "$VENV/superset-constraints.txt" "${want[@]}"
}

cleanup() {
  local status=$?
  if [ -n "$EDDY_PID" ]; then
    kill "$EDDY_PID" 2>/dev/null || true
    wait "$EDDY_PID" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$WORK/eddy.log" ]; then
    echo "---- eddy log (last 40 lines of $WORK/eddy.log) ----" >&2
    tail -n 40 "$WORK/eddy.log" >&2 || true
  fi
  if [ "$KEEP" -eq 1 ] || [ "$status" -ne 0 ]; then
    echo "scratch dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  if [ "$status" -eq 0 ]; then echo "superset.sh: OK ($((SECONDS - START)) s)"; fi
  exit "$status"
}

start_eddy() {
  step "starting eddy ($EDDY)"
  "$EDDY" standalone --data-dir "$WORK/data" --pg-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --flight-listen 127.0.0.1:0 >"$WORK/eddy.log" 2>&1 &
  EDDY_PID=$!
  local port="" _
  for _ in $(seq 600); do
    kill -0 "$EDDY_PID" 2>/dev/null || die "eddy exited during startup"
    # endpoints.json may be mid-write: retry until it parses.
    port=$("$PYBIN" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pg"].rsplit(":", 1)[1])' \
      "$WORK/data/endpoints.json" 2>/dev/null) && break
    sleep 0.1
  done
  [ -n "$port" ] || die "eddy did not write $WORK/data/endpoints.json within 60 s"
  export EDDY_PG_PORT=$port
  step "eddy is up: postgresql://eddy@127.0.0.1:$port/eddy"
}

# Superset's config and metadata DB, both in the scratch dir: a fresh SQLite DB each run.
setup_superset() {
  export SUPERSET_HOME=$WORK/superset-home SUPERSET_CONFIG_PATH=$WORK/superset_config.py
  export FLASK_APP=superset
  mkdir -p "$SUPERSET_HOME"
  cat >"$SUPERSET_CONFIG_PATH" <<EOF
SECRET_KEY = "eddy-superset-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SQLALCHEMY_DATABASE_URI = "sqlite:///$WORK/superset.db"
WTF_CSRF_ENABLED = False
LOG_LEVEL = "ERROR"  # eddy's errors are reported by drive.py's handle_error hook
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
EOF
  local superset=$VENV/bin/superset log=$WORK/superset-setup.log
  step "superset db upgrade (fresh SQLite metadata DB)"
  "$superset" db upgrade >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "superset db upgrade failed"; }
  step "superset fab create-admin + superset init (roles and permissions)"
  "$superset" fab create-admin --username admin --firstname Eddy --lastname Test \
    --email admin@example.com --password admin >>"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; die "superset fab create-admin failed"; }
  "$superset" init >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "superset init failed"; }
}

# The Python side, one file with two sub-commands: `load` (psycopg2) and `superset`.
write_driver() {
  cat >"$1" <<'PYEOF'
"""Loads `ticks` into eddy over psycopg2 and drives Superset's own code against it."""
import os
import sys
import traceback
from collections import defaultdict
from datetime import datetime, timedelta, timezone

PORT = int(os.environ["EDDY_PG_PORT"])
URI = f"postgresql+psycopg2://eddy@127.0.0.1:{PORT}/eddy"
SYMS = ["AAPL", "GOOG", "MSFT"]
DAY0 = datetime(2026, 1, 5)  # 4 days from 2026-01-05, one tick per sym and hour
DAYS = 4
STEP = "start"
EDDY_ERRORS = []  # (statement, message) of every statement eddy rejected


def ticks():
    """(sym, ts, price, volume), ts naive UTC: 4 days x 24 hours x 3 syms = 288 rows."""
    for h in range(DAYS * 24):
        ts = DAY0 + timedelta(hours=h)
        for i, sym in enumerate(SYMS):
            yield sym, ts, 100.0 + 50 * i + (h % 24) * 0.25, 100 * (i + 1) + (h * 7 + i * 13) % 50


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def step(name):
    global STEP
    STEP = name
    print(f"==> superset: {name}", flush=True)


def show(title, body):
    print(f"    --- {title} ---")
    for line in str(body).strip().splitlines():
        print(f"    {line}")


def naive(ts):
    """datetime / pandas Timestamp -> naive UTC datetime."""
    ts = ts.to_pydatetime() if hasattr(ts, "to_pydatetime") else ts
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo else ts


def load():
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=PORT, user="eddy", dbname="eddy")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS ticks")
    cur.execute(
        "CREATE TABLE ticks (sym text NOT NULL, ts timestamptz NOT NULL, "
        "price double precision, volume bigint) "
        "WITH (time_column = 'ts', partition_by = 'day')"
    )
    rows = list(ticks())
    values = ",".join(
        cur.mogrify("(%s, %s, %s, %s)", (s, f"{t:%Y-%m-%dT%H:%M:%S}Z", p, v)).decode()
        for s, t, p, v in rows
    )
    cur.execute(f"INSERT INTO ticks (sym, ts, price, volume) VALUES {values}")
    cur.execute("SELECT count(*), sum(volume), min(ts), max(ts) FROM ticks")
    n, total, lo, hi = cur.fetchone()
    check(n == len(rows), f"expected {len(rows)} rows in ticks, eddy has {n}")
    check(total == sum(r[3] for r in rows), f"sum(volume) {total} != what was inserted")
    print(f"    inserted {n} rows, sum(volume)={total}, ts {lo} .. {hi}")
    conn.close()


def watch_eddy_errors():
    """Reports every statement eddy rejects, whatever Superset then does with the error."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "handle_error")
    def _record(ctx):
        if ctx.engine is None or ctx.engine.dialect.name != "postgresql":
            return
        ex = ctx.original_exception
        msg = (getattr(ex, "pgerror", None) or str(ex)).strip()
        stmt = " ".join((ctx.statement or "").split())
        EDDY_ERRORS.append((stmt, msg))
        print(f"!!! eddy rejected: {msg}\n!!! statement: {stmt}", file=sys.stderr, flush=True)


def run_superset():
    import pandas as pd
    from sqlalchemy import text

    from superset.app import create_app

    watch_eddy_errors()
    app = create_app()
    with app.app_context(), app.test_request_context():
        from superset import db, security_manager
        from superset.charts.schemas import ChartDataQueryContextSchema
        from superset.commands.chart.data.get_data_command import ChartDataCommand
        from superset.commands.database.create import CreateDatabaseCommand
        from superset.commands.database.test_connection import TestConnectionDatabaseCommand
        from superset.commands.dataset.create import CreateDatasetCommand
        from superset.utils.core import override_user

        admin = security_manager.find_user(username="admin")
        check(admin is not None, "no Superset admin user (superset fab create-admin failed?)")
        with override_user(admin):
            # 1. Register eddy: the "Test connection" button, then "Connect".
            step("TestConnectionDatabaseCommand")
            TestConnectionDatabaseCommand({"sqlalchemy_uri": URI, "database_name": "eddy"}).run()
            step("CreateDatabaseCommand (connection test + catalog/schema permissions)")
            database = CreateDatabaseCommand(
                {"database_name": "eddy", "sqlalchemy_uri": URI, "expose_in_sqllab": True}
            ).run()
            check(database.backend == "postgresql", f"backend is {database.backend}")
            with database.get_sqla_engine() as engine:
                with engine.connect() as c:
                    check(c.execute(text("SELECT 1")).scalar() == 1, "SELECT 1 failed")
                    version = c.execute(text("SELECT version()")).scalar()
                print(f"    server_version_info={engine.dialect.server_version_info} version()={version!r}")
            catalog = database.get_default_catalog()
            schemas = database.get_all_schema_names(catalog=catalog)
            print(f"    default catalog={catalog!r} schemas={sorted(schemas)}")
            check("public" in schemas, f"schema public not listed: {schemas}")
            tables = {t[0] for t in database.get_all_table_names_in_schema(catalog=catalog, schema="public")}
            check("ticks" in tables, f"table ticks not listed in public: {tables}")

            # 2. "Create dataset", then "Sync columns from source".
            step("CreateDatasetCommand + fetch_metadata() for public.ticks")
            dataset = CreateDatasetCommand(
                {"database": database.id, "schema": "public", "table_name": "ticks", "owners": [admin.id]}
            ).run()
            synced = dataset.fetch_metadata()
            db.session.commit()
            cols = {c.column_name: c for c in dataset.columns}
            for c in dataset.columns:
                print(f"    column {c.column_name:7} type={c.type!r:28} is_dttm={c.is_dttm} "
                      f"numeric={c.is_numeric} string={c.is_string}")
            check(list(cols) == ["sym", "ts", "price", "volume"], f"columns {list(cols)}")
            check(cols["ts"].is_dttm and cols["ts"].is_temporal, "ts is not temporal (is_dttm)")
            check(cols["sym"].is_string and not cols["sym"].is_dttm, "sym is not a string column")
            for name in ("price", "volume"):
                check(cols[name].is_numeric and not cols[name].is_dttm, f"{name} is not numeric")
            check(dataset.main_dttm_col == "ts", f"main_dttm_col is {dataset.main_dttm_col!r}")
            check(not synced.added and not synced.removed, f"re-sync changed the columns: {synced}")

            rows = list(ticks())
            sum_volume = {"expressionType": "SIMPLE", "column": {"column_name": "volume"},
                          "aggregate": "SUM", "label": "SUM(volume)"}
            avg_price = {"expressionType": "SIMPLE", "column": {"column_name": "price"},
                         "aggregate": "AVG", "label": "AVG(price)"}

            # 3a. A time-series query object: granularity + time grain + time range.
            step("SqlaTable.query(): hourly SUM(volume), AVG(price) by sym on 2026-01-06")
            lo, hi = DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)
            query_obj = {
                "granularity": "ts", "from_dttm": lo, "to_dttm": hi, "is_timeseries": True,
                "columns": ["sym"], "metrics": [sum_volume, avg_price], "filter": [],
                "extras": {"time_grain_sqla": "PT1H"}, "row_limit": 10000,
                "orderby": [], "order_desc": True,
            }
            show("SQL (SqlaTable.get_query_str)", dataset.get_query_str(query_obj))
            qr = dataset.query(query_obj)
            check(not qr.errors and not qr.error_message,
                  f"query failed: {qr.error_message or qr.errors}\nSQL: {qr.query}")
            df = qr.df
            show(f"result: {len(df)} rows in {qr.duration}; first 6", df.head(6).to_string())
            expect = defaultdict(lambda: [0, 0.0, 0])
            for s, t, p, v in rows:
                if lo <= t < hi:
                    e = expect[(t, s)]
                    e[0] += v
                    e[1] += p
                    e[2] += 1
            check(len(df) == len(expect) == 24 * len(SYMS),
                  f"expected {24 * len(SYMS)} hourly rows, got {len(df)}")
            for _, r in df.iterrows():
                key = (naive(r["__timestamp"]), r["sym"])
                check(key in expect, f"unexpected bucket {key}")
                v, p, n = expect[key]
                check(int(r["SUM(volume)"]) == v, f"{key}: SUM(volume) {r['SUM(volume)']} != {v}")
                check(abs(r["AVG(price)"] - p / n) < 1e-9, f"{key}: AVG(price) {r['AVG(price)']} != {p / n}")
            print(f"    OK: 24 hourly buckets x {len(SYMS)} syms, SUM/AVG match the inserted rows")

            # 3b. What an ECharts time-series line chart posts to /api/v1/chart/data.
            step("ChartDataCommand: daily SUM(volume) per sym over 3 days (2026-01-05 .. 2026-01-08)")
            lo, hi = DAY0, DAY0 + timedelta(days=3)
            time_range = f"{lo.isoformat()} : {hi.isoformat()}"
            x_axis = {"timeGrain": "P1D", "columnType": "BASE_AXIS", "sqlExpression": "ts",
                      "label": "ts", "expressionType": "SQL"}
            form_data = {
                "datasource": f"{dataset.id}__table", "viz_type": "echarts_timeseries_line",
                "x_axis": "ts", "time_grain_sqla": "P1D", "metrics": [sum_volume],
                "groupby": ["sym"], "row_limit": 10000, "order_desc": True,
                "adhoc_filters": [{"clause": "WHERE", "subject": "ts", "operator": "TEMPORAL_RANGE",
                                   "comparator": time_range, "expressionType": "SIMPLE"}],
            }
            payload = {
                "datasource": {"id": dataset.id, "type": "table"},
                "force": True,
                "queries": [{
                    "filters": [{"col": "ts", "op": "TEMPORAL_RANGE", "val": time_range}],
                    "extras": {"having": "", "where": ""},
                    "applied_time_extras": {},
                    "columns": [x_axis, "sym"],
                    "metrics": [sum_volume],
                    "orderby": [[sum_volume, False]],
                    "annotation_layers": [],
                    "row_limit": 10000,
                    "series_columns": ["sym"],
                    "series_limit": 0,
                    "order_desc": True,
                    "url_params": {},
                    "custom_params": {},
                    "custom_form_data": {},
                    "time_offsets": [],
                    "post_processing": [
                        {"operation": "pivot", "options": {
                            "index": ["ts"], "columns": ["sym"],
                            "aggregates": {"SUM(volume)": {"operator": "mean"}},
                            "drop_missing_columns": False}},
                        {"operation": "rename", "options": {
                            "columns": {"SUM(volume)": None}, "level": 0, "inplace": True}},
                        {"operation": "flatten"},
                    ],
                }],
                "form_data": form_data,
                "result_format": "json",
                "result_type": "full",
            }
            command = ChartDataCommand(ChartDataQueryContextSchema().load(payload))
            command.validate()
            out = command.run()["queries"][0]
            show("SQL (ChartDataCommand)", out["query"])
            check(not out.get("error"), f"chart query failed: {out.get('error')}")
            data = pd.DataFrame(out["data"])
            show(f"result, pivoted as the chart gets it: rowcount={out['rowcount']}", data.to_string())
            expect = defaultdict(int)
            for s, t, p, v in rows:
                if lo <= t < hi:
                    expect[(t.replace(hour=0), s)] += v
            check(len(data) == 3, f"expected 3 daily buckets, got {len(data)}")
            check(sorted(c for c in data.columns if c != "ts") == SYMS, f"series {list(data.columns)}")
            for _, r in data.iterrows():
                # a Timestamp here; epoch milliseconds once the API serialises it to JSON
                ts = r["ts"]
                day = (datetime(1970, 1, 1) + timedelta(milliseconds=int(ts))
                       if isinstance(ts, (int, float)) else naive(pd.Timestamp(ts)))
                for s in SYMS:
                    check(int(r[s]) == expect[(day, s)], f"{day:%F} {s}: {r[s]} != {expect[(day, s)]}")
            print(f"    OK: 3 daily buckets x {len(SYMS)} series, sums match the inserted rows "
                  f"(total {sum(expect.values())})")


def main(cmd):
    try:
        {"load": load, "superset": run_superset}[cmd]()
    except Exception as ex:  # noqa: BLE001 - report any failure with its step
        if not isinstance(ex, Failed):
            traceback.print_exc()
        detail = f"{type(ex).__name__}: {ex}"
        if hasattr(ex, "normalized_messages"):  # Superset's validation errors
            detail += f" {ex.normalized_messages()}"
        print(f"\nsuperset.sh: FAILED in step '{STEP}': {detail}", file=sys.stderr)
        for stmt, msg in EDDY_ERRORS:
            print(f"  eddy error: {msg}\n  statement: {stmt}", file=sys.stderr)
        sys.exit(1)
    for stmt, msg in EDDY_ERRORS:
        print(f"note: eddy rejected (Superset went on): {msg}\n  statement: {stmt}")


if __name__ == "__main__":
    main(sys.argv[1])
PYEOF
}

# Every package of the venv this script last passed with (pip freeze, less apache-superset),
# used as pip constraints. psycopg2-binary, rich and cachetools are installed explicitly:
# apache-superset 6.1.0 imports rich (superset/cli) and cachetools (db_engine_specs/aws_iam)
# without declaring them, and Flask-Caching is held at 2.3.1 because 2.5 passes an argument
# that SupersetMetastoreCache does not take.
pins() {
  cat <<'EOF'
alembic==1.19.2 amqp==5.4.2 annotated-types==0.8.0 apache-superset-core==0.1.0 apispec==6.10.1
apsw==3.54.1.0 attrs==26.1.0 babel==2.18.0 backoff==2.2.1 backports.zstd==1.8.0 bcrypt==5.0.0
billiard==4.3.2 blinker==1.9.0 Bottleneck==1.6.0 brotli==1.2.1 cachelib==0.17.0
cachetools==6.2.1 cattrs==26.2.1 celery==5.7.0 certifi==2026.10.18 cffi==2.1.1
charset-normalizer==3.5.2 click==8.5.1 click-didyoumean==0.3.1 click-option-group==0.5.9
click-plugins==1.1.1.2 click-repl==0.4.1 colorama==0.4.6 cron_descriptor==2.2.1
croniter==7.0.0 cryptography==46.0.7 defusedxml==0.7.1 Deprecated==1.3.1 deprecation==2.1.0
dnspython==2.9.2 email-validator==2.4.0 et_xmlfile==2.0.0 Flask==3.1.3
flask-appbuilder==5.3.0 flask-babel==4.0.0 Flask-Caching==2.3.1 Flask-Compress==1.25
flask-cors==6.0.5 Flask-JWT-Extended==4.7.4 Flask-Limiter==4.1.1 Flask-Login==0.6.3
Flask-Migrate==3.1.0 Flask-Session==0.8.0 Flask-SQLAlchemy==3.0.5 flask-talisman==1.1.0
Flask-WTF==1.3.0 geographiclib==2.1 geopy==2.5.0 google-auth==2.62.2 greenlet==3.1.1
gunicorn==27.0.1 h11==0.16.0 hashids==1.3.1 holidays==0.109 humanize==4.17.0 idna==3.20
invoke==3.0.3 isodate==0.7.2 itsdangerous==2.2.0 Jinja2==3.1.6 jsonpath-ng==1.16.0
jsonschema==4.26.0 jsonschema-specifications==2025.9.1 kombu==5.7.0 limits==5.8.0
Mako==1.4.3 Markdown==3.11.3 markdown-it-py==4.3.0 MarkupSafe==3.0.4 marshmallow==3.26.2
marshmallow-sqlalchemy==1.5.0 marshmallow-union==0.1.15.post1 mdurl==0.1.2 msgpack==1.0.8
msgspec==0.22.0 nh3==0.2.22 numpy==1.26.4 odfpy==1.4.1 openpyxl==3.1.5 ordered-set==4.1.0
outcome==1.3.0.post0 packaging==26.3 pandas==2.1.4 paramiko==5.1.0 parsedatetime==2.6
pgsanity==0.3.0 pillow==12.3.0 platformdirs==4.14.7 polyline==2.0.4 prison==0.2.1
prompt_toolkit==3.0.53 psycopg2-binary==2.9.13 pyarrow==18.1.0 pyasn1==0.6.5
pyasn1_modules==0.4.2 pycparser==3.12 pydantic==2.14.3 pydantic_core==2.50.4
pygeohash==3.5.1 Pygments==2.21.0 PyJWT==2.15.1 PyNaCl==1.6.2 pyOpenSSL==26.2.0
pyparsing==3.3.3 PySocks==1.7.1 python-dateutil==2.9.0.post0 python-dotenv==1.2.4
pytz==2026.6 pyxlsb==1.0.10 PyYAML==6.0.3 redis==5.3.1 referencing==0.37.0 requests==2.34.2
requests-cache==1.3.3 rich==15.0.0 rpds-py==2026.9.1 selenium==4.51.0 shillelagh==1.4.5
simplejson==4.3.0 six==1.17.0 slack_sdk==3.47.0 sniffio==1.3.1 sortedcontainers==2.4.0
SQLAlchemy==1.4.54 SQLAlchemy-Utils==0.42.1 sqlglot==28.10.1 sshtunnel==0.4.0
tabulate==0.10.0 trio==0.35.0 trio-websocket==0.12.2 typing-inspection==0.4.5
typing_extensions==4.16.0 tzdata==2026.6 tzlocal==5.4.5 url-normalize==3.1.0 urllib3==2.8.0
vine==5.1.0 watchdog==7.1.0 wcwidth==0.9.4 websocket-client==1.9.2 Werkzeug==3.1.9
wrapt==2.5.2 wsproto==1.3.2 WTForms==3.3.2 WTForms-JSON==0.3.5 xlrd==2.0.2 XlsxWriter==3.0.9
EOF
}

main "$@"
