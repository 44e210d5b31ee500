//! Arrow Flight SQL with arrow-flight's own clients (`FlightSqlServiceClient`,
//! `FlightClient`) against the real binary: statements, prepared statements, metadata,
//! bulk ingest, errors, auth, TLS and cancel; results compared with psql's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandStatementIngest,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TableDefinitionOptions, TableExistsOption,
    TableNotExistOption,
};
use arrow_flight::{
    CancelFlightInfoRequest, CancelStatus, FlightClient, FlightDescriptor, FlightInfo,
};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::harness::{tempdir, Server};

async fn channel(s: &Server) -> Channel {
    Endpoint::from_shared(format!("http://{}", s.flight))
        .unwrap()
        .connect()
        .await
        .expect("connect to Flight SQL")
}

async fn sql_client(s: &Server) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(channel(s).await)
}

/// Every batch of every endpoint of `info`.
async fn fetch(c: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("endpoint has a ticket");
        let batches: Vec<RecordBatch> =
            c.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        out.extend(batches);
    }
    out
}

async fn query(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = c.execute(sql.to_string(), None).await.unwrap();
    fetch(c, info).await
}

/// Rows as psql `-At` prints them: `|`-separated, NULL as empty.
fn psql_text(batches: &[RecordBatch]) -> String {
    // psql's text: microsecond timestamps with a space, NULL as nothing.
    let opts = FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.6f"));
    let mut lines = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        let floats: Vec<bool> = b
            .columns()
            .iter()
            .map(|c| c.data_type().is_floating())
            .collect();
        let stamps: Vec<bool> = b
            .columns()
            .iter()
            .map(|c| c.data_type().is_temporal())
            .collect();
        for r in 0..b.num_rows() {
            // PostgreSQL prints whole floats without a fraction (`141`, not `141.0`).
            let fields: Vec<String> = fmts
                .iter()
                .zip(floats.iter().zip(&stamps))
                .map(|(f, (float, stamp))| {
                    let v = f.value(r).to_string();
                    match v.strip_suffix(".0") {
                        Some(whole) if *float => whole.to_string(),
                        // PostgreSQL prints fractional seconds without trailing zeros,
                        // and none when they are zero.
                        _ if *stamp && v.contains('.') => {
                            v.trim_end_matches('0').trim_end_matches('.').to_string()
                        }
                        _ => v,
                    }
                })
                .collect();
            lines.push(fields.join("|"));
        }
    }
    lines.join("\n")
}

fn cmd(sql: &str) -> FlightDescriptor {
    FlightDescriptor::new_cmd(
        CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    )
}

