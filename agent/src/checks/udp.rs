//! UDP checks: send one datagram to `host:port` from a connected socket and
//! wait for the timeout. A reply, or silence until the timeout, is passing
//! (`UDP connect <addr>: Success`), as in Consul: UDP has no handshake. An
//! error, typically an ICMP port-unreachable surfacing as "connection
//! refused" on the receive, is critical.

use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::CheckResult;

/// The datagram sent.
const PAYLOAD: &[u8] = b"ping";

/// Run the check once.
pub(super) async fn run(addr: &str, timeout: Duration) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let setup = async {
        let target = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("no address found"))?;
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(target).await?;
        socket.send(PAYLOAD).await?;
        Ok::<_, std::io::Error>(socket)
    };
    let socket = match tokio::time::timeout_at(deadline, setup).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return CheckResult::critical(format!("UDP connect {addr}: {e}")),
        Err(_) => return CheckResult::critical(format!("UDP connect {addr}: i/o timeout")),
    };
    let mut buf = [0u8; 1024];
    match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
        Ok(Ok(_)) | Err(_) => CheckResult::passing(format!("UDP connect {addr}: Success")),
        Ok(Err(e)) => CheckResult::critical(format!("UDP connect {addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_engine::Status;
    use std::error::Error;
    use std::time::Instant as StdInstant;

    type TestResult = Result<(), Box<dyn Error>>;

    #[tokio::test]
    async fn udp_reply_is_passing() -> TestResult {
        let server = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = server.local_addr()?.to_string();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            if let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(buf.get(..n).unwrap_or_default(), from).await;
            }
        });
        let start = StdInstant::now();
        let r = run(&addr, Duration::from_secs(5)).await;
        assert_eq!(
            r,
            CheckResult::passing(format!("UDP connect {addr}: Success"))
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a reply ends the wait"
        );
        Ok(())
    }

    #[tokio::test]
    async fn udp_silence_is_passing() -> TestResult {
        let server = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = server.local_addr()?.to_string();
        let r = run(&addr, Duration::from_millis(200)).await;
        assert_eq!(
            r,
            CheckResult::passing(format!("UDP connect {addr}: Success"))
        );
        drop(server);
        Ok(())
    }

    #[tokio::test]
    async fn udp_refused_is_critical() -> TestResult {
        let server = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = server.local_addr()?.to_string();
        drop(server);
        let r = run(&addr, Duration::from_secs(2)).await;
        assert_eq!(r.status, Status::Critical, "{}", r.output);
        assert!(
            r.output.starts_with(&format!("UDP connect {addr}: ")),
            "{}",
            r.output
        );
        Ok(())
    }

    #[tokio::test]
    async fn udp_bad_address_is_critical() {
        let r = run("not-an-address", Duration::from_secs(1)).await;
        assert_eq!(r.status, Status::Critical);
    }
}
