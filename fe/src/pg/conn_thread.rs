//! Each PostgreSQL connection served on a thread of its own, as PostgreSQL serves each on
//! a process of its own.
//!
//! On the main, work-stealing runtime every connection shares the runtime's few worker
//! threads (one per core). With many busy clients on few cores those workers are a
//! handful of threads among the clients' many, and the kernel gives each thread the same
//! share: a worker woken by one client's query is preempted by the next client its answer
//! wakes, while the other connections queued behind it wait. 16 psycopg clients on 2
//! cores ran `SELECT 1` about 10% slower than against PostgreSQL, whose 16 backends each
//! compete for the CPU on their own; renicing eddy's workers to -5 made it 10% faster
//! than PostgreSQL, which located the loss in scheduling rather than in eddy's code.
//!
//! Here a connection's socket is registered with a current-thread runtime on its own
//! thread, which sleeps in its own epoll until that client speaks. The connection's
//! future is polled with the main runtime as the current one, so what a query spawns
//! (DataFusion's partition tasks, blocking reads, timers) still runs on the main
//! runtime's workers, on all cores.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::metrics;

/// Stack of a connection's thread: planning recurses over the statement's syntax tree,
/// so give it what a runtime worker has and then some.
const STACK_BYTES: usize = 8 * 1024 * 1024;

/// Serves `socket` on a new thread: `serve` gets the socket registered with that
/// thread's runtime, and its future is polled in `main`'s context. When no thread can be
/// started, the connection is served on `main` instead.
pub(crate) fn spawn<F, Fut>(socket: TcpStream, main: Handle, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let std_socket = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not take a connection's socket for its thread");
            return;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<(std::net::TcpStream, F)>(1);
    let started = std::thread::Builder::new()
        .name("eddy-pg-conn".into())
        .stack_size(STACK_BYTES)
        .spawn({
            let main = main.clone();
            move || {
                let Ok((socket, serve)) = rx.recv() else {
                    return;
                };
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start a connection's runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    // Registers the socket with this thread's runtime.
                    match TcpStream::from_std(socket) {
                        Ok(socket) => {
                            InContext {
                                handle: main,
                                fut: Box::pin(serve(socket)),
                            }
                            .await
                        }
                        Err(e) => tracing::warn!(error = %e, "could not register a connection"),
                    }
                });
            }
        });
    match started {
        Ok(_) => {
            // The thread is alive and waiting for exactly this one message.
            let _ = tx.send((std_socket, serve));
        }
        Err(e) => {
            tracing::warn!(error = %e, "no thread for a connection; serving it on the main runtime");
            drop(tx);
            let _guard = main.enter();
            match TcpStream::from_std(std_socket) {
                Ok(socket) => {
                    main.spawn(serve(socket));
                }
                Err(e) => tracing::warn!(error = %e, "could not register a connection"),
            }
        }
    }
}

/// One of the `fe.pg_max_connections` connections open at once: taken at accept, given
/// back when dropped (also when a connection's future unwinds).
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot when fewer than `max` are held, else `None`.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        metrics::CONNECTIONS.inc();
        Some(Self(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::CONNECTIONS.dec();
    }
}

/// Polls `fut` with `handle` as the current runtime, so `tokio::spawn` and timers inside
/// it use that runtime.
struct InContext<F> {
    handle: Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InContext<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn each_connection_runs_on_its_own_thread_and_spawns_on_the_main_runtime() {
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("main-worker")
            .enable_all()
            .build()
            .unwrap();
        main.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut threads = std::collections::HashSet::new();
            for _ in 0..3 {
                let mut client = TcpStream::connect(addr).await.unwrap();
                let (socket, _) = listener.accept().await.unwrap();
                spawn(socket, Handle::current(), |mut s| async move {
                    let here = std::thread::current();
                    let here = format!("{}/{:?}", here.name().unwrap_or(""), here.id());
                    // Spawned work lands on the main runtime's workers.
                    let there = tokio::spawn(async {
                        std::thread::current().name().unwrap_or("").to_string()
                    })
                    .await
                    .unwrap();
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).await.unwrap();
                    s.write_all(format!("{here} {there}\n").as_bytes())
                        .await
                        .unwrap();
                });
                client.write_all(b"ping").await.unwrap();
                let mut out = String::new();
                client.read_to_string(&mut out).await.unwrap();
                let (here, there) = out.trim().split_once(' ').unwrap();
                assert!(here.starts_with("eddy-pg-conn/"), "{out}");
                assert_eq!(there, "main-worker", "{out}");
                threads.insert(here.to_string());
            }
            assert_eq!(threads.len(), 3, "{threads:?}");
        });
    }

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&open, 2).expect("first");
        let b = Slot::take(&open, 2).expect("second");
        assert!(Slot::take(&open, 2).is_none());
        drop(a);
        let c = Slot::take(&open, 2).expect("after one is given back");
        assert!(Slot::take(&open, 2).is_none());
        drop((b, c));
        assert_eq!(open.load(Ordering::Acquire), 0);
    }
}
