//! Tests of check scheduling and result handling (the runners test
//! themselves beside their code).

use super::*;
use std::error::Error;
use std::time::Instant;

type TestResult = Result<(), Box<dyn Error>>;

fn def_with(sbp: u32, fbw: u32, fbc: u32) -> CheckDefinition {
    CheckDefinition {
        success_before_passing: sbp,
        failures_before_warning: fbw,
        failures_before_critical: fbc,
        ..CheckDefinition::default()
    }
}

#[test]
fn thresholds_default_publish_every_result() {
    let mut t = Thresholds::new(&def_with(0, 0, 0));
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    assert_eq!(t.observe(Status::Warning), Some(Status::Warning));
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
}

#[test]
fn thresholds_start_saturated() {
    let mut t = Thresholds::new(&def_with(3, 0, 3));
    // The first result applies at once, whichever it is.
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    let mut t = Thresholds::new(&def_with(3, 0, 3));
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
}

#[test]
fn thresholds_success_before_passing() {
    let mut t = Thresholds::new(&def_with(2, 0, 1));
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
    assert_eq!(t.observe(Status::Passing), None);
    assert_eq!(t.observe(Status::Warning), Some(Status::Warning));
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
}

#[test]
fn thresholds_failures_before_warning_and_critical() {
    let mut t = Thresholds::new(&def_with(0, 2, 3));
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    assert_eq!(t.observe(Status::Critical), None);
    assert_eq!(t.observe(Status::Critical), Some(Status::Warning));
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
    // A success resets the failure count.
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    assert_eq!(t.observe(Status::Critical), None);
}

#[test]
fn thresholds_warning_defaults_to_critical_count() {
    let mut t = Thresholds::new(&def_with(0, 0, 2));
    assert_eq!(t.observe(Status::Passing), Some(Status::Passing));
    assert_eq!(t.observe(Status::Critical), None);
    assert_eq!(t.observe(Status::Critical), Some(Status::Critical));
}

#[test]
fn truncate_script_keeps_tail_with_prefix() {
    let kind = CheckKind::Script { args: vec![] };
    assert_eq!(truncate_output(&kind, "short", 10), "short");
    assert_eq!(
        truncate_output(&kind, "0123456789abcdef", 4),
        "Captured 4 of 16 bytes\n...\ncdef"
    );
}

#[test]
fn truncate_http_keeps_body_tail() {
    let kind = CheckKind::Http {
        url: String::new(),
        method: String::new(),
        header: Default::default(),
        body: String::new(),
        tls_server_name: String::new(),
        tls_skip_verify: false,
        disable_redirects: false,
    };
    let out = "HTTP GET http://x/: 200 OK Output: 0123456789";
    assert_eq!(
        truncate_output(&kind, out, 4),
        "HTTP GET http://x/: 200 OK Output: 6789"
    );
    // Body within the cap: unchanged even if the whole line is longer.
    assert_eq!(truncate_output(&kind, out, 12), out);
}

#[test]
fn truncate_others_keep_head_with_suffix() {
    let kind = CheckKind::Ttl {
        ttl: Duration::from_secs(1),
    };
    assert_eq!(
        truncate_output(&kind, "0123456789", 4),
        "0123 ... (captured 4 of 10 bytes)"
    );
    assert_eq!(truncate_output(&kind, "", 0), "");
}

#[test]
fn truncate_respects_utf8_boundaries() {
    let s = "ééééé"; // 10 bytes
    let head = truncate_output(
        &CheckKind::Tcp {
            addr: String::new(),
        },
        s,
        3,
    );
    assert_eq!(head, "é ... (captured 2 of 10 bytes)");
    let tail = truncate_output(&CheckKind::Script { args: vec![] }, s, 3);
    assert_eq!(tail, "Captured 2 of 10 bytes\n...\né");
    for max in 0..12 {
        for kind in [
            CheckKind::Tcp {
                addr: String::new(),
            },
            CheckKind::Script { args: vec![] },
        ] {
            let _ = truncate_output(&kind, s, max);
        }
    }
}

#[test]
fn tail_buf_keeps_last_bytes_and_counts_all() {
    let mut b = TailBuf::new(4);
    for _ in 0..5000 {
        b.push(b"abc");
    }
    assert_eq!(b.captured(), "Captured 4 of 15000 bytes\n...\ncabc");
    assert!(b.buf.len() <= 8192 + 3);
    let mut b = TailBuf::new(0);
    b.push(b"x");
    assert_eq!(b.captured(), "Captured 0 of 1 bytes\n...\n");
}

#[test]
fn output_cap_is_the_smaller() {
    let ctx = RunnerContext::default();
    let mut def = CheckDefinition::default();
    assert_eq!(output_max_size(&def, &ctx), DEFAULT_OUTPUT_MAX_SIZE);
    def.output_max_size = 100;
    assert_eq!(output_max_size(&def, &ctx), 100);
    def.output_max_size = 100_000;
    assert_eq!(output_max_size(&def, &ctx), DEFAULT_OUTPUT_MAX_SIZE);
}

#[tokio::test]
async fn probe_refuses_non_interval_kinds() {
    let ctx = RunnerContext::default();
    for kind in [
        CheckKind::Unset,
        CheckKind::Ttl {
            ttl: Duration::from_secs(1),
        },
        CheckKind::Alias {
            service: "x".into(),
            node: String::new(),
        },
    ] {
        let r = probe(&kind, Duration::from_secs(1), &ctx).await;
        assert_eq!(r, CheckResult::critical("not an interval check"));
    }
}

#[tokio::test]
async fn scheduler_runs_repeatedly_and_stops_on_drop() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let def = CheckDefinition {
        id: "tcp1".into(),
        kind: CheckKind::Tcp { addr: addr.clone() },
        interval: Duration::from_millis(100),
        timeout: Some(Duration::from_secs(1)),
        ..CheckDefinition::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let handle = spawn_interval(def, Arc::new(RunnerContext::default()), tx);
    for _ in 0..3 {
        let (id, r) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await?
            .ok_or("channel closed")?;
        assert_eq!(id, "tcp1");
        assert_eq!(r.status, Status::Passing);
        assert_eq!(r.output, format!("TCP connect {addr}: Success"));
    }
    // Jittered first run (< 100 ms) + two intervals, well under 2 s.
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(listener);
    let (_, r) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await?
        .ok_or("channel closed")?;
    assert_eq!(r.status, Status::Critical);
    drop(handle);
    // The aborted task drops its sender: the channel drains and closes.
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while rx.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok());
    Ok(())
}

#[tokio::test]
async fn scheduler_ignores_non_interval_kinds() {
    let def = CheckDefinition {
        kind: CheckKind::Ttl {
            ttl: Duration::from_secs(1),
        },
        ..CheckDefinition::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _handle = spawn_interval(def, Arc::new(RunnerContext::default()), tx);
    assert!(rx.recv().await.is_none());
}
