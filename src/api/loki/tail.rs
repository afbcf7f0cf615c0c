//! Live tail: `/loki/api/v1/tail` over WebSocket, or as Server-Sent Events
//! when the client sends `Accept: text/event-stream` (a heartbeat comment
//! every 15 s). Frames are Loki's `{"streams":[...],"dropped_entries":null}`.
//! The first frame carries up to `limit` entries since `start` (default one
//! hour ago) from the store; then every push that
//! [`crate::logs::LogWriter::subscribe`] delivers is filtered by the query's
//! selector and pipeline, with no indexing delay.
//!
//! As Loki's querier `Tailer`: a feeder task filters the feed into frames
//! of at most 100 entries and queues at most 10 for the client; while the
//! queue is full (the client reads too slowly) entries are dropped, and the
//! next queued frame names up to 1000 of them in `dropped_entries`
//! (`[{"timestamp":"<ns>","labels":{...}}]`).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;

use super::query::{now_ns, time_param};
use super::{request, LokiError, LokiState, LOKI_TAIL_CONNECTIONS, SSE_HEARTBEAT};
use crate::logs::{LineHint, LogEntry, LogSelect, Stream};
use crate::model::{Labels, Matcher, Tenant};
use crate::query::logql::pipeline::Pipeline;
use crate::query::logql::Expr;

/// Pushes a lagging tail feeder missed (not named to the client).
pub const LOKI_TAIL_DROPPED_PUSHES_TOTAL: &str = "strata_loki_tail_dropped_pushes_total";
/// Entries dropped because a tail client read too slowly.
pub const LOKI_TAIL_DROPPED_ENTRIES_TOTAL: &str = "strata_loki_tail_dropped_entries_total";

/// Entries per live frame (Loki's `maxEntriesPerTailResponse`).
const MAX_ENTRIES_PER_FRAME: usize = 100;
/// Frames queued for a client (Loki's `maxBufferedTailResponses`).
const MAX_QUEUED_FRAMES: usize = 10;
/// Dropped entries named in one frame (Loki's
/// `maxDroppedEntriesPerTailResponse`); further ones are only counted.
const MAX_DROPPED_PER_FRAME: usize = 1000;

/// Open tails per tenant, under `loki.max_concurrent_tail_requests`.
pub struct TailCounter {
    max: usize,
    open: Mutex<HashMap<Tenant, usize>>,
}

/// Releases a tail slot when dropped.
pub struct TailSlot {
    counter: Arc<TailCounter>,
    tenant: Tenant,
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        let mut g = self.counter.open.lock();
        if let Some(n) = g.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
        metrics::gauge!(LOKI_TAIL_CONNECTIONS).decrement(1.0);
    }
}

