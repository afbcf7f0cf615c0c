//! Parses every `eval` query of Prometheus's PromQL test files
//! (`<shared>/conformance/promql/testdata/*.test`) with the bridge
//! `strata::query::promql::parse`, the way Prometheus would parse them (all
//! features on, range evals with their step and range).

use std::path::PathBuf;

use promql_parser::parser::Expr;
use strata::query::promql::parse::{
    parse_expr_with, range_mode, to_promql, trim_op, DurationContext, RangeMode, TrimOp,
};

/// Queries that must parse. Raise it when the bridge improves; never lower
/// it to make a regression pass.
const PARSE_FLOOR: usize = 2214;

fn shared_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("STRATA_SHARED") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// A Prometheus duration as used in eval headers (`0`, `50m`, `1h30m`,
/// `1002ms`), in ms.
fn duration_ms(s: &str) -> i64 {
    if let Ok(secs) = s.parse::<i64>() {
        return secs * 1000;
    }
    let units = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
        ("w", 604_800_000),
        ("y", 31_536_000_000),
    ];
    let mut total = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {s:?}"));
        rest = &rest[digits..];
        let (u, mult) = units
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .unwrap_or_else(|| panic!("bad duration {s:?}"));
        rest = &rest[u.len()..];
        total += n * mult;
    }
    total
}

/// The `anchored`/`smoothed` modes and trim operators in `e`, in order.
fn bridged(e: &Expr, modes: &mut Vec<RangeMode>, trims: &mut Vec<TrimOp>) {
    match e {
        Expr::VectorSelector(vs) => modes.extend(range_mode(vs)),
        Expr::MatrixSelector(m) => modes.extend(range_mode(&m.vs)),
        Expr::Binary(b) => {
            bridged(&b.lhs, modes, trims);
            trims.extend(trim_op(b.op));
            bridged(&b.rhs, modes, trims);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                bridged(p, modes, trims);
            }
            bridged(&a.expr, modes, trims);
        }
        Expr::Unary(u) => bridged(&u.expr, modes, trims),
        Expr::Paren(p) => bridged(&p.expr, modes, trims),
        Expr::Subquery(s) => bridged(&s.expr, modes, trims),
        Expr::Call(c) => c.args.args.iter().for_each(|a| bridged(a, modes, trims)),
        _ => {}
    }
}

/// What the query text says the AST must carry: one mode per `anchored` /
/// `smoothed` word and one trim operator per `</` / `>/`, in order.
fn expected_bridged(q: &str) -> (Vec<RangeMode>, Vec<TrimOp>) {
    let mut modes = Vec::new();
    let mut trims = Vec::new();
    for w in
        q.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '<' || c == '>' || c == '/'))
    {
        match w {
            "anchored" => modes.push(RangeMode::Anchored),
            "smoothed" => modes.push(RangeMode::Smoothed),
            "</" => trims.push(TrimOp::Upper),
            ">/" => trims.push(TrimOp::Lower),
            _ => {}
        }
    }
    (modes, trims)
}

struct Eval {
    place: String,
    query: String,
    ctx: DurationContext,
    /// The block expects a failure whose message is a parse error.
    expects_parse_error: bool,
}

/// Splits off the first whitespace-separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

fn evals_of(file: &str, text: &str) -> Vec<Eval> {
    let lines: Vec<&str> = text.split('\n').map(str::trim).collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let (cmd, rest) = word(line);
        if !cmd.to_ascii_lowercase().starts_with("eval") {
            continue;
        }
        let (kind, rest) = word(rest);
        let (query, ctx) = match kind {
            "instant" => {
                let (at, rest) = word(rest);
                assert_eq!(at, "at", "{file}:{}", n + 1);
                let (_t, q) = word(rest);
                (q, DurationContext::default())
            }
            "range" => {
                let (_, rest) = word(rest); // from
                let (start, rest) = word(rest);
                let (_, rest) = word(rest); // to
                let (end, rest) = word(rest);
                let (_, rest) = word(rest); // step
                let (step, q) = word(rest);
                let ctx = DurationContext::range_query(
                    duration_ms(start),
                    duration_ms(end),
                    duration_ms(step),
                );
                (q, ctx)
            }
            other => panic!("{file}:{}: unknown eval kind {other:?}", n + 1),
        };
        let block = lines[n + 1..].iter().take_while(|l| !l.is_empty());
        let expects_parse_error = block
            .filter(|l| l.starts_with("expect fail") || l.starts_with("expected_fail"))
            .any(|l| l.contains("parse error"));
        out.push(Eval {
            place: format!("{file}:{}", n + 1),
            query: query.to_string(),
            ctx,
            expects_parse_error,
        });
    }
    out
}

#[test]
fn conformance_queries_parse() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipped: shared dir not found (set STRATA_SHARED)");
        return;
    };
    let dir = shared.join("conformance/promql/testdata");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} not readable", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let (mut total, mut ok, mut parse_error_evals) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut round_trip_failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for ev in evals_of(&name, &text) {
            let res = parse_expr_with(&ev.query, &ev.ctx);
            if ev.expects_parse_error {
                parse_error_evals += 1;
                assert!(
                    res.is_err(),
                    "{}: expected a parse error: {}",
                    ev.place,
                    ev.query
                );
                continue;
            }
            total += 1;
            match res {
                Ok(expr) => {
                    ok += 1;
                    let (mut modes, mut trims) = (Vec::new(), Vec::new());
                    bridged(&expr, &mut modes, &mut trims);
                    assert_eq!(
                        (modes, trims),
                        expected_bridged(&ev.query),
                        "{}: {}",
                        ev.place,
                        ev.query
                    );
                    // The printer's text parses again and prints the same
                    // (the crate's printer sorts matchers and drops `by ()`,
                    // so the ASTs themselves may differ in such details).
                    let printed = to_promql(&expr);
                    match parse_expr_with(&printed, &ev.ctx).map(|e| to_promql(&e)) {
                        Ok(again) if again == printed => {}
                        other => round_trip_failures.push(format!(
                            "{}: {} -> {printed} -> {other:?}",
                            ev.place, ev.query
                        )),
                    }
                }
                Err(e) => failures.push(format!("{}: {}  =>  {e}", ev.place, ev.query)),
            }
        }
    }
    println!("{ok}/{total} parse ({parse_error_evals} evals expect a parse error)");
    for f in &failures {
        println!("FAIL {f}");
    }
    println!(
        "{}/{ok} round-trip through to_promql",
        ok - round_trip_failures.len()
    );
    for f in &round_trip_failures {
        println!("ROUND-TRIP {f}");
    }
    assert!(total > 0, "no eval queries found in {}", dir.display());
    assert!(
        round_trip_failures.is_empty(),
        "to_promql round trip failed"
    );
    assert!(
        ok >= PARSE_FLOOR,
        "{ok}/{total} parse, below the floor {PARSE_FLOOR}"
    );
}

/// Queries Prometheus rejects at parse time must fail here too.
#[test]
fn invalid_queries_fail() {
    let ctx = DurationContext::range_query(0, 60_000, 10_000);
    for q in [
        "sum(",
        "x[5m",
        "x[5m+]",
        "x[1m/0]",
        "x[-1m]",
        "x offset",
        "rate(x[5m:1m] anchored)",
        "sum(x) smoothed",
        "x anchored smoothed",
        "x </",
        "{}",
        r#"{a=~".*"}"#,
        r#"x{__strata_bridge__="not_a_marker"}"#,
        "x[foo()]",
        "x[step(1)]",
    ] {
        assert!(parse_expr_with(q, &ctx).is_err(), "{q} should not parse");
    }
}
