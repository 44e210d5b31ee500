//! Differential tests: a view fed batches in random order equals its defining query run by
//! DataFusion over all the rows.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use eddy_proto::{ColumnDef, ColumnType, RollupDef, TableDef};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{compile, Feed, Relation, Rollup, RollupPlan};

fn ticks_def() -> TableDef {
    let col = |n: &str, ty| ColumnDef {
        name: n.into(),
        ty,
        nullable: true,
    };
    TableDef {
        name: "ticks".into(),
        columns: vec![
            col("symbol", ColumnType::Text),
            col("ts", ColumnType::Timestamp),
            col("price", ColumnType::Float64),
            col("volume", ColumnType::Int64),
        ],
        primary_key: vec![],
        time_column: Some("ts".into()),
        partition_by: None,
        retention_secs: None,
    }
}

fn ticks(rng: &mut StdRng, n: usize) -> RecordBatch {
    let base = 1_700_000_000_000_000i64;
    let symbols: Vec<String> = (0..n)
        .map(|_| format!("S{}", rng.gen_range(0..5)))
        .collect();
    let ts: Vec<i64> = (0..n)
        .map(|_| base + rng.gen_range(0..3_600_000_000i64))
        .collect();
    let price: Vec<Option<f64>> = (0..n)
        .map(|_| (rng.gen_range(0..20) != 0).then(|| (rng.gen_range(1000..2000) as f64) / 10.0))
        .collect();
    let volume: Vec<i64> = (0..n).map(|_| rng.gen_range(1..10) * 100).collect();
    RecordBatch::try_new(
        ticks_def().arrow_schema(),
        vec![
            Arc::new(StringArray::from(symbols)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Float64Array::from(price)),
            Arc::new(Int64Array::from(volume)),
        ],
    )
    .unwrap()
}

/// Rows as sorted text lines, floats rounded (summation order differs between engines).
fn sorted(b: &RecordBatch) -> String {
    let cols =
        b.columns()
            .iter()
            .map(|c| match c.as_any().downcast_ref::<Float64Array>() {
                Some(f) => Arc::new(
                    f.unary::<_, arrow::datatypes::Float64Type>(|v| (v * 1e6).round() / 1e6),
                ) as arrow::array::ArrayRef,
                None => Arc::clone(c),
            })
            .collect();
    let b = RecordBatch::try_new(b.schema(), cols).unwrap();
    let text = pretty_format_batches(std::slice::from_ref(&b))
        .unwrap()
        .to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.join("\n")
}

fn assert_same(got: &RecordBatch, want: &RecordBatch, what: &str) {
    let (g, w) = (sorted(got), sorted(want));
    if g != w {
        let gl: Vec<&str> = g.lines().collect();
        let wl: Vec<&str> = w.lines().collect();
        let only_got: Vec<&&str> = gl.iter().filter(|l| !wl.contains(l)).take(3).collect();
        let only_want: Vec<&&str> = wl.iter().filter(|l| !gl.contains(l)).take(3).collect();
        panic!(
            "{what}: {} rows vs {} expected\nonly in view: {only_got:#?}\nonly in query: {only_want:#?}",
            got.num_rows(),
            want.num_rows()
        );
    }
}

async fn expected(sql: &str, rows: &RecordBatch, extra: &[(&str, RecordBatch)]) -> RecordBatch {
    let ctx = SessionContext::new();
    let t = MemTable::try_new(rows.schema(), vec![vec![rows.clone()]]).unwrap();
    ctx.register_table("ticks", Arc::new(t)).unwrap();
    for (name, b) in extra {
        let t = MemTable::try_new(b.schema(), vec![vec![b.clone()]]).unwrap();
        ctx.register_table(*name, Arc::new(t)).unwrap();
    }
    let out = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let schema = out
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| rows.schema());
    concat_batches(&schema, &out).unwrap()
}

async fn plan(name: &str, sql: &str, views: Vec<Arc<RollupPlan>>) -> Arc<RollupPlan> {
    let def = RollupDef {
        name: name.into(),
        sql: sql.into(),
        lateness_secs: None,
    };
    let lookup = Arc::new(move |n: &str| {
        if n == "ticks" {
            return Some(Relation::Table(ticks_def()));
        }
        views
            .iter()
            .find(|v| v.def.name == n)
            .map(|v| Relation::View(Arc::clone(v)))
    });
    Arc::new(compile(&def, lookup).await.unwrap())
}

const BARS: &str = "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, \
    first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low, \
    last_value(price ORDER BY ts) AS close, sum(volume) AS volume, \
    sum(price * volume) / sum(volume) AS vwap, count(*) AS trades, avg(price) AS avg_price, \
    count(DISTINCT volume) AS volumes, count(*) FILTER (WHERE volume > 500) AS big, \
    approx_distinct(volume) AS prices, stddev(price) AS sd \
    FROM ticks WHERE symbol <> 'S4' GROUP BY symbol, date_bin(INTERVAL '1 minute', ts)";

const HOURLY: &str = "SELECT symbol, date_bin(INTERVAL '10 minutes', bucket) AS bucket, \
    first_value(open ORDER BY bucket) AS open, max(high) AS high, min(low) AS low, \
    last_value(close ORDER BY bucket) AS close, sum(volume) AS volume, sum(trades) AS trades \
    FROM bars GROUP BY 1, 2";

