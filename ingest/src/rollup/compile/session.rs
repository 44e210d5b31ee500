//! `SESSION(table, key, ts, gap)` as the view compiler sees it: a relation with the
//! table's columns plus `session_start` and `session_end`, never executed here.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Name of the session window table function.
pub const SESSION_FUNCTION: &str = "session";

/// The `SESSION(table, key, ts, gap)` table function as the view compiler sees it: only
/// its schema matters here (the FE has the executable version).
pub(super) struct SessionFunction {
    pub(super) lookup: Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync>,
}

impl fmt::Debug for SessionFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionFunction")
    }
}

pub(super) fn session_source(p: &Arc<dyn TableProvider>) -> Option<&SessionSource> {
    let any: &dyn Any = p.as_ref();
    any.downcast_ref::<SessionSource>()
}

#[derive(Debug)]
pub(super) struct SessionSource {
    pub table: String,
    pub key: String,
    pub time: String,
    pub gap_micros: i64,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SessionSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(
            "SESSION() is only compiled here, never executed".into(),
        ))
    }
}

impl TableFunctionImpl for SessionFunction {
    fn call(&self, args: &[Expr]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let usage = "SESSION(table, key_column, time_column, INTERVAL 'gap')";
        let name = |e: &Expr| match e {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        };
        let [t, k, ts, gap] = args else {
            return Err(DataFusionError::Plan(format!(
                "{usage} takes 4 arguments, not {}",
                args.len()
            )));
        };
        let (Some(table), Some(key), Some(time)) = (name(t), name(k), name(ts)) else {
            return Err(DataFusionError::Plan(format!(
                "{usage}: table, key and time must be plain names"
            )));
        };
        let gap_micros = literal(gap)
            .and_then(interval_micros)
            .filter(|g| *g > 0)
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{usage}: the gap must be a positive fixed interval such as INTERVAL '30 minutes'"
                ))
            })?;
        let def = match (self.lookup)(&table) {
            Some(Relation::Table(def)) => def,
            Some(Relation::View(_)) => {
                return Err(DataFusionError::Plan(format!(
                    "SESSION() reads a table; \"{table}\" is a materialized view"
                )))
            }
            None => {
                return Err(DataFusionError::Plan(format!(
                    "table \"{table}\" not found"
                )))
            }
        };
        let schema = def.arrow_schema();
        if schema.field_with_name(&key).is_err() {
            return Err(DataFusionError::Plan(format!(
                "SESSION(): column \"{key}\" not found in \"{table}\""
            )));
        }
        let time_type = schema
            .field_with_name(&time)
            .map_err(|_| {
                DataFusionError::Plan(format!(
                    "SESSION(): column \"{time}\" not found in \"{table}\""
                ))
            })?
            .data_type()
            .clone();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return Err(DataFusionError::Plan(format!(
                "SESSION(): \"{time}\" must be a timestamp column"
            )));
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("session_start", time_type.clone(), true));
        fields.push(Field::new("session_end", time_type, true));
        Ok(Arc::new(SessionSource {
            table,
            key,
            time,
            gap_micros,
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}
