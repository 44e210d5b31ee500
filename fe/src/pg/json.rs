//! JSON in queries as PostgreSQL's `jsonb`: the casts `::jsonb` and `::json`, the
//! operators `->`, `->>`, `#>`, `#>>`, and `json(b)_extract_path(_text)`.
//!
//! eddy keeps a `jsonb` column as its JSON text, so a CDC payload or a clickstream
//! event's properties are read with `payload ->> 'op'` or `props -> 'items' -> 0`, as in
//! PostgreSQL, where DataFusion refused both the cast ("Unsupported SQL type JSONB") and
//! the operators. The text is parsed per row with serde_json; a value that is not JSON
//! is 22P02 (`invalid input syntax for type json`).
//!
//! What comes out is text: `->` gives JSON as `jsonb` prints it (`{"a": 1, "b": [1,
//! 2]}`, object keys ordered by length then bytes, a repeated key's last value), `->>`
//! gives a string's contents, a number's or boolean's text, or NULL for JSON null.
//! Numbers are read as doubles, so `1.50` prints `1.5` where PostgreSQL keeps `1.50`.
//!
//! Clients are told the types PostgreSQL would report (through the result field's
//! [`super::encode::PG_TYPE`] metadata), so drivers decode them as JSON: `::jsonb`, `->`
//! and `#>` are `jsonb`; `::json` is `json` and keeps its text as written, as PostgreSQL's
//! `json` does, and `->`/`#>` on it are `json` too (printed as `jsonb` prints).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::RawBinaryExpr;
use datafusion::logical_expr::{Expr, ScalarUDF, Volatility};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use serde_json::Value;

use super::row_fn;
use crate::error::data_error;
use eddy_proto::ErrorCode;

/// The functions `x::jsonb` and `x::json` are planned as.
pub(crate) const JSONB: &str = "eddy_jsonb";
pub(crate) const JSON: &str = "eddy_json";
/// The functions `->`, `->>`, `#>` and `#>>` are planned as.
const GET: &str = "eddy_json_get";
const GET_TEXT: &str = "eddy_json_get_text";
const GET_PATH: &str = "eddy_json_get_path";
const GET_PATH_TEXT: &str = "eddy_json_get_path_text";

pub(crate) fn udfs() -> Vec<ScalarUDF> {
    let text = |_: &[DataType]| Ok(DataType::Utf8);
    let (json, jsonb) = (
        |_: &[FieldRef]| Some("json"),
        |_: &[FieldRef]| Some("jsonb"),
    );
    vec![
        json_valued(JSONB, one_text, jsonb, |a, _| self::jsonb(&a[0])),
        json_valued(JSON, one_text, json, |a, _| self::json(&a[0])),
        json_valued(GET, path_args, same_as_input, |a, _| get(a, false, true)),
        row_fn::udf(GET_TEXT, Volatility::Immutable, path_args, text, |a, _| {
            get(a, true, true)
        }),
        json_valued(GET_PATH, array_path_args, same_as_input, |a, _| {
            get_path(a, false)
        }),
        row_fn::udf(
            GET_PATH_TEXT,
            Volatility::Immutable,
            array_path_args,
            text,
            |a, _| get_path(a, true),
        ),
        json_valued("json_extract_path", path_args, json, |a, _| {
            get(a, false, false)
        }),
        json_valued("jsonb_extract_path", path_args, jsonb, |a, _| {
            get(a, false, false)
        }),
        row_fn::udf(
            "json_extract_path_text",
            Volatility::Immutable,
            path_args,
            text,
            |a, _| get(a, true, false),
        ),
        row_fn::udf(
            "jsonb_extract_path_text",
            Volatility::Immutable,
            path_args,
            text,
            |a, _| get(a, true, false),
        ),
    ]
}

/// A JSON-valued function: immutable, text out, described to clients as `pg_type` says.
fn json_valued(
    name: &'static str,
    coerce: row_fn::Coerce,
    pg_type: row_fn::PgType,
    eval: row_fn::Eval,
) -> ScalarUDF {
    let text = |_: &[DataType]| Ok(DataType::Utf8);
    row_fn::typed_udf(name, Volatility::Immutable, coerce, text, pg_type, eval)
}

/// `json` for a step into `json`, else `jsonb` (text, or a `jsonb` column, is read as
/// `jsonb`).
fn same_as_input(args: &[FieldRef]) -> Option<&'static str> {
    let input = args.first()?.metadata().get(super::encode::PG_TYPE);
    Some(match input.map(String::as_str) {
        Some("json") => "json",
        _ => "jsonb",
    })
}

