//! Date and timestamp literals in the spellings PostgreSQL reads and Arrow does not.
//!
//! Arrow's parser wants `YYYY-MM-DD[ HH:MM:SS[.f]][zone]` exactly, so analysts' everyday
//! `WHERE ts > '2026-01-01 10:00'` (no seconds), `'2026-1-5 9:30'`, `'2026/01/05'`,
//! `'20260105'` and `'today'` failed with "error parsing time". This analyzer rule finds
//! text literals cast to a date or timestamp (written `'...'::timestamptz`,
//! `timestamp '...'`, or added by type coercion against a column) and rewrites the text
//! into Arrow's spelling, which then reads it as before: a zone written in the text is
//! kept, and text without one is local time ([`super::SessionTimeZone`] places it in the
//! session's zone). Text it does not recognise is left for Arrow, whose error names it.
//!
//! The special values `epoch`, `now`, `today`, `yesterday` and `tomorrow` are read when
//! the statement is planned, as PostgreSQL reads them when it parses: `now`, `today` ...
//! in a prepared statement stay what they were at Parse, as PostgreSQL's documentation
//! warns. The days begin at midnight in the session's zone.

use arrow::datatypes::DataType;
use chrono::{DateTime, Days, NaiveDate, Utc};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule described in the module documentation.
#[derive(Debug, Default)]
pub struct TimestampText;

/// What a literal is cast to.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Target {
    Date,
    /// A timestamp without zone.
    Local,
    /// A timestamp with a zone.
    Instant,
}

fn target(t: &DataType) -> Option<Target> {
    match t {
        DataType::Date32 | DataType::Date64 => Some(Target::Date),
        DataType::Timestamp(_, None) => Some(Target::Local),
        DataType::Timestamp(_, Some(_)) => Some(Target::Instant),
        _ => None,
    }
}

fn text_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

/// The cast's operand and target when it casts a text literal to a date or timestamp.
fn temporal_text_cast(e: &Expr) -> Option<(&str, Target)> {
    let (expr, to) = match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr, field.data_type())
        }
        _ => return None,
    };
    Some((text_literal(expr)?, target(to)?))
}

/// Reads `n` to `max` ASCII digits at the start of `s`: (value, rest).
fn digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// `Y-M-D`, `Y/M/D` (one or two digits for month and day) or `YYYYMMDD`: (date, rest).
fn date(s: &str) -> Option<(NaiveDate, &str)> {
    let (y, m, d, rest) = match digits(s, 4, 8)? {
        (ymd, rest) if s.len() - rest.len() == 8 => (ymd / 10000, ymd / 100 % 100, ymd % 100, rest),
        (y, rest) if s.len() - rest.len() == 4 => {
            let sep = rest.chars().next().filter(|c| *c == '-' || *c == '/')?;
            let (m, rest) = digits(&rest[1..], 1, 2)?;
            let rest = rest.strip_prefix(sep)?;
            let (d, rest) = digits(rest, 1, 2)?;
            (y, m, d, rest)
        }
        _ => return None,
    };
    Some((NaiveDate::from_ymd_opt(y as i32, m, d)?, rest))
}

/// `H:MM[:S[.f]]` with one or two digits for hours and seconds: ("HH:MM:SS[.f]", rest).
fn time(s: &str) -> Option<(String, &str)> {
    let (h, rest) = digits(s, 1, 2)?;
    let (m, rest) = digits(rest.strip_prefix(':')?, 2, 2)?;
    let (sec, rest) = match rest.strip_prefix(':') {
        Some(r) => digits(r, 1, 2)?,
        None => (0, rest),
    };
    let mut out = format!("{h:02}:{m:02}:{sec:02}");
    let rest = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            out.push('.');
            out.push_str(&r[..n]);
            &r[n..]
        }
        None => rest,
    };
    Some((out, rest))
}

/// A zone after the time: `Z`, a numeric offset, or a name after a space.
fn zone(rest: &str) -> Option<String> {
    let trimmed = rest.trim_start();
    let numeric = trimmed.starts_with(['+', '-']);
    let spaced = rest.len() > trimmed.len();
    if trimmed.eq_ignore_ascii_case("z") {
        Some("Z".into())
    } else if numeric {
        let ok = trimmed[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':');
        ok.then(|| trimmed.to_string())
    } else if spaced && !trimmed.is_empty() {
        Some(format!(" {trimmed}"))
    } else {
        None
    }
}

fn midnight(d: NaiveDate) -> String {
    format!("{} 00:00:00", d.format("%Y-%m-%d"))
}

/// `word` (a special value) as text Arrow reads, at `now` in `zone`.
fn special(word: &str, to: Target, now: DateTime<Utc>, zone: Option<&str>) -> Option<String> {
    let local = zone
        .and_then(|z| z.parse::<arrow::array::timezone::Tz>().ok())
        .map(|tz| now.with_timezone(&tz).naive_local())
        .unwrap_or_else(|| now.naive_utc());
    let day = |offset: i64| {
        let d = local.date();
        let d = if offset >= 0 {
            d.checked_add_days(Days::new(offset as u64))
        } else {
            d.checked_sub_days(Days::new(offset.unsigned_abs()))
        }?;
        Some(match to {
            Target::Date => d.format("%Y-%m-%d").to_string(),
            _ => midnight(d),
        })
    };
    match word.to_ascii_lowercase().as_str() {
        "epoch" => Some(match to {
            Target::Date => "1970-01-01".into(),
            Target::Local => "1970-01-01 00:00:00".into(),
            Target::Instant => "1970-01-01 00:00:00Z".into(),
        }),
        "now" => Some(match to {
            Target::Date => local.format("%Y-%m-%d").to_string(),
            Target::Local => local.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            Target::Instant => now.format("%Y-%m-%d %H:%M:%S%.6fZ").to_string(),
        }),
        "today" => day(0),
        "tomorrow" => day(1),
        "yesterday" => day(-1),
        _ => None,
    }
}

