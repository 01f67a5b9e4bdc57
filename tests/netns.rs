//! Network namespaces a test creates and removes, for what loopback
//! cannot show: a host's own addresses (the private address an agent
//! advertises), fixed ports (Consul's defaults, as the README runs them),
//! links to cut. Creating them needs root and iproute2 (`ip`); callers skip
//! with a message when [`Netns::create`] returns `None`.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{request, Response};

/// Run `ip` with `args`; true on success.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One namespace with its loopback up; removed on drop.
pub struct Netns {
    /// Its name (`ip netns exec <name> ...`).
    pub name: String,
}

impl Netns {
    /// A fresh namespace, or `None` without root or `ip`.
    pub fn create() -> Option<Netns> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mt{}-{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]).then_some(ns)
    }

    /// Give the namespace the address `cidr` (e.g. `10.77.0.5/24`) on a
    /// veth pair of its own, both ends inside (no link leaves the
    /// namespace; veth needs no kernel module that may be missing).
    pub fn add_address(&self, cidr: &str) -> bool {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let k = SEQ.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (format!("va{k}"), format!("vb{k}"));
        let n = self.name.as_str();
        ip(&[
            "-n", n, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ]) && ip(&["-n", n, "addr", "add", cidr, "dev", &a])
            && ip(&["-n", n, "link", "set", &a, "up"])
            && ip(&["-n", n, "link", "set", &b, "up"])
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]);
    }
}

/// Run `f` on a thread inside namespace `ns` (its sockets live there);
/// `None` if the namespace cannot be entered or `f` panicked.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let ns_path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&ns_path).ok()?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .ok()?;
        Some(f())
    })
    .join()
    .ok()
    .flatten()
}

/// One HTTP request made from inside namespace `ns`, so an agent there can
/// be asked.
pub fn request_in(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Response> {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_vec());
    in_netns(ns, move || request(addr, &method, &path, &body).ok()).flatten()
}
