//! `muster snapshot save|restore|inspect`, as `consul snapshot`: save
//! streams `GET /v1/snapshot` into a temporary file beside FILE, checks it
//! whole, then renames it into place; restore streams FILE to
//! `PUT /v1/snapshot`; inspect reads an archive offline and prints its
//! metadata and what it holds (Consul's layout, or `-format=json`). Long
//! transfers print their progress on stderr once a second.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use muster_api::snapshot::archive::{self, ArchiveMeta};
use muster_engine::backup::state::{Record, StateReader};
use muster_engine::backup::StateCounts;
use serde_json::json;

use super::http::{Client, HttpArgs};
use super::members::block_on;
use super::table::columnize;

/// `muster snapshot`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The `snapshot` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save a point-in-time snapshot of the whole state into FILE (written
    /// to FILE.tmp, checked, then renamed).
    Save(SaveArgs),
    /// Restore FILE into the cluster (replaces the whole state).
    Restore(RestoreArgs),
    /// Print what a snapshot file holds (offline).
    Inspect(InspectArgs),
}

/// `snapshot save`.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Let any server answer, not only the leader.
    #[arg(long)]
    pub stale: bool,
    /// The file to write.
    pub file: PathBuf,
}

/// `snapshot restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The snapshot file.
    pub file: PathBuf,
}

/// `snapshot inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Also count KV entries by key prefix.
    #[arg(long)]
    pub kvdetails: bool,
    /// With -kvdetails: how many `/`-separated key segments make a prefix.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub kvdepth: usize,
    /// With -kvdetails: only keys under this prefix.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub kvfilter: String,
    /// Output format: pretty (Consul's tables) or json.
    #[arg(long, default_value = "pretty", value_name = "FORMAT")]
    pub format: String,
    /// The snapshot file.
    pub file: PathBuf,
}

/// `muster snapshot`.
pub fn run(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SnapshotCommand::Save(a) => block_on(save(a)),
        SnapshotCommand::Restore(a) => block_on(restore(a)),
        SnapshotCommand::Inspect(a) => inspect(&a),
    }
}

/// Prints `what: N MiB` on stderr at most once a second.
struct Progress {
    what: &'static str,
    last: Instant,
    bytes: u64,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        Progress {
            what,
            last: Instant::now(),
            bytes: 0,
        }
    }

    fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            eprintln!(
                "{}: {:.1} MiB",
                self.what,
                self.bytes as f64 / f64::from(1 << 20)
            );
        }
    }
}

/// The checked contents of an archive: its metadata and what its state
/// holds.
struct Checked {
    meta: ArchiveMeta,
    counts: StateCounts,
    kv: BTreeMap<String, (u64, u64)>,
}

/// Read and check a whole archive: the container, the sums and every
/// record of the state. With `kv`, count KV entries by prefix.
fn check(path: &Path, kv: Option<(usize, &str)>) -> anyhow::Result<Checked> {
    let file = File::open(path).with_context(|| format!("Error opening {}", path.display()))?;
    let (meta, _, state) = archive::unpack_checked(BufReader::new(file))
        .map_err(|e| anyhow!("Error verifying snapshot {}: {e}", path.display()))?;
    let mut reader = StateReader::new(BufReader::new(state))
        .map_err(|e| anyhow!("Error verifying snapshot {}: {e}", path.display()))?;
    let mut counts = StateCounts::default();
    let mut by_prefix: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        let raw = match reader.next_raw() {
            Ok(Some(raw)) => raw.to_vec(),
            Ok(None) => break,
            Err(e) => bail!("Error verifying snapshot {}: {e}", path.display()),
        };
        let record = muster_engine::backup::state::decode_record(&raw)
            .map_err(|e| anyhow!("Error verifying snapshot {}: {e}", path.display()))?;
        counts.add(record.kind(), raw.len());
        if let (Some((depth, filter)), Record::Kv(e)) = (kv, &record) {
            if e.key.starts_with(filter) {
                let prefix: Vec<&str> = e.key.split('/').take(depth.max(1)).collect();
                let slot = by_prefix.entry(prefix.join("/")).or_default();
                slot.0 += 1;
                slot.1 += raw.len() as u64;
            }
        }
    }
    Ok(Checked {
        meta,
        counts,
        kv: by_prefix,
    })
}

