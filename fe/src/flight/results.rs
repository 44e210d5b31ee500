//! Results between `GetFlightInfo` (which plans and starts a statement) and `DoGet` (which
//! streams it), and the cancellation of both.
//!
//! Each result has a random handle that travels in the ticket. A result is `Pending` until
//! its `DoGet`, `Running` while it streams and removed when the stream ends. Cancelling a
//! pending result drops its DataFusion stream (which stops its tasks); cancelling a running
//! one wakes its `DoGet`, which drops the stream and ends with `Cancelled`. Results never
//! fetched expire after [`PENDING_TTL`], and at most [`RESULTS_MAX`] exist at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::SendableRecordBatchStream;
use eddy_proto::{Error, ErrorCode, Result};
use parking_lot::Mutex;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

/// How long a result waits for its `DoGet`.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Bound on results held at once (pending, running or just cancelled).
const RESULTS_MAX: usize = 4096;

enum State {
    Pending(SendableRecordBatchStream),
    Running(CancellationToken),
    Cancelled,
}

struct Entry {
    state: State,
    created: Instant,
}

/// What a cancel request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    Cancelled,
    NotCancellable,
}

#[derive(Default)]
pub(crate) struct Results {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("len", &self.entries.lock().len())
            .finish()
    }
}

/// The message PostgreSQL gives a cancelled statement.
pub(crate) fn cancelled() -> Error {
    Error::new(
        ErrorCode::Cancelled,
        "canceling statement due to user request",
    )
}

impl Results {
    /// Holds a started statement until its `DoGet`; returns the ticket handle.
    pub(crate) fn insert(&self, stream: SendableRecordBatchStream) -> Result<String> {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let handle: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut entries = self.entries.lock();
        if entries.len() >= RESULTS_MAX {
            entries.retain(|_, e| {
                matches!(e.state, State::Running(_)) || e.created.elapsed() < PENDING_TTL
            });
        }
        if entries.len() >= RESULTS_MAX {
            return Err(Error::new(
                ErrorCode::ResourceExhausted,
                format!("too many unfetched Flight SQL results (at most {RESULTS_MAX})"),
            ));
        }
        entries.insert(
            handle.clone(),
            Entry {
                state: State::Pending(stream),
                created: Instant::now(),
            },
        );
        Ok(handle)
    }

    /// Takes a pending result for streaming; the token fires when it is cancelled.
    pub(crate) fn start(
        self: &Arc<Self>,
        handle: &str,
    ) -> Result<(SendableRecordBatchStream, RunningGuard)> {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(handle) else {
            return Err(Error::new(
                ErrorCode::InvalidStatement,
                "unknown or already fetched Flight SQL ticket",
            ));
        };
        let token = CancellationToken::new();
        match std::mem::replace(&mut entry.state, State::Running(token.clone())) {
            State::Pending(stream) => Ok((
                stream,
                RunningGuard {
                    results: Arc::clone(self),
                    handle: handle.to_string(),
                    token,
                },
            )),
            State::Cancelled => {
                entries.remove(handle);
                Err(cancelled())
            }
            State::Running(other) => {
                entry.state = State::Running(other);
                Err(Error::new(
                    ErrorCode::InvalidStatement,
                    "this Flight SQL ticket is already being fetched",
                ))
            }
        }
    }

    /// Cancels a pending or running result.
    pub(crate) fn cancel(&self, handle: &str) -> CancelOutcome {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(handle) else {
            return CancelOutcome::NotCancellable;
        };
        match std::mem::replace(&mut entry.state, State::Cancelled) {
            State::Pending(stream) => drop(stream),
            State::Running(token) => token.cancel(),
            State::Cancelled => {}
        }
        CancelOutcome::Cancelled
    }
}

/// Held by a streaming `DoGet`; forgets the result when the stream ends or is dropped.
pub(crate) struct RunningGuard {
    results: Arc<Results>,
    handle: String,
    pub(crate) token: CancellationToken,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.results.entries.lock().remove(&self.handle);
    }
}
