//! One HTTP/1.1 keep-alive connection (hyper's low-level client), used by
//! every HTTP workload against both servers.
//!
//! A [`Conn`] carries one request at a time, as a load-generator client
//! does; it never reconnects on its own (a dropped connection is an error
//! the caller counts).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A finished exchange: status, the headers the harness reads, and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// `X-Consul-Index`, when present and numeric.
    pub consul_index: Option<u64>,
    /// The whole body, as sent (still compressed if the server gzipped it).
    pub body: Bytes,
    /// `Content-Encoding`, when present.
    pub content_encoding: Option<String>,
}

/// One open connection.
pub struct Conn {
    /// hyper's request half; the connection task runs on its own.
    sender: SendRequest<Full<Bytes>>,
    /// `Host` header value (`127.0.0.1:port`).
    host: HeaderValue,
}

impl Conn {
    /// Connect to `addr` (TCP_NODELAY on) and start the connection task.
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the peer
            // closes; either way the next request on it reports the error.
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    /// Send one request and read the whole reply.
    pub async fn request(&mut self, method: Method, path: &str, body: Bytes) -> Result<Reply> {
        self.request_with(method, path, body, &[]).await
    }

    /// [`Conn::request`] with extra request headers.
    pub async fn request_with(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(hyper::header::HeaderName, HeaderValue)],
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body))?;
        req.headers_mut().insert(HOST, self.host.clone());
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        self.sender.ready().await.context("connection closed")?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let consul_index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let content_encoding = resp
            .headers()
            .get(hyper::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            consul_index,
            body,
            content_encoding,
        })
    }
}
