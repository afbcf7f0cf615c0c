//! Comparing two Prometheus `query_range` answers: the same label sets, the
//! same timestamps, values equal within 1e-6 relative (NaN equals NaN).

use std::collections::BTreeMap;

/// Relative tolerance for values.
pub const REL_TOL: f64 = 1e-6;
/// Absolute tolerance, only for values that should be zero but differ by
/// floating-point summation order (e.g. 0 versus 1e-17).
pub const ABS_TOL: f64 = 1e-12;

/// One answer: canonical label string → points `(seconds, value)`.
pub type Matrix = BTreeMap<String, Vec<(f64, f64)>>;

/// Parses a `query_range` JSON body into a [`Matrix`], or the API's error.
pub fn parse_matrix(body: &serde_json::Value) -> Result<Matrix, String> {
    if body["status"] != "success" {
        return Err(format!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        ));
    }
    if body["data"]["resultType"] != "matrix" {
        return Err(format!(
            "resultType {} instead of matrix",
            body["data"]["resultType"]
        ));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or("data.result is not an array")?;
    let mut m = Matrix::new();
    for s in result {
        let metric = s["metric"].as_object().ok_or("metric is not an object")?;
        let mut labels: Vec<(String, String)> = metric
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.sort();
        let key = format!(
            "{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let values = s["values"].as_array().ok_or("values is not an array")?;
        let mut points = Vec::with_capacity(values.len());
        for p in values {
            let t = p[0].as_f64().ok_or("timestamp is not a number")?;
            let v = parse_value(p[1].as_str().ok_or("value is not a string")?)?;
            points.push((t, v));
        }
        if m.insert(key.clone(), points).is_some() {
            return Err(format!("series {key} appears twice"));
        }
    }
    Ok(m)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("value {s:?} is not a float")),
    }
}

/// True when two values agree within the tolerances.
pub fn values_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true; // also equal infinities
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= REL_TOL * a.abs().max(b.abs()) || diff <= ABS_TOL
}

/// How many series and points matched; the error says what differed first.
pub fn compare(expected: &Matrix, got: &Matrix) -> Result<(usize, usize), String> {
    let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "label sets differ: {} missing (first {}), {} extra (first {})",
            missing.len(),
            missing.first().map(|s| s.as_str()).unwrap_or("-"),
            extra.len(),
            extra.first().map(|s| s.as_str()).unwrap_or("-"),
        ));
    }
    let mut points = 0;
    for (key, want) in expected {
        let have = &got[key];
        for (i, w) in want.iter().enumerate() {
            let Some(h) = have.get(i) else {
                return Err(format!(
                    "{key}: {} points, expected {}; first missing at t={}",
                    have.len(),
                    want.len(),
                    w.0
                ));
            };
            if (w.0 - h.0).abs() > 1e-6 {
                return Err(format!(
                    "{key}: point {i} at t={} instead of t={}",
                    h.0, w.0
                ));
            }
            if !values_equal(w.1, h.1) {
                return Err(format!(
                    "{key}: at t={} value {} instead of {}",
                    w.0, h.1, w.1
                ));
            }
        }
        if have.len() > want.len() {
            return Err(format!(
                "{key}: {} points, expected {}; first extra at t={}",
                have.len(),
                want.len(),
                have[want.len()].0
            ));
        }
        points += want.len();
    }
    Ok((expected.len(), points))
}
