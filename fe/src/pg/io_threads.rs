//! PostgreSQL connections served on a few single-threaded runtimes, one per core.
//!
//! On the main, work-stealing runtime a connection's task is woken by whichever worker
//! holds the I/O driver, and that worker wakes an idle sibling to share the work: with
//! many clients on few cores that is a futex wake and a context switch for nearly every
//! query (a third of eddy's samples at 16 clients on 2 cores, and the kernel half its CPU
//! per `SELECT 1`). PostgreSQL's backends each sleep in their own socket wait instead.
//! Here each connection lives on one of `fe.pg_io_threads` threads, each running a
//! current-thread runtime and waiting in its own epoll, so a socket's readiness wakes the
//! thread that runs its connection and nothing else.
//!
//! The connection's future is polled inside the main runtime's context, so what a query
//! spawns (DataFusion's partition tasks, blocking reads, timers) still runs on the main
//! runtime's workers, on all cores; only the socket is registered with the I/O thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// The I/O threads' runtimes; connections are handed to them in turn.
pub(crate) struct IoThreads {
    runtimes: Vec<Handle>,
    next: AtomicUsize,
}

impl IoThreads {
    /// Starts `n` threads, each running a current-thread runtime until the process ends.
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let mut runtimes = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtimes.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("eddy-pg-io-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        }
        Ok(Self {
            runtimes,
            next: AtomicUsize::new(0),
        })
    }

    /// Serves `socket` on the next I/O thread: `serve` gets the socket registered with
    /// that thread's runtime, and its future is polled in `main`'s context.
    pub(crate) fn spawn<F, Fut>(&self, socket: TcpStream, main: Handle, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection to an I/O thread");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.runtimes.len();
        self.runtimes[i].spawn(async move {
            // Registers the socket with this thread's runtime, the one running this task.
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
    fn connections_run_on_io_threads_and_spawn_on_the_main_runtime() {
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("main-worker")
            .enable_all()
            .build()
            .unwrap();
        let threads = IoThreads::start(2).unwrap();
        main.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            for _ in 0..3 {
                let mut client = TcpStream::connect(addr).await.unwrap();
                let (socket, _) = listener.accept().await.unwrap();
                threads.spawn(socket, Handle::current(), |mut s| async move {
                    let here = std::thread::current().name().unwrap_or("").to_string();
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
                assert!(here.starts_with("eddy-pg-io-"), "{out}");
                assert_eq!(there, "main-worker", "{out}");
            }
        });
    }
}
