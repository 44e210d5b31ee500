//! One connection's session: its settings (what `SET`/`SHOW`/`RESET` read and write and
//! what drivers send at connect time), the statements that only touch that state, and the
//! cancellation token of the statement running now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, Value, ValueWithSpan};
use parking_lot::Mutex;
use pgwire::error::ErrorInfo;
use pgwire::messages::response::TransactionStatus;
use tokio_util::sync::CancellationToken;

use super::activity::{now_micros, Activity, Finish};
use super::cursor::Cursors;
use super::datetime::SessionTz;
use crate::query::Planning;

/// The settings a session starts with, in PostgreSQL's spelling (what `SHOW` prints as
/// the column name). Drivers read several of them at connect time.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("DateStyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("in_hot_standby", "off"),
    ("integer_datetimes", "on"),
    ("IntervalStyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
    ("lc_messages", "C.UTF-8"),
    ("lock_timeout", "0"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "160006"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("TimeZone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// The PostgreSQL version eddy answers as (drivers gate features on it).
pub(crate) const SERVER_VERSION: &str = "16.6";

/// Settings PostgreSQL reports to the client with ParameterStatus when they change.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "integer_datetimes",
    "standard_conforming_strings",
    "is_superuser",
    "server_version",
    "server_encoding",
];

/// Settings a client may not change.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "max_identifier_length",
    "lc_collate",
    "lc_ctype",
    "in_hot_standby",
    "max_connections",
];

/// The canonical spelling of a setting name, whatever case the client used.
fn canonical(name: &str) -> String {
    let lower = name.trim_matches('"').to_ascii_lowercase();
    let lower = match lower.as_str() {
        "time zone" | "time_zone" => "timezone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        "session authorization" => "session_authorization".to_string(),
        "names" => "client_encoding".to_string(),
        _ => lower,
    };
    DEFAULTS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(&lower))
        .map(str::to_string)
        .unwrap_or(lower)
}

pub(crate) fn pg_error(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message.into())
}

/// A statement that only reads or changes session state; eddy answers it without
/// planning.
#[derive(Debug, Clone)]
pub(crate) enum SessionStmt {
    /// `SET name = value`; `None` is `DEFAULT`.
    Set {
        name: String,
        value: Option<String>,
    },
    Show(String),
    /// `RESET name`; `None` is `RESET ALL`.
    Reset(Option<String>),
    Begin,
    Commit,
    Rollback,
    DiscardAll,
    /// `DEALLOCATE name`; `None` is `DEALLOCATE ALL`.
    Deallocate(Option<String>),
    /// Accepted and ignored (SET TRANSACTION, SAVEPOINT ...), answered with this tag.
    Accept(&'static str),
}

fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        Expr::UnaryOp { op, expr } => format!("{op}{}", expr_text(expr)),
        other => other.to_string(),
    }
}

