//! Unit tests of `grafana` (kept apart so that the benchmark including
//! `grafana` does not compile them).

use std::collections::HashMap;

use crate::grafana::{expand, parse_var_query, Builtins, VarQuery};

#[test]
fn expands_builtins_and_formats() {
    let b = Builtins {
        start: 100.0,
        end: 160.0,
        step: 1.0,
        rate_interval: 60.0,
    };
    let mut vars = HashMap::new();
    vars.insert("job".to_string(), "node".to_string());
    vars.insert("inst".to_string(), "127.0.0.1:9100".to_string());
    let cases = [
        ("rate(x[$__rate_interval])", "rate(x[60s])"),
        ("x[$__interval]", "x[1s]"),
        ("x[${__range}] / $__range_s", "x[60s] / 60"),
        (r#"up{job="$job"}"#, r#"up{job="node"}"#),
        (r#"up{job=~"[[job]]"}"#, r#"up{job=~"node"}"#),
        (
            r#"up{instance=~"${inst:regex}"}"#,
            r#"up{instance=~"127\.0\.0\.1:9100"}"#,
        ),
        (r#"up{cluster=~"$cluster"}"#, r#"up{cluster=~".*"}"#),
        (
            r#"label_replace(up, "a", "$1", "b", "(.*)")"#,
            r#"label_replace(up, "a", "$1", "b", "(.*)")"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, &vars, &b), want, "{input}");
    }
}

#[test]
fn parses_variable_queries() {
    assert_eq!(
        parse_var_query(r#"label_values(up{job="a", x="b"}, instance)"#),
        Ok(VarQuery::LabelValues(
            Some(r#"up{job="a", x="b"}"#.into()),
            "instance".into()
        ))
    );
    assert_eq!(
        parse_var_query("label_values(job)"),
        Ok(VarQuery::LabelValues(None, "job".into()))
    );
    assert_eq!(
        parse_var_query("label_names()"),
        Ok(VarQuery::LabelNames(None))
    );
    assert!(parse_var_query("up").is_err());
}
