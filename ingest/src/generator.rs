//! The built-in data generator behind `eddy demo`: commodity price ticks (with occasional
//! jumps of more than 5%), clickstream events (sessions, carts, purchases) and orders
//! (created, then paid or cancelled: upserts by `order_id`).
//!
//! Every generator is deterministic for a seed and takes the event time from the caller, so
//! tests can replay it; [`crate::source::generator`] drives one at a fixed rate into a table
//! (`CREATE SOURCE ... FROM GENERATOR`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use eddy_proto::{ColumnDef, ColumnType, PartitionBy, TableDef};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    Ticks,
    Events,
    Orders,
}

impl GeneratorKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ticks" => Some(Self::Ticks),
            "events" => Some(Self::Events),
            "orders" => Some(Self::Orders),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ticks => "ticks",
            Self::Events => "events",
            Self::Orders => "orders",
        }
    }

    /// The table the demo feeds with this generator.
    pub fn demo_table(self) -> TableDef {
        let col = |name: &str, ty, nullable| ColumnDef {
            name: name.into(),
            ty,
            nullable,
        };
        match self {
            GeneratorKind::Ticks => TableDef {
                name: "ticks".into(),
                columns: vec![
                    col("symbol", ColumnType::Text, false),
                    col("ts", ColumnType::Timestamp, false),
                    col("price", ColumnType::Float64, false),
                    col("volume", ColumnType::Int64, false),
                ],
                primary_key: vec![],
                time_column: Some("ts".into()),
                partition_by: Some(PartitionBy::Day),
                retention_secs: Some(30 * 86_400),
            },
            GeneratorKind::Events => TableDef {
                name: "events".into(),
                columns: vec![
                    col("ts", ColumnType::Timestamp, false),
                    col("event_type", ColumnType::Text, false),
                    col("user_id", ColumnType::Int64, false),
                    col("session_id", ColumnType::Text, false),
                    col("product_id", ColumnType::Int64, true),
                    col("amount", ColumnType::Float64, true),
                ],
                primary_key: vec![],
                time_column: Some("ts".into()),
                partition_by: Some(PartitionBy::Day),
                retention_secs: Some(30 * 86_400),
            },
            GeneratorKind::Orders => TableDef {
                name: "orders".into(),
                columns: vec![
                    col("order_id", ColumnType::Int64, false),
                    col("user_id", ColumnType::Int64, false),
                    col("ts", ColumnType::Timestamp, false),
                    col("status", ColumnType::Text, false),
                    col(
                        "total_amount",
                        ColumnType::Numeric {
                            precision: 12,
                            scale: 2,
                        },
                        false,
                    ),
                    col("items", ColumnType::Int32, false),
                ],
                primary_key: vec!["order_id".into()],
                time_column: Some("ts".into()),
                partition_by: None,
                retention_secs: None,
            },
        }
    }
}

const COMMODITIES: [(&str, f64); 12] = [
    ("CL", 78.0),
    ("BZ", 82.0),
    ("NG", 2.6),
    ("GC", 2050.0),
    ("SI", 23.5),
    ("HG", 3.9),
    ("PL", 920.0),
    ("ZC", 455.0),
    ("ZW", 590.0),
    ("ZS", 1210.0),
    ("KC", 185.0),
    ("SB", 21.0),
];
const EVENT_TYPES: [&str; 7] = [
    "page_view",
    "button_click",
    "add_to_cart",
    "purchase",
    "login",
    "logout",
    "search",
];

/// A deterministic generator of one kind of demo data.
#[derive(Debug)]
pub struct Generator {
    kind: GeneratorKind,
    rng: StdRng,
    prices: Vec<f64>,
    next_order_id: i64,
    open_orders: Vec<(i64, i64, i32, i64)>,
    users_session: Vec<i64>,
    /// A user placing a rush of orders (the rapid-orders alert): (user, orders left).
    rush: Option<(i64, u32)>,
}

impl Generator {
    pub fn new(kind: GeneratorKind, seed: u64) -> Self {
        Self {
            kind,
            rng: StdRng::seed_from_u64(seed),
            prices: COMMODITIES.iter().map(|(_, p)| *p).collect(),
            next_order_id: 1,
            open_orders: Vec::new(),
            users_session: vec![0; 5_000],
            rush: None,
        }
    }

    /// Produces `rows` rows with event times spread over `[from_micros, to_micros)`.
    pub fn next_batch(&mut self, rows: usize, from_micros: i64, to_micros: i64) -> RecordBatch {
        let span = (to_micros - from_micros).max(1);
        let ts = |i: usize| from_micros + span * i as i64 / rows.max(1) as i64;
        match self.kind {
            GeneratorKind::Ticks => self.ticks(rows, ts),
            GeneratorKind::Events => self.events(rows, ts),
            GeneratorKind::Orders => self.orders(rows, ts),
        }
    }

