//! `pg_get_functiondef(oid)` (psql's `\sf`, `\ef`) for the built-in functions of the
//! crate's pg_proc, printed as PostgreSQL's `ruleutils.c` prints them:
//!
//! ```text
//! CREATE OR REPLACE FUNCTION pg_catalog.now()
//!  RETURNS timestamp with time zone
//!  LANGUAGE internal
//!  STABLE PARALLEL SAFE STRICT
//! AS $function$now$function$
//! ```
//!
//! An aggregate has no such definition (42809, as in PostgreSQL); an unknown OID gives
//! NULL.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int32Type};
use datafusion::error::{DataFusionError, Result};
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

use super::arrays::elements;

/// What `pg_get_functiondef` prints of one pg_proc row.
#[derive(Debug, Clone)]
struct FunctionRow {
    name: String,
    namespace: i32,
    language: i32,
    kind: String,
    volatile: String,
    parallel: String,
    strict: bool,
    security_definer: bool,
    leakproof: bool,
    returns_set: bool,
    cost: f32,
    rows: f32,
    support: Option<String>,
    arg_names: Vec<String>,
    src: String,
    bin: Option<String>,
}

/// The built-in functions' definitions, by OID.
#[derive(Debug, Default)]
pub(crate) struct FunctionDefs {
    rows: HashMap<i32, FunctionRow>,
    languages: HashMap<i32, String>,
}

/// Why a function has no definition to print.
#[derive(Debug, PartialEq)]
pub(crate) enum NoDefinition {
    /// `pg_get_functiondef` of an aggregate: PostgreSQL's 42809.
    Aggregate(String),
}

struct Columns<'a>(&'a RecordBatch);

impl<'a> Columns<'a> {
    fn text(&self, name: &str, i: usize) -> Option<&'a str> {
        let c = self.0.column_by_name(name)?.as_string_opt::<i32>()?;
        (!c.is_null(i)).then(|| c.value(i))
    }

    fn int(&self, name: &str, i: usize) -> Option<i32> {
        let c = self
            .0
            .column_by_name(name)?
            .as_primitive_opt::<Int32Type>()?;
        (!c.is_null(i)).then(|| c.value(i))
    }

    fn float(&self, name: &str, i: usize) -> Option<f32> {
        let c = self
            .0
            .column_by_name(name)?
            .as_primitive_opt::<Float32Type>()?;
        (!c.is_null(i)).then(|| c.value(i))
    }

    fn bool(&self, name: &str, i: usize) -> bool {
        self.0
            .column_by_name(name)
            .and_then(|c| c.as_boolean_opt())
            .is_some_and(|c| !c.is_null(i) && c.value(i))
    }
}

