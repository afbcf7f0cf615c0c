use std::sync::Arc;

use super::*;
use crate::logs::{LineHint, LogEntry, LogReader, LogSelect, LogWriter, PushStream};
use crate::model::{Labels, MatchOp, Matcher, Tenant};

pub(super) fn opts() -> LogStoreOptions {
    let mut o = LogStoreOptions::default();
    o.wal.fsync = false;
    o
}

pub(super) fn tenant(s: &str) -> Tenant {
    Tenant::new(s).unwrap()
}

pub(super) fn stream(app: &str, entries: &[(i64, &str)]) -> PushStream {
    PushStream {
        labels: Labels::from_pairs([("app", app), ("env", "prod")]),
        entries: entries.iter().map(|&(t, l)| LogEntry::new(t, l)).collect(),
    }
}

/// Every (app, ts, line) the store returns for `matchers` and `hint`.
pub(super) fn read(
    s: &dyn LogReader,
    t: &Tenant,
    matchers: &[Matcher],
    hint: &[&str],
) -> Vec<(String, i64, String)> {
    let hint = LineHint {
        must_contain: hint.iter().map(|h| h.to_string()).collect(),
    };
    s.select(
        t,
        &LogSelect {
            matchers,
            start: i64::MIN,
            end: i64::MAX,
            hint: &hint,
        },
    )
    .unwrap()
    .into_iter()
    .flat_map(|st| {
        let app = st.labels.get("app").unwrap_or("").to_owned();
        st.entries
            .into_iter()
            .map(move |e| (app.clone(), e.ts, e.line))
    })
    .collect()
}

fn app(v: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, "app", v).unwrap()
}

#[test]
fn push_then_select_by_matchers_range_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let mut rx = s.subscribe(&t);
    let out = s
        .push(
            &t,
            vec![
                stream("api", &[(3, "GET /a 200"), (1, "GET /b 500")]),
                stream("db", &[(2, "slow query")]),
            ],
        )
        .unwrap();
    assert_eq!((out.entries_written, out.bytes_written), (3, 30));
    assert!(out.rejected.is_empty());
    assert_eq!(rx.try_recv().unwrap().len(), 2);
    assert_eq!(
        read(&s, &t, &[app("api")], &[]),
        [
            ("api".into(), 1, "GET /b 500".into()),
            ("api".into(), 3, "GET /a 200".into())
        ]
    );
    assert_eq!(read(&s, &t, &[], &["500"]).len(), 1);
    let hint = LineHint::default();
    let got = s
        .select(
            &t,
            &LogSelect {
                matchers: &[],
                start: 2,
                end: 3,
                hint: &hint,
            },
        )
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entries[0].line, "slow query");
}

#[test]
fn restart_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    {
        let s = LogStore::open(dir.path(), opts()).unwrap();
        s.push(&t, vec![stream("api", &[(1, "one"), (2, "two")])])
            .unwrap();
        s.push(&t, vec![stream("api", &[(3, "three")])]).unwrap();
        s.close().unwrap();
        assert!(s.push(&t, vec![stream("api", &[(4, "x")])]).is_err());
    }
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let got: Vec<i64> = read(&s, &t, &[], &[]).iter().map(|r| r.1).collect();
    assert_eq!(got, [1, 2, 3]);
    // The window survives the restart: newest is 3, window 1h.
    let old = -2 * 3_600_000_000_000;
    let out = s.push(&t, vec![stream("api", &[(old, "old")])]).unwrap();
    assert_eq!(out.rejected.len(), 1);
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let (a, b) = (tenant("a"), tenant("b"));
    let mut rx_b = s.subscribe(&b);
    s.push(&a, vec![stream("api", &[(1, "secret of a")])])
        .unwrap();
    assert!(read(&s, &b, &[], &[]).is_empty());
    assert!(s.streams(&b, &[], i64::MIN, i64::MAX).unwrap().is_empty());
    assert!(rx_b.try_recv().is_err());
    assert_eq!(read(&s, &a, &[], &[]).len(), 1);
}

#[test]
fn out_of_order_window_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let hour = 3_600_000_000_000i64;
    let base = 10 * hour;
    s.push(&t, vec![stream("api", &[(base, "newest")])])
        .unwrap();
    let out = s
        .push(
            &t,
            vec![
                stream(
                    "api",
                    &[
                        (base - hour / 2, "late but fine"),
                        (base - 2 * hour, "too old"),
                        (base, "newest"),
                    ],
                ),
                // Another stream has its own newest timestamp.
                stream("db", &[(base - 5 * hour, "first of db")]),
            ],
        )
        .unwrap();
    assert_eq!(out.entries_written, 2, "{out:?}");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].count, 1);
    assert!(out.rejected[0].reason.contains("entry too far behind"));
    assert_eq!(
        out.rejected[0].labels,
        Labels::from_pairs([("app", "api"), ("env", "prod")])
    );
    let lines: Vec<String> = read(&s, &t, &[app("api")], &[])
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(lines, ["late but fine", "newest"]);
}

#[test]
fn concurrent_pushes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(LogStore::open(dir.path(), opts()).unwrap());
    let t = tenant("t");
    std::thread::scope(|sc| {
        for w in 0..4 {
            let (s, t) = (s.clone(), t.clone());
            sc.spawn(move || {
                for i in 0..50 {
                    let line = format!("w{w} i{i}");
                    s.push(&t, vec![stream("api", &[(i, line.as_str())])])
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(read(&*s, &t, &[], &[]).len(), 200);
}