impl SessionStmt {
    /// Recognises the statements the session answers itself.
    pub(crate) fn from_statement(s: &Statement) -> Option<SessionStmt> {
        Some(match s {
            Statement::Set(set) => match set {
                Set::SingleAssignment {
                    variable, values, ..
                } => {
                    let name = variable.to_string();
                    let is_default = values.len() == 1
                        && matches!(&values[0], Expr::Identifier(i)
                            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
                    let value = (!is_default)
                        .then(|| values.iter().map(expr_text).collect::<Vec<_>>().join(", "));
                    SessionStmt::Set { name, value }
                }
                Set::SetTimeZone { value, .. } => {
                    let v = expr_text(value);
                    SessionStmt::Set {
                        name: "timezone".into(),
                        value: (!v.eq_ignore_ascii_case("default")
                            && !v.eq_ignore_ascii_case("local"))
                        .then_some(v),
                    }
                }
                Set::SetNames { charset_name, .. } => SessionStmt::Set {
                    name: "client_encoding".into(),
                    value: Some(charset_name.to_string().trim_matches('\'').to_string()),
                },
                _ => SessionStmt::Accept("SET"),
            },
            Statement::ShowVariable { variable } => SessionStmt::Show(
                variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => SessionStmt::Reset(None),
                Reset::ConfigurationParameter(n) => SessionStmt::Reset(Some(n.to_string())),
            },
            Statement::StartTransaction { .. } => SessionStmt::Begin,
            Statement::Commit { .. } => SessionStmt::Commit,
            Statement::Rollback {
                savepoint: None, ..
            } => SessionStmt::Rollback,
            Statement::Rollback { .. } => SessionStmt::Accept("ROLLBACK"),
            Statement::Savepoint { .. } => SessionStmt::Accept("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => SessionStmt::Accept("RELEASE"),
            Statement::Discard { .. } => SessionStmt::DiscardAll,
            Statement::Deallocate { name, .. } => {
                if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
                    SessionStmt::Deallocate(None)
                } else {
                    SessionStmt::Deallocate(Some(name.value.clone()))
                }
            }
            _ => return None,
        })
    }

    /// Whether PostgreSQL still runs this statement in a failed transaction.
    pub(crate) fn ends_transaction(&self) -> bool {
        matches!(self, SessionStmt::Rollback | SessionStmt::Commit)
    }
}

/// The state of one pgwire connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) user: String,
    vars: Mutex<BTreeMap<String, String>>,
    /// Settings the client sent at startup: what `RESET` returns to.
    startup: BTreeMap<String, String>,
    current: Mutex<CancellationToken>,
    /// Cancelled by `pg_terminate_backend`: the connection's task then closes it.
    terminated: CancellationToken,
    /// Names of prepared statements, so DEALLOCATE ALL and DISCARD ALL can drop them.
    pub(crate) prepared: Mutex<BTreeSet<String>>,
    /// Open SQL cursors (DECLARE ... CURSOR).
    pub(crate) cursors: Cursors,
    /// The SQL of each parsed statement by name ("" is the unnamed one), for
    /// `pg_stat_activity.query` when a portal of it runs.
    pub(crate) statement_sql: Mutex<std::collections::HashMap<String, Arc<str>>>,
    /// What the session is doing, for `pg_stat_activity`.
    pub(crate) activity: Arc<Mutex<Activity>>,
    /// When the connection started, in microseconds since the Unix epoch.
    pub(crate) started_micros: i64,
    /// The client's address.
    pub(crate) client: Option<std::net::SocketAddr>,
    /// The planning state and the (engine generation, settings version) it was built
    /// for: building it clones DataFusion's function registry, which costs more than
    /// planning `SELECT 1`, so statements reuse it until a setting changes. A statement
    /// takes it out while it plans (see [`PlanningLease`]).
    planning: Mutex<Option<((u64, u64), Planning)>>,
    /// Bumped by every change of a setting.
    settings_version: std::sync::atomic::AtomicU64,
    /// What every statement reads of the settings, parsed, for the settings version.
    derived: Mutex<Option<(u64, Derived)>>,
}

/// The settings every statement reads, parsed once per change of the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Derived {
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) extra_float_digits: i8,
    pub(crate) time_zone: SessionTz,
}

/// What `SET` changed that the client must be told about.
pub(crate) struct Changed {
    pub(crate) reported: Vec<(String, String)>,
}