#[tokio::test]
async fn views_equal_their_query_whatever_the_arrival_order() {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let all = ticks(&mut rng, 3000);
        let bars = plan("bars", BARS, vec![]).await;
        let hourly = plan("hourly", HOURLY, vec![Arc::clone(&bars)]).await;
        let mut v = Rollup::new(Arc::clone(&bars)).unwrap();
        let mut h = Rollup::new(Arc::clone(&hourly)).unwrap();
        // Random arrival: shuffle, then feed in random-size batches; restore midway.
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let shuffled = take_record_batch(&all, &arrow::array::UInt32Array::from(order)).unwrap();
        let mut at = 0;
        let mut fed = 0;
        while at < shuffled.num_rows() {
            let n = rng.gen_range(1..400).min(shuffled.num_rows() - at);
            let b = shuffled.slice(at, n);
            let took = v.apply(&b, Feed::Live).unwrap();
            let parent_rows = match took {
                Some(m) => arrow::compute::filter_record_batch(&b, &m).unwrap(),
                None => b.clone(),
            };
            h.apply(&parent_rows, Feed::Live).unwrap();
            at += n;
            fed += 1;
            if fed == 5 {
                // A restart: snapshot, rebuild from the snapshot, carry on.
                let snap = v.snapshot().unwrap();
                let mut v2 = Rollup::new(Arc::clone(&bars)).unwrap();
                v2.restore(&snap, v.counters.clone()).unwrap();
                v = v2;
                let snap = h.snapshot().unwrap();
                let mut h2 = Rollup::new(Arc::clone(&hourly)).unwrap();
                h2.restore(&snap, h.counters.clone()).unwrap();
                h = h2;
            }
        }
        let got = v.output_batch().unwrap();
        let want = expected(BARS, &all, &[]).await;
        assert_same(&got, &want, &format!("seed {seed}: bars"));
        let got_h = h.output_batch().unwrap();
        let want_h = expected(HOURLY, &all, &[("bars", got.clone())]).await;
        assert_same(&got_h, &want_h, &format!("seed {seed}: cascade"));

        // A cascade created over a view that already has data starts from its state.
        let mut late = Rollup::new(Arc::clone(&hourly)).unwrap();
        late.absorb(&mut v).unwrap();
        assert_same(
            &late.output_batch().unwrap(),
            &want_h,
            &format!("seed {seed}: absorb"),
        );
    }
}

#[tokio::test]
async fn rows_later_than_the_lateness_are_dropped_and_counted() {
    let def = RollupDef {
        name: "bars".into(),
        sql: "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, count(*) AS n \
              FROM ticks GROUP BY 1, 2"
            .into(),
        lateness_secs: Some(30),
    };
    let lookup = Arc::new(|n: &str| (n == "ticks").then(|| Relation::Table(ticks_def())));
    let plan = Arc::new(compile(&def, lookup).await.unwrap());
    let mut v = Rollup::new(plan).unwrap();
    let at = |secs: i64| {
        let schema = ticks_def().arrow_schema();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["A"])),
                Arc::new(TimestampMicrosecondArray::from(vec![secs * 1_000_000])),
                Arc::new(Float64Array::from(vec![1.0])),
                Arc::new(Int64Array::from(vec![1])),
            ],
        )
        .unwrap()
    };
    v.apply(&at(600), Feed::Live).unwrap(); // bucket [600, 660)
    v.apply(&at(700), Feed::Live).unwrap(); // bucket [660, 720)
    v.apply(&at(670), Feed::Live).unwrap(); // late, but 720 + 30 > 700: accepted
    v.apply(&at(695), Feed::Live).unwrap(); // newest bucket: accepted
    v.apply(&at(800), Feed::Live).unwrap();
    let m = v.apply(&at(650), Feed::Live).unwrap(); // 660 + 30 <= 800: dropped
    assert_eq!(m.map(|m| m.true_count()), Some(0));
    assert_eq!(v.counters.late_rows_accepted, 2);
    assert_eq!(v.counters.late_rows_dropped, 1);
    let out = v.output_batch().unwrap();
    let n: i64 =
        arrow::compute::sum(out.column(2).as_any().downcast_ref::<Int64Array>().unwrap()).unwrap();
    assert_eq!(n, 5);
    assert_eq!(v.open_buckets().unwrap(), 1);
}

#[tokio::test]
async fn definitions_that_cannot_be_incremental_are_refused_with_reasons() {
    let bars = plan("bars", BARS, vec![]).await;
    let bad = [
        ("SELECT symbol FROM ticks", "GROUP BY"),
        (
            "SELECT symbol, count(*) FROM ticks GROUP BY symbol HAVING count(*) > 1",
            "HAVING",
        ),
        (
            "SELECT symbol, count(*) AS n FROM ticks GROUP BY symbol ORDER BY n",
            "ORDER BY",
        ),
        (
            "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol",
            "not derivable",
        ),
        (
            "SELECT symbol, avg(high) AS a FROM bars GROUP BY symbol",
            "not derivable",
        ),
        (
            "SELECT symbol, count(*) FROM nosuch GROUP BY symbol",
            "nosuch",
        ),
    ];
    for (sql, why) in bad {
        let def = RollupDef {
            name: "v".into(),
            sql: sql.into(),
            lateness_secs: None,
        };
        let b = Arc::clone(&bars);
        let lookup = Arc::new(move |n: &str| match n {
            "ticks" => Some(Relation::Table(ticks_def())),
            "bars" => Some(Relation::View(Arc::clone(&b))),
            _ => None,
        });
        let err = compile(&def, lookup)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} compiled"));
        assert!(err.message.contains(why), "{sql}: {}", err.message);
    }
}
