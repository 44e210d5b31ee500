//! The PostgreSQL extended query protocol and session behaviour, through tokio-postgres
//! (which prepares every statement, binds binary parameters and reads binary results).

use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::harness::{eventually, rows, scalar, sqlstate, tempdir, Server};

async fn trades(c: &tokio_postgres::Client) {
    rows(c, "CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, px double precision, qty bigint, f4 real, ok boolean, d date, n numeric(10,2))").await;
    rows(
        c,
        "INSERT INTO trades VALUES \
             ('CL', '2024-01-01 10:00:00', 70, 1, 1.5, true, DATE '2024-01-01', 1.25), \
             ('CL', '2024-01-01 10:01:00', 71.5, 2, 2.5, false, DATE '2024-01-02', 2.50), \
             ('GC', '2024-01-01 10:00:30', 2000.25, 3, 3.5, NULL, NULL, NULL), \
             ('GC', '2024-01-01 10:02:00', 2001, 4, 4.5, true, DATE '2024-01-03', 4.00)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_bind_binary_parameters_and_read_binary_results() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    trades(&c).await;

    let st = c
        .prepare("SELECT sym, px, qty, ts, f4, ok, d FROM trades WHERE qty >= $1 AND sym = $2 ORDER BY qty")
        .await
        .unwrap();
    assert_eq!(
        st.params(),
        &[Type::INT8, Type::TEXT],
        "types DataFusion inferred"
    );
    let types: Vec<Type> = st.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::TEXT,
            Type::FLOAT8,
            Type::INT8,
            Type::TIMESTAMP,
            Type::FLOAT4,
            Type::BOOL,
            Type::DATE
        ]
    );
    let r = c.query(&st, &[&2i64, &"GC"]).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].get::<_, String>(0), "GC");
    assert_eq!(r[0].get::<_, f64>(1), 2000.25);
    assert_eq!(r[0].get::<_, i64>(2), 3);
    assert_eq!(
        r[1].get::<_, std::time::SystemTime>(3),
        std::time::UNIX_EPOCH + Duration::from_secs(1_704_103_320)
    );
    assert_eq!(r[1].get::<_, f32>(4), 4.5);
    assert_eq!(r[0].get::<_, Option<bool>>(5), None);
    assert!(r[1].get::<_, bool>(5));

    // The same statement again with other values (a server-side prepared statement).
    let r = c.query(&st, &[&1i64, &"CL"]).await.unwrap();
    assert_eq!(r.len(), 2);

    // A client that declares int2 for a bigint column.
    let st = c
        .prepare_typed("SELECT count(*) FROM trades WHERE qty > $1", &[Type::INT2])
        .await
        .unwrap();
    let r = c.query_one(&st, &[&1i16]).await.unwrap();
    assert_eq!(r.get::<_, i64>(0), 3);

    // INSERT with parameters reports its row count.
    let n = c
        .execute(
            "INSERT INTO trades (sym, ts, px, qty) VALUES ($1, $2, $3, $4)",
            &[&"SI", &std::time::SystemTime::UNIX_EPOCH, &25.5f64, &9i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        scalar(&c, "SELECT px FROM trades WHERE sym = 'SI'").await,
        "25.5"
    );

    // Errors keep their SQLSTATE in the extended protocol, and the connection goes on.
    let e = c.prepare("SELECT nope FROM trades").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42703");
    let e = c.prepare("SELECT * FROM missing").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42P01");
    assert_eq!(
        c.query_one("SELECT 1 + $1::bigint", &[&1i64])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn portals_suspend_at_the_row_limit() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let mut c = s.client().await;
    trades(&c).await;
    let tx = c.transaction().await.unwrap();
    let st = tx
        .prepare("SELECT qty FROM trades ORDER BY qty")
        .await
        .unwrap();
    let portal = tx.bind(&st, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let rest = tx.query_portal(&portal, 3).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(tx.query_portal(&portal, 3).await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn session_statements_transactions_and_aborted_transactions() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    trades(&c).await;
    assert_eq!(scalar(&c, "SHOW DateStyle").await, "ISO, MDY");
    assert_eq!(scalar(&c, "SHOW standard_conforming_strings").await, "on");
    assert_eq!(
        scalar(&c, "SHOW TRANSACTION ISOLATION LEVEL").await,
        "read committed"
    );
    rows(&c, "SET application_name = 'grafana'").await;
    assert_eq!(scalar(&c, "SHOW application_name").await, "grafana");
    rows(&c, "SET extra_float_digits TO 3").await;
    assert_eq!(scalar(&c, "SHOW extra_float_digits").await, "3");
    rows(&c, "RESET extra_float_digits").await;
    assert_eq!(scalar(&c, "SHOW extra_float_digits").await, "1");
    assert_eq!(sqlstate(&c, "SHOW no_such_setting").await.0, "42704");
    // search_path decides where unqualified names resolve.
    rows(&c, "SET search_path TO system, public").await;
    assert_eq!(scalar(&c, "SELECT current_schema()").await, "system");
    assert!(rows(&c, "SELECT table_name FROM tables").await.len() >= 1);
    rows(&c, "SET search_path = public").await;
    assert_eq!(scalar(&c, "SELECT current_schema()").await, "public");

    // Transactions: an error poisons the transaction until ROLLBACK.
    rows(&c, "BEGIN").await;
    assert_eq!(scalar(&c, "SELECT count(*) FROM trades").await, "4");
    assert_eq!(sqlstate(&c, "SELECT * FROM missing").await.0, "42P01");
    let (code, msg) = sqlstate(&c, "SELECT 1").await;
    assert_eq!(code, "25P02", "{msg}");
    let e = c.query("SELECT $1::bigint", &[&1i64]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "25P02");
    rows(&c, "ROLLBACK").await;
    assert_eq!(scalar(&c, "SELECT 1").await, "1");
    // COMMIT of a failed transaction answers ROLLBACK.
    let msgs = c
        .simple_query("BEGIN; SELECT * FROM missing")
        .await
        .unwrap_err();
    assert_eq!(msgs.as_db_error().unwrap().code().code(), "42P01");
    let done = c.simple_query("COMMIT").await.unwrap();
    assert!(matches!(done[0], SimpleQueryMessage::CommandComplete(_)));
    assert_eq!(scalar(&c, "SELECT 2").await, "2");

    // DISCARD ALL and DEALLOCATE are accepted; empty queries answer EmptyQueryResponse.
    rows(&c, "DISCARD ALL").await;
    rows(&c, "DEALLOCATE ALL").await;
    assert!(rows(&c, ";").await.is_empty());
    assert!(rows(&c, "-- ping").await.is_empty());

    // What SQLAlchemy and Superset call at connect time.
    let v = scalar(&c, "SELECT version()").await;
    assert!(v.starts_with("PostgreSQL 16.6 "), "{v}");
    assert!(
        scalar(&c, "SELECT pg_backend_pid()")
            .await
            .parse::<i32>()
            .unwrap()
            > 0
    );
    // Floats print as PostgreSQL prints them.
    assert_eq!(
        scalar(&c, "SELECT CAST(71 AS double precision)").await,
        "71"
    );
    assert_eq!(
        scalar(&c, "SELECT px FROM trades WHERE qty = 2").await,
        "71.5"
    );
    assert_eq!(
        scalar(&c, "SELECT CAST(1e20 AS double precision)").await,
        "1e+20"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_request_and_statement_timeout_stop_a_running_query() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    let slow = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3";
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let started = Instant::now();
    let (code, msg) = sqlstate(&c, slow).await;
    assert_eq!(code, "57014", "{msg}");
    assert!(started.elapsed() < Duration::from_secs(20));
    canceller.await.unwrap();
    assert_eq!(
        scalar(&c, "SELECT 1").await,
        "1",
        "the connection stays usable"
    );

    rows(&c, "SET statement_timeout = '300ms'").await;
    let started = Instant::now();
    let (code, msg) = sqlstate(&c, slow).await;
    assert_eq!(code, "57014");
    assert!(msg.contains("statement timeout"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(20));
    rows(&c, "SET statement_timeout = 0").await;
    assert_eq!(scalar(&c, "SELECT 1").await, "1");
}

fn start_with_config(dir: &std::path::Path, toml: &str) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("eddy.toml");
    std::fs::write(&cfg, toml).unwrap();
    Server::start_with_args(dir, &[], &["--config", cfg.to_str().unwrap()])
}

async fn connect(
    s: &Server,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn_str = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=eddy",
        s.port()
    );
    let (client, conn) = tokio_postgres::connect(&conn_str, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_are_checked_with_scram_and_md5() {
    for method in ["scram-sha-256", "md5"] {
        let dir = tempdir();
        let s = start_with_config(
            &dir.path().join("d"),
            &format!("[fe]\npg_auth_method = \"{method}\"\n[fe.users]\nann = \"s3cret\"\n"),
        );
        let c = connect(&s, "ann", "s3cret").await.unwrap();
        assert_eq!(scalar(&c, "SELECT 1").await, "1");
        for (user, pw) in [("ann", "wrong"), ("bob", "s3cret")] {
            let e = connect(&s, user, pw).await.err().expect("refused");
            let db = e.as_db_error().expect("a server error");
            assert_eq!(db.code().code(), "28P01", "{method} {user}: {db:?}");
        }
    }
}

#[test]
fn refuses_to_listen_beyond_loopback_without_users() {
    let dir = tempdir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["standalone", "--data-dir"])
        .arg(dir.path())
        .args(["--pg-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[fe.users]") && text.contains("loopback"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_max_connections_are_refused_with_53300() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[("EDDY__FE__PG_MAX_CONNECTIONS", "2")]);
    let a = s.client().await;
    let b = s.client().await;
    assert_eq!(scalar(&a, "SHOW max_connections").await, "2");
    let e = connect(&s, "eddy", "")
        .await
        .err()
        .expect("a third is refused");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert_eq!(db.message(), "sorry, too many clients already");
    // The open ones are untouched; closing one lets the next in.
    assert_eq!(scalar(&b, "SELECT 2").await, "2");
    drop(a);
    assert!(
        eventually(10, || async { connect(&s, "eddy", "").await.is_ok() }).await,
        "a slot frees when a connection closes"
    );
    let m = s.metrics().await;
    assert!(m.contains("eddy_fe_pg_max_connections 2"), "{m}");
    let refused: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("eddy_fe_pg_refused_connections_total "))
        .and_then(|v| v.parse().ok())
        .expect("the refused counter");
    assert!(refused >= 1, "{m}");
    let (code, _) = sqlstate(&b, "SET max_connections = 5").await;
    assert_eq!(code, "55P02");
}
