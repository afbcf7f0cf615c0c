use super::funcs::{
    humanize, humanize1024, humanize_duration, humanize_percentage, prometheus_funcs,
};
use super::*;

fn render(text: &str, value: f64) -> Result<String, String> {
    let funcs = prometheus_funcs();
    let t = Template::parse("t", text, &funcs)?;
    let labels = Value::string_map([("instance", "host:9100"), ("job", "node")]);
    t.execute(
        &Value::Nil,
        &[("labels", labels), ("value", Value::Float(value))],
        &funcs,
    )
}

#[test]
fn go_float_formatting() {
    let cases = [
        (0.0, "0"),
        (1.0, "1"),
        (0.5, "0.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (f64::INFINITY, "+Inf"),
        (f64::NAN, "NaN"),
        (0.1 + 0.2, "0.30000000000000004"),
    ];
    for (v, want) in cases {
        assert_eq!(format_float_g(v, None), want, "{v}");
    }
    assert_eq!(format_float_e(1.0), "1e+00");
    assert_eq!(format_float_e(0.5), "5e-01");
    assert_eq!(format_float_e(123.4), "1.234e+02");
    assert_eq!(format_float_e(0.0), "0e+00");
    assert_eq!(format_float_g(1.5, Some(4)), "1.5");
    assert_eq!(format_float_g(12345.0, Some(4)), "1.234e+04");
    assert_eq!(format_float_g(999.96, Some(4)), "1000");
    assert_eq!(format_float_g(0.0, Some(4)), "0");
}

#[test]
fn humanize_family_matches_prometheus() {
    assert_eq!(humanize(0.0), "0");
    assert_eq!(humanize(1234.0), "1.234k");
    assert_eq!(humanize(1_234_567.0), "1.235M");
    assert_eq!(humanize(0.00123), "1.23m");
    assert_eq!(humanize(12.0), "12");
    assert_eq!(humanize1024(1024.0), "1ki");
    assert_eq!(humanize1024(1.5 * 1024.0 * 1024.0), "1.5Mi");
    assert_eq!(humanize_duration(0.0), "0s");
    assert_eq!(humanize_duration(1.5), "1.5s");
    assert_eq!(humanize_duration(90.0), "1m 30s");
    assert_eq!(humanize_duration(86400.0 + 3661.0), "1d 1h 1m 1s");
    assert_eq!(humanize_duration(0.25), "250ms");
    assert_eq!(humanize_percentage(0.1234), "12.34%");
    assert_eq!(humanize_percentage(1.0), "100%");
}

#[test]
fn alert_annotations_render() {
    assert_eq!(
        render("{{ $labels.instance }} is down ({{ $value }})", 1.0).unwrap(),
        "host:9100 is down (1)"
    );
    assert_eq!(render("{{ $value | humanize }}", 2048.0).unwrap(), "2.048k");
    assert_eq!(
        render("{{ printf \"%.2f\" $value }}", 2.71628).unwrap(),
        "2.72"
    );
    assert_eq!(
        render("{{ $value | printf \"%.1f\" }}", 2.25).unwrap(),
        "2.2"
    );
    assert_eq!(
        render("{{ $labels }}", 0.0).unwrap(),
        "map[instance:host:9100 job:node]"
    );
    assert_eq!(render("{{ $labels.missing }}", 0.0).unwrap(), "<no value>");
    assert_eq!(
        render("{{ with $labels.job -}} job={{ . }} {{- end }}!", 0.0).unwrap(),
        "job=node!"
    );
    assert_eq!(
        render(
            "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}",
            7.0
        )
        .unwrap(),
        "mid"
    );
    assert_eq!(
        render(
            "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}",
            1.0
        )
        .unwrap(),
        "low"
    );
    assert_eq!(
        render(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0
        )
        .unwrap(),
        "instance=host:9100;job=node;"
    );
    assert_eq!(
        render(
            "{{ $x := \"a\" }}{{ $x = \"b\" }}{{ $x }}{{/* comment */}}",
            0.0
        )
        .unwrap(),
        "b"
    );
    assert_eq!(
        render(
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
            0.0
        )
        .unwrap(),
        "host"
    );
    assert_eq!(
        render("{{ $labels.instance | stripPort }}", 0.0).unwrap(),
        "host"
    );
    assert_eq!(render("{{ toUpper \"abc\" | title }}", 0.0).unwrap(), "ABC");
    assert_eq!(
        render("{{ title \"hello world\" }}", 0.0).unwrap(),
        "Hello World"
    );
    assert_eq!(render("{{ len $labels }}", 0.0).unwrap(), "2");
    assert_eq!(render("{{ index $labels \"job\" }}", 0.0).unwrap(), "node");
    assert_eq!(
        render("{{ printf \"%5.1f|%-4s|%03d\" 1.25 \"ab\" 7 }}", 0.0).unwrap(),
        "  1.2|ab  |007"
    );
    assert_eq!(
        render("{{ and 1 0 }} {{ or 0 \"x\" }} {{ not true }}", 0.0).unwrap(),
        "0 x false"
    );
}

#[test]
fn errors_are_go_style() {
    let e = render("{{ nosuchfunc $value }}", 0.0).unwrap_err();
    assert!(e.contains("function \"nosuchfunc\" not defined"), "{e}");
    let e = render("{{ if $value }}x", 0.0).unwrap_err();
    assert!(e.contains("unexpected EOF"), "{e}");
    let e = render("{{ $value ", 0.0).unwrap_err();
    assert!(e.contains("unclosed action"), "{e}");
    let e = render("{{ $nope }}", 0.0).unwrap_err();
    assert!(e.contains("undefined variable"), "{e}");
    let e = render("{{ end }}", 0.0).unwrap_err();
    assert!(e.contains("unexpected {{end}}"), "{e}");
}

#[test]
fn query_results_with_first_and_value() {
    let mut funcs = prometheus_funcs();
    funcs.insert("query", |_a| {
        Ok(Value::List(vec![Value::Map(
            [
                ("Labels".to_string(), Value::string_map([("job", "api")])),
                ("Value".to_string(), Value::Float(42.0)),
            ]
            .into_iter()
            .collect(),
        )]))
    });
    let t = Template::parse(
        "q",
        "{{ with query \"up\" }}{{ . | first | value }} {{ . | first | label \"job\" }}{{ end }}",
        &funcs,
    )
    .unwrap();
    assert_eq!(t.execute(&Value::Nil, &[], &funcs).unwrap(), "42 api");
}

/// `define`, `template` (with and without a pipeline) and `block`, as the
/// alert-generator spec's `template_query_test` annotation uses them.
#[test]
fn define_template_and_block() {
    let cases = [
        (
            r#"{{ define "t" }}Args are: {{.arg0}} {{.arg1}} {{.arg2}}.{{ end }}{{ template "t" (args "foo" "bar" 99) }}"#,
            "Args are: foo bar 99.",
        ),
        // Called before it is defined; no pipeline means a nil dot.
        (
            r#"a{{template "x"}}b{{define "x"}}[{{.}}]{{end}}"#,
            "a[<no value>]b",
        ),
        // Only the call's dot is visible; `$` is that dot.
        (
            r#"{{define "y"}}{{$}}{{end}}{{$v := 1}}{{template "y" "d"}}"#,
            "d",
        ),
        (
            r#"{{block "b" .}}<{{.}}>{{end}}|{{template "b" 2}}"#,
            "<<no value>>|<2>",
        ),
        (r#"{{define `raw`}}r{{end}}{{template `raw`}}"#, "r"),
    ];
    for (text, want) in cases {
        assert_eq!(render(text, 0.0).as_deref(), Ok(want), "{text}");
    }
    let e = render(r#"{{template "nope"}}"#, 0.0).unwrap_err();
    assert!(e.contains("no such template \"nope\""), "{e}");
    let e = render(
        r#"{{define "r"}}{{template "r"}}{{end}}{{template "r"}}"#,
        0.0,
    )
    .unwrap_err();
    assert!(e.contains("exceeded maximum template depth"), "{e}");
    let e = render(r#"{{if 1}}{{define "d"}}{{end}}{{end}}"#, 0.0).unwrap_err();
    assert!(e.contains("only allowed at top level"), "{e}");
    let e = render(r#"{{template .x}}"#, 0.0).unwrap_err();
    assert!(e.contains("template name must be a string"), "{e}");
}