/// `text` in the spelling Arrow reads for `to`, when PostgreSQL reads it and Arrow would
/// not read it the same; `None` leaves it as it is.
fn canonical(
    text: &str,
    to: Target,
    now: DateTime<Utc>,
    zone_setting: Option<&str>,
) -> Option<String> {
    let s = text.trim();
    if let Some(v) = special(s, to, now, zone_setting) {
        return Some(v);
    }
    let (d, rest) = date(s)?;
    let day = d.format("%Y-%m-%d").to_string();
    let out = if rest.is_empty() {
        match to {
            Target::Date => day,
            _ => format!("{day} 00:00:00"),
        }
    } else {
        let rest = rest
            .strip_prefix(['T', 't'])
            .or_else(|| rest.strip_prefix(' ').map(str::trim_start))?;
        let (t, rest) = time(rest)?;
        let z = if rest.is_empty() {
            String::new()
        } else {
            zone(rest)?
        };
        match to {
            // PostgreSQL's date of a timestamp text is its date as written.
            Target::Date => day,
            _ => format!("{day} {t}{z}"),
        }
    };
    (out != text).then_some(out)
}

impl AnalyzerRule for TimestampText {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        // Most statements cast no text literal to a date or time: leave them untouched.
        let any = crate::plan_exprs::any_node(&plan, |node| {
            crate::plan_exprs::any_expr(node, |e| temporal_text_cast(e).is_some())
        })?;
        if !any {
            return Ok(plan);
        }
        let zone = config.execution.time_zone.as_deref();
        let now = Utc::now();
        plan.transform_up_with_subqueries(|p| {
            crate::plan_exprs::map_named_exprs(p, |e| {
                e.transform_up(|e| {
                    let Some(new) = temporal_text_cast(&e)
                        .and_then(|(text, to)| canonical(text, to, now, zone))
                    else {
                        return Ok(Transformed::no(e));
                    };
                    let lit = Box::new(Expr::Literal(ScalarValue::Utf8(Some(new)), None));
                    Ok(Transformed::yes(match e {
                        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast { expr: lit, field }),
                        Expr::TryCast(TryCast { field, .. }) => {
                            Expr::TryCast(TryCast { expr: lit, field })
                        }
                        other => other,
                    }))
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "eddy_timestamp_text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 3, 30, 15).unwrap()
    }

    fn c(text: &str, to: Target) -> Option<String> {
        canonical(text, to, at(), Some("America/New_York"))
    }

    #[test]
    fn spellings_arrow_lacks_are_completed() {
        use Target::*;
        assert_eq!(
            c("2026-01-01 10:00", Instant).as_deref(),
            Some("2026-01-01 10:00:00")
        );
        assert_eq!(
            c("2026-1-5 9:30", Local).as_deref(),
            Some("2026-01-05 09:30:00")
        );
        assert_eq!(
            c("2026-01-01T10:00", Instant).as_deref(),
            Some("2026-01-01 10:00:00")
        );
        assert_eq!(
            c("2026-01-01 10:00+05", Instant).as_deref(),
            Some("2026-01-01 10:00:00+05")
        );
        assert_eq!(
            c("2026-01-01 10:00 America/Chicago", Instant).as_deref(),
            Some("2026-01-01 10:00:00 America/Chicago")
        );
        assert_eq!(
            c("2026-01-01 10:00:5.25Z", Instant).as_deref(),
            Some("2026-01-01 10:00:05.25Z")
        );
        assert_eq!(c("2026/01/05", Date).as_deref(), Some("2026-01-05"));
        assert_eq!(c("20260105", Date).as_deref(), Some("2026-01-05"));
        assert_eq!(c(" 2026-01-05 ", Date).as_deref(), Some("2026-01-05"));
        assert_eq!(c("2026-01-01 10:00", Date).as_deref(), Some("2026-01-01"));
    }

    #[test]
    fn what_arrow_reads_or_nobody_reads_is_left_alone() {
        use Target::*;
        assert_eq!(c("2026-01-01 10:00:00", Instant), None);
        assert_eq!(c("2026-01-05", Date), None);
        // PostgreSQL refuses an hour alone, and so does Arrow.
        assert_eq!(c("2026-01-01 10", Local), None);
        assert_eq!(c("2026-13-01", Date), None);
        assert_eq!(c("not a date", Date), None);
    }

    #[test]
    fn special_values_at_planning_time() {
        use Target::*;
        // 03:30 UTC is the evening before in New York.
        assert_eq!(c("today", Date).as_deref(), Some("2026-11-23"));
        assert_eq!(c("TODAY", Instant).as_deref(), Some("2026-11-23 00:00:00"));
        assert_eq!(c("tomorrow", Local).as_deref(), Some("2026-11-24 00:00:00"));
        assert_eq!(c("yesterday", Date).as_deref(), Some("2026-11-22"));
        assert_eq!(c("epoch", Instant).as_deref(), Some("1970-01-01 00:00:00Z"));
        assert_eq!(
            c("now", Instant).as_deref(),
            Some("2026-11-24 03:30:15.000000Z")
        );
        assert_eq!(
            c("now", Local).as_deref(),
            Some("2026-11-23 22:30:15.000000")
        );
    }
}
