//! The seam where the binary's TLS wraps server-port connections: a
//! [`Transport`] turns an accepted or a connected TCP stream into the
//! stream RPC speaks HTTP/2 over. The engine knows no TLS: without a
//! transport (tests, agents with no `tls` settings) connections are plain
//! TCP (h2c).
//!
//! The transport is process-wide, set once at start with
//! [`set_transport`] before the first RPC (one agent per process); it can
//! change its certificates itself (on reload), never be replaced.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::BoxFuture;

/// A byte stream an RPC connection runs over.
pub trait RpcStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> RpcStream for T {}

/// What wraps server-port connections (the binary's TLS).
pub trait Transport: Send + Sync + 'static {
    /// An accepted connection → the stream to serve, or `Err` to drop it
    /// (e.g. plain TCP when TLS is required).
    fn accept(&self, tcp: TcpStream) -> BoxFuture<'static, io::Result<Box<dyn RpcStream>>>;
    /// A connection to a server → the stream to call over.
    fn connect(&self, tcp: TcpStream) -> BoxFuture<'static, io::Result<Box<dyn RpcStream>>>;
}

/// The process's transport, if one was set.
static TRANSPORT: OnceLock<Arc<dyn Transport>> = OnceLock::new();

/// Set the process's transport (once, before the first RPC). `Err`: one
/// was already set.
pub fn set_transport(transport: Arc<dyn Transport>) -> Result<(), &'static str> {
    TRANSPORT
        .set(transport)
        .map_err(|_| "the RPC transport is already set")
}

/// The process's transport, if any.
pub(crate) fn transport() -> Option<Arc<dyn Transport>> {
    TRANSPORT.get().cloned()
}

/// hyper-util's connector for RPC clients: TCP, then the transport.
#[derive(Clone)]
pub(crate) struct Connector {
    /// Makes the TCP connection.
    http: HttpConnector,
}

impl Connector {
    /// Over `http`.
    pub(crate) fn new(http: HttpConnector) -> Connector {
        Connector { http }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Conn, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let stream: Box<dyn RpcStream> = match transport() {
                Some(t) => t.connect(tcp).await?,
                None => Box::new(tcp),
            };
            Ok(Conn(TokioIo::new(stream)))
        })
    }
}

/// One client connection, over whatever the transport made.
pub(crate) struct Conn(TokioIo<Box<dyn RpcStream>>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
