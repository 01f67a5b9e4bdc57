//! Hot-path metric handles. The `metrics` macros look a metric up in the
//! recorder's registries on every call (a key hash per recorder); on the
//! paths that run per request, per DNS question or per log entry that is
//! most of a metric's cost. [`timing!`] and [`count!`] keep the handle a
//! call site got in a thread-local cache instead, and register again only
//! when the agent installs a recorder ([`recorder_installed`]), so a
//! process that never installs one pays a thread-local read.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Call right after installing the global recorder: cached handles are
/// registered again with it.
pub fn recorder_installed() {
    GENERATION.fetch_add(1, Ordering::Release);
}

/// The recorder generation cached handles are checked against.
#[doc(hidden)]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// A duration in milliseconds (Consul's unit for timings).
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A count as a sample value.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn size(n: usize) -> f64 {
    n as f64
}

/// `timing!("consul.raft.commitTime", value)`: record `value` into the
/// histogram `name` (a string literal) through a cached handle.
#[macro_export]
macro_rules! timing {
    ($name:literal, $value:expr) => {{
        ::std::thread_local! {
            static HANDLE: ::std::cell::RefCell<(u64, ::metrics::Histogram)> =
                ::std::cell::RefCell::new((u64::MAX, ::metrics::Histogram::noop()));
        }
        let value: f64 = $value;
        HANDLE.with(|h| {
            let generation = $crate::generation();
            let mut h = h.borrow_mut();
            if h.0 != generation {
                *h = (generation, ::metrics::histogram!($name));
            }
            h.1.record(value);
        });
    }};
}

/// `count!("consul.raft.apply", n)`: increment the counter `name` (a
/// string literal) by `n` through a cached handle.
#[macro_export]
macro_rules! count {
    ($name:literal, $n:expr) => {{
        ::std::thread_local! {
            static HANDLE: ::std::cell::RefCell<(u64, ::metrics::Counter)> =
                ::std::cell::RefCell::new((u64::MAX, ::metrics::Counter::noop()));
        }
        let n: u64 = $n;
        HANDLE.with(|h| {
            let generation = $crate::generation();
            let mut h = h.borrow_mut();
            if h.0 != generation {
                *h = (generation, ::metrics::counter!($name));
            }
            h.1.increment(n);
        });
    }};
}
