//! `strata test rules` against promtool's own unit-test files
//! (../shared/conformance/promtool, expected exit codes from its FORMAT.md)
//! and the stock rule tests under ../shared/ecosystem/ruletests; and
//! `strata check rules` over every stock rule file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("STRATA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if p.join("conformance/promtool").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} has no conformance/promtool (set STRATA_SHARED)",
            p.display()
        );
        None
    }
}

/// Runs `strata <args>` in `dir`, killing it after `limit`; returns exit
/// code and stdout.
fn strata(dir: &Path, args: &[&str], limit: Duration) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strata");
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata {args:?} in {} ran over {limit:?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap_or_default(),
    )
}

const LIMIT: Duration = Duration::from_secs(900);

#[test]
fn promtool_unit_test_files_give_promtool_exit_codes() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("conformance/promtool");
    // (arguments, expected exit code) from FORMAT.md's table, with the
    // options `promtool test rules` itself uses (`@` and negative offsets on).
    let cases: &[(&[&str], i32)] = &[
        (&["long-period.yml"], 0),
        (&["start-time-test.yml"], 0),
        (&["no-test-group-interval.yml"], 0),
        (&["at-modifier-test.yml"], 0),
        (&["negative-offset-test.yml"], 0),
        (&["bad-input-series.yml"], 1),
        (&["bad-promql.yml"], 1),
        (&["bad-rules-syntax-test.yml"], 1),
        (&["bad-rules-error-test.yml"], 1),
        (&["failing.yml"], 1),
        (&["--run", "correct", "rules_run.yml"], 0),
        (&["--run", "wrong", "rules_run.yml"], 1),
        (&["--run", "correct", "--run", "wrong", "rules_run.yml"], 1),
        (&["rules_run.yml"], 1),
        (&["--ignore-unknown-fields", "rules_run_extrafields.yml"], 0),
        (&["rules_run_extrafields.yml"], 1),
        (&["--run", "correct", "rules_run_fuzzy.yml"], 0),
        (&["--run", "wrong", "rules_run_fuzzy.yml"], 1),
        (&["rules_run_no_fuzzy.yml"], 1),
    ];
    let mut bad = Vec::new();
    for (args, want) in cases {
        let mut full = vec!["test", "rules"];
        full.extend_from_slice(args);
        let (code, out) = strata(&dir, &full, LIMIT);
        println!("{args:?}: exit {code} (want {want})");
        if code != *want {
            bad.push(format!("{args:?}: exit {code}, want {want}\n{out}"));
        }
    }
    // Failures name what failed, as promtool does.
    let (_, out) = strata(&dir, &["test", "rules", "failing.yml"], LIMIT);
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("alertname: InstanceDown, time: 5m"), "{out}");
    assert!(out.contains("expr: \"test\", time: 0s"), "{out}");
    let (_, out) = strata(&dir, &["test", "rules", "bad-rules-error-test.yml"], LIMIT);
    assert!(
        out.contains("many-to-many") || out.contains("same labelset"),
        "{out}"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// unittest.yml as shipped (with native histogram input series and
/// `histogram:` expectations) passes, as with promtool; a wrong histogram
/// expectation or a histogram expected where a float comes (and back) fails
/// and shows both sides in the test notation; a series mixing floats and
/// histograms reads back each at its own time.
#[test]
fn promtool_unittest_yml_passes_with_native_histograms() {
    let Some(shared) = shared() else { return };
    let src = shared.join("conformance/promtool");
    let (code, out) = strata(&src, &["test", "rules", "unittest.yml"], LIMIT);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    let text = std::fs::read_to_string(src.join("unittest.yml")).unwrap();
    let good = "{{count:4 sum:5.6 counter_reset_hint:not_reset buckets:[4]}}";
    assert!(text.contains(good), "unittest.yml changed");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("rules.yml"), tmp.path().join("rules.yml")).unwrap();
    let run = |name: &str, body: &str| {
        std::fs::write(tmp.path().join(name), body).unwrap();
        strata(tmp.path(), &["test", "rules", name], LIMIT)
    };
    // Wrong count: fails, naming the expected and the got histogram.
    let wrong = "{{count:5 sum:5.6 counter_reset_hint:not_reset buckets:[4]}}";
    let (code, out) = run("wrong.yml", &text.replace(good, wrong));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("expr: \"test_histogram_increase\""), "{out}");
    assert!(out.contains("count:5"), "{out}");
    assert!(out.contains("count:4"), "{out}");
    // The counter-reset hint is part of the comparison.
    let reset = "{{count:4 sum:5.6 counter_reset_hint:reset buckets:[4]}}";
    let (code, out) = run("hint.yml", &text.replace(good, reset));
    assert_eq!(code, 1, "{out}");

    let mixed = r#"