/// `left op right` as a call of the function planned for it when `op` is a JSON
/// operator. `#>` and `#>>` take a path written as a text array (`'{items,0,sku}'`).
pub(crate) fn plan_operator(expr: &RawBinaryExpr) -> Option<Expr> {
    let name = match expr.op {
        BinaryOperator::Arrow => GET,
        BinaryOperator::LongArrow => GET_TEXT,
        BinaryOperator::HashArrow => GET_PATH,
        BinaryOperator::HashLongArrow => GET_PATH_TEXT,
        _ => return None,
    };
    let udf = udfs().into_iter().find(|f| f.name() == name)?;
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(udf),
        vec![expr.left.clone(), expr.right.clone()],
    )))
}

/// Whether a call is one of the JSON operators (PostgreSQL names them `?column?`).
pub(crate) fn is_operator(name: &str) -> bool {
    [GET, GET_TEXT, GET_PATH, GET_PATH_TEXT].contains(&name)
}

fn array_path_args(types: &[DataType]) -> Result<Vec<DataType>> {
    match types {
        [json, path]
            if (json.is_string() || json.is_null()) && (path.is_string() || path.is_null()) =>
        {
            Ok(vec![DataType::Utf8, DataType::Utf8])
        }
        _ => plan_err!("#> and #>> take jsonb and a text array path such as '{{a,0,b}}'"),
    }
}

fn one_text(types: &[DataType]) -> Result<Vec<DataType>> {
    match types {
        [t] if t.is_string() || t.is_null() => Ok(vec![DataType::Utf8]),
        [t] => plan_err!("cannot cast type {t} to jsonb"),
        _ => plan_err!("this function takes one text argument"),
    }
}

fn path_args(types: &[DataType]) -> Result<Vec<DataType>> {
    let Some((json, steps)) = types.split_first() else {
        return plan_err!("a JSON path needs a JSON value");
    };
    if !(json.is_string() || json.is_null()) {
        return plan_err!("a JSON operator needs jsonb or text on its left, not {json}");
    }
    let steps = steps
        .iter()
        .map(|t| match t {
            t if t.is_integer() => Ok(DataType::Int64),
            t if t.is_string() || t.is_null() => Ok(DataType::Utf8),
            other => plan_err!("a JSON key is text or an integer index, not {other}"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(std::iter::once(DataType::Utf8).chain(steps).collect())
}

fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text).or_else(|e| {
        data_error(
            ErrorCode::InvalidValue,
            format!("invalid input syntax for type json: {e}"),
        )
    })
}

/// `v` as PostgreSQL prints a `jsonb`.
fn write_jsonb(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_jsonb(out, &m[k]);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(out, e);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn jsonb_text(v: &Value) -> String {
    let mut s = String::new();
    write_jsonb(&mut s, v);
    s
}

/// `::json`: the text, checked to be JSON, as it was written.
fn json(a: &ArrayRef) -> Result<ArrayRef> {
    let text = a.as_string::<i32>();
    for s in text.iter().flatten() {
        parse(s)?;
    }
    Ok(Arc::clone(a))
}

fn jsonb(a: &ArrayRef) -> Result<ArrayRef> {
    let out = a
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(|s| parse(s).map(|v| jsonb_text(&v))).transpose())
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

/// One step into `v`: an object's key, or an array's index (an integer, or text that
/// reads as one unless `by_text` is false; negative counts from the end).
fn step<'a>(v: &'a Value, key: &str, by_text: bool) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) if by_text => {
            let i: i64 = key.parse().ok()?;
            let i = if i < 0 { a.len() as i64 + i } else { i };
            usize::try_from(i).ok().and_then(|i| a.get(i))
        }
        _ => None,
    }
}

/// The elements of a path written as a PostgreSQL text array (`{a,b,"c d"}`).
fn steps(path: &str) -> Result<Vec<String>> {
    let Some(inner) = path
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
    else {
        return data_error(
            ErrorCode::InvalidValue,
            format!("malformed array literal: \"{path}\""),
        );
    };
    if inner.trim().is_empty() {
        return Ok(vec![]);
    }
    Ok(inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect())
}

/// The value at `path` in the JSON text `doc`: JSON text, or with `as_text` a string's
/// contents and NULL for JSON null.
fn walk<S: AsRef<str>>(
    doc: &str,
    path: &[S],
    as_text: bool,
    arrays_by_text: bool,
) -> Result<Option<String>> {
    let doc = parse(doc)?;
    let v = path
        .iter()
        .try_fold(&doc, |v, k| step(v, k.as_ref(), arrays_by_text));
    Ok(match v {
        None => None,
        Some(Value::Null) if as_text => None,
        Some(Value::String(s)) if as_text => Some(s.clone()),
        Some(v) => Some(jsonb_text(v)),
    })
}

