//! TCP checks: connect to `host:port` (IPv4, `[v6]:port` or a name) within
//! the timeout. Connected is passing (`TCP connect <addr>: Success`);
//! anything else is critical. Nothing is written on the connection.

use std::time::Duration;

use tokio::net::TcpStream;

use super::CheckResult;

/// Run the check once.
pub(super) async fn run(addr: &str, timeout: Duration) -> CheckResult {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => CheckResult::passing(format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => CheckResult::critical(format!("dial tcp {addr}: {e}")),
        Err(_) => CheckResult::critical(format!("dial tcp {addr}: i/o timeout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_engine::Status;
    use std::error::Error;
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn tcp_open_then_closed() -> Result<(), Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        assert_eq!(
            run(&addr, T).await,
            CheckResult::passing(format!("TCP connect {addr}: Success"))
        );
        drop(listener);
        let r = run(&addr, T).await;
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.output.starts_with(&format!("dial tcp {addr}: ")),
            "{}",
            r.output
        );
        Ok(())
    }

    #[tokio::test]
    async fn tcp_ipv6() -> Result<(), Box<dyn Error>> {
        // Some sandboxes have no IPv6 loopback; nothing to test there.
        let Ok(listener) = TcpListener::bind("[::1]:0").await else {
            return Ok(());
        };
        let addr = format!("[::1]:{}", listener.local_addr()?.port());
        assert_eq!(
            run(&addr, T).await,
            CheckResult::passing(format!("TCP connect {addr}: Success"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn tcp_bad_addresses_are_critical() {
        for addr in ["", "nohostport", "127.0.0.1:notaport", "::1:80", "[::1]"] {
            assert_eq!(run(addr, T).await.status, Status::Critical, "{addr}");
        }
    }
}
