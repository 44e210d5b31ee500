"""PostgreSQL wire over TLS: with fe.tls_cert_path/fe.tls_key_path, eddy answers
SSLRequest and serves rustls; psql and psycopg connect with sslmode=require and
verify-full."""
import os
import subprocess

import psycopg
import pytest

from pgserver import Eddy


@pytest.fixture(scope="module")
def tls_eddy(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "server.crt"), str(d / "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    e = Eddy(config=f'[fe]\ntls_cert_path = "{cert}"\ntls_key_path = "{key}"\n')
    e.cert = cert
    yield e
    e.stop()


def test_psql_sslmode_require(tls_eddy):
    out = subprocess.run(
        ["psql", f"host=127.0.0.1 port={tls_eddy.port} user=eddy dbname=eddy sslmode=require",
         "-X", "-c", r"\conninfo", "-c", "SELECT 41 + 1 AS answer"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SSL connection (protocol: TLSv1." in out.stdout, out.stdout
    assert "42" in out.stdout


def test_psycopg_verifies_the_certificate(tls_eddy):
    dsn = f"{tls_eddy.dsn()} sslmode=verify-full sslrootcert={tls_eddy.cert}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        conn.execute("CREATE TABLE over_tls (x bigint)")
        conn.execute("INSERT INTO over_tls VALUES (1), (2)")
        assert conn.execute("SELECT sum(x) FROM over_tls").fetchone()[0] == 2 + 1
        # Extended protocol and binary results over TLS too.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT x FROM over_tls WHERE x > %s ORDER BY x", (0,))
            assert cur.fetchall() == [(1,), (2,)]
    # Clients that do not ask for TLS still get plain text.
    with psycopg.connect(f"{tls_eddy.dsn()} sslmode=disable") as conn:
        assert not conn.pgconn.ssl_in_use


def test_without_certificate_tls_is_refused(eddy):
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"{eddy.dsn()} sslmode=require")
    with psycopg.connect(f"{eddy.dsn()} sslmode=prefer") as conn:
        assert not conn.pgconn.ssl_in_use


def test_config_with_a_missing_key_file_refuses_to_start(tmp_path):
    with pytest.raises(AssertionError) as e:
        Eddy(config=f'[fe]\ntls_cert_path = "{tmp_path}/nope.crt"\n'
                    f'tls_key_path = "{tmp_path}/nope.key"\n')
    assert "nope" in str(e.value)
