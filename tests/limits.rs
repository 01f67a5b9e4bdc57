//! Bounded resources per client: `limits.http_max_conns_per_client` caps
//! the HTTP connections one client address holds open; past it a new
//! connection is closed at once, and a slot comes back when a connection
//! closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{wait_until, Agent};

/// Whether a fresh connection is served: a GET answered with 200.
fn served(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /v1/status/leader HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

#[test]
fn a_client_cannot_hold_more_connections_than_its_limit() {
    let a = Agent::start_with_config(
        &["-dev"],
        false,
        r#"{"limits": {"http_max_conns_per_client": 3}}"#,
    );
    assert!(served(a.addr));
    // Three idle connections take every slot of this address.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(a.addr).expect("connect"))
        .collect();
    wait_until(
        "a fourth connection is refused",
        Duration::from_secs(5),
        || !served(a.addr),
    );
    // One closes: a new connection is served again.
    drop(held);
    wait_until("a slot comes back", Duration::from_secs(5), || {
        served(a.addr)
    });
}
