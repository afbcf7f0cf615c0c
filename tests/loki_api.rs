//! The Loki face end to end on an in-process server: push in every form
//! with Loki's status codes and messages, the query API's shapes (streams,
//! categorize-labels, matrix, vector, scalar), metadata endpoints, errors,
//! tenancy, and live tail over WebSocket and Server-Sent Events.

#[allow(dead_code)]
#[path = "prometheus_api/helpers.rs"]
mod helpers;

use std::io::{BufRead, BufReader, Write as _};
use std::time::{Duration, Instant};

use helpers::*;
use prost::Message;
use serde_json::{json, Value};
use strata::api::loki::proto::{
    EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
};

fn now_ns() -> i64 {
    now_ms() * 1_000_000
}

fn push_json(s: &Server, body: Value, tenant: Option<&str>) -> (u16, String) {
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(t) = tenant {
        h.push(("X-Scope-OrgID", t));
    }
    let r = s.write("/loki/api/v1/push", serde_json::to_vec(&body).unwrap(), &h);
    (r.status().as_u16(), r.text().unwrap())
}

fn query_range(s: &Server, params: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = s
        .client
        .get(s.url("/loki/api/v1/query_range"))
        .query(params);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let st = r.status().as_u16();
    let text = r.text().unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `[(labels, [(ts, line)])]` of a streams result.
fn streams(v: &Value) -> Vec<(Value, Vec<(String, String)>)> {
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let vals = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["stream"].clone(), vals)
        })
        .collect()
}

