//! Accepting connections with bounds: at most `maxConnections` open at once, and each must send
//! its first bytes (the HTTP/2 preface) within `handshakeTimeout`. Without these, idle or
//! half-open connections accumulate until the open-file limit locks every client out, without a
//! word in the log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::TransportConfig;

/// The HTTP/2 client preface is 24 bytes: once they have arrived the connection is speaking
/// HTTP/2, and from then on keepalive pings and the call timeout govern it. An HTTP/1.1 request
/// (HTTP/JSON) passes the same way: its request line and first header are longer than that.
const HANDSHAKE_BYTES: usize = 24;

/// File descriptors kept for everything but connections: the ledger, the Maildir, logs, SMTP.
const RESERVED_FDS: u64 = 128;

/// A connection that holds one of the `maxConnections` permits while it is open.
pub struct BoundedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Armed until HANDSHAKE_BYTES have been read.
    handshake: Option<(Pin<Box<Sleep>>, usize)>,
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some((deadline, received)) = &mut self.handshake {
            if let Poll::Ready(Ok(())) = read {
                *received += buf.filled().len() - before;
                if *received >= HANDSHAKE_BYTES {
                    self.handshake = None;
                }
                return read;
            }
            // Polling the deadline registers this task to be woken when it passes.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within transport.handshakeTimeout",
                )));
            }
        }
        read
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for BoundedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// The soft open-file limit of this process, from /proc (Linux); None elsewhere.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many connections may be open at once: the configured maximum, lowered (with a warning)
/// to what the open-file limit can hold.
pub fn connection_limit(transport: &TransportConfig) -> usize {
    let wanted = transport.max_connections;
    match open_file_limit() {
        Some(limit) if (wanted as u64) + RESERVED_FDS > limit => {
            let fits = limit.saturating_sub(RESERVED_FDS).max(1) as usize;
            tracing::warn!(
                open_file_limit = limit,
                max_connections = wanted,
                using = fits,
                "the open-file limit cannot hold transport.maxConnections; raise `ulimit -n` \
                 (LimitNOFILE=) or lower maxConnections"
            );
            fits
        }
        _ => wanted,
    }
}

/// Accepts from `listener` for ever, yielding connections within the bounds. A connection over
/// the limit is closed at once (its client sees the connection reset and can try elsewhere);
/// accept errors, such as running out of file descriptors, are logged and waited out.
pub fn incoming(
    listener: TcpListener,
    transport: &TransportConfig,
) -> impl Stream<Item = io::Result<BoundedStream>> {
    let limit = connection_limit(transport);
    let permits = Arc::new(Semaphore::new(limit));
    let handshake = transport.handshake_timeout;
    let keepalive = socket2::TcpKeepalive::new().with_time(transport.keepalive_interval);
    let state = (listener, permits, None::<Instant>);
    futures::stream::unfold(state, move |(listener, permits, mut last_warning)| {
        let keepalive = keepalive.clone();
        async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            tracing::error!(
                                error = %e,
                                open_file_limit = ?open_file_limit(),
                                "cannot accept connections; if this is 'Too many open files', \
                                 raise `ulimit -n` or lower transport.maxConnections"
                            );
                            last_warning = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(
                            %peer,
                            limit,
                            "connection limit reached; closing new connections until some end \
                             (transport.maxConnections)"
                        );
                        last_warning = Some(Instant::now());
                    }
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive);
                let stream = BoundedStream {
                    inner: socket,
                    _permit: permit,
                    handshake: Some((Box::pin(tokio::time::sleep(handshake)), 0)),
                };
                return Some((Ok(stream), (listener, permits, last_warning)));
            }
        }
    })
}
