//! Rewrites of PostgreSQL set-returning functions DataFusion lacks into forms it plans,
//! applied to each statement before planning:
//!
//! - `generate_subscripts(a, 1)` (SQLAlchemy's primary key, unique constraint and index
//!   reflection number array elements with it next to `unnest(a)`) becomes
//!   `unnest(generate_series(1, array_length(a, 1)))`; DataFusion zips several unnests
//!   in one select list as PostgreSQL does, so the subscripts line up with the elements.
//! - `ARRAY(SELECT e FROM unnest(a) x)` (psql's `\d+`) becomes
//!   `array_transform(a, x -> e)`;
//! - any other `ARRAY(SELECT e FROM ... [WHERE ...] [ORDER BY ...])` (psql's `\du`)
//!   becomes the scalar subquery `(SELECT array_agg(e ORDER BY ...) FROM ... WHERE ...)`,
//!   which DataFusion decorrelates; over no rows `array_agg` gives NULL, so both forms
//!   are wrapped in [`ARRAY_OR_EMPTY`], which makes that the empty array PostgreSQL
//!   gives. An element that holds a subquery itself (psql's `\dp`) is computed in a
//!   derived table first, which [`crate::empty_relations`] removes when it reads a
//!   catalog that never has rows (`pg_policy`).
//! - `to_timestamp(text, template)` and `to_date(text, template)` with PostgreSQL's
//!   templates (`'YYYY-MM-DD HH24:MI:SS.US'`, Superset's time range bounds) get the
//!   equivalent chrono format DataFusion parses with; `to_timestamp` returns
//!   `timestamptz`, as in PostgreSQL (the text is read as UTC).
//! - what psql's catalog queries need besides ([`catalog`]: `tableoid`, scalar
//!   subqueries over pg_catalog);
//! - `'name(argtypes)'::regprocedure` becomes a call of the function that resolves
//!   the signature against pg_proc (`crate::catalog::pg`'s `eddy_regprocedure`);
//! - `timestamp 'epoch' + e * interval '1 second'` (Superset's epoch columns) becomes
//!   `to_timestamp(e)`, since DataFusion cannot multiply an interval by a number; any
//!   fixed-length interval (seconds to weeks) works the same way.
//! - `generate_series(...)` in an expression is a set-returning function, as in
//!   PostgreSQL (`SELECT generate_series(1, 3)` is three rows): it becomes
//!   `unnest(generate_series(...))`, DataFusion's being a function returning an array.
//! - `extract(second from ts)` and `date_part('second', ts)` keep the fraction (`1.5`),
//!   where DataFusion gives whole seconds: they read the microseconds instead.
//! - `row_number()`, `rank()` and `dense_rank()` are cast to `bigint`, and `ntile`,
//!   `array_length`, `cardinality`, `array_ndims` and `array_position` to `integer`, the
//!   types PostgreSQL gives them: DataFusion's are unsigned, which clients would be told
//!   is `numeric` (psycopg hands back `Decimal('1')` for a row number).

mod catalog;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, visit_relations_mut, BinaryOperator, CastKind,
    DataType as SqlType, DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, LimitClause, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, Statement,
    TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{Dialect, DuckDbDialect, PostgreSqlDialect};
use datafusion::sql::sqlparser::parser::Parser;

use super::functions::ARRAY_OR_EMPTY;
use crate::catalog::pg::{REGPROC, REGPROCEDURE};

/// The plain positional arguments of a call, or `None` for anything fancier.
fn plain_args(args: &FunctionArguments) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    if !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
        return None;
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

fn parse_expr(sql: &str) -> Option<Expr> {
    parse_expr_in(&PostgreSqlDialect {}, sql)
}