#[test]
fn push_forms_and_query_back() {
    let s = Server::start();
    let t0 = now_ns() - 60_000_000_000;
    let (st, body) = push_json(
        &s,
        json!({"streams":[{"stream":{"app":"web","env":"prod"},"values":[
            [(t0).to_string(),"level=info msg=\"hello\" status=200"],
            [(t0+1).to_string(),"level=error msg=boom status=500",{"trace_id":"abc"}]]}]}),
        None,
    );
    assert_eq!((st, body.as_str()), (204, ""));
    // Protobuf with snappy, structured metadata; and plain protobuf.
    let pb = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="api", env="prod"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: (t0 + 2) / 1_000_000_000,
                    nanos: ((t0 + 2) % 1_000_000_000) as i32,
                }),
                line: "{\"level\":\"warn\",\"latency\":\"1.5s\"}".into(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "pod".into(),
                    value: "p1".into(),
                }],
                parsed: vec![],
            }],
            hash: 0,
        }],
    }
    .encode_to_vec();
    let r = s.write(
        "/loki/api/v1/push",
        snappy(&pb),
        &[("Content-Type", "application/x-protobuf")],
    );
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    // Legacy path, gzip JSON.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(
        json!({"streams":[{"stream":{"app":"legacy"},"values":[[(t0+3).to_string(),"old path"]]}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let r = s.write(
        "/api/prom/push",
        gz.finish().unwrap(),
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
    );
    assert_eq!(r.status().as_u16(), 204);

    let (start, end) = ((t0 - 1000).to_string(), (t0 + 1000).to_string());
    let (st, v) = query_range(
        &s,
        &[
            ("query", r#"{env="prod"}"#),
            ("start", &start),
            ("end", &end),
            ("direction", "forward"),
        ],
        &[],
    );
    assert_eq!(st, 200, "{v}");
    let got = streams(&v);
    assert_eq!(got.len(), 3, "{v}");
    assert_eq!(
        got[0].0,
        json!({"app":"api","detected_level":"warn","env":"prod","pod":"p1","service_name":"api"})
    );
    // Structured metadata (detected_level included) splits the web stream.
    assert_eq!(
        got[1].0,
        json!({"app":"web","detected_level":"error","env":"prod","service_name":"web","trace_id":"abc"})
    );
    assert_eq!(
        got[2].0,
        json!({"app":"web","detected_level":"info","env":"prod","service_name":"web"})
    );
    assert_eq!(
        got[2].1,
        [(
            t0.to_string(),
            "level=info msg=\"hello\" status=200".to_string()
        )]
    );
    assert!(
        v["data"]["stats"]["summary"]["totalLinesProcessed"]
            .as_u64()
            .unwrap()
            >= 3
    );
    // Backward with a limit keeps the newest.
    let (_, v) = query_range(
        &s,
        &[
            ("query", r#"{env="prod"}"#),
            ("start", &start),
            ("end", &end),
            ("limit", "1"),
        ],
        &[],
    );
    let got = streams(&v);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1[0].0, (t0 + 2).to_string());
    // categorize-labels: stream holds indexed labels, 3-tuples carry the rest.
    let (_, v) = query_range(
        &s,
        &[
            ("query", r#"{app="web"} | logfmt | level="error""#),
            ("start", &start),
            ("end", &end),
        ],
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    );
    let text = s
        .client
        .get(s.url("/loki/api/v1/query_range"))
        .query(&[
            ("query", r#"{app="web"} | logfmt | level="error""#),
            ("start", &start),
            ("end", &end),
        ])
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains(
            r#""data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result""#
        ),
        "{text}"
    );
    assert_eq!(
        v["data"]["result"][0]["stream"],
        json!({"app":"web","env":"prod","service_name":"web"})
    );
    assert_eq!(
        v["data"]["result"][0]["values"][0],
        json!([(t0 + 1).to_string(), "level=error msg=boom status=500", {"structuredMetadata":{"detected_level":"error","trace_id":"abc"},"parsed":{"level":"error","msg":"boom","status":"500"}}])
    );
    // Metric query, RFC3339 times and an Nms step.
    let rfc = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339();
    let (st, v) = query_range(
        &s,
        &[
            (
                "query",
                r#"sum by (app) (count_over_time({env="prod"}[1m]))"#,
            ),
            ("start", &rfc(t0 + 10_000_000_000)),
            ("end", &rfc(t0 + 20_000_000_000)),
            ("step", "10000ms"),
        ],
        &[],
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(r[0]["metric"], json!({"app":"api"}));
    assert_eq!(r[1]["values"][0][1], "2");
    assert_eq!(r[1]["values"].as_array().unwrap().len(), 2);
    // Grafana's health check.
    let (st, v) = s.get_json(
        "/loki/api/v1/query",
        &[
            ("query", "vector(1)+vector(1)"),
            ("time", "1700000000000000000"),
        ],
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"],
        json!([{"metric":{},"value":[1700000000,"2"]}])
    );
    // Tenants are separate.
    let (_, v) = query_range(
        &s,
        &[
            ("query", r#"{env="prod"}"#),
            ("start", &start),
            ("end", &end),
        ],
        &[("X-Scope-OrgID", "other")],
    );
    assert_eq!(v["data"]["result"], json!([]));
}

#[test]
fn metadata_endpoints() {
    let s = Server::start();
    let t0 = now_ns() - 60_000_000_000;
    let (st, body) = push_json(
        &s,
        json!({"streams":[
            {"stream":{"app":"a","namespace":"ns1"},"values":[[t0.to_string(),"level=info dur=5ms"]]},
            {"stream":{"app":"b","namespace":"ns1"},"values":[[(t0+1).to_string(),"level=warn dur=7ms"],[(t0+2).to_string(),"level=warn dur=1s",{"pod":"p"}]]}]}),
        None,
    );
    assert_eq!(st, 204, "{body}");
    let (start, end) = ((t0 - 1000).to_string(), (t0 + 1000).to_string());
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let (_, v) = s.get_json("/loki/api/v1/labels", &range, None);
    assert_eq!(
        v,
        json!({"status":"success","data":["app","namespace","service_name"]})
    );
    let (_, v) = s.get_json("/loki/api/v1/label/app/values", &range, None);
    assert_eq!(v["data"], json!(["a", "b"]));
    let mut p = range.to_vec();
    p.push(("query", r#"{app="b"}"#));
    let (_, v) = s.get_json("/api/prom/label/app/values", &p, None);
    assert_eq!(v["data"], json!(["b"]));
    let (_, v) = s.get_json("/loki/api/v1/index/stats", &p, None);
    assert_eq!(v, json!({"streams":1,"chunks":1,"bytes":35,"entries":2}));
    let mut m = range.to_vec();
    m.push(("match[]", r#"{app="a"}"#));
    let (_, v) = s.get_json("/loki/api/v1/series", &m, None);
    assert_eq!(
        v["data"],
        json!([{"app":"a","namespace":"ns1","service_name":"a"}])
    );
    let mut q = range.to_vec();
    q.push(("query", r#"{app=~".+"}"#));
    let (_, v) = s.get_json("/loki/api/v1/index/volume", &q, None);
    let t_end = (t0 + 1000) / 1_000_000_000;
    assert_eq!(
        v,
        json!({"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"app":"b"},"value":[t_end,"35"]},{"metric":{"app":"a"},"value":[t_end,"18"]}]}})
    );
    let (ws, we) = (
        (t0 - 10_000_000_000).to_string(),
        (t0 + 10_000_000_000).to_string(),
    );
    let qr = [
        ("query", r#"{app=~".+"}"#),
        ("start", ws.as_str()),
        ("end", we.as_str()),
        ("step", "1"),
    ];
    let (_, v) = s.get_json("/loki/api/v1/index/volume_range", &qr, None);
    assert_eq!(v["data"]["resultType"], "matrix");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(r[0]["metric"], json!({"app":"a"}));
    let total: u64 = r[1]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 35);
    let (_, v) = s.get_json("/loki/api/v1/detected_labels", &range, None);
    assert_eq!(
        v,
        json!({"detectedLabels":[{"label":"app","cardinality":2},{"label":"namespace","cardinality":1},{"label":"service_name","cardinality":2}]})
    );
    let (_, v) = s.get_json("/loki/api/v1/detected_fields", &q, None);
    assert_eq!(
        v,
        json!({"fields":[
        {"label":"detected_level","type":"string","cardinality":2,"parsers":null},
        {"label":"dur","type":"duration","cardinality":3,"parsers":["logfmt"]},
        {"label":"level","type":"string","cardinality":2,"parsers":["logfmt"]},
        {"label":"pod","type":"string","cardinality":1,"parsers":null}],"limit":1000})
    );
    let (_, v) = s.get_json("/loki/api/v1/detected_field/level/values", &q, None);
    assert_eq!(v, json!({"values":["info","warn"],"limit":1000}));
    let (_, v) = s.get_json(
        "/loki/api/v1/format_query",
        &[("query", r#"{a="b"}|="x""#)],
        None,
    );
    assert_eq!(v, json!({"status":"success","data":"{a=\"b\"} |= \"x\""}));
    assert_eq!(s.get_text("/ready", &[]), (200, "ready\n".into()));
    // Patterns: Loki's shape, honestly empty (no pattern detection yet).
    assert_eq!(
        s.get_text("/loki/api/v1/patterns", &[("query", "{app=\"web\"}")]),
        (200, r#"{"status":"success","data":[]}"#.into())
    );
    assert_eq!(
        s.get_text("/loki/api/v1/patterns", &[("query", "{app=")]).0,
        400
    );
}

#[test]
fn errors_in_lokis_words() {
    let s = Server::start_with(|c| {
        c.loki.max_line_size = 8;
        c.limits.max_request_body_bytes = 1000;
    });
    let t0 = now_ns();
    let (st, body) = push_json(
        &s,
        json!({"streams":[{"stream":{"app":"a"},"values":[[t0.to_string(),"short"],[t0.to_string(),"much too long"]]}]}),
        None,
    );
    assert_eq!(st, 400);
    assert_eq!(body, "Max entry size '8' bytes exceeded for stream '{app=\"a\"}' while adding an entry with length '13' bytes");
    let (_, v) = query_range(&s, &[("query", "{app=\"a\"}")], &[]);
    assert_eq!(streams(&v)[0].1.len(), 1, "the valid entry was written");
    let r = s.write("/loki/api/v1/push", vec![b'x'; 2000], &[]);
    assert_eq!(r.status().as_u16(), 413);
    let r = s.write(
        "/loki/api/v1/push",
        b"{}".to_vec(),
        &[("Content-Encoding", "br")],
    );
    assert_eq!(
        (r.status().as_u16(), r.text().unwrap()),
        (415, "Content-Encoding \"br\" not supported".to_string())
    );
    let (st, v) = query_range(&s, &[("query", "{app=")], &[]);
    assert_eq!(st, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("parse error at line 1, col 6"),
        "{v}"
    );
    let (st, v) = query_range(&s, &[("query", "{app=\"a\"}"), ("limit", "6000")], &[]);
    assert_eq!((st, v.as_str().unwrap()), (400, "max entries limit per query exceeded, limit > max_entries_limit_per_query (6000 > 5000)"));
    let (st, v) = query_range(
        &s,
        &[("query", "{app=\"a\"}"), ("start", "10"), ("end", "5")],
        &[],
    );
    assert_eq!(
        (st, v.as_str().unwrap()),
        (
            400,
            "end timestamp must not be before or equal to start time"
        )
    );
    let (st, v) = s.get_text("/loki/api/v1/query", &[("query", "{app=\"a\"}")]);
    assert_eq!(st, 400);
    assert!(
        v.starts_with("log queries are not supported as an instant query type"),
        "{v}"
    );
}

#[test]
fn rate_limit_is_429() {
    let s = Server::start_with(|c| {
        c.loki.ingestion_rate_bytes = 10;
        c.loki.ingestion_burst_size_bytes = 10;
    });
    let t0 = now_ns();
    let body = json!({"streams":[{"stream":{"app":"a"},"values":[[t0.to_string(),"0123456789"]]}]});
    assert_eq!(push_json(&s, body.clone(), None).0, 204);
    let (st, msg) = push_json(&s, body, None);
    assert_eq!(st, 429);
    assert!(
        msg.starts_with("Ingestion rate limit exceeded for user anonymous (limit: 10 bytes/sec)"),
        "{msg}"
    );
}

/// Reads SSE `data:` lines until one satisfies `want` or the deadline.
fn sse_until(url: &str, want: impl Fn(&str) -> bool, deadline: Instant) -> Option<String> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(url)
        .header("Accept", "text/event-stream")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp).lines();
    while Instant::now() < deadline {
        let line = lines.next()?.ok()?;
        if let Some(d) = line.strip_prefix("data:") {
            if want(d.trim()) {
                return Some(d.trim().to_string());
            }
        }
    }
    None
}

#[test]
fn live_tail_websocket_and_sse() {
    let s = Server::start();
    let t0 = now_ns();
    assert_eq!(
        push_json(
            &s,
            json!({"streams":[{"stream":{"app":"t"},"values":[[t0.to_string(),"history line"]]}]}),
            None
        )
        .0,
        204
    );
    let q = "query=%7Bapp%3D%22t%22%7D%20%7C%3D%20%22live%22";
    let ws_url = format!(
        "{}/loki/api/v1/tail?{q}",
        s.url("").replacen("http", "ws", 1)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut ws, _) = rt
        .block_on(tokio_tungstenite::connect_async(ws_url))
        .unwrap();
    // SSE client in a thread, waiting for the live line.
    let sse_url = s.url(&format!("/loki/api/v1/tail?{q}"));
    let sse = std::thread::spawn(move || {
        sse_until(
            &sse_url,
            |d| d.contains("live two"),
            Instant::now() + Duration::from_secs(5),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let pushed = Instant::now();
    let t1 = now_ns();
    let (st, _) = push_json(
        &s,
        json!({"streams":[{"stream":{"app":"t"},"values":[[t1.to_string(),"live two"],[t1.to_string(),"filtered out"]]}]}),
        None,
    );
    assert_eq!(st, 204);
    use futures_util::StreamExt;
    let msg = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), ws.next()).await })
        .expect("a WebSocket frame within 2 s")
        .unwrap()
        .unwrap();
    let frame: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(
        frame,
        json!({"streams":[{"stream":{"app":"t","detected_level":"unknown","service_name":"t"},"values":[[t1.to_string(),"live two"]]}],"dropped_entries":null})
    );
    assert!(pushed.elapsed() < Duration::from_secs(2));
    let got = sse
        .join()
        .unwrap()
        .expect("an SSE event within the deadline");
    let frame: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(
        frame["streams"][0]["values"],
        json!([[t1.to_string(), "live two"]])
    );
    // A new tail first gets the history since `start` (newest `limit`).
    let hist_url = format!(
        "{}/loki/api/v1/tail?query=%7Bapp%3D%22t%22%7D&limit=2&start={}",
        s.url("").replacen("http", "ws", 1),
        t0 - 1
    );
    let (mut ws2, _) = rt
        .block_on(tokio_tungstenite::connect_async(hist_url))
        .unwrap();
    let msg = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), ws2.next()).await })
        .expect("a history frame")
        .unwrap()
        .unwrap();
    let frame: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(
        frame["streams"][0]["values"],
        json!([
            [t1.to_string(), "live two"],
            [t1.to_string(), "filtered out"]
        ]),
        "{frame}"
    );
    // Without an upgrade or SSE: 400.
    assert_eq!(
        s.get_text("/loki/api/v1/tail", &[("query", "{app=\"t\"}")])
            .0,
        400
    );
}

/// Issue 4, Build 5: a query that reaches `loki.query_timeout` answers with
/// what it read, flagged in `warnings` (log and metric queries). 100 lines
/// a second over 10 minutes read in 1m slices take well over the 1 ms
/// timeout, so the read stops after a slice or two.
#[test]
fn timeout_returns_partial_results_flagged() {
    let s = Server::start_with(|c| {
        c.loki.query_timeout = strata::config::DurationMs(1);
        c.loki.split_queries_by_interval = strata::config::DurationMs(60_000);
    });
    let min = 60_000_000_000i64;
    let t0 = (now_ns() - 15 * min) / min * min;
    for chunk in 0..10 {
        let values: Vec<Value> = (chunk * 6000..(chunk + 1) * 6000)
            .map(|i| json!([(t0 + i * 10_000_000).to_string(), format!("n={i}")]))
            .collect();
        let (st, body) = push_json(
            &s,
            json!({"streams":[{"stream":{"app":"p"},"values":values}]}),
            None,
        );
        assert_eq!((st, body.as_str()), (204, ""));
    }
    let (start, end) = (t0.to_string(), (t0 + 12 * min).to_string());
    let (st, v) = query_range(
        &s,
        &[
            ("query", r#"{app="p"} |~ `n=\d*0$`"#),
            ("start", &start),
            ("end", &end),
            ("direction", "forward"),
            ("limit", "5000"),
        ],
        &[],
    );
    assert_eq!(st, 200, "{v}");
    let warning = v["warnings"][0].as_str().unwrap_or_default().to_string();
    assert!(
        warning.starts_with(
            "partial result: the query reached its timeout (1ms, loki.query_timeout) after reading "
        ),
        "{warning}"
    );
    let got = streams(&v);
    let n = got[0].1.len();
    assert!(
        n > 0 && n < 5000 && n % 600 == 0,
        "{n} entries: whole 1m slices"
    );
    assert_eq!(got[0].1[0].1, "n=0", "forward reads oldest first");
    // A metric query keeps only the steps whose windows were read whole.
    let (st, v) = query_range(
        &s,
        &[
            ("query", "count_over_time({app=\"p\"}[1m])"),
            ("start", &(t0 + min).to_string()),
            ("end", &(t0 + 10 * min).to_string()),
            ("step", "60000ms"),
        ],
        &[],
    );
    assert_eq!(st, 200, "{v}");
    let warning = v["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.starts_with("partial result"), "{warning}");
    let points = v["data"]["result"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(points.len() < 10, "{points:?}");
    assert!(points.iter().all(|p| p[1] == "6000"), "{points:?}");
}

#[test]
fn query_limits_in_lokis_words() {
    let s = Server::start_with(|c| {
        c.loki.max_query_bytes_read = 1000;
        c.loki.max_query_length = strata::config::DurationMs(3_600_000);
        c.logql.max_query_series = 1;
    });
    let t0 = now_ns() - 120_000_000_000;
    let line = "x".repeat(100);
    for (app, n) in [("a", 6), ("b", 3), ("c", 5)] {
        let values: Vec<Value> = (0..n)
            .map(|i| json!([(t0 + i).to_string(), line]))
            .collect();
        let (st, _) = push_json(
            &s,
            json!({"streams":[{"stream":{"app":app},"values":values}]}),
            None,
        );
        assert_eq!(st, 204);
    }
    let (start, end) = ((t0 - 1000).to_string(), (t0 + 1000).to_string());
    let q = |query: &str, start: &str| {
        query_range(
            &s,
            &[("query", query), ("start", start), ("end", &end)],
            &[],
        )
    };
    let (st, v) = q("{app=~\"a|b\"}", &start);
    assert_eq!(st, 200, "900 B are within the limit: {v}");
    // Loki's POST /flush writes the head into segments; the same answer and
    // the same byte counts come back from them.
    assert_eq!(s.write("/flush", Vec::new(), &[]).status().as_u16(), 204);
    let (st2, v2) = q("{app=~\"a|b\"}", &start);
    assert_eq!((st2, streams(&v2)), (200, streams(&v)));
    let (st, v) = q("{app=~\"a|c\"}", &start);
    assert_eq!(
        (st, v.as_str().unwrap_or_default()),
        (400, "the query would read too many bytes (query: 1.1 KiB, limit: 1000 B); consider adding more specific stream selectors or reduce the time range of the query")
    );
    let (st, v) = query_range(
        &s,
        &[
            (
                "query",
                "sum by (app) (count_over_time({app=~\"a|b\"}[1m]))",
            ),
            ("start", &start),
            ("end", &(t0 + 60_000_000_000).to_string()),
        ],
        &[],
    );
    assert_eq!(
        (st, v.as_str().unwrap_or_default()),
        (400, "maximum of series (1) reached for a single query")
    );
    let two_hours_before = (t0 + 1000 - 7_200_000_000_000).to_string();
    let (st, v) = q("{app=\"a\"}", &two_hours_before);
    assert_eq!(
        (st, v.as_str().unwrap_or_default()),
        (
            400,
            "the query time range exceeds the limit (query length: 2h0m0s, limit: 1h)"
        )
    );
}

/// Loki 3's `detected_level`: added at push (label, metadata, OTLP number,
/// JSON/logfmt field, keywords), filterable and groupable like any
/// structured metadata; off when `discover_log_levels` is.
#[test]
fn detected_level_is_added_and_queryable() {
    let s = Server::start();
    let t0 = now_ns() - 60_000_000_000;
    let at = |i: i64| (t0 + i).to_string();
    let (st, body) = push_json(
        &s,
        json!({"streams":[
            {"stream":{"app":"lv","level":"Notice"},"values":[[at(0),"an error in a notice stream"]]},
            {"stream":{"app":"lv"},"values":[
                [at(1),"{\"level\":\"WARN\",\"msg\":\"x\"}"],
                [at(2),"lvl=dbg msg=\"info inside\""],
                [at(3),"ERROR: plain text"],
                [at(4),"nothing to see"],
                [at(5),"otlp line",{"severity_number":"21"}],
                [at(6),"kept",{"detected_level":"custom"}]]}]}),
        None,
    );
    assert_eq!(st, 204, "{body}");
    let (start, end) = (at(-1000), at(1000));
    let (st, v) = query_range(
        &s,
        &[
            ("query", r#"{app="lv"} | detected_level="error""#),
            ("start", &start),
            ("end", &end),
        ],
        &[],
    );
    assert_eq!(st, 200, "{v}");
    let got = streams(&v);
    assert_eq!(got.len(), 1, "{v}");
    assert_eq!(got[0].1, [(at(3), "ERROR: plain text".to_string())]);
    let time = at(30_000_000_000);
    let (st, v) = s.get_json(
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum by (detected_level) (count_over_time({app="lv"}[1m]))"#,
            ),
            ("time", time.as_str()),
        ],
        None,
    );
    assert_eq!(st, 200, "{v}");
    let mut levels: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["detected_level"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    levels.sort();
    let want: Vec<(String, String)> = [
        "Notice", "custom", "debug", "error", "fatal", "unknown", "warn",
    ]
    .iter()
    .map(|l| (l.to_string(), "1".to_string()))
    .collect();
    assert_eq!(levels, want, "{v}");

    let off = Server::start_with(|c| c.loki.discover_log_levels = false);
    let (st, _) = push_json(
        &off,
        json!({"streams":[{"stream":{"app":"lv"},"values":[[at(0),"level=error x"]]}]}),
        None,
    );
    assert_eq!(st, 204);
    let (_, v) = query_range(
        &off,
        &[("query", r#"{app="lv"}"#), ("start", &start), ("end", &end)],
        &[],
    );
    assert_eq!(
        streams(&v)[0].0,
        json!({"app":"lv","service_name":"lv"}),
        "{v}"
    );
}

/// A tail client that reads too slowly loses entries, as with Loki: at
/// most 10 frames of 100 entries wait for it, and the next frame it gets
/// names the dropped entries (timestamp and labels) in `dropped_entries`.
#[test]
fn slow_tail_client_is_told_what_was_dropped() {
    use futures_util::StreamExt;
    let s = Server::start();
    let base = s.url("");
    let addr: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let ws_url = format!(
        "{}/loki/api/v1/tail?query=%7Bapp%3D%22slow%22%7D",
        base.replacen("http", "ws", 1)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A tiny receive buffer, and no reading until everything is pushed.
    let (mut ws, _) = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.set_recv_buffer_size(4096).unwrap();
            let tcp = sock.connect(addr).await.unwrap();
            tokio_tungstenite::client_async(ws_url.as_str(), tcp).await
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = now_ns() - 10_000_000_000;
    // 20 MB: more than the queue (10 frames) and the kernel's buffers.
    let pad = "x".repeat(4000);
    let (pushes, per_push) = (50, 100);
    for p in 0..pushes {
        let values: Vec<Value> = (0..per_push)
            .map(|i| {
                let n = p * per_push + i;
                json!([(t0 + n).to_string(), format!("n={n} {pad}")])
            })
            .collect();
        let (st, body) = push_json(
            &s,
            json!({"streams":[{"stream":{"app":"slow"},"values":values}]}),
            None,
        );
        assert_eq!(st, 204, "{body}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let last = t0 + pushes * per_push;
    let (mut delivered, mut named) = (Vec::new(), Vec::new());
    let mut read = |wait: Duration| -> bool {
        let Ok(msg) = rt.block_on(async { tokio::time::timeout(wait, ws.next()).await }) else {
            return false;
        };
        let f: Value = serde_json::from_str(msg.unwrap().unwrap().to_text().unwrap()).unwrap();
        let mut in_frame = 0;
        for st in f["streams"].as_array().unwrap() {
            for v in st["values"].as_array().unwrap() {
                delivered.push(v[0].as_str().unwrap().parse::<i64>().unwrap());
                in_frame += 1;
            }
        }
        assert!(in_frame <= 100, "{in_frame} entries in one frame");
        if let Some(d) = f["dropped_entries"].as_array() {
            assert!(d.len() <= 1000);
            for e in d {
                assert_eq!(
                    e["labels"],
                    json!({"app":"slow","detected_level":"unknown","service_name":"slow"})
                );
                named.push(e["timestamp"].as_str().unwrap().parse::<i64>().unwrap());
            }
        }
        true
    };
    // Read what was queued, then push one more entry: its frame carries
    // the drops not named yet.
    while read(Duration::from_secs(1)) {}
    assert_eq!(
        push_json(
            &s,
            json!({"streams":[{"stream":{"app":"slow"},"values":[[last.to_string(),"final"]]}]}),
            None,
        )
        .0,
        204
    );
    assert!(read(Duration::from_secs(5)), "no frame after the drops");
    assert_eq!(delivered.last(), Some(&last));
    let total = (pushes * per_push + 1) as usize;
    assert!(!named.is_empty(), "nothing was dropped");
    let mut all: Vec<i64> = delivered.iter().chain(named.iter()).copied().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "an entry was both delivered and dropped");
    assert!(all.iter().all(|t| (t0..=last).contains(t)));
    let metrics = s.get_text("/metrics", &[]).1;
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("strata_loki_tail_dropped_entries_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(dropped as usize, total - delivered.len(), "{metrics}");
    assert!(named.len() <= dropped as usize);
}

/// `/loki/api/v1/patterns`: with `loki.pattern_ingester_enabled`, pushed
/// lines are mined (Drain) off the push path and come back as patterns with
/// `<_>` placeholders, their level and line counts per step; without it the
/// list is empty, as from a Loki without a pattern ingester.
#[test]
fn patterns_are_mined_from_pushed_lines() {
    let s = Server::start_with(|c| c.loki.pattern_ingester_enabled = true);
    let t0 = (now_ns() - 120_000_000_000) / 10_000_000_000 * 10_000_000_000;
    let sec = 1_000_000_000;
    let at = |i: i64| (t0 + i).to_string();
    let (st, body) = push_json(
        &s,
        json!({"streams":[
            {"stream":{"app":"pat","pod":"a"},"values":[
                [at(0),"user 17 logged in from 10.0.0.1"],
                [at(sec),"user 23 logged in from 10.0.0.7"],
                [at(3 * sec),"disk sda1 is 91 percent full"]]},
            {"stream":{"app":"pat","pod":"b"},"values":[
                [at(15 * sec),"user 99 logged in from 192.168.1.1"],
                [at(16 * sec),"user 98 logged in from 192.168.1.2"]]},
            {"stream":{"app":"other"},"values":[[at(0),"user 5 logged in from 10.0.0.9"]]}]}),
        None,
    );
    assert_eq!(st, 204, "{body}");
    let (start, end) = (at(-60 * sec), at(60 * sec));
    let q = [
        ("query", r#"{app="pat"}"#),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "10s"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (st, v) = s.get_json("/loki/api/v1/patterns", &q, None);
        assert_eq!(st, 200, "{v}");
        if v["data"].as_array().unwrap().len() >= 2 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let t = t0 / sec;
    assert_eq!(
        v,
        json!({"status":"success","data":[
            {"pattern":"user <_> logged in from <_>","level":"unknown","samples":[[t,2],[t + 10,2]]},
            {"pattern":"disk sda1 is 91 percent full","level":"unknown","samples":[[t,1]]}]})
    );
    let off = Server::start();
    assert_eq!(
        push_json(
            &off,
            json!({"streams":[{"stream":{"app":"pat"},"values":[[at(0),"user 1 logged in from x"]]}]}),
            None
        )
        .0,
        204
    );
    let (st, v) = off.get_json("/loki/api/v1/patterns", &q, None);
    assert_eq!((st, v), (200, json!({"status":"success","data":[]})));
}
