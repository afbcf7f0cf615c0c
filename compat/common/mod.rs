//! Helpers shared by the compat tests and the benchmarks: free ports,
//! processes that are killed when dropped, readiness waits, and peer lookup.
//! Included with `#[path]` by each test or bench, so not every item is used
//! by every includer.
#![allow(dead_code)]

pub mod procs;