/// `%g` for the COST and ROWS figures (integers print without a fraction).
fn g(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl FunctionDefs {
    pub(crate) fn new(statics: &PgCatalogStaticTables) -> Result<Self> {
        let mut defs = FunctionDefs::default();
        for b in statics.pg_language.data() {
            let c = Columns(b);
            for i in 0..b.num_rows() {
                if let (Some(o), Some(n)) = (c.int("oid", i), c.text("lanname", i)) {
                    defs.languages.insert(o, n.to_string());
                }
            }
        }
        for b in statics.pg_proc.data() {
            let c = Columns(b);
            for i in 0..b.num_rows() {
                let (Some(oid), Some(name)) = (c.int("oid", i), c.text("proname", i)) else {
                    continue;
                };
                let support = c.text("prosupport", i).filter(|s| *s != "-" && *s != "0");
                defs.rows.insert(
                    oid,
                    FunctionRow {
                        name: name.to_string(),
                        namespace: c.int("pronamespace", i).unwrap_or(11),
                        language: c.int("prolang", i).unwrap_or(12),
                        kind: c.text("prokind", i).unwrap_or("f").to_string(),
                        volatile: c.text("provolatile", i).unwrap_or("v").to_string(),
                        parallel: c.text("proparallel", i).unwrap_or("u").to_string(),
                        strict: c.bool("proisstrict", i),
                        security_definer: c.bool("prosecdef", i),
                        leakproof: c.bool("proleakproof", i),
                        returns_set: c.bool("proretset", i),
                        cost: c.float("procost", i).unwrap_or(1.0),
                        rows: c.float("prorows", i).unwrap_or(0.0),
                        support: support.map(str::to_string),
                        arg_names: c.text("proargnames", i).map(elements).unwrap_or_default(),
                        src: c.text("prosrc", i).unwrap_or_default().to_string(),
                        bin: c
                            .text("probin", i)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    },
                );
            }
        }
        if defs.rows.is_empty() {
            return Err(DataFusionError::Internal("pg_proc has no functions".into()));
        }
        Ok(defs)
    }

    /// The definition of function `oid`; `arg_types` and `result` are the type names
    /// `pg_get_function_arguments` / `pg_get_function_result` give.
    pub(crate) fn definition(
        &self,
        oid: i32,
        arg_types: &[String],
        result: &str,
    ) -> Option<Result<String, NoDefinition>> {
        let f = self.rows.get(&oid)?;
        if f.kind == "a" {
            return Some(Err(NoDefinition::Aggregate(f.name.clone())));
        }
        let schema = if f.namespace == 11 {
            "pg_catalog"
        } else {
            "information_schema"
        };
        let args: Vec<String> = arg_types
            .iter()
            .enumerate()
            .map(
                |(i, t)| match f.arg_names.get(i).filter(|n| !n.is_empty()) {
                    Some(n) => format!("{n} {t}"),
                    None => t.clone(),
                },
            )
            .collect();
        let procedure = f.kind == "p";
        let mut out = format!(
            "CREATE OR REPLACE {} {schema}.{}({})\n",
            if procedure { "PROCEDURE" } else { "FUNCTION" },
            f.name,
            args.join(", ")
        );
        if !procedure {
            out.push_str(" RETURNS ");
            out.push_str(result);
            out.push('\n');
        }
        let language = self
            .languages
            .get(&f.language)
            .map(String::as_str)
            .unwrap_or("internal");
        out.push_str(&format!(" LANGUAGE {language}\n"));
        let mut options = String::new();
        if f.kind == "w" {
            options.push_str(" WINDOW");
        }
        options.push_str(match f.volatile.as_str() {
            "i" => " IMMUTABLE",
            "s" => " STABLE",
            _ => "",
        });
        options.push_str(match f.parallel.as_str() {
            "s" => " PARALLEL SAFE",
            "r" => " PARALLEL RESTRICTED",
            _ => "",
        });
        if f.strict {
            options.push_str(" STRICT");
        }
        if f.security_definer {
            options.push_str(" SECURITY DEFINER");
        }
        if f.leakproof {
            options.push_str(" LEAKPROOF");
        }
        // The default cost: 1 for internal and C functions, 100 for the others.
        let default_cost = if matches!(language, "internal" | "c") {
            1.0
        } else {
            100.0
        };
        if f.cost != default_cost {
            options.push_str(&format!(" COST {}", g(f.cost)));
        }
        if f.returns_set && f.rows > 0.0 && f.rows != 1000.0 {
            options.push_str(&format!(" ROWS {}", g(f.rows)));
        }
        if let Some(s) = &f.support {
            options.push_str(&format!(" SUPPORT {s}"));
        }
        if !options.is_empty() {
            out.push_str(&options);
            out.push('\n');
        }
        out.push_str("AS ");
        if let Some(bin) = &f.bin {
            out.push_str(&format!("'{}', ", bin.replace('\'', "''")));
        }
        let quote = if f.src.contains("$function$") {
            "$$"
        } else {
            "$function$"
        };
        out.push_str(&format!("{quote}{}{quote}\n", f.src));
        Some(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_print_as_postgres_does() {
        let statics = PgCatalogStaticTables::try_new().unwrap();
        let defs = FunctionDefs::new(&statics).unwrap();
        // PostgreSQL 15's `\sf now`.
        assert_eq!(
            defs.definition(1299, &[], "timestamp with time zone"),
            Some(Ok("CREATE OR REPLACE FUNCTION pg_catalog.now()\n \
                 RETURNS timestamp with time zone\n \
                 LANGUAGE internal\n \
                 STABLE PARALLEL SAFE STRICT\n\
                 AS $function$now$function$\n"
                .to_string()))
        );
        assert_eq!(defs.definition(-1, &[], "x"), None);
    }
}