impl TailCounter {
    /// At most `max` tails per tenant (0 = unlimited).
    pub fn new(max: usize) -> TailCounter {
        TailCounter {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot, or Loki's 429 message.
    pub fn acquire(self: &Arc<Self>, tenant: &Tenant) -> Result<TailSlot, LokiError> {
        let mut g = self.open.lock();
        let n = g.entry(tenant.clone()).or_default();
        if self.max > 0 && *n >= self.max {
            return Err(LokiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "max concurrent tail requests limit exceeded, count > limit ({} > {}) (loki.max_concurrent_tail_requests)",
                    *n + 1,
                    self.max
                ),
            ));
        }
        *n += 1;
        metrics::gauge!(LOKI_TAIL_CONNECTIONS).increment(1.0);
        Ok(TailSlot {
            counter: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// A compiled tail query: selector and pipeline.
pub struct TailFilter {
    matchers: Vec<Matcher>,
    hint: LineHint,
    pipeline: Pipeline,
}

impl TailFilter {
    /// Compiles a log query (metric queries cannot be tailed).
    pub fn new(query: &str) -> Result<TailFilter, LokiError> {
        let expr = crate::query::logql::parse(query).map_err(|e| LokiError::bad(e.to_string()))?;
        let Expr::Log(log) = expr else {
            return Err(LokiError::bad(
                "metric queries are not supported by tail, only log queries",
            ));
        };
        Ok(TailFilter {
            pipeline: Pipeline::new(&log, None).map_err(LokiError::bad)?,
            hint: crate::query::logql::pipeline::line_hint(&log),
            matchers: log.matchers,
        })
    }

    /// The entries of `streams` the query keeps, grouped by output labels,
    /// entries in timestamp order.
    pub fn apply<'a>(
        &self,
        streams: impl IntoIterator<Item = &'a Stream>,
        skip: &dyn Fn(&LogEntry) -> bool,
    ) -> Vec<Stream> {
        let mut by: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        for s in streams {
            if !crate::storage::matches_all(&s.labels, &self.matchers) {
                continue;
            }
            for e in &s.entries {
                if skip(e) || !self.hint.accepts(&e.line) {
                    continue;
                }
                if let Some(out) = self.pipeline.process(e.ts, &e.line, &s.labels, &e.metadata) {
                    let l = Labels::from_pairs(
                        out.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    );
                    by.entry(l).or_default().push(LogEntry::new(e.ts, out.line));
                }
            }
        }
        let mut out: Vec<Stream> = by
            .into_iter()
            .map(|(labels, mut entries)| {
                entries.sort_by_key(|e| e.ts);
                Stream { labels, entries }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// One tail frame: its streams and the `(timestamp, labels)` of entries
/// dropped since the previous frame.
pub fn frame(streams: &[Stream], dropped: &[(i64, Labels)]) -> String {
    let mut out = String::from(r#"{"streams":"#);
    super::json::write_streams(&mut out, streams);
    out.push_str(r#","dropped_entries":"#);
    if dropped.is_empty() {
        out.push_str("null");
    } else {
        out.push('[');
        for (i, (ts, labels)) in dropped.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"timestamp":""#);
            out.push_str(&ts.to_string());
            out.push_str(r#"","labels":"#);
            crate::api::prom::json::write_labels(&mut out, labels);
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Splits streams into frames of at most `max` entries, in order.
fn split_frames(streams: Vec<Stream>, max: usize) -> Vec<Vec<Stream>> {
    let mut frames = Vec::new();
    let mut cur: Vec<Stream> = Vec::new();
    let mut n = 0;
    for s in streams {
        let mut entries = s.entries.into_iter().peekable();
        while entries.peek().is_some() {
            let take: Vec<LogEntry> = entries.by_ref().take(max - n).collect();
            n += take.len();
            cur.push(Stream {
                labels: s.labels.clone(),
                entries: take,
            });
            if n == max {
                frames.push(std::mem::take(&mut cur));
                n = 0;
            }
        }
    }
    if !cur.is_empty() {
        frames.push(cur);
    }
    frames
}

/// A queued live frame.
struct Frame {
    streams: Vec<Stream>,
    dropped: Vec<(i64, Labels)>,
}

/// Keeps the newest `limit` entries of `streams`.
fn newest(streams: Vec<Stream>, limit: usize) -> Vec<Stream> {
    let mut flat: Vec<(i64, usize, LogEntry)> = Vec::new();
    let labels: Vec<Labels> = streams.iter().map(|s| s.labels.clone()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        flat.extend(s.entries.into_iter().map(|e| (e.ts, i, e)));
    }
    flat.sort_by_key(|(ts, i, _)| (*ts, *i));
    let skip = flat.len().saturating_sub(limit);
    let mut out: Vec<Stream> = labels
        .into_iter()
        .map(|labels| Stream {
            labels,
            entries: Vec::new(),
        })
        .collect();
    for (_, i, e) in flat.into_iter().skip(skip) {
        out[i].entries.push(e);
    }
    out.retain(|s| !s.entries.is_empty());
    out
}

/// Filters the live feed into frames for one client: the filter, what the
/// history frame already sent (so the feed does not repeat it), and the
/// entries dropped since the last queued frame.
struct Feeder {
    rx: tokio::sync::broadcast::Receiver<Arc<Vec<Stream>>>,
    filter: Arc<TailFilter>,
    sent_up_to: i64,
    sent_at_edge: HashSet<(i64, String)>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    out: tokio::sync::mpsc::Sender<Frame>,
    dropped: Vec<(i64, Labels)>,
}

impl Feeder {
    /// Runs until the feed closes, the server shuts down or the client
    /// goes away.
    async fn run(mut self) {
        loop {
            let got = tokio::select! {
                got = self.rx.recv() => got,
                _ = self.shutdown.wait_for(|s| *s) => return,
                _ = self.out.closed() => return,
            };
            match got {
                Ok(batch) => {
                    let (up_to, edge) = (self.sent_up_to, &self.sent_at_edge);
                    let skip = |e: &LogEntry| {
                        e.ts < up_to || (e.ts == up_to && edge.contains(&(e.ts, e.line.clone())))
                    };
                    let streams = self.filter.apply(batch.iter(), &skip);
                    for f in split_frames(streams, MAX_ENTRIES_PER_FRAME) {
                        if !self.offer(f) {
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!(LOKI_TAIL_DROPPED_PUSHES_TOTAL).increment(n);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Queues a frame carrying the dropped entries, or drops its entries
    /// when the queue is full. False once the client is gone.
    fn offer(&mut self, streams: Vec<Stream>) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        match self.out.try_reserve() {
            Ok(permit) => {
                permit.send(Frame {
                    streams,
                    dropped: std::mem::take(&mut self.dropped),
                });
                true
            }
            Err(TrySendError::Full(())) => {
                let mut n = 0u64;
                for s in &streams {
                    for e in &s.entries {
                        n += 1;
                        if self.dropped.len() < MAX_DROPPED_PER_FRAME {
                            self.dropped.push((e.ts, s.labels.clone()));
                        }
                    }
                }
                metrics::counter!(LOKI_TAIL_DROPPED_ENTRIES_TOTAL).increment(n);
                true
            }
            Err(TrySendError::Closed(())) => false,
        }
    }
}

/// A running tail as its client sees it: the queued frames.
struct Tail {
    rx: tokio::sync::mpsc::Receiver<Frame>,
    _slot: TailSlot,
}

impl Tail {
    /// The next live frame, or None when the feed closed.
    async fn next(&mut self) -> Option<String> {
        let f = self.rx.recv().await?;
        Some(frame(&f.streams, &f.dropped))
    }
}

/// Subscribes, then reads the history frame from the store.
async fn start(
    st: &LokiState,
    tenant: Tenant,
    form: &crate::api::prom::params::Form,
) -> Result<(Tail, Option<String>), LokiError> {
    let filter = Arc::new(TailFilter::new(form.get("query"))?);
    let slot = st.tails.acquire(&tenant)?;
    let now = now_ns();
    let start = time_param(form, "start", now - 3_600_000_000_000)?;
    let limit = match form.get("limit") {
        "" => 100,
        v => v
            .parse::<usize>()
            .map_err(|_| LokiError::bad(format!("invalid limit {v:?}")))?,
    };
    let rx = st.app.logs_writer.subscribe(&tenant);
    let reader = st.app.logs_reader.clone();
    let f = filter.clone();
    let t = tenant.clone();
    let history = super::run_query(st, &tenant, "tail", move |_| {
        let hint = LineHint::default();
        let streams = reader
            .select(
                &t,
                &LogSelect {
                    matchers: &f.matchers,
                    start,
                    end: now + 1,
                    hint: &hint,
                },
            )
            .map_err(|e| super::query::eval_error(e.into()))?;
        Ok(newest(f.apply(streams.iter(), &|_| false), limit))
    })
    .await?;
    let up_to = history
        .iter()
        .flat_map(|s| s.entries.iter().map(|e| e.ts))
        .max()
        .unwrap_or(i64::MIN);
    let edge = history
        .iter()
        .flat_map(|s| s.entries.iter())
        .filter(|e| e.ts == up_to)
        .map(|e| (e.ts, e.line.clone()))
        .collect();
    let first = (!history.is_empty()).then(|| frame(&history, &[]));
    let (out, frames) = tokio::sync::mpsc::channel(MAX_QUEUED_FRAMES);
    tokio::spawn(
        Feeder {
            rx,
            filter,
            sent_up_to: up_to,
            sent_at_edge: edge,
            shutdown: st.app.shutdown.subscribe(),
            out,
            dropped: Vec::new(),
        }
        .run(),
    );
    Ok((
        Tail {
            rx: frames,
            _slot: slot,
        },
        first,
    ))
}

async fn run_ws(mut socket: WebSocket, mut tail: Tail, first: Option<String>) {
    if let Some(f) = first {
        if socket.send(Message::Text(f.into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            next = tail.next() => match next {
                Some(f) => {
                    if socket.send(Message::Text(f.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// `GET /loki/api/v1/tail`.
pub async fn tail(
    State(st): State<LokiState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    req: Request,
) -> Response {
    let ws = ws.ok();
    let sse = wants_sse(req.headers());
    let r = async {
        let (tenant, form) = request(&st, req).await?;
        if !sse && ws.is_none() {
            return Err(LokiError::bad(
                "tail needs a WebSocket upgrade or Accept: text/event-stream",
            ));
        }
        Ok((start(&st, tenant, &form).await?, sse))
    }
    .await;
    let ((tail, first), sse) = match r {
        Ok(x) => x,
        Err(e) => {
            super::count("tail", Some(e.status));
            return e.into_response();
        }
    };
    super::count("tail", None);
    if sse {
        let stream = futures_util::stream::unfold((tail, first), |(mut tail, first)| async move {
            let data = match first {
                Some(f) => f,
                None => tail.next().await?,
            };
            Some((
                Ok::<_, Infallible>(Event::default().data(data)),
                (tail, None),
            ))
        });
        return Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(SSE_HEARTBEAT).text("heartbeat"))
            .into_response();
    }
    match ws {
        Some(ws) => ws.on_upgrade(move |socket| run_ws(socket, tail, first)),
        None => LokiError::bad("tail needs a WebSocket upgrade").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hold_at_most_max_entries_in_order() {
        let s = |app: &str, n: i64| Stream {
            labels: Labels::from_pairs([("app", app)]),
            entries: (0..n).map(|i| LogEntry::new(i, "l")).collect(),
        };
        let frames = split_frames(vec![s("a", 3), s("b", 4), s("c", 1)], 3);
        let shape: Vec<Vec<(String, usize)>> = frames
            .iter()
            .map(|f| {
                f.iter()
                    .map(|s| (s.labels.get("app").unwrap().to_string(), s.entries.len()))
                    .collect()
            })
            .collect();
        let want: Vec<Vec<(String, usize)>> = vec![
            vec![("a".into(), 3)],
            vec![("b".into(), 3)],
            vec![("b".into(), 1), ("c".into(), 1)],
        ];
        assert_eq!(shape, want);
        assert_eq!(
            frame(&[], &[(5, Labels::from_pairs([("app", "a")]))]),
            r#"{"streams":[],"dropped_entries":[{"timestamp":"5","labels":{"app":"a"}}]}"#
        );
    }
}
