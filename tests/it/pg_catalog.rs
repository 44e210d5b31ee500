//! pg_catalog and information_schema as psql, SQLAlchemy and Grafana query them.

use crate::harness::{rows, scalar, tempdir, Server};

#[tokio::test(flavor = "multi_thread")]
async fn psql_meta_commands_and_catalog_queries() {
    let dir = tempdir();
    let s = Server::start(dir.path(), &[]);
    let c = s.client().await;
    rows(&c, "CREATE TABLE ticks (sym text NOT NULL, ts timestamptz NOT NULL, px double precision, qty bigint)").await;

    // psql's \dt and \d run their own catalog queries.
    let dt = s.psql(r"\dt").unwrap();
    assert!(
        dt.lines().any(|l| l == "public|ticks|table|postgres"),
        "{dt}"
    );
    let d = s.psql(r"\d ticks").unwrap();
    assert!(d.contains("ts|timestamp with time zone"), "{d}");
    assert!(d.contains("px|double precision"), "{d}");
    let dn = s.psql(r"\dn").unwrap();
    assert!(dn.lines().any(|l| l.starts_with("public|")), "{dn}");

    // Grafana's table and column pickers.
    assert_eq!(
        scalar(&c, "SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'ticks'").await,
        "ticks"
    );
    let cols = rows(&c, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ticks' ORDER BY ordinal_position").await;
    assert_eq!(cols.len(), 4);
    assert_eq!(cols[0][0].as_deref(), Some("sym"));
    // SQLAlchemy's type lookups.
    assert_eq!(
        scalar(&c, "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON a.attrelid = c.oid WHERE c.relname = 'ticks' AND a.attname = 'qty'").await,
        "bigint"
    );
    assert_eq!(
        scalar(&c, "SELECT count(*) FROM pg_catalog.pg_type WHERE pg_type_is_visible(oid) AND typname = 'int8'").await,
        "1"
    );
    // Correlated subqueries over the catalogs answer when DataFusion decorrelates them,
    // NULL only where it cannot (psql's \d: column defaults, collations).
    let q = "SELECT (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid), \
             (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = c.relnamespace) \
             FROM pg_catalog.pg_class c WHERE c.relname = 'ticks'";
    assert_eq!(
        rows(&c, q).await,
        vec![vec![Some("4".into()), Some("public".into())]]
    );
    let st = c.prepare(q).await.unwrap();
    let names: Vec<&str> = st.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "nspname"]);
}