impl Session {
    /// A session with the defaults, overridden by the settings the client sent in its
    /// startup message (pgJDBC sends `extra_float_digits`, `DateStyle`, `TimeZone`).
    pub(crate) fn new(user: String, startup: &std::collections::HashMap<String, String>) -> Self {
        let mut vars: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("session_authorization".into(), user.clone());
        let mut initial = BTreeMap::new();
        for (k, v) in startup {
            if matches!(k.as_str(), "user" | "database" | "options" | "replication") {
                continue;
            }
            let name = canonical(k);
            if READ_ONLY.contains(&name.as_str()) {
                continue;
            }
            let value = if name == "client_encoding" {
                // Everything is UTF8; clients asking for "utf8" or "unicode" get it.
                "UTF8".to_string()
            } else {
                v.clone()
            };
            initial.insert(name.clone(), value.clone());
            vars.insert(name, value);
        }
        let now = now_micros();
        Self {
            user,
            vars: Mutex::new(vars),
            startup: initial,
            current: Mutex::new(CancellationToken::new()),
            terminated: CancellationToken::new(),
            prepared: Mutex::new(BTreeSet::new()),
            cursors: Cursors::default(),
            statement_sql: Mutex::new(std::collections::HashMap::new()),
            activity: Arc::new(Mutex::new(Activity::new(now))),
            started_micros: now,
            client: None,
            planning: Mutex::new(None),
            settings_version: std::sync::atomic::AtomicU64::new(0),
            derived: Mutex::new(None),
        }
    }

    /// A session whose connection closes when `terminated` is cancelled.
    pub(crate) fn with_termination(mut self, terminated: CancellationToken) -> Self {
        self.terminated = terminated;
        self
    }

    /// A server-wide setting's value (such as `max_connections`), which the client can
    /// read but not change.
    pub(crate) fn with_server_setting(self, name: &str, value: String) -> Self {
        debug_assert!(READ_ONLY.contains(&name));
        self.vars.lock().insert(name.into(), value);
        self
    }

    /// The session of a client at `addr`.
    pub(crate) fn with_client(mut self, addr: std::net::SocketAddr) -> Self {
        self.client = Some(addr);
        self
    }

    /// `pg_terminate_backend`: stops the running statement and closes the connection.
    pub(crate) fn terminate(&self) {
        self.cancel();
        self.terminated.cancel();
    }

    /// Sets a variable; every change invalidates the cached planning state.
    fn put(&self, name: String, value: String) -> Option<String> {
        let old = self.vars.lock().insert(name, value);
        self.settings_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.planning.lock().take();
        old
    }

    /// The planning state for `generation` of the engine's shared context and the
    /// current settings, taken out of the session until the lease ends; `build` makes a
    /// new one when none is kept. Its statement start time (`now()`) is set afresh.
    pub(crate) fn lease_planning(
        &self,
        generation: u64,
        build: impl FnOnce() -> Result<Planning, pgwire::error::PgWireError>,
    ) -> Result<PlanningLease<'_>, pgwire::error::PgWireError> {
        let key = (
            generation,
            self.settings_version
                .load(std::sync::atomic::Ordering::Acquire),
        );
        let kept = match self.planning.lock().take() {
            Some((k, p)) if k == key => Some(p),
            _ => None,
        };
        let mut planning = match kept {
            Some(p) => p,
            None => build()?,
        };
        planning.state.mark_start_execution();
        Ok(PlanningLease {
            session: self,
            key,
            planning: Some(planning),
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.vars.lock().get(&canonical(name)).cloned()
    }

    /// The first schema of `search_path` that exists (`"$user"` and unknown ones are
    /// skipped, as PostgreSQL does).
    pub(crate) fn default_schema(&self, exists: impl Fn(&str) -> bool) -> String {
        let path = self.get("search_path").unwrap_or_default();
        path.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && s != "$user")
            .find(|s| exists(s))
            .unwrap_or_else(|| "public".to_string())
    }

    /// The schemas of `search_path`, without `"$user"` (eddy has no per-user schemas).
    pub(crate) fn search_path(&self) -> Vec<String> {
        self.get("search_path")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }

    /// [`Self::statement_timeout`], [`Self::extra_float_digits`] and [`Self::time_zone`],
    /// parsed again only after a setting changed.
    pub(crate) fn derived(&self) -> Derived {
        let version = self
            .settings_version
            .load(std::sync::atomic::Ordering::Acquire);
        if let Some((v, d)) = *self.derived.lock() {
            if v == version {
                return d;
            }
        }
        let d = Derived {
            statement_timeout: self.statement_timeout(),
            extra_float_digits: self.extra_float_digits(),
            time_zone: self.time_zone(),
        };
        *self.derived.lock() = Some((version, d));
        d
    }