/// The gRPC status a statement fails with, read with the plain Flight client.
async fn query_status(s: &Server, sql: &str) -> tonic::Status {
    let mut c = FlightClient::new(channel(s).await);
    match c.get_flight_info(cmd(sql)).await {
        Err(FlightError::Tonic(st)) => *st,
        Err(other) => panic!("{sql}: not a gRPC status: {other:?}"),
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            match c.do_get(ticket).await {
                Err(FlightError::Tonic(st)) => *st,
                Ok(stream) => match stream.try_collect::<Vec<_>>().await {
                    Err(FlightError::Tonic(st)) => *st,
                    other => panic!("{sql}: expected an error, got {other:?}"),
                },
                Err(other) => panic!("{sql}: not a gRPC status: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_statements_prepared_statements_and_metadata() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let mut c = sql_client(&s).await;
    c.execute_update(
        "CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, px double precision, qty bigint, \
         PRIMARY KEY (sym, ts)) WITH (time_column = 'ts')"
            .into(),
        None,
    )
    .await
    .unwrap();
    let n = c
        .execute_update(
            "INSERT INTO trades VALUES ('CL', '2024-01-01 10:00:00', 70.5, 1), \
             ('CL', '2024-01-01 10:01:00', 71.25, 2), ('GC', '2024-01-01 10:00:30', 2000.125, NULL)"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 3, "INSERT reports its row count");

    // A statement query streams Arrow batches equal to what psql prints.
    let sql = "SELECT sym, ts, px, qty, px * 2 AS double_px FROM trades ORDER BY sym, ts";
    let batches = query(&mut c, sql).await;
    assert_eq!(psql_text(&batches), s.psql(sql).unwrap());
    let schema = batches[0].schema();
    assert_eq!(schema.field(1).data_type().to_string(), "Timestamp(µs)");

    // DDL sent as a query (as ADBC's DBAPI does) runs and returns no rows.
    let none = query(&mut c, "CREATE TABLE IF NOT EXISTS other (a bigint)").await;
    assert_eq!(none.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert!(s.psql("SELECT count(*) FROM other").is_ok());

    // Prepared query with parameters: create, bind with DoPut, execute, close.
    let mut ps = c
        .prepare(
            "SELECT sym, qty FROM trades WHERE sym = $1 AND px > $2 ORDER BY ts".into(),
            None,
        )
        .await
        .unwrap();
    let params = RecordBatch::try_from_iter(vec![
        ("1", Arc::new(StringArray::from(vec!["CL"])) as ArrayRef),
        ("2", Arc::new(Float64Array::from(vec![71.0])) as ArrayRef),
    ])
    .unwrap();
    ps.set_parameters(params).unwrap();
    let info = ps.execute().await.unwrap();
    let got = fetch(&mut c, info).await;
    assert_eq!(psql_text(&got), "CL|2");
    // Re-binding runs the same statement with new values.
    ps.set_parameters(
        RecordBatch::try_from_iter(vec![
            ("1", Arc::new(StringArray::from(vec!["GC"])) as ArrayRef),
            ("2", Arc::new(Float64Array::from(vec![0.0])) as ArrayRef),
        ])
        .unwrap(),
    )
    .unwrap();
    let info = ps.execute().await.unwrap();
    assert_eq!(psql_text(&fetch(&mut c, info).await), "GC|");
    ps.close().await.unwrap();

    // A prepared INSERT with parameters.
    let mut ins = c
        .prepare("INSERT INTO other VALUES ($1)".into(), None)
        .await
        .unwrap();
    ins.set_parameters(
        RecordBatch::try_from_iter(vec![(
            "a",
            Arc::new(Int64Array::from(vec![41, 42])) as ArrayRef,
        )])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ins.execute_update().await.unwrap(), 2);
    assert_eq!(s.psql("SELECT sum(a) FROM other").unwrap(), "83");

    // Metadata.
    let info = c.get_catalogs().await.unwrap();
    let cats = fetch(&mut c, info).await;
    assert_eq!(psql_text(&cats), "eddy");
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("eddy".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = psql_text(&fetch(&mut c, info).await);
    assert!(
        schemas.contains("eddy|public") && schemas.contains("eddy|system"),
        "{schemas}"
    );
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("tr%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut c, info).await;
    assert_eq!(tables.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let t = &tables[0];
    let names = t.column_by_name("table_name").unwrap();
    let names = names.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(names.value(0), "trades");
    let ipc = t.column_by_name("table_schema").unwrap();
    let ipc = ipc
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap();
    let table_schema =
        Schema::try_from(arrow_flight::IpcMessage(ipc.value(0).to_vec().into())).unwrap();
    let cols: Vec<String> = table_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(cols, ["sym", "ts", "px", "qty"]);
    assert!(!table_schema.field(0).is_nullable(), "NOT NULL is reported");

    let info = c.get_table_types().await.unwrap();
    let types = psql_text(&fetch(&mut c, info).await);
    assert!(types.contains("TABLE"), "{types}");
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "trades".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        psql_text(&fetch(&mut c, info).await),
        "eddy|public|trades|sym|trades_pkey|1\neddy|public|trades|ts|trades_pkey|2"
    );
    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerCancel,
        ])
        .await
        .unwrap();
    let facts = psql_text(&fetch(&mut c, info).await);
    assert!(facts.contains("eddy"), "{facts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_errors_map_to_grpc_status_with_psql_messages() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    s.psql("CREATE TABLE t (a bigint NOT NULL)").unwrap();
    for (sql, code) in [
        ("SELEC 1", tonic::Code::InvalidArgument),
        ("SELECT * FROM nope", tonic::Code::NotFound),
        ("SELECT b FROM t", tonic::Code::NotFound),
        ("CREATE TABLE t (a bigint)", tonic::Code::AlreadyExists),
        ("INSERT INTO t VALUES (NULL)", tonic::Code::InvalidArgument),
    ] {
        let st = query_status(&s, sql).await;
        assert_eq!(st.code(), code, "{sql}: {st:?}");
        let psql_err = s.psql(sql).unwrap_err();
        assert!(
            psql_err.contains(st.message()),
            "{sql}: Flight says {:?}, psql says {psql_err:?}",
            st.message()
        );
        assert!(st.metadata().get("x-eddy-sqlstate").is_some());
    }
}

fn ingest_cmd(table: &str, create: bool) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if create {
                TableNotExistOption::Create
            } else {
                TableNotExistOption::Fail
            } as i32,
            if_exists: TableExistsOption::Append as i32,
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_bulk_ingest_is_durable_and_validated() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    s.psql("CREATE TABLE ev (id bigint NOT NULL, name text, ts timestamp)")
        .unwrap();
    let mut c = sql_client(&s).await;
    let rows = 100_000i64;
    let batches: Vec<RecordBatch> = (0..4)
        .map(|k| {
            let ids: Vec<i64> = (k * rows / 4..(k + 1) * rows / 4).collect();
            let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
            RecordBatch::try_from_iter(vec![
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ])
            .unwrap()
        })
        .collect();
    let n = c
        .execute_ingest(
            ingest_cmd("ev", false),
            futures::stream::iter(batches.into_iter().map(Ok)),
        )
        .await
        .unwrap();
    assert_eq!(n, rows);

    // A bad value rejects the whole upload, naming the row, as every write path does.
    let bad = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        (
            "ts",
            Arc::new(StringArray::from(vec!["2024-01-01 00:00:00", "nope"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let err = c
        .execute_ingest(ingest_cmd("ev", false), futures::stream::iter([Ok(bad)]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2: invalid value") && err.contains("for column") && err.contains("ts"),
        "{err}"
    );
    let null_id = RecordBatch::try_from_iter(vec![(
        "id",
        Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
    )])
    .unwrap();
    let err = c
        .execute_ingest(
            ingest_cmd("ev", false),
            futures::stream::iter([Ok(null_id)]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("violates not-null constraint"), "{err}");
    let one = RecordBatch::try_from_iter(vec![(
        "id",
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    )])
    .unwrap();
    let err = c
        .execute_ingest(
            ingest_cmd("missing", false),
            futures::stream::iter([Ok(one.clone())]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relation \\\"missing\\\" does not exist")
            || err.contains("relation \"missing\" does not exist"),
        "{err}"
    );
    // Create-if-missing makes the table from the Arrow schema.
    assert_eq!(
        c.execute_ingest(ingest_cmd("fresh", true), futures::stream::iter([Ok(one)]))
            .await
            .unwrap(),
        1
    );

    // Acknowledged rows survive kill -9.
    let s = s.restart();
    assert_eq!(
        s.psql("SELECT count(*), count(DISTINCT name), max(id) FROM ev")
            .unwrap(),
        format!("{rows}|{rows}|{}", rows - 1)
    );
    assert_eq!(s.psql("SELECT id FROM fresh").unwrap(), "1");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_requires_auth_and_serves_tls_when_configured() {
    let dir = tempdir();
    let d = dir.path();
    // A CA and a server certificate for localhost signed by it.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=eddy test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let config = format!(
        "[fe]\ntls_cert_path = \"{}\"\ntls_key_path = \"{}\"\n\n[fe.users]\nann = \"s3cret\"\n",
        d.join("server.pem").display(),
        d.join("server.key").display()
    );
    std::fs::write(d.join("eddy.toml"), config).unwrap();
    let data = d.join("data");
    let s = Server::start_with_args(
        &data,
        &[],
        &["--config", d.join("eddy.toml").to_str().unwrap()],
    );
    let port = s.flight.rsplit(':').next().unwrap();
    let ca = std::fs::read(d.join("ca.pem")).unwrap();
    let tls = || {
        Endpoint::from_shared(format!("https://localhost:{port}"))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&ca))
                    .domain_name("localhost"),
            )
            .unwrap()
    };

    // Plaintext is refused when TLS is configured.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    if let Ok(ch) = plain.connect().await {
        let mut c = FlightSqlServiceClient::new(ch);
        assert!(c.execute("SELECT 1".into(), None).await.is_err());
    }

    let ch = tls().connect().await.expect("TLS connect");
    let mut c = FlightSqlServiceClient::new(ch.clone());
    let err = c
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("authentication required"),
        "no credentials: {err}"
    );
    let err = c.handshake("ann", "wrong").await.unwrap_err().to_string();
    assert!(
        err.contains("password authentication failed for user"),
        "{err}"
    );
    let mut raw = FlightClient::new(ch.clone());
    raw.add_header("authorization", "Bearer forged").unwrap();
    match raw.get_flight_info(cmd("SELECT 1")).await {
        Err(FlightError::Tonic(st)) => assert_eq!(st.code(), tonic::Code::Unauthenticated),
        other => panic!("forged token accepted: {other:?}"),
    }

    c.handshake("ann", "s3cret").await.unwrap();
    assert!(c.token().is_some(), "the handshake returns a bearer token");
    let got = query(&mut c, "SELECT 40 + 2 AS answer").await;
    assert_eq!(psql_text(&got), "42");
}

#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_cancel_flight_info_stops_a_running_query() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let mut c = FlightClient::new(channel(&s).await);
    // Far too long to finish during the test; it only ends by being cancelled.
    let sql = "SELECT count(*) FROM generate_series(1, 100000000000) AS g(v) WHERE v % 7 = 3";

    // Cancelled before its DoGet: the DoGet reports Cancelled.
    let info = c.get_flight_info(cmd(sql)).await.unwrap();
    let r = c
        .cancel_flight_info(CancelFlightInfoRequest::new(info.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, CancelStatus::Cancelled as i32);
    match c.do_get(info.endpoint[0].ticket.clone().unwrap()).await {
        Err(FlightError::Tonic(st)) => assert_eq!(st.code(), tonic::Code::Cancelled),
        Err(e) => panic!("{e:?}"),
        Ok(stream) => match stream.try_collect::<Vec<_>>().await {
            Err(FlightError::Tonic(st)) => assert_eq!(st.code(), tonic::Code::Cancelled),
            other => panic!("expected Cancelled, got {other:?}"),
        },
    }

    // Cancelled while streaming: the running DoGet ends with Cancelled promptly.
    let info = c.get_flight_info(cmd(sql)).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut reader = FlightClient::new(channel(&s).await);
    let started = Instant::now();
    let running = tokio::spawn(async move {
        match reader.do_get(ticket).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.is_finished(), "the query should still be running");
    let r = c
        .cancel_flight_info(CancelFlightInfoRequest::new(info))
        .await
        .unwrap();
    assert_eq!(r.status, CancelStatus::Cancelled as i32);
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the cancelled query ends")
        .unwrap();
    match outcome {
        Err(FlightError::Tonic(st)) => {
            assert_eq!(st.code(), tonic::Code::Cancelled);
            assert_eq!(st.message(), "canceling statement due to user request");
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server keeps serving.
    let mut c = sql_client(&s).await;
    assert_eq!(psql_text(&query(&mut c, "SELECT 1").await), "1");
}