    fn ticks(&mut self, rows: usize, ts: impl Fn(usize) -> i64) -> RecordBatch {
        let mut sym = StringBuilder::new();
        let mut t = TimestampMicrosecondBuilder::new();
        let mut price = Float64Builder::new();
        let mut vol = Int64Builder::new();
        for i in 0..rows {
            let s = self.rng.gen_range(0..COMMODITIES.len());
            let mut r: f64 = self.rng.gen_range(-0.0008..0.0008);
            if self.rng.gen_bool(0.0002) {
                // A rare jump of 6–15%, up or down: what the price alerts look for.
                let mag = self.rng.gen_range(0.06..0.15);
                r += if self.rng.gen_bool(0.5) { mag } else { -mag };
            }
            self.prices[s] = (self.prices[s] * (1.0 + r)).max(0.01);
            sym.append_value(COMMODITIES[s].0);
            t.append_value(ts(i));
            price.append_value((self.prices[s] * 10_000.0).round() / 10_000.0);
            vol.append_value(self.rng.gen_range(1..50) * 100);
        }
        batch(vec![
            ("symbol", Arc::new(sym.finish())),
            ("ts", Arc::new(t.finish())),
            ("price", Arc::new(price.finish())),
            ("volume", Arc::new(vol.finish())),
        ])
    }

    fn events(&mut self, rows: usize, ts: impl Fn(usize) -> i64) -> RecordBatch {
        let mut t = TimestampMicrosecondBuilder::new();
        let mut et = StringBuilder::new();
        let mut user = Int64Builder::new();
        let mut sess = StringBuilder::new();
        let mut prod = Int64Builder::new();
        let mut amount = Float64Builder::new();
        for i in 0..rows {
            let u = self.rng.gen_range(0..self.users_session.len());
            if self.rng.gen_bool(0.05) {
                self.users_session[u] += 1;
            }
            let kind = match self.rng.gen_range(0..100) {
                0..=54 => 0,
                55..=69 => 6,
                70..=84 => 1,
                85..=94 => 2,
                95..=97 => 3,
                98 => 4,
                _ => 5,
            };
            t.append_value(ts(i));
            et.append_value(EVENT_TYPES[kind]);
            user.append_value(u as i64 + 1);
            sess.append_value(format!("s{}-{}", u + 1, self.users_session[u]));
            if kind <= 3 {
                let p: f64 = self.rng.gen();
                prod.append_value((1000.0 * p * p * p) as i64 + 1);
            } else {
                prod.append_null();
            }
            if kind == 3 {
                amount.append_value((self.rng.gen_range(5.0..400.0f64) * 100.0).round() / 100.0);
            } else {
                amount.append_null();
            }
        }
        batch(vec![
            ("ts", Arc::new(t.finish())),
            ("event_type", Arc::new(et.finish())),
            ("user_id", Arc::new(user.finish())),
            ("session_id", Arc::new(sess.finish())),
            ("product_id", Arc::new(prod.finish())),
            ("amount", Arc::new(amount.finish())),
        ])
    }

    fn orders(&mut self, rows: usize, ts: impl Fn(usize) -> i64) -> RecordBatch {
        let mut id = Int64Builder::new();
        let mut user = Int64Builder::new();
        let mut t = TimestampMicrosecondBuilder::new();
        let mut status = StringBuilder::new();
        let mut total = Decimal128Builder::new()
            .with_precision_and_scale(12, 2)
            .expect("valid");
        let mut items = arrow::array::Int32Builder::new();
        for i in 0..rows {
            // A third of the time an open order moves on (an upsert of the same order_id).
            if !self.open_orders.is_empty() && self.rng.gen_bool(0.33) {
                let k = self.rng.gen_range(0..self.open_orders.len());
                let (oid, uid, n, cents) = self.open_orders.swap_remove(k);
                let st = if self.rng.gen_bool(0.9) {
                    "paid"
                } else {
                    "cancelled"
                };
                id.append_value(oid);
                user.append_value(uid);
                status.append_value(st);
                total.append_value(cents as i128);
                items.append_value(n);
            } else {
                let oid = self.next_order_id;
                self.next_order_id += 1;
                let uid = match self.rush.take() {
                    Some((uid, left)) => {
                        if left > 1 {
                            self.rush = Some((uid, left - 1));
                        }
                        uid
                    }
                    None => {
                        let uid = self.rng.gen_range(1..2_000);
                        // Now and then a user places a rush of orders within seconds.
                        if self.rng.gen_bool(0.002) {
                            self.rush = Some((uid, self.rng.gen_range(6..12)));
                        }
                        uid
                    }
                };
                let n = self.rng.gen_range(1..6);
                // Mostly small baskets, occasionally a large one (the high-value alert).
                let cents = if self.rng.gen_bool(0.01) {
                    self.rng.gen_range(1_000_000..5_000_000)
                } else {
                    self.rng.gen_range(500..50_000)
                };
                if self.open_orders.len() < 10_000 {
                    self.open_orders.push((oid, uid, n, cents));
                }
                id.append_value(oid);
                user.append_value(uid);
                status.append_value("created");
                total.append_value(cents as i128);
                items.append_value(n);
            }
            t.append_value(ts(i));
        }
        batch(vec![
            ("order_id", Arc::new(id.finish())),
            ("user_id", Arc::new(user.finish())),
            ("ts", Arc::new(t.finish())),
            ("status", Arc::new(status.finish())),
            ("total_amount", Arc::new(total.finish())),
            ("items", Arc::new(items.finish())),
        ])
    }
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(cols).expect("generator columns have equal lengths")
}

