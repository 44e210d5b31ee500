#!/usr/bin/env bash
# Installs everything the tests need (idempotent), then runs every test.
#   scripts/test.sh            # all tests
#   scripts/test.sh storage    # only tests whose name matches "storage"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

# System packages: psql (a real client the tests drive) and a C toolchain for -sys crates.
need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
# node-postgres and pgJDBC client suites (tests/clients/test_node_pg.py, test_jdbc.py); the
# JDBC driver comes from Maven Central, or from Debian's package where Maven is unreachable.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -e /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# Python clients and servers used by tests (moto's S3 server, ADBC, pyarrow, pytest).
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/pytest ] || ! cmp -s requirements-test.txt .venv/.requirements 2>/dev/null; then
  step "creating the Python test venv (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-test.txt
  cp requirements-test.txt .venv/.requirements
fi
export EDDY_TEST_MOTO_SERVER="$ROOT/.venv/bin/moto_server"

# A real Kafka-protocol broker for the Kafka source tests: tansu, built once into
# ~/.cargo/bin (about 15 minutes on a 2-core machine; cached after that).
TANSU_VERSION=0.6.0
TANSU="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
if [ ! -x "$TANSU" ] || ! "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  step "installing the tansu Kafka broker $TANSU_VERSION (cargo install; slow the first time)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
fi
export TANSU

step "building"
cargo build --workspace --tests --locked

step "running tests"
# Each integration test starts its own eddy process; a few at a time suit a 2-core machine.
log=$(mktemp)
set +e
cargo test --workspace --locked --lib --bins --tests -- --test-threads 4 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

step "running client tests (pytest tests/clients)"
# Real PyPI clients (ADBC Flight SQL, pyarrow.flight) against the eddy binary just built.
pylog=$(mktemp)
set +e
EDDY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/eddy" \
  .venv/bin/pytest -q -p no:cacheprovider tests/clients ${1:+-k "$1"} 2>&1 | tee "$pylog"
pystatus=${PIPESTATUS[0]}
set -e
# pytest exits 5 when a filter selected no test; that is not a failure.
if [ "$pystatus" -ne 0 ] && [ "$pystatus" -ne 5 ]; then status=1; fi

# One closing line for the whole run, summed over every test binary and pytest.
passed=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
# (grep finds nothing when pytest has no such count; `|| true` keeps pipefail from ending here.)
pypassed=$(tail -n 1 "$pylog" | { grep -oE '[0-9]+ passed' || true; } | awk '{s+=$1} END {print s+0}')
pyfailed=$(tail -n 1 "$pylog" | { grep -oE '[0-9]+ (failed|error)' || true; } | awk '{s+=$1} END {print s+0}')
passed=$((passed + pypassed))
failed=$((failed + pyfailed))
rm -f "$log" "$pylog"
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