/// `->`, `->>` and the extract-path functions: the steps are the arguments after the
/// JSON. An operator's text key names an object's member only (`'[1]'::jsonb -> '0'` is
/// NULL in PostgreSQL); the functions read text that is a number as an array index.
fn get(args: &[ArrayRef], as_text: bool, operator: bool) -> Result<ArrayRef> {
    let arrays_by_text = !(operator && args[1..].iter().all(|a| !a.data_type().is_integer()));
    let json = args[0].as_string::<i32>();
    let keys: Vec<ArrayRef> = args[1..]
        .iter()
        .map(|a| cast(a, &DataType::Utf8))
        .collect::<std::result::Result<_, _>>()?;
    let keys: Vec<&StringArray> = keys.iter().map(|k| k.as_string::<i32>()).collect();
    let mut out = Vec::with_capacity(json.len());
    for row in 0..json.len() {
        if json.is_null(row) || keys.iter().any(|k| k.is_null(row)) {
            out.push(None);
            continue;
        }
        let path: Vec<&str> = keys.iter().map(|k| k.value(row)).collect();
        out.push(walk(json.value(row), &path, as_text, arrays_by_text)?);
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `#>` and `#>>`: the steps are one text array.
fn get_path(args: &[ArrayRef], as_text: bool) -> Result<ArrayRef> {
    let (json, paths) = (args[0].as_string::<i32>(), args[1].as_string::<i32>());
    let mut out = Vec::with_capacity(json.len());
    for row in 0..json.len() {
        if json.is_null(row) || paths.is_null(row) {
            out.push(None);
            continue;
        }
        out.push(walk(
            json.value(row),
            &steps(paths.value(row))?,
            as_text,
            true,
        )?);
    }
    Ok(Arc::new(StringArray::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn texts(a: ArrayRef) -> Vec<Option<String>> {
        a.as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn jsonb_prints_as_postgresql() {
        let a = arr(&[
            Some(r#"{"bb":1,"a":[1,2.5,{"z":null}],"c":"x","a":true}"#),
            None,
        ]);
        assert_eq!(
            texts(jsonb(&a).unwrap()),
            [Some(r#"{"a": true, "c": "x", "bb": 1}"#.to_string()), None]
        );
        let e = jsonb(&arr(&[Some("{oops")])).unwrap_err().to_string();
        assert!(e.contains("invalid input syntax for type json"), "{e}");
    }

    #[test]
    fn operators_walk_objects_and_arrays() {
        let doc = r#"{"op":"u","after":{"id":7,"tags":["a","b"],"note":null}}"#;
        let json = arr(&[Some(doc), Some(doc), Some(doc), Some(doc)]);
        let keys = arr(&[Some("op"), Some("after"), Some("missing"), None]);
        assert_eq!(
            texts(get(&[Arc::clone(&json), Arc::clone(&keys)], true, true).unwrap()),
            [
                Some("u".into()),
                Some(r#"{"id": 7, "note": null, "tags": ["a", "b"]}"#.into()),
                None,
                None
            ]
        );
        let path = arr(&[
            Some("{after,tags,1}"),
            Some("{after,note}"),
            Some("{after,id}"),
            Some("{}"),
        ]);
        assert_eq!(
            texts(get_path(&[Arc::clone(&json), Arc::clone(&path)], true).unwrap()),
            [
                Some("b".into()),
                None,
                Some("7".into()),
                Some(jsonb_text(&parse(doc).unwrap()))
            ]
        );
        assert_eq!(
            texts(get_path(&[Arc::clone(&json), path], false).unwrap())[1].as_deref(),
            Some("null")
        );
        // An integer indexes an array, from the end when negative.
        let tags = arr(&[Some(r#"["a","b","c"]"#)]);
        let i: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![-1]));
        assert_eq!(
            texts(get(&[Arc::clone(&tags), i], false, true).unwrap()),
            [Some("\"c\"".into())]
        );
        // A text key indexes an array through the path functions, not through `->`.
        let zero = arr(&[Some("0")]);
        let by_operator = get(&[Arc::clone(&tags), Arc::clone(&zero)], false, true);
        assert_eq!(texts(by_operator.unwrap()), [None]);
        let by_function = get(&[tags, zero], true, false);
        assert_eq!(texts(by_function.unwrap()), [Some("a".into())]);
    }
}
