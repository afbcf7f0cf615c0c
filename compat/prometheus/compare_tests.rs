//! Unit tests of `common::compare` (kept here so that the other includers
//! of `common` do not run them again).

use crate::common::compare::{compare, parse_matrix, values_equal};

#[test]
fn tolerance_table() {
    let cases = [
        (1.0, 1.0, true),
        (1.0, 1.0 + 1e-9, true),
        (1.0, 1.0 + 1e-5, false),
        (f64::NAN, f64::NAN, true),
        (f64::NAN, 0.0, false),
        (0.0, 1e-17, true),
        (0.0, 1e-3, false),
        (f64::INFINITY, f64::INFINITY, true),
        (f64::INFINITY, f64::NEG_INFINITY, false),
    ];
    for (a, b, want) in cases {
        assert_eq!(values_equal(a, b), want, "{a} vs {b}");
    }
}

#[test]
fn detects_label_and_value_differences() {
    let body = |v: &str, job: &str| {
        serde_json::json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":job},"values":[[10,"1"],[11,v]]}]}})
    };
    let a = parse_matrix(&body("1", "node")).unwrap();
    assert_eq!(compare(&a, &a), Ok((1, 2)));
    let b = parse_matrix(&body("2", "node")).unwrap();
    assert!(compare(&a, &b)
        .unwrap_err()
        .contains("value 2 instead of 1"));
    let c = parse_matrix(&body("1", "other")).unwrap();
    assert!(compare(&a, &c).unwrap_err().contains("label sets differ"));
    let err = serde_json::json!({"status":"error","errorType":"bad_data","error":"x"});
    assert_eq!(parse_matrix(&err).unwrap_err(), "bad_data: x");
}