tests:
  - interval: 1m
    input_series:
      - series: mixed
        values: "1 {{count:2 sum:3 buckets:[2]}} 5 {{count:3 sum:4 buckets:[3]}}x1"
    promql_expr_test:
      - expr: mixed
        eval_time: 0m
        exp_samples:
          - labels: mixed
            value: 1
      - expr: mixed
        eval_time: 1m
        exp_samples:
          - labels: mixed
            histogram: "{{count:2 sum:3 buckets:[2]}}"
      - expr: mixed
        eval_time: 2m
        exp_samples:
          - labels: mixed
            value: 5
      - expr: mixed
        eval_time: 4m
        exp_samples:
          - labels: mixed
            histogram: "{{count:3 sum:4 counter_reset_hint:not_reset buckets:[3]}}"
"#;
    let (code, out) = run("mixed.yml", mixed);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(
        "mixed_bad.yml",
        &mixed.replacen("value: 5", "histogram: \"{{count:5}}\"", 1),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("exp: [mixed {{count:5 sum:0}}]") && out.contains("got: [mixed 5]"),
        "{out}"
    );
}

fn copy_glob(from: &Path, ext: &str, to: &Path) -> Vec<String> {
    std::fs::create_dir_all(to).unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(ext) {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
            names.push(name);
        }
    }
    names.sort();
    names
}

/// The stock rule tests, staged the way their `rule_files:` expect
/// (as ../shared/ecosystem/tools/run_promtool_tests.sh lays them out).
#[test]
fn stock_rule_unit_tests_pass() {
    let Some(shared) = shared() else { return };
    let eco = shared.join("ecosystem");
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    // kubernetes-mixin: tests/*.yaml -> ../prometheus_{alerts,rules}.yaml
    let k = tmp.path().join("kubernetes-mixin");
    let tests = copy_glob(
        &eco.join("ruletests/kubernetes-mixin"),
        ".yaml",
        &k.join("tests"),
    );
    std::fs::copy(
        eco.join("rules/mixins/kubernetes/alerts.yaml"),
        k.join("prometheus_alerts.yaml"),
    )
    .unwrap();
    std::fs::copy(
        eco.join("rules/mixins/kubernetes/rules.yaml"),
        k.join("prometheus_rules.yaml"),
    )
    .unwrap();
    for t in &tests {
        // tests.yaml (1,659 lines) passes but takes 2.5 CPU-minutes in a
        // debug build (8m43s wall on a loaded 2-core machine): run it with
        // `strata test rules` by hand or with STRATA_SLOW_TESTS=1.
        if t == "tests.yaml" && std::env::var("STRATA_SLOW_TESTS").as_deref() != Ok("1") {
            println!("kubernetes-mixin/{t}: not run (set STRATA_SLOW_TESTS=1)");
            continue;
        }
        let start = Instant::now();
        let (code, out) = strata(&k, &["test", "rules", &format!("tests/{t}")], LIMIT);
        println!("kubernetes-mixin/{t}: exit {code} in {:?}", start.elapsed());
        results.push((format!("kubernetes-mixin/{t}"), code, out));
    }
    // canonical loki operator: tests/prometheus_alert_rules/*.yaml ->
    // ../../src/prometheus_alert_rules/*.rule
    let c = tmp.path().join("canonical");
    let tdir = c.join("tests/prometheus_alert_rules");
    let tests = copy_glob(
        &eco.join("ruletests/canonical-loki-k8s-operator"),
        ".yaml",
        &tdir,
    );
    copy_glob(
        &eco.join("rules/canonical-loki-k8s-operator"),
        ".rule",
        &c.join("src/prometheus_alert_rules"),
    );
    for t in &tests {
        let (code, out) = strata(&tdir, &["test", "rules", t], LIMIT);
        println!("canonical-loki-k8s-operator/{t}: exit {code}");
        results.push((format!("canonical-loki-k8s-operator/{t}"), code, out));
    }
    // The canonical operator's tests list only some annotations of alerts
    // whose rules carry more, which promtool's exact comparison also
    // rejects (promtool 2.42 exits 1 on both); reported, not asserted.
    for r in results.iter().filter(|r| r.0.starts_with("canonical")) {
        println!("{} (reported only): exit {}", r.0, r.1);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.0.starts_with("kubernetes-mixin") && r.1 != 0)
        .map(|r| format!("{}:\n{}", r.0, r.2))
        .collect();
    println!(
        "{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    assert!(results.len() >= 9, "found {} rule tests", results.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_stock_rule_file_loads() {
    let Some(shared) = shared() else { return };
    let mut files = Vec::new();
    let mut stack = vec![shared.join("ecosystem/rules")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "yml" || x == "yaml" || x == "rule")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut args = vec!["check".to_string(), "rules".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = strata(Path::new("."), &args, LIMIT);
    let ok = out.matches("SUCCESS").count();
    println!("{ok}/{} stock rule files load", files.len());
    assert!(files.len() >= 90, "found only {} rule files", files.len());
    assert_eq!(code, 0, "{out}");
    assert_eq!(ok, files.len());
}
