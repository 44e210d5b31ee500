//! A connection's message loop, answering each batch of extended-protocol messages with
//! one `send`.
//!
//! pgwire flushes after ParseComplete, BindComplete and CommandComplete, so one
//! Parse/Bind/Describe/Execute/Sync round trip would be three or four `sendto`s, each a
//! loopback segment that wakes the client. PostgreSQL buffers its answers until Sync or
//! Flush. This loop is pgwire's (`process_socket`: TLS negotiation, the startup timeout,
//! CancelRequest, COPY, Terminate) over a socket wrapper, [`Coalesce`], that keeps what
//! Parse, Bind, Describe, Execute and Close answer and writes it with the next message's
//! answer: at Sync, Flush, an error, the start of a COPY (the client waits for
//! CopyInResponse), or any other message. It also writes once it holds
//! [`Coalesce::LIMIT`] bytes, so a large result streams as before.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{
    negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

/// How long a client has to finish startup (pgwire's limit).
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A socket whose writes are kept while [`Coalesce::held`] and sent by the first flush
/// after it is cleared.
pub(crate) struct Coalesce<S> {
    io: S,
    /// Written by the codec, not yet sent; `buf[sent..]` remains.
    buf: Vec<u8>,
    sent: usize,
    held: bool,
}

impl<S> Coalesce<S> {
    /// What is kept before it is sent even while held (as a full socket buffer would).
    pub(crate) const LIMIT: usize = 64 * 1024;

    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
            sent: 0,
            held: false,
        }
    }

    /// Whether bytes wait to be sent.
    fn pending(&self) -> bool {
        self.sent < self.buf.len()
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Sends everything kept.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > Self::LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() >= Self::LIMIT {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        if !this.held && !this.pending() {
            return Pin::new(&mut this.io).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

type Socket<St> = Framed<Coalesce<MaybeTls>, PgWireMessageServerCodec<St>>;

/// Whether a message's answer waits for the next Sync or Flush (as PostgreSQL's does).
fn batched(msg: &PgWireFrontendMessage) -> bool {
    matches!(
        msg,
        PgWireFrontendMessage::Parse(_)
            | PgWireFrontendMessage::Bind(_)
            | PgWireFrontendMessage::Describe(_)
            | PgWireFrontendMessage::Execute(_)
            | PgWireFrontendMessage::Close(_)
    )
}

/// Serves one TCP connection: pgwire's `process_socket` with answers coalesced.
pub(crate) async fn process_socket<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls(tcp, tls) => s?,
    };
    // A direct TLS handshake without TLS configured.
    let Some(framed) = negotiated else {
        return Ok(());
    };
    let old = framed.into_parts();
    let mut parts = FramedParts::new(Coalesce::new(old.io), old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket: Socket<_> = Framed::from_parts(parts);

    let startup_handler = handlers.startup_handler();
    let simple_query_handler = handlers.simple_query_handler();
    let extended_query_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    let error_handler = handlers.error_handler();
    loop {
        let msg = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                _ = &mut startup_timeout => None,
                msg = socket.next() => msg,
            }
        } else {
            socket.next().await
        };
        let Some(Ok(msg)) = msg else {
            break;
        };
        // The client is disconnecting: close (asyncpg waits for the server to).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_copy = matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let held = !in_copy && batched(&msg);
        socket.get_mut().held = held;
        let r = process_message(
            msg,
            &mut socket,
            startup_handler.clone(),
            simple_query_handler.clone(),
            extended_query_handler.clone(),
            copy_handler.clone(),
            cancel_handler.clone(),
        )
        .await;
        match r {
            Ok(()) => {
                // COPY FROM STDIN: the client waits for CopyInResponse before it sends.
                let copy = matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
                if !held || copy {
                    socket.get_mut().held = false;
                    if socket.get_ref().pending() || !socket.write_buffer().is_empty() {
                        socket.flush().await?;
                    }
                }
            }
            Err(mut e) => {
                // PostgreSQL sends ErrorResponse at once.
                socket.get_mut().held = false;
                error_handler.on_error(&socket, &mut e);
                process_error(&mut socket, e, is_extended_query).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the socket.
    struct Counting {
        writes: usize,
        data: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.data.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn held_writes_go_out_together_at_the_next_flush() {
        let mut c = Coalesce::new(Counting {
            writes: 0,
            data: vec![],
        });
        c.held = true;
        c.write_all(b"parse").await.unwrap();
        c.flush().await.unwrap();
        c.write_all(b"bind").await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(c.io.writes, 0);
        c.held = false;
        c.write_all(b"ready").await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(c.io.writes, 1);
        assert_eq!(c.io.data, b"parsebindready");
        // Not held and nothing kept: straight through.
        c.write_all(b"x").await.unwrap();
        assert_eq!(c.io.writes, 2);
    }

    #[tokio::test]
    async fn a_full_buffer_is_sent_even_while_held() {
        let mut c = Coalesce::new(Counting {
            writes: 0,
            data: vec![],
        });
        c.held = true;
        let chunk = vec![7u8; 10_000];
        for _ in 0..10 {
            c.write_all(&chunk).await.unwrap();
        }
        assert!(c.io.writes >= 1);
        assert!(c.buf.len() <= Coalesce::<Counting>::LIMIT);
        c.held = false;
        c.flush().await.unwrap();
        assert_eq!(c.io.data.len(), 100_000);
        let big = vec![1u8; 100_000];
        c.held = true;
        c.write_all(&big).await.unwrap();
        assert_eq!(c.io.data.len(), 200_000);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut c = Coalesce::new(a);
        b.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    }
}
