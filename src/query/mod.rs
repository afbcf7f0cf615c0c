//! Query engines over the storage core: PromQL, LogQL (and later the
//! Elasticsearch DSL).

pub mod logql;
pub mod promql;
