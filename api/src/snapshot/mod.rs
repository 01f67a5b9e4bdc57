//! `/v1/snapshot` (Consul's): `GET` streams an archive of the whole state
//! as of one consistent read (`?stale` lets a follower answer), `PUT`
//! restores one into the cluster through the log. Both stream: the state
//! goes through a temporary file and small buffers, never whole into
//! memory. The archive format is `archive.rs`'s.

pub mod archive;

use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use muster_engine::backup::state::StateReader;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::response::{self, Body, X_CONSUL_INDEX};
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, Call, Route};
use archive::{ArchiveMeta, HashWriter};

/// How often long work logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Bytes per streamed piece of an archive.
const PIECE: usize = 64 << 10;

/// A streamed body fed from a blocking writer.
struct ChannelBody(mpsc::Receiver<io::Result<Bytes>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|r| r.map(Frame::data)))
    }
}

/// The writing end of a [`ChannelBody`]: sends [`PIECE`]-sized pieces,
/// blocking while the client reads slower (memory stays a few pieces).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("snapshot task failed: {e}"))
}

/// `GET /v1/snapshot`.
async fn save(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    // The consistency gate as for any read (`?stale` skips the leader).
    ctx.begin_read().await?;
    let engine = ctx.engine.clone();
    let started = Instant::now();
    let (meta, hash, file) = tokio::task::spawn_blocking(move || -> Result<_> {
        let file = tempfile::tempfile()
            .map_err(|e| Error::Internal(format!("snapshot: cannot make a temporary file: {e}")))?;
        let mut last = Instant::now();
        let (header, counts, w) = engine.write_state(
            HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            |records| {
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    tracing::info!(records, "writing snapshot");
                }
            },
        )?;
        let (hash, size, w) = w.finish();
        let mut file = w
            .into_inner()
            .map_err(|e| Error::Internal(format!("snapshot: {e}")))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::Internal(format!("snapshot: {e}")))?;
        let created = header.created_unix_ms;
        let meta = ArchiveMeta {
            id: format!("{}-{}-{created}", header.term, header.index),
            size,
            index: header.index,
            term: header.term,
            version: archive::VERSION,
        };
        tracing::info!(
            index = meta.index,
            records = counts.total(),
            bytes = size,
            "snapshot state written"
        );
        Ok((meta, hash, file))
    })
    .await
    .map_err(blocking_failed)??;
    let (tx, rx) = mpsc::channel(4);
    let index = meta.index;
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        let written = archive::write_archive(&mut w, &meta, BufReader::new(file), meta.size, &hash)
            .and_then(|()| w.flush());
        match written {
            Ok(()) => tracing::info!(
                index = meta.index,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot saved"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "snapshot stream stopped");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let mut resp = Response::new(Body::stream(ChannelBody(rx)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    h.insert(X_CONSUL_INDEX, HeaderValue::from(index.max(1)));
    Ok(resp)
}

/// `PUT /v1/snapshot`: the body is an archive.
async fn restore(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Error::Internal(format!("{what}: {e}"));
    // The body, to a file: it can be larger than memory.
    let mut archive_file = tokio::fs::File::from_std(
        tempfile::tempfile().map_err(|e| internal("snapshot restore: temporary file", &e))?,
    );
    let mut body = call.req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad_request(format!("reading the snapshot: {e}")))?;
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            tokio::io::AsyncWriteExt::write_all(&mut archive_file, &data)
                .await
                .map_err(|e| internal("snapshot restore: writing the upload", &e))?;
        }
    }
    let mut archive_file = archive_file.into_std().await;
    // Check all of it before anything changes.
    let (meta, hash, state_file) = tokio::task::spawn_blocking(move || -> Result<_> {
        archive_file
            .seek(SeekFrom::Start(0))
            .map_err(|e| internal("snapshot restore", &e))?;
        archive::unpack_checked(BufReader::new(&archive_file))
            .map_err(|e| Error::bad_request(format!("Invalid snapshot: {e}")))
    })
    .await
    .map_err(blocking_failed)??;
    tracing::info!(
        id = %meta.id,
        index = meta.index,
        archive_bytes = received,
        "restoring snapshot"
    );
    let reader = StateReader::new(BufReader::with_capacity(1 << 20, state_file))
        .map_err(|e| Error::bad_request(format!("Invalid snapshot: {e}")))?;
    let mut last = Instant::now();
    let records = ctx
        .engine
        .restore_state(reader, hash, |p| {
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                tracing::info!(records = p.records, bytes = p.bytes, "restoring snapshot");
            }
        })
        .await?;
    tracing::info!(id = %meta.id, records, "snapshot restored");
    Ok(response::text(StatusCode::OK, Bytes::new()))
}

/// `/v1/snapshot`.
pub(crate) const ROUTES: &[Route] = &[exact(
    "/v1/snapshot",
    "OPTIONS,GET,PUT",
    on_cluster!(|ctx, c| {
        if c.method == hyper::Method::PUT {
            restore(ctx, c).await
        } else {
            save(ctx).await
        }
    }),
)];
