//! Comments on built-in objects (`obj_description`, `col_description`,
//! `shobj_description`), from the `pg_description` the crate ships with PostgreSQL's
//! own text ("add", "current date and time (changes during statement)" ...), and the
//! OIDs of the system catalogs, which are what `pg_description.classoid` and the
//! `tableoid` system column of a catalog row hold.
//!
//! eddy has no `COMMENT ON`, so its own tables and columns have no description.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use datafusion::error::{DataFusionError, Result};
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

/// Each system catalog's own OID (its `pg_class.oid` in PostgreSQL).
const CATALOG_OIDS: [(&str, i32); 40] = [
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_amop", 2602),
    ("pg_amproc", 2603),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_default_acl", 826),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_event_trigger", 3466),
    ("pg_extension", 3079),
    ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417),
    ("pg_index", 2610),
    ("pg_language", 2612),
    ("pg_largeobject_metadata", 2995),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_policy", 3256),
    ("pg_proc", 1255),
    ("pg_publication", 6104),
    ("pg_rewrite", 2618),
    ("pg_statistic_ext", 3381),
    ("pg_subscription", 6100),
    ("pg_tablespace", 1213),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_ts_dict", 3600),
    ("pg_ts_parser", 3601),
    ("pg_ts_template", 3764),
    ("pg_type", 1247),
];

/// The OID of a system catalog (`pg_type` → 1247), by name with or without the
/// `pg_catalog.` prefix.
pub(crate) fn catalog_oid(name: &str) -> Option<i32> {
    let name = name.to_ascii_lowercase();
    let name = name.trim_start_matches("pg_catalog.");
    CATALOG_OIDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, o)| *o)
}

/// `pg_description` (object-level comments, `objsubid = 0`), indexed, and the built-in
/// functions by name, for `obj_description(regproc, ...)` given a name.
#[derive(Debug, Default)]
pub(crate) struct Descriptions {
    by_object: HashMap<(i32, i32), String>,
    /// The first catalog that describes each OID, for one-argument `obj_description`.
    by_oid: HashMap<i32, String>,
    proc_by_name: HashMap<String, i32>,
}

fn int_column<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::PrimitiveArray<Int32Type>> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_description.{name} is not int4")))
}

impl Descriptions {
    pub(crate) fn new(statics: &PgCatalogStaticTables) -> Result<Self> {
        let mut d = Descriptions::default();
        for b in statics.pg_description.data() {
            let (objoid, classoid, subid) = (
                int_column(b, "objoid")?,
                int_column(b, "classoid")?,
                int_column(b, "objsubid")?,
            );
            let text = b
                .column_by_name("description")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| {
                    DataFusionError::Internal("pg_description.description is not text".into())
                })?;
            for i in 0..b.num_rows() {
                if objoid.is_null(i) || classoid.is_null(i) || text.is_null(i) {
                    continue;
                }
                if !subid.is_null(i) && subid.value(i) != 0 {
                    continue;
                }
                let (o, c, t) = (objoid.value(i), classoid.value(i), text.value(i));
                d.by_object.insert((o, c), t.to_string());
                d.by_oid.entry(o).or_insert_with(|| t.to_string());
            }
        }
        for b in statics.pg_proc.data() {
            let oids = int_column(b, "oid")?;
            let Some(names) = b
                .column_by_name("proname")
                .and_then(|c| c.as_string_opt::<i32>())
            else {
                continue;
            };
            for i in 0..b.num_rows() {
                if !oids.is_null(i) && !names.is_null(i) {
                    d.proc_by_name
                        .entry(names.value(i).to_string())
                        .or_insert(oids.value(i));
                }
            }
        }
        Ok(d)
    }

    /// `obj_description(oid, catalog)`; `catalog` `None` for the one-argument form.
    pub(crate) fn object(&self, oid: i32, catalog: Option<&str>) -> Option<&str> {
        match catalog {
            Some(c) => self.by_object.get(&(oid, catalog_oid(c)?)),
            None => self.by_oid.get(&oid),
        }
        .map(String::as_str)
    }

    /// The OID of a built-in function named `name` (a `regproc` given as text).
    pub(crate) fn proc_named(&self, name: &str) -> Option<i32> {
        let name = name.trim_start_matches("pg_catalog.");
        self.proc_by_name.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_comments_come_from_pg_description() {
        let statics = PgCatalogStaticTables::try_new().unwrap();
        let d = Descriptions::new(&statics).unwrap();
        // now() is 1299 and int4 is 23 in every PostgreSQL.
        assert_eq!(
            d.object(1299, Some("pg_proc")),
            Some("current transaction time")
        );
        assert!(d.object(23, Some("pg_type")).is_some());
        assert_eq!(d.object(23, Some("pg_proc")), None);
        assert_eq!(d.proc_named("now"), Some(1299));
        assert_eq!(catalog_oid("pg_catalog.pg_type"), Some(1247));
    }
}
