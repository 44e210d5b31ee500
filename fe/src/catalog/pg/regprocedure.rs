//! `'name(argtypes)'::regprocedure` and `'name'::regproc`: a function's text resolved to
//! the OID of the built-in function with exactly that name and those argument types, as
//! PostgreSQL's `regprocedurein` does (psql's `\sf date_trunc(text, timestamp with time
//! zone)` sends `SELECT '...'::pg_catalog.regprocedure::pg_catalog.oid`), or with that
//! name alone, as `regprocin` does (`\sf now` sends `'now'::pg_catalog.regproc`; a name
//! several functions share is 42725 `more than one function named "date_trunc"`).
//!
//! The name may be quoted or qualified with `pg_catalog` (where every built-in lives);
//! each argument is a type name as SQL writes it (`integer`, `character varying(20)`,
//! `timestamp with time zone`, `int4[]`, `"char"`), typmods ignored. A signature that
//! names no function is PostgreSQL's `function "x(int)" does not exist` (42883), an
//! unknown type its `type "x" does not exist` (42704).

use std::collections::HashMap;

use eddy_proto::{Error, ErrorCode};

/// The built-in functions' names and argument types, and the types' names.
#[derive(Debug, Default)]
pub(crate) struct Signatures {
    /// proname → (oid, argument type OIDs) of each function in pg_catalog.
    by_name: HashMap<String, Vec<(i32, Vec<i32>)>>,
    /// typname → oid.
    types: HashMap<String, i32>,
}

/// One identifier of a possibly qualified name: `"Quoted"` as written, anything else
/// folded to lower case.
fn identifier(part: &str) -> String {
    let part = part.trim();
    match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => part.to_lowercase(),
    }
}