fn parse_expr_in(dialect: &dyn Dialect, sql: &str) -> Option<Expr> {
    Parser::new(dialect)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// `FETCH FIRST n ROWS ONLY` (SQL's spelling of `LIMIT n`, which DataFusion does not
/// plan) as `LIMIT n`, keeping an `OFFSET`. `WITH TIES` and `PERCENT` stay as they are.
struct FetchAsLimit;

impl VisitorMut for FetchAsLimit {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        let Some(fetch) = &q.fetch else {
            return ControlFlow::Continue(());
        };
        if fetch.with_ties || fetch.percent {
            return ControlFlow::Continue(());
        }
        let n = fetch
            .quantity
            .clone()
            .unwrap_or_else(|| Expr::value(Value::Number("1".into(), false)));
        let offset = match q.limit_clause.take() {
            None => None,
            Some(LimitClause::LimitOffset {
                limit: None,
                offset,
                limit_by,
            }) if limit_by.is_empty() => offset,
            other => {
                q.limit_clause = other;
                return ControlFlow::Continue(());
            }
        };
        q.limit_clause = Some(LimitClause::LimitOffset {
            limit: Some(n),
            offset,
            limit_by: vec![],
        });
        q.fetch = None;
        ControlFlow::Continue(())
    }
}

/// An integer constant that fits int4 (or an `ARRAY[...]` of them), cast to int4 as
/// PostgreSQL types it, for `pg_typeof`: DataFusion types every integer literal Int64, and
/// once planned `1` cannot be told from `1::bigint`.
fn int4_constants(e: &Expr) -> Option<String> {
    let fits = |e: &Expr| match e {
        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n.parse::<i32>().is_ok()),
        Expr::UnaryOp { op, expr } => {
            op.to_string() == "-"
                && matches!(&**expr, Expr::Value(v) if matches!(&v.value, Value::Number(n, _)
                    if format!("-{n}").parse::<i32>().is_ok()))
        }
        _ => false,
    };
    match e {
        _ if fits(e) => Some(format!("CAST({e} AS INT)")),
        Expr::Array(a) if !a.elem.is_empty() && a.elem.iter().all(fits) => {
            let elems: Vec<String> = a.elem.iter().map(|e| format!("CAST({e} AS INT)")).collect();
            Some(format!("ARRAY[{}]", elems.join(", ")))
        }
        _ => None,
    }
}

