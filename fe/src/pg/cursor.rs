//! SQL cursors: `DECLARE c CURSOR FOR query`, `FETCH [FORWARD] n FROM c`, `CLOSE c`
//! (psycopg2's named cursors and psql's FETCH_COUNT page through results with them).
//!
//! DECLARE starts the query and keeps its record batch stream in the session; each FETCH
//! pulls batches until it has `n` rows and keeps the rest of the last batch for the next
//! one, so a cursor holds at most one batch in memory. Cursors are forward-only. As in
//! PostgreSQL, a cursor without `WITH HOLD` needs a transaction block and is closed when
//! the transaction ends.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{CloseCursor, DeclareType, FetchDirection, Statement, Value};
use futures::StreamExt;
use parking_lot::Mutex;
use pgwire::error::ErrorInfo;

use super::encode::Columns;
use super::session::pg_error;
use crate::error::{classify, error_info};

/// A cursor statement, planned.
#[derive(Debug, Clone)]
pub(crate) enum CursorStmt {
    Declare {
        name: String,
        hold: bool,
        plan: LogicalPlan,
    },
    /// `None` fetches every remaining row.
    Fetch { name: String, count: Option<usize> },
    /// `None` is `CLOSE ALL`.
    Close(Option<String>),
}

/// What [`CursorStmt::parse`] found: a DECLARE still needs its query planned.
pub(crate) enum Recognised {
    Declare {
        name: String,
        hold: bool,
        query: Box<Statement>,
    },
    Ready(CursorStmt),
}

fn count_of(v: &Value) -> Result<usize, ErrorInfo> {
    match v {
        Value::Number(n, _) => n.parse::<usize>().map_err(|_| {
            pg_error(
                "22023",
                format!("FETCH count {n} is not supported: cursors are forward-only"),
            )
        }),
        other => Err(pg_error("42601", format!("bad FETCH count {other}"))),
    }
}

impl CursorStmt {
    /// Recognises cursor statements; `Ok(None)` for anything else.
    pub(crate) fn parse(s: &Statement) -> Result<Option<Recognised>, ErrorInfo> {
        Ok(Some(match s {
            Statement::Declare { stmts } => {
                let [d] = stmts.as_slice() else {
                    return Err(pg_error("42601", "DECLARE one cursor at a time"));
                };
                if !matches!(d.declare_type, Some(DeclareType::Cursor)) {
                    return Ok(None);
                }
                let (Some(query), [name]) = (&d.for_query, d.names.as_slice()) else {
                    return Err(pg_error("42601", "DECLARE CURSOR needs a name and a query"));
                };
                if d.scroll == Some(true) {
                    return Err(pg_error(
                        "0A000",
                        "SCROLL cursors are not supported: eddy's cursors are forward-only",
                    ));
                }
                Recognised::Declare {
                    name: name.value.clone(),
                    hold: d.hold == Some(true),
                    query: Box::new(Statement::Query(query.clone())),
                }
            }
            Statement::Fetch {
                name,
                direction,
                into: None,
                ..
            } => {
                let count = match direction {
                    FetchDirection::Next => Some(1),
                    FetchDirection::All | FetchDirection::ForwardAll => None,
                    FetchDirection::Count { limit } => Some(count_of(&limit.value)?),
                    FetchDirection::Forward { limit: None } => Some(1),
                    FetchDirection::Forward { limit: Some(l) } => Some(count_of(&l.value)?),
                    other => {
                        return Err(pg_error(
                            "0A000",
                            format!("FETCH {other} is not supported: cursors are forward-only"),
                        ))
                    }
                };
                Recognised::Ready(CursorStmt::Fetch {
                    name: name.value.clone(),
                    count,
                })
            }
            Statement::Close { cursor } => Recognised::Ready(CursorStmt::Close(match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            })),
            _ => return Ok(None),
        }))
    }
}

/// An open cursor.
struct Cursor {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// Rows of the last batch a FETCH did not return.
    rest: Option<RecordBatch>,
    done: bool,
}

/// An open cursor as the session lists it: its columns are known without waiting for
/// a FETCH that is running.
#[derive(Clone)]
struct Entry {
    schema: SchemaRef,
    /// The declared types and names RowDescription gives the columns.
    columns: Arc<Columns>,
    hold: bool,
    cursor: Arc<tokio::sync::Mutex<Cursor>>,
}

/// A session's open cursors.
#[derive(Default)]
pub(crate) struct Cursors {
    open: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursors")
            .field("open", &self.open.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

fn no_cursor(name: &str) -> ErrorInfo {
    pg_error("34000", format!("cursor \"{name}\" does not exist"))
}

impl Cursors {
    pub(crate) fn declare(
        &self,
        name: String,
        hold: bool,
        stream: SendableRecordBatchStream,
        columns: Arc<Columns>,
    ) -> Result<(), ErrorInfo> {
        let mut open = self.open.lock();
        if open.contains_key(&name) {
            return Err(pg_error(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let schema = stream.schema();
        let cursor = Cursor {
            schema: Arc::clone(&schema),
            stream,
            rest: None,
            done: false,
        };
        open.insert(
            name,
            Entry {
                schema,
                columns,
                hold,
                cursor: Arc::new(tokio::sync::Mutex::new(cursor)),
            },
        );
        Ok(())
    }

    /// The next `count` rows (all that remain for `None`).
    pub(crate) async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ErrorInfo> {
        let cursor = self
            .open
            .lock()
            .get(name)
            .map(|e| Arc::clone(&e.cursor))
            .ok_or_else(|| no_cursor(name))?;
        let mut c = cursor.lock().await;
        let mut want = count.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while want > 0 {
            let batch = match c.rest.take() {
                Some(b) => b,
                None if c.done => break,
                None => match c.stream.next().await {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return Err(error_info(&classify(e))),
                    None => {
                        c.done = true;
                        break;
                    }
                },
            };
            if batch.num_rows() > want {
                out.push(batch.slice(0, want));
                c.rest = Some(batch.slice(want, batch.num_rows() - want));
                want = 0;
            } else {
                want -= batch.num_rows();
                out.push(batch);
            }
        }
        let schema = Arc::clone(&c.schema);
        // One batch per FETCH keeps the response simple to stream.
        let out = if out.len() > 1 {
            vec![concat_batches(&schema, &out).map_err(|e| pg_error("XX000", e.to_string()))?]
        } else {
            out
        };
        Ok((schema, out))
    }

    /// The columns a cursor returns (what Describe reports for `FETCH ... FROM name`);
    /// 34000 when there is no such cursor.
    pub(crate) fn schema(&self, name: &str) -> Result<(SchemaRef, Arc<Columns>), ErrorInfo> {
        self.open
            .lock()
            .get(name)
            .map(|c| (Arc::clone(&c.schema), Arc::clone(&c.columns)))
            .ok_or_else(|| no_cursor(name))
    }

    pub(crate) fn close(&self, name: Option<&str>) -> Result<(), ErrorInfo> {
        let mut open = self.open.lock();
        match name {
            Some(n) => open.remove(n).map(|_| ()).ok_or_else(|| no_cursor(n)),
            None => {
                open.clear();
                Ok(())
            }
        }
    }

    /// The end of a transaction closes its cursors, except those declared WITH HOLD.
    pub(crate) fn end_transaction(&self) {
        self.open.lock().retain(|_, c| c.hold);
    }
}
