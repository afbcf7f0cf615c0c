use std::time::Duration;

use promql_parser::parser::Expr;

use super::*;

fn parse(q: &str) -> Expr {
    parse_expr(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn parse_ctx(q: &str, step_ms: i64, range_ms: i64) -> Expr {
    parse_expr_with(q, &DurationContext { step_ms, range_ms })
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn matrix_range(e: &Expr) -> Duration {
    match e {
        Expr::MatrixSelector(m) => m.range,
        Expr::Call(c) => matrix_range(&c.args.args[0]),
        other => panic!("not a matrix selector: {other:?}"),
    }
}

#[test]
fn plain_queries_pass_through() {
    let q = r#"sum by (job) (rate(http_requests_total{job="api"}[5m] offset 1m))"#;
    assert_eq!(parse(q), promql_parser::parser::parse(q).unwrap());
}

#[test]
fn duration_expressions_in_ranges() {
    let cases = [
        ("changes(x[26m+4m])", 30 * 60_000),
        ("changes(x[60*30])", 30 * 60_000),
        ("changes(x[2m*(10+5)])", 30 * 60_000),
        ("changes(x[24m+((1.5*2m)+2m)])", 29 * 60_000),
        ("changes(x[-5m+35m])", 30 * 60_000),
        ("changes(x[1h/2])", 30 * 60_000),
        ("changes(x[1h30m % 1h])", 30 * 60_000),
        ("changes(x[30m1s-30m1s % 1m])", 30 * 60_000),
        ("changes(x[(9m30s+30s)*3])", 30 * 60_000),
    ];
    for (q, ms) in cases {
        assert_eq!(matrix_range(&parse(q)), Duration::from_millis(ms), "{q}");
    }
}

#[test]
fn step_and_range_use_the_context() {
    let e = parse_ctx("count_over_time(x[1+(STep()-5)*2])", 10_000, 10_000);
    assert_eq!(matrix_range(&e), Duration::from_secs(11));
    let e = parse_ctx(
        "count_over_time(x[max_of(min_of(step()+1,1h),1ms)])",
        5_000,
        0,
    );
    assert_eq!(matrix_range(&e), Duration::from_secs(6));
    let e = parse_ctx("count_over_time(x[range()])", 5_000, 10_000);
    assert_eq!(matrix_range(&e), Duration::from_secs(10));
    // An instant query has no step: a zero range is an error, with a position.
    let err = parse_expr("count_over_time(x[step()])").unwrap_err();
    assert!(
        err.starts_with("1:19: parse error: range duration must be greater than 0"),
        "{err}"
    );
}

#[test]
fn subquery_duration_expressions() {
    let e = parse("sum_over_time(x[29s+1s:((((8 - 2) / 3) * 7s) % 4) + 8000ms])");
    let Expr::Call(c) = e else { panic!() };
    let Expr::Subquery(s) = &*c.args.args[0] else {
        panic!()
    };
    assert_eq!(s.range, Duration::from_secs(30));
    assert_eq!(s.step, Some(Duration::from_secs(10)));
}

fn offset_of(e: &Expr) -> Option<Offset> {
    match e {
        Expr::VectorSelector(v) => v.offset.clone(),
        Expr::MatrixSelector(m) => m.vs.offset.clone(),
        Expr::Subquery(s) => s.offset.clone(),
        Expr::Call(c) => offset_of(&c.args.args[0]),
        _ => None,
    }
}

use promql_parser::parser::Offset;

#[test]
fn offset_expressions() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let cases: &[(&str, Option<Offset>)] = &[
        ("x offset (100 + 2)", Some(Offset::Pos(s(102)))),
        ("x offset (2 ^ 2)", Some(Offset::Pos(s(4)))),
        ("x offset (-2 ^ 2)", Some(Offset::Neg(s(4)))),
        ("x offset (-2 * 2)", Some(Offset::Neg(s(4)))),
        ("x offset step()", Some(Offset::Pos(s(5)))),
        ("x offset STEP()", Some(Offset::Pos(s(5)))),
        ("x offset (STEP()/10)", Some(Offset::Pos(ms(500)))),
        ("x offset min_of(step(), 1s)", Some(Offset::Pos(s(1)))),
        ("x offset range()", Some(Offset::Pos(s(10)))),
        ("x offset min_of(range(), 8s)", Some(Offset::Pos(s(8)))),
        ("x offset -4", Some(Offset::Neg(s(4)))),
        ("x offset +4", Some(Offset::Pos(s(4)))),
        ("x offset (step() - 5s)", None),
    ];
    for (q, want) in cases {
        let e = parse_ctx(q, 5_000, 10_000);
        assert_eq!(&offset_of(&e), want, "{q}");
    }
    // One operand only: the rest is a binary operator.
    for q in [
        "x offset step()*0",
        "x offset -step()*2",
        "x offset min_of(step(), 1s)+8000",
        "x offset -(min_of(step(), 2s)-5)+8000",
        "x offset 100 + 2",
        "x offset -2 ^ 2",
    ] {
        let e = parse_ctx(q, 5_000, 10_000);
        let Expr::Binary(b) = &e else {
            panic!("{q}: {e:?}")
        };
        assert!(offset_of(&b.lhs).is_some(), "{q}");
    }
    let e = parse_ctx("x offset -(min_of(step(), 2s)-5)+8000", 5_000, 0);
    let Expr::Binary(b) = &e else { panic!() };
    assert_eq!(offset_of(&b.lhs), Some(Offset::Pos(s(3))));
    let e = parse(
        "sum_over_time(x[29s+1s:20*500ms] offset -(20*(((((8 - 2) / 3) * 7s) % 4) + 8000ms)))",
    );
    assert_eq!(offset_of(&e), Some(Offset::Neg(s(200))));
}

#[test]
fn anchored_and_smoothed() {
    let e = parse("increase(metric[1m] anchored)");
    let Expr::Call(c) = &e else { panic!() };
    let Expr::MatrixSelector(m) = &*c.args.args[0] else {
        panic!()
    };
    assert_eq!(range_mode(&m.vs), Some(RangeMode::Anchored));
    let (plain, found) = without_markers(&m.vs);
    assert_eq!(found, vec![Marker::Anchored]);
    assert!(plain
        .matchers
        .matchers
        .iter()
        .all(|m| m.name != BRIDGE_LABEL));
    assert_eq!(plain.to_string(), "metric");

    for (q, mode) in [
        ("metric smoothed", RangeMode::Smoothed),
        ("metric SMOOTHED", RangeMode::Smoothed),
        (r#"metric{a="b"} anchored"#, RangeMode::Anchored),
        (r#"metric{a="b",} anchored"#, RangeMode::Anchored),
        (r#"{__name__="metric"} smoothed"#, RangeMode::Smoothed),
        ("metric offset -100 smoothed", RangeMode::Smoothed),
        ("metric @ 100 smoothed", RangeMode::Smoothed),
        ("metric @ start() smoothed", RangeMode::Smoothed),
        ("metric offset (1m+1m) smoothed", RangeMode::Smoothed),
    ] {
        let e = parse(q);
        let Expr::VectorSelector(vs) = &e else {
            panic!("{q}: {e:?}")
        };
        assert_eq!(range_mode(vs), Some(mode), "{q}");
    }
    let e = parse("metric offset -100 smoothed + 0");
    let Expr::Binary(b) = &e else { panic!() };
    let Expr::VectorSelector(vs) = &*b.lhs else {
        panic!()
    };
    assert_eq!(range_mode(vs), Some(RangeMode::Smoothed));
    assert_eq!(vs.offset, Some(Offset::Neg(Duration::from_secs(100))));

    for q in [
        "rate(x[5m:1m] anchored)",
        "sum(x) anchored",
        "(x) smoothed",
        "x anchored smoothed",
    ] {
        assert!(parse_expr(q).is_err(), "{q} should fail");
    }
}

#[test]
fn trim_operators() {
    let e = parse("h_test </ 2");
    let Expr::Binary(b) = &e else { panic!() };
    assert_eq!(trim_op(b.op), Some(TrimOp::Upper));
    let e = parse("histogram_count(cbh >/ -Inf)");
    let Expr::Call(c) = &e else { panic!() };
    let Expr::Binary(b) = &*c.args.args[0] else {
        panic!()
    };
    assert_eq!(trim_op(b.op), Some(TrimOp::Lower));
    // Modifiers survive; real atan2 stays atan2, in source order.
    let e = parse("a atan2 b >/ on (label) c </ d atan2 e");
    let mut ops = Vec::new();
    fn walk(e: &Expr, ops: &mut Vec<String>) {
        if let Expr::Binary(b) = e {
            walk(&b.lhs, ops);
            ops.push(trim_op(b.op).map_or(b.op.to_string(), |t| t.symbol().to_string()));
            walk(&b.rhs, ops);
        }
    }
    walk(&e, &mut ops);
    assert_eq!(ops, ["atan2", ">/", "</", "atan2"]);
    let e = parse("cbh_for_join >/ on (label) float_for_join");
    let Expr::Binary(b) = &e else { panic!() };
    assert!(b.modifier.is_some());
}

#[test]
fn info_data_selector() {
    for q in [
        r#"info(metric, {data=~".*"})"#,
        r#"info(metric, {__name__!="target_info"})"#,
        r#"info(metric, {})"#,
    ] {
        let e = parse(q);
        let Expr::Call(c) = &e else { panic!() };
        let Expr::VectorSelector(vs) = &*c.args.args[1] else {
            panic!()
        };
        assert_eq!(markers(vs), vec![Marker::InfoData], "{q}");
    }
    // Elsewhere the non-empty matcher rule still holds.
    assert!(parse_expr(r#"{data=~".*"}"#).is_err());
}

#[test]
fn keywords_are_case_insensitive() {
    for (q, lower) in [
        ("SUM BY (x) (m)", "sum by (x) (m)"),
        ("sum(m) WITHOUT (x)", "sum without (x) (m)"),
        ("a AND b", "a and b"),
        ("a OR b", "a or b"),
        ("a UNLESS b", "a unless b"),
        ("a > BOOL b", "a > bool b"),
        ("a + ON (x) GROUP_LEFT (y) b", "a + on (x) group_left (y) b"),
        (
            "a + IGNORING (x) GROUP_RIGHT b",
            "a + ignoring (x) group_right b",
        ),
        ("m OFFSET 5m", "m offset 5m"),
        ("m @ START()", "m @ start()"),
        ("m ATAN2 n", "m atan2 n"),
    ] {
        assert_eq!(parse(q), parse(lower), "{q}");
    }
}

#[test]
fn errors_are_prometheus_style() {
    let e = parse_expr("x[5m+]").unwrap_err();
    assert!(e.starts_with("1:6: parse error:"), "{e}");
    let e = parse_expr("x[1m/0]").unwrap_err();
    assert!(e.contains("division by zero"), "{e}");
    let e = parse_expr("sum(").unwrap_err();
    assert!(e.starts_with("parse error:"), "{e}");
    for (q, want) in [
        ("foo[5m", "1:4: parse error: unclosed left bracket"),
        (
            "rate(foo)",
            r#"parse error: expected type range vector in call to function "rate", got instant vector"#,
        ),
        (
            "abs(foo[5m])",
            r#"parse error: expected type instant vector in call to function "abs", got range vector"#,
        ),
        (
            "unknown_fn(x)",
            r#"parse error: unknown function with name "unknown_fn""#,
        ),
        (
            "label_replace(x)",
            r#"parse error: expected 5 argument(s) in call to "label_replace", got 1"#,
        ),
        (
            "foo bar",
            r#"1:5: parse error: unexpected identifier "bar""#,
        ),
        ("foo +", "1:6: parse error: unexpected end of input"),
        ("1 +* 2", "1:4: parse error: unexpected <op:*>"),
        ("foo 5", r#"1:5: parse error: unexpected number "5""#),
    ] {
        assert_eq!(parse_expr(q).unwrap_err(), want, "{q}");
    }
    for q in [
        r#"x{__strata_bridge__="other"}"#,
        r#"x{__strata_bridge__=~"anchored"}"#,
        r#"x{__strata_bridge__!="anchored"}"#,
    ] {
        let e = parse_expr(q).unwrap_err();
        assert!(e.contains("reserved"), "{e}");
    }
}

#[test]
fn experimental_functions() {
    for f in [
        "limitk",
        "info",
        "sort_by_label",
        "mad_over_time",
        "ts_of_max_over_time",
    ] {
        assert!(is_experimental_function(f), "{f}");
    }
    for f in ["rate", "first_over_time", "histogram_quantile", "sum"] {
        assert!(!is_experimental_function(f), "{f}");
    }
}

#[test]
fn to_promql_round_trips() {
    for q in [
        "increase(metric[1m] anchored)",
        r#"rate(metric{a="b"}[5m] offset 1m smoothed)"#,
        "metric offset -100 smoothed + 0",
        "metric @ 100 smoothed",
        "h_test </ 2",
        "histogram_count(cbh >/ on (label) group_left (x) float_for_join)",
        "a atan2 b >/ c </ d atan2 e",
        "sum by (job) (h </ 1.5) * -(x >/ 2)",
        "topk(3, x </ 1)",
        "max_over_time((h >/ 0)[5m:1m])",
        r#"info(metric, {data=~".*"})"#,
        r#"info(metric, {})"#,
        r#"info(metric, {__name__="target_info"})"#,
        "changes(x[2m*15])",
        "sum_over_time(x[29s+1s:5s+5s] offset (2 * 2))",
        r#"label_replace(up, "a", "$1", "b", "(.*)")"#,
        r#"count_values("a\xc5z", version)"#,
    ] {
        let e = parse(q);
        let printed = to_promql(&e);
        let again = parse_expr(&printed).unwrap_or_else(|err| panic!("{q} -> {printed}: {err}"));
        assert_eq!(again, e, "{q} -> {printed}");
    }
    assert_eq!(to_promql(&parse("h </ 2")), "h </ 2");
    // The crate's Display shows markers as matchers; that text parses back
    // (it sorts matchers, so compare the printed forms).
    for q in [
        "rate(x[1m] anchored)",
        r#"x{a="b"} offset 5m smoothed"#,
        r#"info(m, {a=~".*"})"#,
    ] {
        let e = parse(q);
        let again = parse(&e.to_string());
        assert_eq!(to_promql(&again), to_promql(&e), "{q} -> {e}");
    }
    assert_eq!(
        to_promql(&parse(r#"count_values("a\xc5z", version)"#)),
        r#"count_values("a\xc5z", version)"#
    );
    assert_eq!(to_promql(&parse("x[1m]   anchored")), "x[1m] anchored");
}

#[test]
fn byte_escapes_keep_go_meaning() {
    let string_arg = |q: &str, i: usize| {
        let Expr::Call(c) = parse(q) else { panic!() };
        let Expr::StringLiteral(s) = &*c.args.args[i] else {
            panic!()
        };
        s.val.clone()
    };
    let v = string_arg(r#"label_replace(m, "\xff", "", "src", "(.*)")"#, 1);
    assert!(has_raw_bytes(&v));
    assert_eq!(raw_bytes(&v), [0xff]);
    assert_eq!(go_quote(&v), r#""\xff""#);
    // Valid UTF-8 written as bytes is text, as in Go.
    let v = string_arg(
        r#"label_replace(m, "\xc3\xa9\101\u00e9", "", "src", "(.*)")"#,
        1,
    );
    assert_eq!(v, "éAé");
    assert!(!has_raw_bytes(&v));
    let e = parse(r#"count_values("a\xc5z", version)"#);
    let Expr::Aggregate(a) = &e else { panic!() };
    let Some(p) = &a.param else { panic!() };
    let Expr::StringLiteral(s) = &**p else {
        panic!()
    };
    assert_eq!(go_quote(&s.val), r#""a\xc5z""#);
    assert_eq!(raw_bytes(&s.val), b"a\xc5z");
    // Other escapes still reach the crate unchanged.
    assert_eq!(
        string_arg(r#"label_replace(m, "a\"b\n", "", "src", "(.*)")"#, 1),
        "a\"b\n"
    );
    assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
}

/// Random token soup never panics the bridge (it may fail to parse).
#[test]
fn random_input_never_panics() {
    const PIECES: &[&str] = &[
        "x",
        "rate(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "5m",
        "1h30m",
        "2",
        "-",
        "+",
        "*",
        "/",
        "^",
        "%",
        ":",
        ",",
        "offset",
        "anchored",
        "smoothed",
        "@",
        "step()",
        "range()",
        "min_of(",
        "max_of(",
        "</",
        ">/",
        "atan2",
        "info(",
        "\"a\\xff\"",
        "'b'",
        "`c`",
        "a=\"b\"",
        "by (a)",
        "sum",
        " ",
        "(",
        "start()",
        "0",
        "#c\n",
        "é",
        "\"",
        "\\",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let ctx = DurationContext::range_query(0, 60_000, 15_000);
    for _ in 0..20_000 {
        let len = (next() % 12) as usize;
        let q: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        let _ = parse_expr_with(&q, &ctx);
    }
}