async fn save(args: SaveArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.http)?;
    let path = if args.stale {
        "/v1/snapshot?stale"
    } else {
        "/v1/snapshot"
    };
    let empty = http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let resp = client.request_stream(Method::GET, path, empty).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "Error saving snapshot: Unexpected response code: {} ({})",
            status.as_u16(),
            String::from_utf8_lossy(&text).trim()
        );
    }
    let tmp = tmp_path(&args.file);
    let mut out = BufWriter::new(
        File::create(&tmp).with_context(|| format!("Error creating {}", tmp.display()))?,
    );
    let mut progress = Progress::new("Saving snapshot");
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow!("Error saving snapshot: {e}"))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .with_context(|| format!("Error writing {}", tmp.display()))?;
            progress.add(data.len());
        }
    }
    out.into_inner()
        .map_err(|e| anyhow!("Error writing {}: {e}", tmp.display()))?
        .sync_all()
        .with_context(|| format!("Error writing {}", tmp.display()))?;
    let checked = match check(&tmp, None) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &args.file).with_context(|| {
        format!(
            "Error renaming {} to {}",
            tmp.display(),
            args.file.display()
        )
    })?;
    println!(
        "Saved and verified snapshot to index {}",
        checked.meta.index
    );
    Ok(ExitCode::SUCCESS)
}

fn tmp_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    file.with_file_name(name)
}

/// A body streaming `file` in 64 KiB pieces from a blocking thread.
struct FileBody(tokio::sync::mpsc::Receiver<io::Result<Bytes>>);

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<io::Result<hyper::body::Frame<Bytes>>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|r| r.map(hyper::body::Frame::data)))
    }
}

async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.http)?;
    let mut file = File::open(&args.file)
        .with_context(|| format!("Error opening snapshot file {}", args.file.display()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut progress = Progress::new("Sending snapshot");
        loop {
            let mut buf = vec![0u8; 64 << 10];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    progress.add(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let resp = client
        .request_stream(Method::PUT, "/v1/snapshot", FileBody(rx).boxed_unsync())
        .await?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        bail!(
            "Error restoring snapshot: Unexpected response code: {} ({})",
            status.as_u16(),
            String::from_utf8_lossy(&text).trim()
        );
    }
    println!("Restored snapshot");
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let json = match args.format.as_str() {
        "pretty" => false,
        "json" => true,
        other => bail!("Error: invalid -format {other:?}: use pretty or json"),
    };
    let kv = args
        .kvdetails
        .then_some((args.kvdepth, args.kvfilter.as_str()));
    let c = check(&args.file, kv)?;
    let total: u64 = c.counts.by_kind.iter().map(|(_, _, b)| b).sum();
    let mut out = io::stdout().lock();
    if json {
        let stats: Vec<_> = c
            .counts
            .by_kind
            .iter()
            .map(|(name, count, sum)| json!({"Name": name, "Count": count, "Sum": sum}))
            .collect();
        let kv: Vec<_> =
            c.kv.iter()
                .map(|(name, (count, sum))| json!({"Name": name, "Count": count, "Sum": sum}))
                .collect();
        let doc = json!({
            "Meta": c.meta,
            "Stats": stats,
            "StatsKV": kv,
            "TotalSize": total,
            "TotalCount": c.counts.total(),
        });
        let text = serde_json::to_string_pretty(&doc).context("Error: encoding JSON")?;
        writeln!(out, "{text}").context("Error: cannot write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    let m = &c.meta;
    let head = columnize(&[
        vec![" ID".into(), m.id.clone()],
        vec![" Size".into(), m.size.to_string()],
        vec![" Index".into(), m.index.to_string()],
        vec![" Term".into(), m.term.to_string()],
        vec![" Version".into(), m.version.to_string()],
    ]);
    let dash = || vec![" ----".to_string(), "----".to_string(), "----".to_string()];
    let mut rows = vec![
        vec![" Type".to_string(), "Count".into(), "Size".into()],
        dash(),
    ];
    for (name, count, size) in &c.counts.by_kind {
        rows.push(vec![
            format!(" {name}"),
            count.to_string(),
            size.to_string(),
        ]);
    }
    rows.push(dash());
    rows.push(vec![
        " Total".into(),
        c.counts.total().to_string(),
        total.to_string(),
    ]);
    write!(out, "{head}\n{}", columnize(&rows)).context("Error: cannot write to stdout")?;
    if args.kvdetails {
        let mut rows = vec![
            vec![" Key Name".to_string(), "Count".into(), "Size".into()],
            dash(),
        ];
        for (name, (count, size)) in &c.kv {
            rows.push(vec![
                format!(" {name}"),
                count.to_string(),
                size.to_string(),
            ]);
        }
        let kv_total: u64 = c.kv.values().map(|(_, s)| s).sum();
        let kv_count: u64 = c.kv.values().map(|(n, _)| n).sum();
        rows.push(dash());
        rows.push(vec![
            " Total".into(),
            kv_count.to_string(),
            kv_total.to_string(),
        ]);
        write!(out, "\n{}", columnize(&rows)).context("Error: cannot write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}