    /// `statement_timeout` as a duration; `None` when 0 (no limit).
    pub(crate) fn statement_timeout(&self) -> Option<Duration> {
        parse_duration_ms(&self.get("statement_timeout").unwrap_or_default())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    pub(crate) fn extra_float_digits(&self) -> i8 {
        self.get("extra_float_digits")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1)
    }

    /// The TimeZone `timestamptz` values are printed in (UTC when the setting, sent
    /// at startup, is not one eddy knows).
    pub(crate) fn time_zone(&self) -> SessionTz {
        self.get("TimeZone")
            .and_then(|v| SessionTz::parse(&v))
            .unwrap_or_else(SessionTz::utc)
    }

    /// The TimeZone as DataFusion's `execution.time_zone` takes it, so that text read as
    /// `timestamptz` (`'2024-01-01 00:00'::timestamptz`) is local time in it, as in
    /// PostgreSQL.
    pub(crate) fn time_zone_name(&self) -> String {
        self.get("TimeZone")
            .and_then(|v| SessionTz::arrow_name(&v))
            .unwrap_or_else(|| "UTC".to_string())
    }

    /// Applies `SET name = value` (or `DEFAULT`).
    pub(crate) fn set(&self, name: &str, value: Option<String>) -> Result<Changed, ErrorInfo> {
        let name = canonical(name);
        if READ_ONLY.contains(&name.as_str()) {
            return Err(pg_error(
                "55P02",
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        let value = match value {
            Some(v) => v,
            None => self.default_of(&name),
        };
        let value = match name.as_str() {
            "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
                let ms = parse_duration_ms(&value).ok_or_else(|| {
                    pg_error(
                        "22023",
                        format!("invalid value for parameter \"{name}\": \"{value}\""),
                    )
                })?;
                ms.to_string()
            }
            "extra_float_digits" => match value.trim().parse::<i8>() {
                Ok(n) if (-15..=3).contains(&n) => n.to_string(),
                _ => {
                    return Err(pg_error(
                        "22023",
                        format!("invalid value for parameter \"{name}\": \"{value}\""),
                    ))
                }
            },
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(pg_error(
                        "0A000",
                        format!("encoding \"{value}\" is not supported; eddy speaks UTF8"),
                    ));
                }
                "UTF8".to_string()
            }
            "DateStyle" => date_style(&value),
            "TimeZone" => {
                if SessionTz::parse(&value).is_none() {
                    return Err(pg_error(
                        "22023",
                        format!("invalid value for parameter \"TimeZone\": \"{value}\""),
                    ));
                }
                // `SET TIME ZONE 'utc'` is reported as PostgreSQL spells it.
                if value.eq_ignore_ascii_case("utc") {
                    "UTC".to_string()
                } else {
                    value
                }
            }
            _ => value,
        };
        self.put(name.clone(), value.clone());
        let reported = if REPORTED.contains(&name.as_str()) {
            vec![(name, value)]
        } else {
            vec![]
        };
        Ok(Changed { reported })
    }