/// `ARRAY(subquery)` in a form DataFusion plans (see the module documentation).
fn array_of_subquery(q: &Query) -> Option<Expr> {
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if select.projection.len() != 1
        || select.group_by
            != datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(vec![], vec![])
        || select.having.is_some()
        || select.distinct.is_some()
    {
        return None;
    }
    let item = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    // SELECT e FROM unnest(a) x: a map over the array.
    if let [from] = select.from.as_slice() {
        if from.joins.is_empty() && select.selection.is_none() && q.order_by.is_none() {
            // `unnest(a) x`, or `pg_catalog.unnest(a) x`, which parses as a table function.
            let unnested = match &from.relation {
                TableFactor::UNNEST {
                    alias: Some(alias),
                    array_exprs,
                    with_offset: false,
                    with_ordinality: false,
                    ..
                } => match array_exprs.as_slice() {
                    [array] => Some((array.to_string(), alias)),
                    _ => None,
                },
                TableFactor::Table {
                    name,
                    alias: Some(alias),
                    args: Some(args),
                    ..
                } if name.to_string().to_ascii_lowercase().ends_with("unnest") => {
                    match args.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] => {
                            Some((array.to_string(), alias))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some((array, alias)) = unnested {
                return parse_expr_in(
                    &DuckDbDialect {},
                    &format!(
                        "{ARRAY_OR_EMPTY}(array_transform({array}, {} -> {item}))",
                        // `unnest(a) AS t(x)` names the element x (psql's `\dy`).
                        alias.columns.first().map_or(&alias.name, |c| &c.name)
                    ),
                );
            }
        }
    }
    let order = match &q.order_by {
        None => String::new(),
        Some(o) => match &o.kind {
            OrderByKind::Expressions(exprs) => {
                let keys: Vec<String> = exprs
                    .iter()
                    .map(|e| match &e.expr {
                        // ORDER BY 1 names the only output column.
                        Expr::Value(v) if matches!(v.value, Value::Number(..)) => {
                            format!("{item}{}", e.options)
                        }
                        _ => e.to_string(),
                    })
                    .collect();
                format!(" ORDER BY {}", keys.join(", "))
            }
            OrderByKind::All(_) => return None,
        },
    };
    // A subquery inside the element (psql's `\dp` lists each policy's roles with a
    // nested ARRAY(...)) cannot be decorrelated from inside an aggregate's argument.
    // In a derived table's projection it goes with the projection when the table is
    // known to be empty (`pg_policy`, see [`crate::empty_relations`]), and the rest
    // is uncorrelated.
    let nested = visit_expressions(&item, |e| {
        let array_of_query =
            matches!(e, Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)));
        if matches!(e, Expr::Subquery(_)) || array_of_query {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break();
    if nested && order.is_empty() {
        let mut inner = q.clone();
        let SetExpr::Select(select) = inner.body.as_mut() else {
            return None;
        };
        select.projection = vec![SelectItem::ExprWithAlias {
            expr: item,
            alias: Ident::new("eddy_element"),
        }];
        return parse_expr(&format!(
            "{ARRAY_OR_EMPTY}((SELECT array_agg(eddy_element) FROM ({inner}) AS eddy_elements))"
        ));
    }
    let agg = parse_expr(&format!("array_agg({item}{order})"))?;
    let mut q = q.clone();
    q.order_by = None;
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    select.projection = vec![SelectItem::UnnamedExpr(agg)];
    parse_expr(&format!("{ARRAY_OR_EMPTY}(({q}))"))
}

/// pg_catalog relations eddy adds to the crate's, which its parser does not know to
/// qualify (pg_catalog is implicitly on every search_path).
const EDDY_CATALOG_RELATIONS: [&str; 2] = ["pg_indexes", "pg_stat_activity"];

/// A PostgreSQL formatting template (`to_char`, `to_timestamp`, `to_date`) as a chrono
/// format. `None` when it uses something chrono cannot express. The `FM` prefix drops
/// a number's zero padding (`FMDD` is `%-d`); names are not blank-padded to nine
/// characters as PostgreSQL pads `Month` and `Day` without it.
pub(crate) fn chrono_format(template: &str) -> Option<String> {
    // Longest patterns first, so `HH24` is not read as `HH` then `24`.
    const PATTERNS: [(&str, &str); 22] = [
        ("IYYY", "%G"),
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("Month", "%B"),
        ("MONTH", "%B"),
        ("month", "%B"),
        ("Mon", "%b"),
        ("MON", "%b"),
        ("mon", "%b"),
        ("DDD", "%j"),
        ("Day", "%A"),
        ("Dy", "%a"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("IW", "%V"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
    ];
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '"' {
            // Quoted literal text.
            let end = rest[1..].find('"')?;
            out.push_str(&rest[1..1 + end].replace('%', "%%"));
            rest = &rest[end + 2..];
            continue;
        }
        let (fill_mode, pattern) = match rest.strip_prefix("FM") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        for (pg, chrono) in PATTERNS {
            if let Some(r) = pattern.strip_prefix(pg) {
                match chrono.strip_prefix('%') {
                    Some(spec)
                        if fill_mode
                            && spec.len() == 1
                            && !matches!(spec, "B" | "b" | "A" | "a") =>
                    {
                        out.push_str("%-");
                        out.push_str(spec);
                    }
                    _ => out.push_str(chrono),
                }
                rest = r;
                continue 'outer;
            }
        }
        for (pg, chrono) in [("AM", "%p"), ("PM", "%p"), ("am", "%P"), ("pm", "%P")] {
            if let Some(r) = rest.strip_prefix(pg) {
                out.push_str(chrono);
                rest = r;
                continue 'outer;
            }
        }
        if c.is_ascii_alphabetic() {
            // A template pattern eddy does not translate (TZ, IW, Q ...).
            return None;
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The length in seconds of an `INTERVAL '...'` literal with a fixed length.
fn interval_seconds(e: &Expr) -> Option<f64> {
    let Expr::Interval(i) = e else {
        return None;
    };
    if i.leading_field.is_some() || i.last_field.is_some() {
        return None;
    }
    let text = string_literal(&i.value)?.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n.trim().parse().ok()?;
    let unit_secs = match unit.trim().trim_end_matches('s') {
        "second" | "sec" => 1.0,
        "minute" | "min" => 60.0,
        "hour" | "h" => 3600.0,
        "day" | "d" => 86_400.0,
        "week" => 604_800.0,
        "millisecond" | "m" => 0.001,
        _ => return None,
    };
    Some(n * unit_secs)
}

/// Whether `e` is `timestamp 'epoch'` (or 1970-01-01 written out).
fn is_epoch(e: &Expr) -> bool {
    let e = match e {
        Expr::Nested(inner) => inner.as_ref(),
        other => other,
    };
    let text = match e {
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => return false,
        },
        Expr::Cast { expr, .. } => match string_literal(expr) {
            Some(s) => s.to_string(),
            None => return false,
        },
        _ => return false,
    };
    let t = text.trim().to_ascii_lowercase();
    t == "epoch" || t == "1970-01-01 00:00:00" || t == "1970-01-01"
}

/// `e * interval` or `interval * e` with a fixed-length interval: `(e, seconds)`.
fn times_interval(e: &Expr) -> Option<(&Expr, f64)> {
    let e = match e {
        Expr::Nested(inner) => inner.as_ref(),
        other => other,
    };
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Multiply,
        right,
    } = e
    else {
        return None;
    };
    interval_seconds(right)
        .map(|s| (left.as_ref(), s))
        .or_else(|| interval_seconds(left).map(|s| (right.as_ref(), s)))
}

/// The Arrow type of PostgreSQL's `timestamptz` (DataFusion's SQL `TIMESTAMP WITH TIME
/// ZONE` has no zone unless one is configured).
const TIMESTAMPTZ: &str = "Timestamp(Microsecond, Some(\"UTC\"))";

/// PostgreSQL's date/time functions DataFusion spells differently (see the module
/// documentation).
fn datetime_expr(e: &Expr) -> Option<Expr> {
    if let Expr::BinaryOp {
        left,
        op: BinaryOperator::Plus,
        right,
    } = e
    {
        let (epoch, product) = if is_epoch(left) {
            (true, right.as_ref())
        } else {
            (is_epoch(right), left.as_ref())
        };
        if epoch {
            let (n, secs) = times_interval(product)?;
            return parse_expr(&if secs == 1.0 {
                format!("to_timestamp({n})")
            } else {
                format!("to_timestamp(({n}) * {secs})")
            });
        }
        return None;
    }
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let name = name.trim_start_matches("pg_catalog.");
    match (name, plain_args(&f.args).as_deref()) {
        ("to_timestamp", Some([value])) => parse_expr(&format!(
            "arrow_cast(to_timestamp({value}), '{TIMESTAMPTZ}')"
        )),
        ("to_timestamp", Some([value, template])) => {
            let format = chrono_format(string_literal(template)?)?;
            parse_expr(&format!(
                "arrow_cast(to_timestamp({value}, '{}'), '{TIMESTAMPTZ}')",
                format.replace('\'', "''")
            ))
        }
        ("to_date", Some([value, template])) => {
            let format = chrono_format(string_literal(template)?)?;
            parse_expr(&format!(
                "to_date({value}, '{}')",
                format.replace('\'', "''")
            ))
        }
        _ => None,
    }
}

/// A cast's operand and its type's name, lower case and without `pg_catalog.`.
fn cast_to(e: &Expr) -> Option<(&Expr, String)> {
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    let ty = data_type.to_string().to_ascii_lowercase();
    Some((expr, ty.trim_start_matches("pg_catalog.").to_string()))
}

/// `'name(argtypes)'::regprocedure` (psql's `\sf name(args)`) and `'name'::regproc`
/// (`\sf name`) as the function that resolves the text against pg_proc. Only a text
/// constant or a parameter: a column cast to `regprocedure` is an OID shown by name,
/// which this does not do.
fn regprocedure(e: &Expr) -> Option<Expr> {
    let (expr, ty) = cast_to(e)?;
    let function = match ty.as_str() {
        "regprocedure" => REGPROCEDURE,
        "regproc" => REGPROC,
        _ => return None,
    };
    let Expr::Value(v) = expr else {
        return None;
    };
    if !matches!(
        v.value,
        Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_) | Value::Placeholder(_)
    ) {
        return None;
    }
    parse_expr(&format!("{function}({expr})"))
}

/// `x::jsonb` and `x::json` (DataFusion has no JSON type) as the function that checks
/// the text and prints it as `jsonb` (see [`super::json`]).
fn json_cast(e: &Expr) -> Option<Expr> {
    let (expr, ty) = cast_to(e)?;
    let function = match ty.as_str() {
        "json" => super::json::JSON,
        "jsonb" => super::json::JSONB,
        _ => return None,
    };
    parse_expr(&format!("{function}({expr})"))
}

/// `extract(second from x)` and `date_part('second', x)` with the fraction of the second
/// (see the module documentation).
fn fractional_seconds(e: &Expr) -> Option<Expr> {
    let operand = match e {
        Expr::Extract {
            field: DateTimeField::Second | DateTimeField::Seconds,
            expr,
            ..
        } => expr.as_ref(),
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("date_part") => {
            match plain_args(&f.args).as_deref() {
                Some([part, x])
                    if string_literal(part).is_some_and(|p| {
                        p.eq_ignore_ascii_case("second") || p.eq_ignore_ascii_case("seconds")
                    }) =>
                {
                    x
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    parse_expr(&format!(
        "(date_part('microsecond', {operand}) / 1000000.0)"
    ))
}

/// `generate_series(...)` in an expression as the rows it generates (see the module
/// documentation); `unnest` of it, as DataFusion spells that, stays as it is.
fn set_returning_series(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    match name.trim_start_matches("pg_catalog.") {
        "generate_series" if f.over.is_none() => parse_expr(&format!("unnest({e})")),
        // Its argument was made `unnest(generate_series(...))` already.
        "unnest" => match plain_args(&f.args).as_deref() {
            Some([inner @ Expr::Function(g)])
                if g.name.to_string().eq_ignore_ascii_case("unnest")
                    && matches!(plain_args(&g.args).as_deref(),
                        Some([Expr::Function(s)]) if s.name.to_string().eq_ignore_ascii_case("generate_series")) =>
            {
                Some((*inner).clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// A call of a function DataFusion types as unsigned, cast to PostgreSQL's signed type
/// (see the module documentation).
fn signed_result(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let data_type = match name.trim_start_matches("pg_catalog.") {
        "row_number" | "rank" | "dense_rank" if f.over.is_some() => SqlType::BigInt(None),
        "ntile" if f.over.is_some() => SqlType::Int(None),
        "array_length" | "cardinality" | "array_ndims" | "array_position" => SqlType::Int(None),
        _ => return None,
    };
    Some(Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(e.clone()),
        data_type,
        array: false,
        format: None,
    })
}

/// `'name'::regproc` and `'name(args)'::regprocedure` casts as the functions that resolve
/// them, in place; whether there was one.
pub(crate) fn regproc_casts(stmt: &mut Statement) -> bool {
    let mut found = false;
    let _ = visit_expressions_mut(stmt, |e| {
        if let Some(new) = regprocedure(e) {
            *e = new;
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Rewrites the calls named in the module documentation, in place.
pub(crate) fn postgres_functions(stmt: &mut Statement) {
    catalog::catalog_queries(stmt);
    let _ = stmt.visit(&mut FetchAsLimit);
    let _ = visit_relations_mut(stmt, |name| {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice() {
            if EDDY_CATALOG_RELATIONS.contains(&id.value.to_ascii_lowercase().as_str()) {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::AtTimeZone {
            timestamp,
            time_zone,
        } = e
        {
            if let Some(f) = parse_expr(&format!(
                "{}({timestamp}, {time_zone})",
                super::at_time_zone::NAME
            )) {
                *e = f;
            }
            return ControlFlow::<()>::Continue(());
        }
        if let Some(new) = datetime_expr(e)
            .or_else(|| regprocedure(e))
            .or_else(|| json_cast(e))
            .or_else(|| signed_result(e))
            .or_else(|| fractional_seconds(e))
            .or_else(|| set_returning_series(e))
        {
            *e = new;
            return ControlFlow::<()>::Continue(());
        }
        let Expr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        let name = name.trim_start_matches("pg_catalog.");
        if let ("array", FunctionArguments::Subquery(q)) = (name, &f.args) {
            if let Some(new) = array_of_subquery(q) {
                *e = new;
            }
            return ControlFlow::Continue(());
        }
        // log(x) is the base-10 logarithm; DataFusion divides natural logarithms, so
        // log(1000) was 2.9999999999999996.
        if name == "log" {
            if let Some([x]) = plain_args(&f.args).as_deref() {
                if let Some(l) = parse_expr(&format!("log10({x})")) {
                    *e = l;
                }
            }
            return ControlFlow::Continue(());
        }
        // mod(a, b): PostgreSQL's remainder function; DataFusion has only the operator.
        if name == "mod" {
            if let Some([a, b]) = plain_args(&f.args).as_deref() {
                if let Some(m) = parse_expr(&format!("(({a}) % ({b}))")) {
                    *e = m;
                }
            }
            return ControlFlow::Continue(());
        }
        if name == "pg_typeof" {
            if let Some([arg]) = plain_args(&f.args).as_deref() {
                if let Some(typed) = int4_constants(arg) {
                    *e = parse_expr(&format!("pg_typeof({typed})")).unwrap_or_else(|| e.clone());
                }
            }
            return ControlFlow::Continue(());
        }
        let replacement = match plain_args(&f.args).as_deref() {
            Some([array, dim]) if name == "generate_subscripts" && f.over.is_none() => {
                parse_expr(&format!(
                    "unnest(generate_series(1, CAST(array_length({array}, {dim}) AS BIGINT)))"
                ))
            }
            _ => None,
        };
        if let Some(new) = replacement {
            *e = new;
        }
        ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_subscripts_becomes_unnest() {
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) AS ord FROM pg_index i",
        )
        .unwrap()
        .remove(0);
        postgres_functions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT unnest(i.indkey), unnest(generate_series(1, CAST(array_length(i.indkey, 1) AS BIGINT))) AS ord FROM pg_index i"
        );
    }

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        postgres_functions(&mut s);
        s.to_string()
    }

    #[test]
    fn postgres_templates_become_chrono_formats() {
        assert_eq!(
            chrono_format("YYYY-MM-DD HH24:MI:SS.US").as_deref(),
            Some("%Y-%m-%d %H:%M:%S.%6f")
        );
        assert_eq!(chrono_format("YYYY-MM-DD").as_deref(), Some("%Y-%m-%d"));
        assert_eq!(
            chrono_format("DD Mon YYYY \"at\" HH12 AM").as_deref(),
            Some("%d %b %Y at %I %p")
        );
        assert_eq!(chrono_format("IYYY-IW").as_deref(), Some("%G-%V"));
        assert_eq!(
            chrono_format("FMDD FMMonth FMHH24:MI").as_deref(),
            Some("%-d %B %-H:%M")
        );
        assert_eq!(chrono_format("Q YYYY"), None);
        assert_eq!(
            rewritten("SELECT a FROM t ORDER BY a OFFSET 1 ROWS FETCH FIRST 2 ROWS ONLY"),
            "SELECT a FROM t ORDER BY a LIMIT 2 OFFSET 1 ROWS"
        );
        assert_eq!(
            rewritten("SELECT a FROM t FETCH NEXT ROW ONLY"),
            "SELECT a FROM t LIMIT 1"
        );
        assert_eq!(
            rewritten("SELECT mod(a, 3) FROM t"),
            "SELECT ((a) % (3)) FROM t"
        );
        assert_eq!(
            rewritten("SELECT log(a), log(2, a) FROM t"),
            "SELECT log10(a), log(2, a) FROM t"
        );
    }

    #[test]
    fn series_are_rows_and_seconds_keep_their_fraction() {
        assert_eq!(
            rewritten("SELECT generate_series(1, 3) * 2 AS x"),
            "SELECT unnest(generate_series(1, 3)) * 2 AS x"
        );
        assert_eq!(
            rewritten("SELECT unnest(generate_series(1, 3))"),
            "SELECT unnest(generate_series(1, 3))"
        );
        assert_eq!(
            rewritten("SELECT x FROM generate_series(1, 3) AS g(x)"),
            "SELECT x FROM generate_series(1, 3) AS g (x)"
        );
        assert_eq!(
            rewritten("SELECT extract(second FROM ts), date_part('seconds', ts) FROM t"),
            "SELECT (date_part('microsecond', ts) / 1000000.0), \
             (date_part('microsecond', ts) / 1000000.0) FROM t"
        );
        assert_eq!(
            rewritten("SELECT extract(minute FROM ts) FROM t"),
            "SELECT EXTRACT(MINUTE FROM ts) FROM t"
        );
    }

    #[test]
    fn superset_epoch_and_time_bounds() {
        assert_eq!(
            rewritten("SELECT (timestamp 'epoch' + x * interval '1 second') FROM t"),
            "SELECT (to_timestamp(x)) FROM t"
        );
        assert_eq!(
            rewritten("SELECT timestamp 'epoch' + x * interval '1 minute' FROM t"),
            "SELECT to_timestamp((x) * 60) FROM t"
        );
        assert_eq!(
            rewritten("SELECT TO_TIMESTAMP('2026-01-01 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')"),
            "SELECT arrow_cast(to_timestamp('2026-01-01 00:00:00.000000', '%Y-%m-%d %H:%M:%S.%6f'), 'Timestamp(Microsecond, Some(\"UTC\"))')"
        );
    }

    #[test]
    fn regprocedure_casts_resolve_signatures() {
        assert_eq!(
            rewritten("SELECT 'now()'::pg_catalog.regprocedure::pg_catalog.oid"),
            "SELECT eddy_regprocedure('now()')::pg_catalog.oid"
        );
        assert_eq!(
            rewritten("SELECT CAST($1 AS regprocedure)"),
            "SELECT eddy_regprocedure($1)"
        );
        assert_eq!(
            rewritten("SELECT 'date_trunc'::pg_catalog.regproc::pg_catalog.oid"),
            "SELECT eddy_regproc('date_trunc')::pg_catalog.oid"
        );
        // An OID column shown as a signature: left alone.
        assert_eq!(
            rewritten("SELECT p.oid::regprocedure, p.oid::regproc FROM pg_proc p"),
            "SELECT p.oid::regprocedure, p.oid::regproc FROM pg_proc p"
        );
    }

    #[test]
    fn array_subqueries_become_aggregates_or_maps() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.oid = r.oid ORDER BY 1) FROM pg_roles r"),
            "SELECT eddy_array_or_empty((SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_roles b WHERE b.oid = r.oid)) FROM pg_roles r"
        );
        assert_eq!(
            rewritten("SELECT array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x) FROM pg_class tc"),
            "SELECT eddy_array_or_empty(array_transform(tc.reloptions, x -> 'toast.' || x)) FROM pg_class tc"
        );
        assert_eq!(
            rewritten("SELECT array(select x from pg_catalog.unnest(evttags) as t(x)) FROM pg_event_trigger e"),
            "SELECT eddy_array_or_empty(array_transform(evttags, x -> x)) FROM pg_event_trigger e"
        );
        // An element with a subquery of its own is computed in a derived table.
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT polname || array_to_string(ARRAY(SELECT rolname FROM pg_roles WHERE oid = polrelid), ',') FROM pg_policy WHERE polrelid = c.oid) FROM pg_class c"),
            "SELECT eddy_array_or_empty((SELECT array_agg(eddy_element) FROM (SELECT polname || array_to_string(eddy_array_or_empty((SELECT array_agg(rolname) FROM pg_roles WHERE oid = polrelid)), ',') AS eddy_element FROM pg_policy WHERE polrelid = c.oid) AS eddy_elements)) FROM pg_class c"
        );
    }
}
