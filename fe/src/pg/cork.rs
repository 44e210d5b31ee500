//! One `send` per answered batch of extended-protocol messages.
//!
//! pgwire flushes after ParseComplete, BindComplete and CommandComplete, so one
//! Parse/Bind/Describe/Execute/Sync round trip became three or four `sendto`s, each a
//! loopback segment that wakes the client: a fifth of the server's CPU for `SELECT 1`.
//! PostgreSQL buffers its answers until Sync or Flush. The handlers here get the same
//! effect with `TCP_CORK` on the connection's socket: held from the first message of a
//! batch, released at Sync, Flush, an error, or the start of a COPY (when the client
//! waits for CopyInResponse). The kernel releases a forgotten cork after 200 ms, so a
//! missed release costs latency, never an answer.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub(crate) struct Cork {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    held: AtomicBool,
}

impl Cork {
    /// The cork of a connection's socket. The descriptor is only used by the
    /// connection's own handlers, which run while the socket is open.
    pub(crate) fn of(socket: &tokio::net::TcpStream) -> Self {
        Self {
            #[cfg(target_os = "linux")]
            fd: std::os::fd::AsRawFd::as_raw_fd(socket),
            held: AtomicBool::new(false),
        }
    }

    /// Holds small writes back until [`Self::release`].
    pub(crate) fn hold(&self) {
        if !self.held.swap(true, Ordering::AcqRel) {
            self.set(true);
        }
    }

    /// Sends what was held back.
    pub(crate) fn release(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.set(false);
        }
    }

    #[cfg(target_os = "linux")]
    fn set(&self, on: bool) {
        let v: libc::c_int = on.into();
        // SAFETY: `fd` is this connection's open socket (see `of`); TCP_CORK takes an int.
        // A failure leaves the socket as it was, which is only slower.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn set(&self, _on: bool) {}
}
