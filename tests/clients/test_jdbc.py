"""pgJDBC (the PostgreSQL JDBC driver) against the real eddy binary.

tests/clients/jdbc/EddyJdbc.java is compiled with javac (no build tool) and each of its
cases runs in its own JVM, asserting what PostgreSQL answers: the connect-time settings
pgJDBC sends, DatabaseMetaData.getTables/getColumns, a PreparedStatement run 10 times (a
named server-side statement and binary results after prepareThreshold), the ResultSet
getters, an error's SQLState and a transaction.

The driver jar, first found wins:
  1. EDDY_PGJDBC_JAR, when set;
  2. ~/.cache/eddy-tests/postgresql-42.7.4.jar, downloaded from Maven Central when missing
     and checked against the .sha1 Maven Central publishes next to it;
  3. Debian's libpostgresql-jdbc-java (/usr/share/java/postgresql.jar), installed with
     apt-get when Maven Central cannot be reached and the tests run as root.
Compiled classes are cached under ~/.cache/eddy-tests/jdbc-classes/<source hash>/.
Skipped only when `java` (or `javac`) is not installed.
"""
import hashlib
import os
import shutil
import subprocess
import urllib.request

import psycopg
import pytest

JDBC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jdbc")
SOURCE = os.path.join(JDBC_DIR, "EddyJdbc.java")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "eddy-tests")
PGJDBC_VERSION = "42.7.4"
MAVEN_JAR = ("https://repo1.maven.org/maven2/org/postgresql/postgresql/"
             f"{PGJDBC_VERSION}/postgresql-{PGJDBC_VERSION}.jar")
DEBIAN_JAR = "/usr/share/java/postgresql.jar"

SETUP = [
    "CREATE TABLE jdbc_t (id bigint PRIMARY KEY, sym text NOT NULL, ts timestamptz, price double precision, "
    "ok boolean)",
    "INSERT INTO jdbc_t VALUES (1, 'CL', '2024-01-01 10:00:00.123+00', 71.5, true), "
    "(2, 'GC', '2024-06-30 23:59:59+00', 2000.25, false), (3, 'SI', NULL, NULL, NULL)",
]


def _download_maven_jar(path):
    """The pinned jar from Maven Central, checked against its .sha1; False when unreachable."""
    try:
        with urllib.request.urlopen(MAVEN_JAR + ".sha1", timeout=20) as r:
            want = r.read().decode().split()[0].strip().lower()
        with urllib.request.urlopen(MAVEN_JAR, timeout=120) as r:
            data = r.read()
    except OSError:
        return False
    got = hashlib.sha1(data).hexdigest()
    assert got == want, f"{MAVEN_JAR}: sha1 {got}, Maven Central says {want}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def driver_jar():
    if os.environ.get("EDDY_PGJDBC_JAR"):
        path = os.environ["EDDY_PGJDBC_JAR"]
        assert os.path.exists(path), f"EDDY_PGJDBC_JAR={path} does not exist"
        return path
    cached = os.path.join(CACHE, f"postgresql-{PGJDBC_VERSION}.jar")
    if os.path.exists(cached) or _download_maven_jar(cached):
        return cached
    if not os.path.exists(DEBIAN_JAR) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        out = subprocess.run(["apt-get", "install", "-y", "-qq", "libpostgresql-jdbc-java"], env=env,
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            out = subprocess.run(["apt-get", "install", "-y", "-qq", "libpostgresql-jdbc-java"], env=env,
                                 capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"apt-get install libpostgresql-jdbc-java failed:\n{out.stderr}"
    assert os.path.exists(DEBIAN_JAR), (
        f"no PostgreSQL JDBC driver: Maven Central ({MAVEN_JAR}) is unreachable and {DEBIAN_JAR} is missing; "
        "install Debian's libpostgresql-jdbc-java or set EDDY_PGJDBC_JAR")
    return DEBIAN_JAR


def compiled_classes(jar):
    """javac EddyJdbc.java into a directory keyed by the source and the jar (idempotent)."""
    with open(SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + os.path.realpath(jar).encode()).hexdigest()[:16]
    out_dir = os.path.join(CACHE, "jdbc-classes", key)
    if not os.path.exists(os.path.join(out_dir, "EddyJdbc.class")):
        tmp = out_dir + f".tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        out = subprocess.run(["javac", "-cp", jar, "-d", tmp, SOURCE], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"javac failed:\n{out.stdout}{out.stderr}"
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    return out_dir


def _need_java():
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install default-jdk-headless)")


@pytest.fixture(scope="module")
def jdbc(eddy):
    _need_java()
    jar = driver_jar()
    classes = compiled_classes(jar)
    with psycopg.connect(eddy.dsn(), autocommit=True) as conn:
        for sql in SETUP:
            conn.execute(sql)
    url = f"jdbc:postgresql://127.0.0.1:{eddy.port}/eddy?user=eddy&sslmode=disable"
    return ["java", "-cp", os.pathsep.join([classes, jar]), "EddyJdbc", url]


CASES = [
    "connect",
    "metadata_tables",
    "metadata_columns",
    "prepared_statement",
    "getters",
    "error_sqlstate",
    "transaction",
]


def test_every_case_is_listed():
    _need_java()
    jar = driver_jar()
    out = subprocess.run(["java", "-cp", os.pathsep.join([compiled_classes(jar), jar]), "EddyJdbc", "--list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == CASES


@pytest.mark.parametrize("name", CASES)
def test_jdbc(jdbc, name):
    out = subprocess.run(jdbc + [name], capture_output=True, text=True, timeout=180)
    print(out.stdout, end="")
    assert out.returncode == 0, f"java EddyJdbc {name} exited {out.returncode}:\n{out.stdout}{out.stderr}"
    assert out.stdout.strip().splitlines()[-1] == f"ok {name}", out.stdout
