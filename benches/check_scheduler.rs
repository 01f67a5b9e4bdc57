//! Load probe for the check scheduler: one agent holding 10,000 TCP checks
//! (interval 10 s, jittered first runs) against a local listener. Prints the
//! process CPU time and RSS over a measurement window. Not criterion: the
//! figure is a steady-state cost, not a per-call latency.
//!
//! `cargo bench --bench check_scheduler` (env CHECKS=n, SECONDS=n to change).

use std::time::{Duration, Instant};

use muster_agent::{Agent, AgentConfig, CheckDefinition, CheckKind};
use muster_engine::{Engine, EngineConfig};

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz here).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let checks = env_or("CHECKS", 10_000);
    let seconds = env_or("SECONDS", 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            loop {
                if let Ok((sock, _)) = listener.accept().await {
                    drop(sock);
                }
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(EngineConfig::new(dir.path(), "bench"))
            .await
            .expect("engine");
        let defs: Vec<CheckDefinition> = (0..checks)
            .map(|i| CheckDefinition {
                id: format!("tcp-{i}"),
                name: format!("tcp {i}"),
                kind: CheckKind::Tcp {
                    addr: target.clone(),
                },
                interval: Duration::from_secs(10),
                ..CheckDefinition::default()
            })
            .collect();
        let rss_before = rss_mib();
        let start = Instant::now();
        // As from config files: one agent start, one sync.
        let agent = Agent::start(
            engine.clone(),
            AgentConfig::new("bench", "00000000-0000-0000-0000-000000000001", "dc1"),
            Vec::new(),
            defs,
        )
        .await
        .expect("agent");
        agent.sync_now().await.expect("sync");
        let registered = start.elapsed();
        // Let the jittered first runs spread out, then measure steady state.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu = cpu_seconds() - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let passing = agent
            .checks()
            .values()
            .filter(|c| c.status == muster_engine::Status::Passing)
            .count();
        println!(
            "check_scheduler: {checks} TCP checks every 10 s; registered in {:.1} s; \
             steady state over {wall:.0} s: CPU {:.1}% of one core ({:.0} probes/s), \
             RSS {:.0} MiB (before registering: {:.0} MiB); passing: {passing}",
            registered.as_secs_f64(),
            100.0 * cpu / wall,
            checks as f64 / 10.0,
            rss_mib(),
            rss_before,
        );
        agent.shutdown().await;
        engine.shutdown().await.expect("shutdown");
    });
}