    fn default_of(&self, name: &str) -> String {
        self.startup
            .get(name)
            .cloned()
            .or_else(|| {
                DEFAULTS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_or_default()
    }

    /// `RESET name` or `RESET ALL`.
    pub(crate) fn reset(&self, name: Option<&str>) -> Changed {
        let names: Vec<String> = match name {
            Some(n) => vec![canonical(n)],
            None => self.vars.lock().keys().cloned().collect(),
        };
        let mut reported = vec![];
        for n in names {
            if READ_ONLY.contains(&n.as_str()) || n == "session_authorization" {
                continue;
            }
            let v = self.default_of(&n);
            let old = self.put(n.clone(), v.clone());
            if REPORTED.contains(&n.as_str()) && old.as_deref() != Some(v.as_str()) {
                reported.push((n, v));
            }
        }
        Changed { reported }
    }

    /// `SHOW name`: the column name and value. `SHOW ALL` gives every setting.
    pub(crate) fn show(&self, name: &str) -> Result<Vec<(String, String)>, ErrorInfo> {
        if name.eq_ignore_ascii_case("all") {
            return Ok(self
                .vars
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect());
        }
        let canonical = canonical(name);
        match self.vars.lock().get(&canonical) {
            Some(v) => Ok(vec![(canonical.clone(), v.clone())]),
            None => Err(pg_error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    /// Starts a statement: a fresh token a CancelRequest for this session cancels.
    pub(crate) fn begin_statement(&self) -> CancellationToken {
        let t = CancellationToken::new();
        *self.current.lock() = t.clone();
        t
    }

    /// A statement starts (`pg_stat_activity` shows it `active`).
    pub(crate) fn statement_started(&self, query: &str) {
        self.activity.lock().start(query, now_micros());
    }

    /// What marks the statement finished, leaving the connection in `status`, when
    /// dropped.
    pub(crate) fn statement_finish(&self, status: TransactionStatus) -> Finish {
        Finish {
            activity: Arc::clone(&self.activity),
            status,
        }
    }

    /// Cancels the statement running now (CancelRequest).
    pub(crate) fn cancel(&self) {
        self.current.lock().cancel();
    }
}

/// PostgreSQL normalises DateStyle to "<output>, <order>"; eddy prints ISO only.
fn date_style(v: &str) -> String {
    let mut order = "MDY";
    for part in v.split(',') {
        match part.trim().to_ascii_uppercase().as_str() {
            "DMY" | "EURO" | "EUROPEAN" => order = "DMY",
            "YMD" => order = "YMD",
            "MDY" | "US" | "NONEURO" | "NONEUROPEAN" => order = "MDY",
            _ => {}
        }
    }
    format!("ISO, {order}")
}

/// A PostgreSQL duration setting in milliseconds: a bare number is milliseconds, units
/// `us`, `ms`, `s`, `min`, `h`, `d` are accepted.
pub(crate) fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'');
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some((n * factor).round() as u64)
}

/// A session's planning state on loan to one statement; it goes back to the session when
/// the lease ends, unless a setting changed meanwhile.
pub(crate) struct PlanningLease<'a> {
    session: &'a Session,
    key: (u64, u64),
    planning: Option<Planning>,
}

impl std::ops::Deref for PlanningLease<'_> {
    type Target = Planning;

    fn deref(&self) -> &Planning {
        self.planning.as_ref().expect("planning is kept until drop")
    }
}

impl Drop for PlanningLease<'_> {
    fn drop(&mut self) {
        let current = self
            .session
            .settings_version
            .load(std::sync::atomic::Ordering::Acquire);
        if let Some(p) = self.planning.take() {
            if current == self.key.1 {
                *self.session.planning.lock() = Some((self.key, p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_postgres() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("1500"), Some(1500));
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("'1min'"), Some(60_000));
        assert_eq!(parse_duration_ms("5 fortnights"), None);
    }

    #[test]
    fn settings_set_show_reset() {
        let s = Session::new(
            "eddy".into(),
            &[("extra_float_digits".to_string(), "3".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(s.extra_float_digits(), 3);
        s.set("EXTRA_FLOAT_DIGITS", Some("0".into())).unwrap();
        assert_eq!(s.extra_float_digits(), 0);
        s.reset(Some("extra_float_digits"));
        assert_eq!(
            s.extra_float_digits(),
            3,
            "RESET returns to the startup value"
        );
        assert_eq!(
            s.show("datestyle").unwrap(),
            vec![("DateStyle".to_string(), "ISO, MDY".to_string())]
        );
        assert_eq!(s.show("nope").unwrap_err().code, "42704");
        assert!(s.set("server_version", Some("1".into())).is_err());
        s.set("search_path", Some("system, public".into())).unwrap();
        assert_eq!(s.default_schema(|n| n == "system"), "system");
    }
}
