//! Helpers shared by the compat tests and the benchmarks: free ports,
//! processes that are killed when dropped, readiness waits, peer lookup,
//! comparing Prometheus answers, and the Prometheus-scrapes-and-remote-writes
//! setup. Included with `#[path]` by each test or bench, so not every item is
//! used by every includer.
#![allow(dead_code)]

pub mod compare;
pub mod procs;
pub mod scrape;
