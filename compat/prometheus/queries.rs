//! The fixed list of PromQL queries compared between Strata and Prometheus.
//! Every query must give Prometheus a non-empty answer on one minute of
//! node-exporter and self-scrape data at a 1 s scrape interval.

/// No query looks further back than this (range plus offset), in seconds.
/// The comparison window starts this long after the first sample, so no
/// range window holds the start of a series: there Prometheus 2.42 and 3.x
/// extrapolate `rate` differently (compat/prometheus.md).
pub const LONGEST_LOOKBACK_SECS: f64 = 40.0;

/// `(name, query)`; the name is what the report table prints.
pub const QUERIES: &[(&str, &str)] = &[
    // Raw selectors and matchers.
    ("up", "up"),
    ("gauge", "node_load1"),
    ("counter", "node_cpu_seconds_total"),
    ("eq matcher", r#"node_cpu_seconds_total{mode="idle"}"#),
    ("regex alternation", r#"node_cpu_seconds_total{mode=~"user|system"}"#),
    ("name regex", r#"{__name__=~"node_memory_Mem.*_bytes"}"#),
    ("neq matcher", r#"node_network_receive_bytes_total{device!="lo"}"#),
    ("summary quantile", r#"go_gc_duration_seconds{quantile="0.5"}"#),
    // Range functions.
    ("rate", "rate(node_cpu_seconds_total[30s])"),
    ("irate", "irate(node_cpu_seconds_total[30s])"),
    ("rate self", "rate(prometheus_http_requests_total[20s])"),
    ("increase", "increase(node_network_receive_packets_total[30s])"),
    ("rate offset", "rate(node_cpu_seconds_total[30s] offset 10s)"),
    ("avg_over_time", "avg_over_time(scrape_samples_scraped[20s])"),
    ("max_over_time", "max_over_time(scrape_duration_seconds[20s])"),
    ("delta", "delta(process_resident_memory_bytes[20s])"),
    ("deriv", "deriv(process_resident_memory_bytes[30s])"),
    // Aggregations.
    ("sum by", "sum by (mode) (rate(node_cpu_seconds_total[30s]))"),
    ("avg without", "avg without (cpu) (rate(node_cpu_seconds_total[30s]))"),
    ("max by", "max by (job) (scrape_duration_seconds)"),
    ("min by", "min by (job) (scrape_samples_scraped)"),
    ("count by", "count by (job) (up)"),
    ("sum all", "sum(up)"),
    ("topk", "topk(3, node_cpu_seconds_total)"),
    ("bottomk", r#"bottomk(1, node_cpu_seconds_total{mode="idle"})"#),
    ("stddev by", "stddev by (mode) (rate(node_cpu_seconds_total[30s]))"),
    ("quantile by", "quantile by (mode) (0.5, rate(node_cpu_seconds_total[30s]))"),
    // histogram_quantile over Prometheus's own histograms.
    (
        "hq sum by le",
        "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[30s])))",
    ),
    (
        "hq by handler",
        r#"histogram_quantile(0.5, sum by (le, handler) (rate(prometheus_http_request_duration_seconds_bucket{handler="/metrics"}[30s])))"#,
    ),
    (
        "hq raw buckets",
        "histogram_quantile(0.99, rate(prometheus_http_response_size_bytes_bucket[30s]))",
    ),
    // Binary operators and vector matching.
    ("ratio", "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
    (
        "scalar arith",
        r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[30s])))"#,
    ),
    (
        "on()",
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[30s])) / on(instance) sum by (instance) (rate(node_cpu_seconds_total[30s]))"#,
    ),
    (
        "ignoring()",
        "rate(node_network_receive_bytes_total[30s]) + ignoring(job) rate(node_network_transmit_bytes_total[30s])",
    ),
    (
        "group_left",
        r#"node_cpu_seconds_total{mode="idle"} / ignoring(mode) group_left sum without (mode) (node_cpu_seconds_total)"#,
    ),
    ("comparison filter", "up == 1"),
    ("bool comparison", "scrape_duration_seconds > bool 0.001"),
    ("and on()", "up and on(job) (scrape_samples_scraped > 0)"),
    (
        "NaN from 0/0",
        "rate(go_gc_duration_seconds_sum[30s]) / rate(go_gc_duration_seconds_count[30s])",
    ),
    ("time()", "time() - node_boot_time_seconds"),
    // Label manipulation.
    ("label_replace", r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#),
    (
        "label_replace rate",
        r#"label_replace(rate(node_cpu_seconds_total{mode="user"}[30s]), "core", "cpu-$1", "cpu", "(.+)")"#,
    ),
];