/// `s` split at each `sep` outside double quotes and parentheses.
fn split_outside(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Where the first `(` outside double quotes is.
fn left_parenthesis(s: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The parts of a qualified name, `None` when it is not one.
fn qualified_name(s: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = split_outside(s, '.').into_iter().map(identifier).collect();
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

/// A type's text without its typmods (`numeric(12,2)`, `timestamp(3) with time zone`).
fn without_typmods(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut quoted) = (0, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The `typname` of a type as SQL writes it (SQL's spellings, `x[]` for arrays).
fn typname(written: &str) -> Option<String> {
    let mut t = without_typmods(written).trim().to_string();
    let mut array = false;
    while let Some(open) = t.strip_suffix(']').and_then(|r| r.rfind('[')) {
        t.truncate(open);
        t = t.trim_end().to_string();
        array = true;
    }
    let mut parts = qualified_name(&t)?;
    let last = parts.pop()?;
    match parts.as_slice() {
        [] => {}
        [schema] if schema == "pg_catalog" => {}
        _ => return None,
    }
    let quoted = t.trim_end().ends_with('"');
    let base = if quoted {
        last
    } else {
        let words: Vec<&str> = last.split_whitespace().collect();
        match words.join(" ").as_str() {
            "int" | "integer" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "real" => "float4",
            "double precision" | "float" => "float8",
            "boolean" => "bool",
            "character varying" | "char varying" => "varchar",
            "character" | "char" => "bpchar",
            "decimal" | "dec" => "numeric",
            "timestamp without time zone" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            "time with time zone" => "timetz",
            "bit varying" => "varbit",
            w if w.starts_with("interval ") => "interval",
            w => {
                return Some(if array {
                    format!("_{w}")
                } else {
                    w.to_string()
                })
            }
        }
        .to_string()
    };
    Some(if array { format!("_{base}") } else { base })
}

/// An OID given for a function, or `-` for none (0), which regprocin and regprocedurein
/// also take; `None` when `text` is a name.
fn oid_text(text: &str) -> Option<Result<i32, Error>> {
    if text == "-" {
        return Some(Ok(0));
    }
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| {
        text.parse()
            .map_err(|_| Error::new(ErrorCode::OutOfRange, "OID out of range"))
    })
}

fn undefined_function(text: &str) -> Error {
    Error::new(
        ErrorCode::UndefinedFunction,
        format!("function \"{text}\" does not exist"),
    )
}

impl Signatures {
    /// From pg_proc's `(oid, proname, pronamespace, proargtypes)` and pg_type's
    /// `(oid, typname)`.
    pub(crate) fn new(
        procs: impl IntoIterator<Item = (i32, String, i32, Vec<i32>)>,
        types: impl IntoIterator<Item = (i32, String)>,
    ) -> Self {
        let mut by_name: HashMap<String, Vec<(i32, Vec<i32>)>> = HashMap::new();
        for (oid, name, namespace, args) in procs {
            if namespace == PG_CATALOG_NAMESPACE {
                by_name.entry(name).or_default().push((oid, args));
            }
        }
        Self {
            by_name,
            types: types.into_iter().map(|(oid, name)| (name, oid)).collect(),
        }
    }

    /// `'name'::regproc`: the OID of the one built-in function called `name` (possibly
    /// quoted or qualified with `pg_catalog`), as PostgreSQL's `regprocin` resolves it;
    /// a name several functions share is 42725 `more than one function named`.
    pub(crate) fn resolve_name(&self, text: &str) -> Result<i32, Error> {
        let trimmed = text.trim();
        if let Some(oid) = oid_text(trimmed) {
            return oid;
        }
        let mut name = qualified_name(trimmed)
            .ok_or_else(|| Error::new(ErrorCode::InvalidValue, "invalid name syntax"))?;
        let proname = name.pop().unwrap_or_default();
        let in_catalog = match name.as_slice() {
            [] => true,
            [schema] => schema == "pg_catalog",
            _ => return Err(Error::new(ErrorCode::InvalidValue, "invalid name syntax")),
        };
        match self.by_name.get(&proname).filter(|_| in_catalog) {
            Some(c) if c.len() == 1 => Ok(c[0].0),
            Some(c) if c.len() > 1 => Err(Error::new(
                ErrorCode::AmbiguousFunction,
                format!("more than one function named \"{trimmed}\""),
            )),
            _ => Err(undefined_function(trimmed)),
        }
    }

    /// The OID of the function `text` names (see the module documentation).
    pub(crate) fn resolve(&self, text: &str) -> Result<i32, Error> {
        let trimmed = text.trim();
        if let Some(oid) = oid_text(trimmed) {
            return oid;
        }
        let syntax = || Error::new(ErrorCode::InvalidValue, "invalid name syntax");
        let open = left_parenthesis(trimmed)
            .ok_or_else(|| Error::new(ErrorCode::InvalidValue, "expected a left parenthesis"))?;
        let args = trimmed[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| Error::new(ErrorCode::InvalidValue, "expected a right parenthesis"))?;
        let mut name = qualified_name(&trimmed[..open]).ok_or_else(syntax)?;
        let proname = name.pop().ok_or_else(syntax)?;
        match name.as_slice() {
            [] => {}
            [schema] if schema == "pg_catalog" => {}
            [_] => return Err(undefined_function(text)),
            _ => return Err(syntax()),
        }
        let mut wanted = Vec::new();
        if !args.trim().is_empty() {
            for written in split_outside(args, ',') {
                if written.trim().is_empty() {
                    return Err(Error::new(ErrorCode::InvalidValue, "expected a type name"));
                }
                let oid = typname(written).and_then(|t| self.types.get(&t).copied());
                let oid = oid.ok_or_else(|| {
                    // 42704, undefined_object.
                    Error::new(
                        ErrorCode::SourceNotFound,
                        format!("type \"{}\" does not exist", written.trim()),
                    )
                })?;
                wanted.push(oid);
            }
        }
        self.by_name
            .get(&proname)
            .and_then(|c| c.iter().find(|(_, args)| *args == wanted))
            .map(|(oid, _)| *oid)
            .ok_or_else(|| undefined_function(text))
    }
}

/// pg_catalog's namespace OID.
const PG_CATALOG_NAMESPACE: i32 = 11;

#[cfg(test)]
mod tests {
    use super::*;

    fn signatures() -> Signatures {
        Signatures::new(
            [
                (1299, "now".to_string(), 11, vec![]),
                (1217, "date_trunc".into(), 11, vec![25, 1184]),
                (2020, "date_trunc".into(), 11, vec![25, 1114]),
                (1318, "length".into(), 11, vec![1042]),
                (9, "mine".into(), 2200, vec![]),
                (10, "takes".into(), 11, vec![1007, 18, 1043, 1700]),
            ],
            [
                (25, "text".to_string()),
                (1184, "timestamptz".into()),
                (1114, "timestamp".into()),
                (1042, "bpchar".into()),
                (1007, "_int4".into()),
                (18, "char".into()),
                (1043, "varchar".into()),
                (1700, "numeric".into()),
                (23, "int4".into()),
            ],
        )
    }

    #[test]
    fn signatures_resolve_as_postgresql_reads_them() {
        let s = signatures();
        let s = |text: &str| s.resolve(text).map_err(|e| e.message);
        assert_eq!(s("now()"), Ok(1299));
        assert_eq!(s(" pg_catalog.now ( ) "), Ok(1299));
        assert_eq!(s("\"now\"()"), Ok(1299));
        assert_eq!(s("date_trunc(text, timestamp with time zone)"), Ok(1217));
        assert_eq!(s("DATE_TRUNC(TEXT,timestamptz)"), Ok(1217));
        assert_eq!(
            s("date_trunc(pg_catalog.text, timestamp(3) without  time zone)"),
            Ok(2020)
        );
        assert_eq!(s("length(character(3))"), Ok(1318));
        assert_eq!(
            s("takes(integer[], \"char\", character varying(20), numeric(12,2))"),
            Ok(10)
        );
        assert_eq!(s("1299"), Ok(1299));
        assert_eq!(s("-"), Ok(0));
    }

    #[test]
    fn names_resolve_only_when_one_function_has_them() {
        let s = signatures();
        assert_eq!(s.resolve_name("now").ok(), Some(1299));
        assert_eq!(s.resolve_name("pg_catalog.\"now\"").ok(), Some(1299));
        assert_eq!(s.resolve_name("1217").ok(), Some(1217));
        let e = s.resolve_name("date_trunc").unwrap_err();
        assert_eq!(e.code.sqlstate(), "42725");
        assert_eq!(e.message, "more than one function named \"date_trunc\"");
        let e = s.resolve_name("nope").unwrap_err();
        assert_eq!(e.code.sqlstate(), "42883");
        assert_eq!(e.message, "function \"nope\" does not exist");
        assert_eq!(
            s.resolve_name("public.now").unwrap_err().code.sqlstate(),
            "42883"
        );
    }

    #[test]
    fn unknown_signatures_are_postgresqls_errors() {
        let s = signatures();
        let e = s.resolve("now(int)").unwrap_err();
        assert_eq!(e.code.sqlstate(), "42883");
        assert_eq!(e.message, "function \"now(int)\" does not exist");
        let e = s.resolve("nope()").unwrap_err();
        assert_eq!(e.message, "function \"nope()\" does not exist");
        // Only pg_catalog holds functions.
        assert_eq!(
            s.resolve("public.now()").unwrap_err().code.sqlstate(),
            "42883"
        );
        assert_eq!(s.resolve("mine()").unwrap_err().code.sqlstate(), "42883");
        let e = s.resolve("now(nosuchtype)").unwrap_err();
        assert_eq!(e.code.sqlstate(), "42704");
        assert_eq!(e.message, "type \"nosuchtype\" does not exist");
        assert_eq!(s.resolve("now").unwrap_err().code.sqlstate(), "22P02");
        assert_eq!(s.resolve("now(").unwrap_err().code.sqlstate(), "22P02");
    }
}
