//! SQL over the PostgreSQL wire: DDL, DML, queries, types and errors.

use crate::harness::{rows, scalar, sqlstate, tempdir, Server};

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_through_psql() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    s.psql(
        "CREATE TABLE all_types (t text, v varchar(10), b boolean, i2 smallint, i4 integer, i8 bigint, \
         f4 real, f8 double precision, n numeric(10,2), d date, ts timestamp, tz timestamptz, j jsonb)",
    )
    .unwrap();
    s.psql(
        "INSERT INTO all_types VALUES ('hello', 'v', true, 1, 2, 3, 1.5, 2.25, 12.34, DATE '2024-01-02', \
         TIMESTAMP '2024-01-02 03:04:05.123456', TIMESTAMPTZ '2024-01-02T03:04:05.5Z', '{\"a\": 1}'), \
         (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .unwrap();
    let out = s
        .psql("SELECT * FROM all_types ORDER BY i2 NULLS LAST")
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let f: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(
        &f[..9],
        &["hello", "v", "t", "1", "2", "3", "1.5", "2.25", "12.34"],
        "{out}"
    );
    assert_eq!(f[9], "2024-01-02");
    assert_eq!(f[10], "2024-01-02 03:04:05.123456");
    assert!(
        f[11].starts_with("2024-01-02 03:04:05.5"),
        "timestamptz printed as {}",
        f[11]
    );
    assert_eq!(f[12], "{\"a\": 1}");
    assert_eq!(lines[1], "||||||||||||", "NULLs print as empty: {out}");
    // Survives a seal into Parquet and a restart.
    s.psql("CHECKPOINT").unwrap();
    let s = s.restart();
    assert_eq!(
        s.psql("SELECT * FROM all_types ORDER BY i2 NULLS LAST")
            .unwrap(),
        out
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_windows_ctes_insert_select_and_explain() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE trades (sym text NOT NULL, ts timestamp NOT NULL, px double precision, qty bigint) WITH (time_column = 'ts', partition_by = 'day')").await;
    rows(&c, "CREATE TABLE names (sym text PRIMARY KEY, name text)").await;
    rows(&c, "INSERT INTO trades VALUES ('CL', '2024-01-01 10:00:00', 70, 1), ('CL', '2024-01-01 10:01:00', 71.5, 2), ('GC', '2024-01-01 10:00:30', 2000.25, 3)").await;
    rows(
        &c,
        "INSERT INTO names VALUES ('CL', 'Crude'), ('GC', 'Gold')",
    )
    .await;
    let r = rows(&c, "WITH t AS (SELECT sym, px, row_number() OVER (PARTITION BY sym ORDER BY ts DESC) AS rn FROM trades) \
                      SELECT n.name, t.px FROM t JOIN names n ON n.sym = t.sym WHERE rn = 1 ORDER BY 1").await;
    assert_eq!(
        r,
        vec![
            vec![Some("Crude".into()), Some("71.5".into())],
            vec![Some("Gold".into()), Some("2000.25".into())]
        ]
    );
    rows(&c, "CREATE TABLE big_trades (sym text, qty bigint)").await;
    let tag = c
        .simple_query("INSERT INTO big_trades SELECT sym, qty FROM trades WHERE qty >= 2")
        .await
        .unwrap();
    assert!(tag
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(2))));
    assert_eq!(scalar(&c, "SELECT sum(qty) FROM big_trades").await, "5");
    let plan = rows(&c, "EXPLAIN SELECT * FROM trades WHERE sym = 'CL'").await;
    assert!(format!("{plan:?}").contains("EddyScanExec"), "{plan:?}");
    let analyzed = rows(&c, "EXPLAIN ANALYZE SELECT count(*) FROM trades").await;
    assert!(
        format!("{analyzed:?}").contains("output_rows"),
        "{analyzed:?}"
    );
    // Several statements in one string.
    let r = rows(&c, "SELECT 1; SELECT 2").await;
    assert_eq!(r, vec![vec![Some("1".into())], vec![Some("2".into())]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_postgres_sqlstates_and_reject_whole_statements() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE t (id bigint NOT NULL, v integer)").await;
    assert_eq!(sqlstate(&c, "SELECT * FROM nope").await.0, "42P01");
    let (code, msg) = sqlstate(&c, "SELECT nope FROM t").await;
    assert_eq!(code, "42703", "{msg}");
    assert_eq!(sqlstate(&c, "SELEC 1").await.0, "42601");
    assert_eq!(sqlstate(&c, "CREATE TABLE t (x int)").await.0, "42P07");
    let (code, msg) = sqlstate(&c, "INSERT INTO t VALUES (1, 1), (NULL, 2)").await;
    assert_eq!(code, "23502", "{msg}");
    assert!(msg.contains("row 2") && msg.contains("\"id\""), "{msg}");
    let (code, _) = sqlstate(&c, "INSERT INTO t VALUES (1, 'abc')").await;
    assert_eq!(code, "22P02");
    let (code, msg) = sqlstate(&c, "SELECT 'abc'::int").await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("22P02", "invalid input syntax for type integer: \"abc\"")
    );
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM t").await,
        "0",
        "nothing of a rejected INSERT is applied"
    );
    let (code, msg) = sqlstate(&c, "DELETE FROM t WHERE id = 1").await;
    assert_eq!(code, "42P17", "{msg}");
    let (code, msg) = sqlstate(&c, "SELECT 1 / 0").await;
    assert_eq!((code.as_str(), msg.as_str()), ("22012", "division by zero"));
    // int4 constants add as int4, as in PostgreSQL: out of range rather than wrapped.
    let (code, msg) = sqlstate(&c, "SELECT 2147483647 + 1").await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("22003", "integer out of range")
    );
    assert_eq!(scalar(&c, "SELECT 2147483648 + 1").await, "2147483649");
    // Expressions nested past planning's stack: 54001, not a crashed server (a chain of
    // 20000 terms overflowed a connection thread's stack, which aborts the process).
    let deep = format!("SELECT {}", vec!["1.5"; 20_000].join(" + "));
    let (code, msg) = sqlstate(&c, &deep).await;
    assert_eq!(code, "54001", "{msg}");
    // Calls nested 30 deep would take the parser hours (2^30 reads): refused at once.
    let calls = format!("SELECT {}1{}", "abs(".repeat(30), ")".repeat(30));
    let (code, msg) = sqlstate(&c, &calls).await;
    assert_eq!(code, "54001", "{msg}");
    assert!(msg.contains("nest 30 deep"), "{msg}");
    let calls = format!("SELECT {}-1{}", "abs(".repeat(8), ")".repeat(8));
    assert_eq!(scalar(&c, &calls).await, "1");
    // A value past PostgreSQL's 1 GB is refused before it is built, as PostgreSQL does.
    let (code, msg) = sqlstate(&c, "SELECT length(repeat('x', 1500000000))").await;
    assert_eq!(code, "54000", "{msg}");
    let (code, msg) = sqlstate(&c, "SELECT lpad('x', 1500000000)").await;
    assert_eq!(code, "54000", "{msg}");
    assert_eq!(
        scalar(
            &c,
            "SELECT repeat('ab', 3) || lpad('7', 3, '0') || rpad('x', 2, '-')"
        )
        .await,
        "ababab007x-"
    );
    // A long OR list plans in a balanced tree, and answers.
    let ors: Vec<String> = (0..5_000).map(|i| format!("id = {i}")).collect();
    rows(&c, "INSERT INTO t VALUES (4999, 1), (5000, 2)").await;
    let any = format!("SELECT count(*) FROM t WHERE {}", ors.join(" OR "));
    assert_eq!(scalar(&c, &any).await, "1");
    // The connection is still usable.
    assert_eq!(scalar(&c, "SELECT 40 + 2").await, "42");
}

