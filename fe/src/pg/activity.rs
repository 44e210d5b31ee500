//! What a session is doing, for `pg_stat_activity`: its state (`active` while a
//! statement runs, including while its rows are sent; then `idle`, `idle in
//! transaction` or `idle in transaction (aborted)`), the current or last statement's
//! text, and when the statement, the transaction and the state started.

use std::sync::Arc;

use futures::StreamExt;
use parking_lot::Mutex;
use pgwire::api::results::Response;
use pgwire::error::PgWireResult;
use pgwire::messages::response::TransactionStatus;

use super::session::Session;

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// One session's activity, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Activity {
    pub(crate) state: &'static str,
    /// The statement running now, or the last one (empty before the first).
    pub(crate) query: String,
    pub(crate) query_start_micros: Option<i64>,
    /// When the transaction began (an explicit one's BEGIN, or the running statement's
    /// own); `None` when idle outside a transaction.
    pub(crate) xact_start_micros: Option<i64>,
    pub(crate) state_change_micros: i64,
}

impl Activity {
    pub(crate) fn new(now: i64) -> Self {
        Self {
            state: "idle",
            query: String::new(),
            query_start_micros: None,
            xact_start_micros: None,
            state_change_micros: now,
        }
    }

    /// A statement starts.
    pub(crate) fn start(&mut self, query: &str, now: i64) {
        self.state = "active";
        query.clone_into(&mut self.query);
        self.query_start_micros = Some(now);
        self.state_change_micros = now;
        self.xact_start_micros.get_or_insert(now);
    }

    /// The statement has finished (its last row is sent), leaving the connection in
    /// `status`.
    pub(crate) fn finish(&mut self, status: TransactionStatus, now: i64) {
        self.state = match status {
            TransactionStatus::Idle => "idle",
            TransactionStatus::Transaction => "idle in transaction",
            TransactionStatus::Error => "idle in transaction (aborted)",
        };
        if status == TransactionStatus::Idle {
            self.xact_start_micros = None;
        }
        self.state_change_micros = now;
    }
}

/// Marks the statement finished when dropped: a query response holds it until its last
/// row is sent (or the client stops reading).
pub(crate) struct Finish {
    pub(crate) activity: Arc<Mutex<Activity>>,
    pub(crate) status: TransactionStatus,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.activity.lock().finish(self.status, now_micros());
    }
}

/// A statement's response, which marks the statement finished in `session`'s activity
/// once it is sent: at once for a command, after the last row for a query.
pub(crate) fn finish_with(
    session: &Session,
    before: TransactionStatus,
    result: PgWireResult<Response>,
) -> PgWireResult<Response> {
    let after = match &result {
        Ok(Response::TransactionStart(_)) => before.to_in_transaction_state(),
        Ok(Response::TransactionEnd(_)) => before.to_idle_state(),
        Ok(Response::Error(_)) | Err(_) => before.to_error_state(),
        Ok(_) => before,
    };
    let finish = session.statement_finish(after);
    match result {
        Ok(Response::Query(mut q)) => {
            let rows = std::mem::replace(&mut q.data_rows, Box::pin(futures::stream::empty()));
            q.data_rows = Box::pin(rows.map(move |r| {
                let _until_sent = &finish;
                r
            }));
            Ok(Response::Query(q))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_statements_and_transactions() {
        let mut a = Activity::new(1);
        assert_eq!(a.state, "idle");
        a.start("BEGIN", 10);
        assert_eq!((a.state, a.xact_start_micros), ("active", Some(10)));
        a.finish(TransactionStatus::Transaction, 11);
        assert_eq!(a.state, "idle in transaction");
        a.start("SELECT 1", 20);
        assert_eq!(
            a.xact_start_micros,
            Some(10),
            "the transaction's start stays"
        );
        assert_eq!(a.query_start_micros, Some(20));
        a.finish(TransactionStatus::Error, 21);
        assert_eq!(a.state, "idle in transaction (aborted)");
        a.start("ROLLBACK", 30);
        a.finish(TransactionStatus::Idle, 31);
        assert_eq!((a.state, a.xact_start_micros), ("idle", None));
        assert_eq!(a.query, "ROLLBACK");
        assert_eq!(a.state_change_micros, 31);
    }
}
