//! Query engines over the storage core: PromQL (and later LogQL and the
//! Elasticsearch DSL).

pub mod promql;