#[tokio::test(flavor = "multi_thread")]
async fn scalar_subqueries_in_select_lists_answer_as_in_postgres() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE products (id bigint PRIMARY KEY, name text)",
    )
    .await;
    rows(
        &c,
        "CREATE TABLE orders (id bigint PRIMARY KEY, product bigint)",
    )
    .await;
    rows(
        &c,
        "CREATE TABLE lines (order_id bigint NOT NULL, qty bigint)",
    )
    .await;
    rows(&c, "INSERT INTO products VALUES (1, 'oil'), (2, 'gold')").await;
    rows(&c, "INSERT INTO orders VALUES (10, 1), (11, 2), (12, 7)").await;
    rows(&c, "INSERT INTO lines VALUES (10, 1), (10, 2), (11, 5)").await;
    // A lookup by key: one value per row, NULL where nothing matches, named as its column.
    let q = "SELECT o.id, (SELECT p.name FROM products p WHERE p.id = o.product) FROM orders o ORDER BY o.id";
    assert_eq!(
        rows(&c, q).await,
        vec![
            vec![Some("10".into()), Some("oil".into())],
            vec![Some("11".into()), Some("gold".into())],
            vec![Some("12".into()), None],
        ]
    );
    let st = c.prepare(q).await.unwrap();
    assert_eq!(st.columns()[1].name(), "name");
    let counted = "SELECT o.id, (SELECT count(*) FROM lines l WHERE l.order_id = o.id) FROM orders o ORDER BY o.id";
    assert_eq!(
        c.prepare(counted).await.unwrap().columns()[1].name(),
        "count"
    );
    // Order 10 has two lines: PostgreSQL's error, correlated or not.
    for q in [
        "SELECT o.id, (SELECT l.qty FROM lines l WHERE l.order_id = o.id) FROM orders o",
        "SELECT o.id, (SELECT qty FROM lines) FROM orders o",
    ] {
        let (code, msg) = sqlstate(&c, q).await;
        assert_eq!(
            (code.as_str(), msg.as_str()),
            (
                "21000",
                "more than one row returned by a subquery used as an expression"
            ),
            "{q}"
        );
    }
    // Correlated by a non-equality: not decorrelated, said in words a user can act on.
    let (code, msg) = sqlstate(
        &c,
        "SELECT o.id, (SELECT count(*) FROM lines l WHERE l.order_id < o.id) FROM orders o",
    )
    .await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("equality"), "{msg}");
    // EXISTS as a value, correlated or not.
    assert_eq!(
        rows(
            &c,
            "SELECT o.id, EXISTS (SELECT 1 FROM lines l WHERE l.order_id = o.id), \
             NOT EXISTS (SELECT 1 FROM lines WHERE qty > 100) FROM orders o ORDER BY o.id"
        )
        .await,
        vec![
            vec![Some("10".into()), Some("t".into()), Some("t".into())],
            vec![Some("11".into()), Some("t".into()), Some("t".into())],
            vec![Some("12".into()), Some("f".into()), Some("t".into())],
        ]
    );
    // Only the rows asked about count: order 11 has one line.
    assert_eq!(
        scalar(&c, "SELECT (SELECT l.qty FROM lines l WHERE l.order_id = o.id) FROM orders o WHERE o.id = 11").await,
        "5"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn to_char_templates_and_sorting_by_a_column_selected_cast() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE ev (ts timestamptz NOT NULL, n bigint)").await;
    rows(
        &c,
        "INSERT INTO ev VALUES ('2026-03-05 07:08:09+00', 1), ('2026-01-02 10:00:00+00', 2)",
    )
    .await;
    // PostgreSQL's template, not printed back as it was.
    assert_eq!(
        rows(
            &c,
            "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS'), to_char(ts, 'FMDD/FMMM \"w\"IW') FROM ev ORDER BY ts"
        )
        .await,
        vec![
            vec![Some("2026-01-02 10:00:00".into()), Some("2/1 w01".into())],
            vec![Some("2026-03-05 07:08:09".into()), Some("5/3 w10".into())],
        ]
    );
    // A cast named like the column the query sorts by (DataFusion refused the name).
    assert_eq!(
        rows(&c, "SELECT ts::date, n FROM ev ORDER BY ts").await,
        vec![
            vec![Some("2026-01-02".into()), Some("2".into())],
            vec![Some("2026-03-05".into()), Some("1".into())],
        ]
    );
    // Numbers with PostgreSQL's number templates (PostgreSQL 15's answers).
    assert_eq!(
        rows(
            &c,
            "SELECT to_char(n * 1234.5, 'FM9,999.00'), to_char(n, '000'), to_char(-n, 'S9'), \
             to_char(n * 1000, '999') FROM ev ORDER BY ts"
        )
        .await,
        vec![
            vec![
                Some("2,469.00".into()),
                Some(" 002".into()),
                Some("-2".into()),
                Some(" ###".into())
            ],
            vec![
                Some("1,234.50".into()),
                Some(" 001".into()),
                Some("-1".into()),
                Some(" ###".into())
            ],
        ]
    );
    let st = c
        .prepare("SELECT ts::date FROM ev ORDER BY ts")
        .await
        .unwrap();
    assert_eq!(st.columns()[0].name(), "ts");
    // AT TIME ZONE: an instant's local time, or a local time's instant.
    assert_eq!(
        rows(
            &c,
            "SELECT ts AT TIME ZONE 'America/New_York', \
             TIMESTAMP '2026-07-01 12:00:00' AT TIME ZONE 'America/New_York' FROM ev ORDER BY ts LIMIT 1"
        )
        .await,
        vec![vec![
            Some("2026-01-02 05:00:00".into()),
            Some("2026-07-01 16:00:00+00".into())
        ]]
    );
    // PostgreSQL's spellings of DataFusion functions and clauses.
    assert_eq!(
        rows(
            &c,
            "SELECT mod(n, 2), variance(n) OVER (), gen_random_uuid() IS NOT NULL FROM ev \
             ORDER BY ts OFFSET 1 ROWS FETCH FIRST 5 ROWS ONLY"
        )
        .await,
        vec![vec![Some("1".into()), Some("0.5".into()), Some("t".into())]]
    );
    // Timestamp text in PostgreSQL's shorter spellings, compared with a column.
    assert_eq!(
        rows(
            &c,
            "SELECT n FROM ev WHERE ts > '2026-01-02 10:00' AND ts < '2026/3/5 7:09' \
             AND ts::date >= '20260301'"
        )
        .await,
        vec![vec![Some("1".into())]]
    );
    assert_eq!(
        scalar(&c, "SELECT 'tomorrow'::date - 'yesterday'::date").await,
        "2"
    );
    // A difference of timestamps is days and the rest, as PostgreSQL prints it.
    assert_eq!(
        rows(
            &c,
            "SELECT ts - lag(ts) OVER (ORDER BY ts), '2026-01-01'::timestamp - '2026-01-02 01:00'::timestamp \
             FROM ev ORDER BY ts"
        )
        .await,
        vec![
            vec![None, Some("-1 days -01:00:00".into())],
            vec![
                Some("61 days 21:08:09".into()),
                Some("-1 days -01:00:00".into())
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alter_add_column_copy_and_system_tables() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE m (id bigint NOT NULL, name text)").await;
    rows(&c, "INSERT INTO m VALUES (1, 'a')").await;
    rows(&c, "CHECKPOINT").await;
    rows(&c, "ALTER TABLE m ADD COLUMN score double precision").await;
    rows(&c, "INSERT INTO m VALUES (2, 'b', 9.5)").await;
    assert_eq!(
        sqlstate(&c, "ALTER TABLE m ADD COLUMN score int").await.0,
        "42701"
    );
    assert_eq!(
        rows(&c, "SELECT id, name, score FROM m ORDER BY id").await,
        vec![
            vec![Some("1".into()), Some("a".into()), None],
            vec![Some("2".into()), Some("b".into()), Some("9.5".into())]
        ]
    );
    // COPY FROM STDIN through psql, CSV and text formats.
    let out = s
        .psql_stdin(
            "COPY m FROM STDIN (FORMAT csv)",
            b"3,c,1.25\n4,\"d, quoted\",\n",
        )
        .unwrap();
    assert!(out.contains("COPY 2"), "{out}");
    s.psql_stdin("COPY m (id, name) FROM STDIN", b"5\ttab\\tbed\n6\t\\N\n")
        .unwrap();
    assert_eq!(
        rows(
            &c,
            "SELECT id, name, score FROM m WHERE id >= 3 ORDER BY id"
        )
        .await,
        vec![
            vec![Some("3".into()), Some("c".into()), Some("1.25".into())],
            vec![Some("4".into()), Some("d, quoted".into()), None],
            vec![Some("5".into()), Some("tab\tbed".into()), None],
            vec![Some("6".into()), None, None],
        ]
    );
    // A bad COPY row rejects the whole COPY, naming the row and column.
    let err = s
        .psql_stdin("COPY m FROM STDIN (FORMAT csv)", b"7,g,1\nx,h,2\n")
        .unwrap_err();
    assert!(err.contains("row 2") && err.contains("\"id\""), "{err}");
    assert_eq!(scalar(&c, "SELECT count(*) FROM m WHERE id = 7").await, "0");
    rows(&c, "CHECKPOINT").await;
    let t = rows(
        &c,
        "SELECT table_name, rows, segments FROM system.tables WHERE table_name = 'm'",
    )
    .await;
    assert_eq!(
        t,
        vec![vec![Some("m".into()), Some("6".into()), Some("2".into())]]
    );
    let segs = scalar(
        &c,
        "SELECT sum(rows) FROM system.segments WHERE table_name = 'm'",
    )
    .await;
    assert_eq!(segs, "6");
    rows(&c, "DROP TABLE m").await;
    assert_eq!(sqlstate(&c, "SELECT * FROM m").await.0, "42P01");
    rows(&c, "DROP TABLE IF EXISTS m").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_functions_datafusion_lacks() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(
        &c,
        "CREATE TABLE sales (day date, amount double precision, region text)",
    )
    .await;
    rows(
        &c,
        "INSERT INTO sales VALUES ('2026-01-31', 5, 'North'), ('2026-03-01', 42.5, 'south'), ('2026-03-02', NULL, NULL)",
    )
    .await;
    // Answers of PostgreSQL 15 to the same statements.
    assert_eq!(
        rows(
            &c,
            "SELECT age(day, date '2026-01-31'), width_bucket(amount, 0, 50, 5), \
             format('%s: %L', quote_ident(region), amount), \
             json_build_object('day', day, 'amount', amount, 'region', region) \
             FROM sales ORDER BY day"
        )
        .await,
        vec![
            vec![
                Some("00:00:00".into()),
                Some("1".into()),
                Some("\"North\": '5'".into()),
                Some(r#"{"day" : "2026-01-31", "amount" : 5, "region" : "North"}"#.into()),
            ],
            vec![
                Some("1 mon 1 day".into()),
                Some("5".into()),
                Some("south: '42.5'".into()),
                Some(r#"{"day" : "2026-03-01", "amount" : 42.5, "region" : "south"}"#.into()),
            ],
            vec![
                Some("1 mon 2 days".into()),
                None,
                Some(": NULL".into()),
                Some(r#"{"day" : "2026-03-02", "amount" : null, "region" : null}"#.into()),
            ],
        ]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT make_timestamp(2026, 2, 28, 23, 59, 30.5), justify_hours(interval '50 hours'), \
             justify_interval(interval '1 mon -1 day -1 hour'), date '2026-01-01' + interval '1 hour'"
        )
        .await,
        vec![vec![
            Some("2026-02-28 23:59:30.5".into()),
            Some("2 days 02:00:00".into()),
            Some("28 days 23:00:00".into()),
            Some("2026-01-01 01:00:00".into()),
        ]]
    );
    let (code, msg) = sqlstate(&c, "SELECT width_bucket(1, 0, 0, 3)").await;
    assert!(
        msg.contains("lower bound cannot equal upper bound"),
        "{code} {msg}"
    );
    let (_, msg) = sqlstate(&c, "SELECT format('%s %s', 1)").await;
    assert!(msg.contains("too few arguments"), "{msg}");
    // Ordered-set aggregates, by group (PostgreSQL's answers).
    assert_eq!(
        rows(
            &c,
            "SELECT mode() WITHIN GROUP (ORDER BY region), \
             percentile_disc(0.5) WITHIN GROUP (ORDER BY amount), \
             percentile_disc(0.5) WITHIN GROUP (ORDER BY amount DESC) FROM sales"
        )
        .await,
        vec![vec![
            Some("North".into()),
            Some("5".into()),
            Some("42.5".into())
        ]]
    );
    assert_eq!(
        sqlstate(
            &c,
            "SELECT percentile_disc(1.5) WITHIN GROUP (ORDER BY amount) FROM sales"
        )
        .await
        .0,
        "22003"
    );
    // A jsonb column read with PostgreSQL's operators.
    rows(&c, "CREATE TABLE cdc (id int, payload jsonb)").await;
    rows(
        &c,
        r#"INSERT INTO cdc VALUES (1, '{"op":"c","after":{"sku":"A-1","qty":2,"tags":["x","y"]}}'), (2, NULL)"#,
    )
    .await;
    assert_eq!(
        rows(
            &c,
            "SELECT payload ->> 'op', payload -> 'after' ->> 'sku', (payload -> 'after' ->> 'qty')::int * 2, \
             payload #>> '{after,tags,1}', payload -> 'after' -> 'tags', payload -> 'before' FROM cdc ORDER BY id"
        )
        .await,
        vec![
            vec![
                Some("c".into()),
                Some("A-1".into()),
                Some("4".into()),
                Some("y".into()),
                Some(r#"["x", "y"]"#.into()),
                None
            ],
            vec![None, None, None, None, None, None],
        ]
    );
    assert_eq!(
        scalar(&c, r#"SELECT '{"b":1,"a":[1,{"c":null}]}'::jsonb"#).await,
        r#"{"a": [1, {"c": null}], "b": 1}"#
    );
    assert_eq!(sqlstate(&c, "SELECT 'nope'::jsonb").await.0, "22P02");
    // `::json` keeps its text; generate_series in a select list is rows; seconds keep
    // their fraction; `sign` and `every` are PostgreSQL's names.
    assert_eq!(
        scalar(&c, r#"SELECT '{"b":1,  "a":2}'::json"#).await,
        r#"{"b":1,  "a":2}"#
    );
    assert_eq!(
        rows(&c, "SELECT generate_series(1, 3) * 2 AS x ORDER BY x DESC").await,
        vec![
            vec![Some("6".into())],
            vec![Some("4".into())],
            vec![Some("2".into())]
        ]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT extract(second FROM timestamp '2026-01-01 10:00:59.25'), \
             date_part('second', timestamptz '2026-01-01 10:00:01.5+00'), sign(-3), \
             every(amount > 1) FROM sales WHERE amount IS NOT NULL"
        )
        .await,
        vec![vec![
            Some("59.25".into()),
            Some("1.5".into()),
            Some("-1".into()),
            Some("t".into())
        ]]
    );
}
