//! The metrics time-series database: an in-memory head of compressed chunks
//! backed by the WAL, flushed into immutable blocks per time range that are
//! compacted into larger ones and deleted whole by retention.

pub mod block;
pub mod chunk;