/// The materialized views `eddy demo` keeps over the generated data: OHLC + VWAP bars per
/// minute cascading to 5 minutes and an hour, user sessions (30-minute gap) and product
/// popularity per 5 minutes.
/// `order_events`: every order change as it happened, append-only (what a CDC topic of
/// `orders` carries), which per-user rollups can count.
pub fn order_events_table() -> TableDef {
    let mut def = GeneratorKind::Orders.demo_table();
    def.name = "order_events".into();
    def.primary_key.clear();
    def.partition_by = Some(PartitionBy::Day);
    def.retention_secs = Some(30 * 86_400);
    def
}

/// The demo's standard alert rules (no sink: `system.alerts` only).
pub fn demo_alerts(created_micros: i64) -> Vec<eddy_proto::AlertDef> {
    let rule = |name: &str, source: &str, condition: &str, severity: &str| eddy_proto::AlertDef {
        name: name.into(),
        source: source.into(),
        condition: condition.into(),
        severity: severity.into(),
        emit: eddy_proto::Emit::OnUpdate,
        sink: None,
        created_micros,
    };
    vec![
        rule(
            "price_move",
            "bars_1m",
            "abs(close / prev(close) - 1) > 0.05",
            "CASE WHEN abs(close / prev(close) - 1) > 0.10 THEN 'critical' ELSE 'warning' END",
        ),
        rule(
            "big_order",
            "orders",
            "total_amount > 10000 AND status = 'created'",
            "'high'",
        ),
        rule(
            "rapid_orders",
            "orders_per_user_1m",
            "orders > 5",
            "'medium'",
        ),
    ]
}

pub fn demo_views() -> Vec<eddy_proto::RollupDef> {
    let view = |name: &str, lateness_secs: Option<u64>, sql: &str| eddy_proto::RollupDef {
        name: name.into(),
        sql: sql.into(),
        lateness_secs,
    };
    vec![
        view(
            "bars_1m",
            Some(30),
            "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bucket, \
             first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low, \
             last_value(price ORDER BY ts) AS close, sum(volume) AS volume, \
             sum(price * volume) / sum(volume) AS vwap, count(*) AS trades \
             FROM ticks GROUP BY symbol, date_bin(INTERVAL '1 minute', ts)",
        ),
        view(
            "bars_5m",
            None,
            "SELECT symbol, date_bin(INTERVAL '5 minutes', bucket) AS bucket, \
             first_value(open ORDER BY bucket) AS open, max(high) AS high, min(low) AS low, \
             last_value(close ORDER BY bucket) AS close, sum(volume) AS volume, \
             sum(trades) AS trades FROM bars_1m GROUP BY 1, 2",
        ),
        view(
            "bars_1h",
            None,
            "SELECT symbol, date_bin(INTERVAL '1 hour', bucket) AS bucket, \
             first_value(open ORDER BY bucket) AS open, max(high) AS high, min(low) AS low, \
             last_value(close ORDER BY bucket) AS close, sum(volume) AS volume, \
             sum(trades) AS trades FROM bars_5m GROUP BY 1, 2",
        ),
        view(
            "orders_per_user_1m",
            Some(10),
            "SELECT user_id, date_bin(INTERVAL '1 minute', ts) AS bucket, \
             count(*) FILTER (WHERE status = 'created') AS orders, \
             sum(total_amount) FILTER (WHERE status = 'created') AS amount \
             FROM order_events GROUP BY 1, 2",
        ),
        view(
            "user_sessions",
            None,
            "SELECT user_id, session_start, session_end, count(*) AS events, \
             count(*) FILTER (WHERE event_type = 'page_view') AS page_views, \
             sum(amount) FILTER (WHERE event_type = 'purchase') AS revenue \
             FROM SESSION(events, user_id, ts, INTERVAL '30 minutes') GROUP BY 1, 2, 3",
        ),
        view(
            "product_5m",
            None,
            "SELECT product_id, date_bin(INTERVAL '5 minutes', ts) AS bucket, \
             count(*) FILTER (WHERE event_type = 'page_view') AS views, \
             count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts, \
             count(*) FILTER (WHERE event_type = 'purchase') AS purchases, \
             count(DISTINCT user_id) AS users, \
             CAST(count(*) FILTER (WHERE event_type = 'purchase') AS DOUBLE) \
               / NULLIF(count(*) FILTER (WHERE event_type = 'page_view'), 0) AS conversion \
             FROM events WHERE product_id IS NOT NULL GROUP BY 1, 2",
        ),
    ]
}
