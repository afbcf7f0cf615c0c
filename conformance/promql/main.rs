//! Runs Prometheus's promqltest `.test` files (../shared/conformance/promql)
//! against Strata's PromQL engine over `MemMetrics`, prints `N passed,
//! N failed` per tier and compares the failures with `known_failures.txt`.
//!
//! `STRATA_UPDATE_KNOWN_FAILURES=1` rewrites the list; `PROMQL_FILTER=<text>`
//! runs only evals whose id or query contains the text and prints why each
//! one failed (`PROMQL_VERBOSE=1` prints every failure's reason).

mod testfile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn shared_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("STRATA_SHARED") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.exists().then_some(p)
}

/// `file:line` -> tier, from evals.tsv.
fn tiers(path: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (Some(f), Some(l), Some(set), Some(nh)) = (
        col("file"),
        col("line"),
        col("set"),
        col("native_histograms"),
    ) else {
        return out;
    };
    for line in lines {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() <= set.max(nh) {
            continue;
        }
        let tier = match (c[set], c[nh]) {
            ("core", _) => "core",
            (_, "1") => "native_histograms",
            _ => "extended_float",
        };
        out.insert(format!("{}:{}", c[f], c[l]), tier.to_string());
    }
    out
}

fn main() -> ExitCode {
    let Some(shared) = shared_dir() else {
        println!("promql conformance: shared dir not found (set STRATA_SHARED or put it at <repo>/../shared); skipping");
        return ExitCode::SUCCESS;
    };
    let dir = shared.join("conformance/promql");
    let testdata = dir.join("testdata");
    if !testdata.exists() {
        println!(
            "promql conformance: {} not found; skipping",
            testdata.display()
        );
        return ExitCode::SUCCESS;
    }
    let tiers = tiers(&dir.join("evals.tsv"));
    let filter = std::env::var("PROMQL_FILTER").ok();
    let verbose = std::env::var("PROMQL_VERBOSE").is_ok() || filter.is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&testdata)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "test"));
    files.sort();
    let started = std::time::Instant::now();
    let mut results: BTreeMap<String, bool> = BTreeMap::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (line, outcome) in testfile::run_file(&text, filter.as_deref()) {
            let id = format!("{name}:{line}");
            if verbose {
                if let Err(e) = &outcome {
                    println!("FAIL {id}: {e}");
                }
            }
            results.insert(id, outcome.is_ok());
        }
    }
    let mut per_tier: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (id, ok) in &results {
        let tier = tiers
            .get(id)
            .cloned()
            .unwrap_or_else(|| "unclassified".into());
        let e = per_tier.entry(tier).or_default();
        if *ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let (mut tp, mut tf) = (0, 0);
    for (tier, (p, f)) in &per_tier {
        println!("promql conformance {tier}: {p} passed, {f} failed");
        tp += p;
        tf += f;
    }
    println!(
        "promql conformance total: {tp} passed, {tf} failed ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    if filter.is_some() {
        return ExitCode::SUCCESS;
    }
    let failed: BTreeSet<String> = results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(id, _)| id.clone())
        .collect();
    let known_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/promql/known_failures.txt");
    if std::env::var("STRATA_UPDATE_KNOWN_FAILURES").is_ok_and(|v| v == "1") {
        let mut text = String::from(
            "# Evals of ../shared/conformance/promql/testdata allowed to fail (file:line).\n# Regenerate: STRATA_UPDATE_KNOWN_FAILURES=1 cargo test --test promql_conformance\n",
        );
        for id in &failed {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&known_path, text).expect("write known_failures.txt");
        println!("wrote {} ids to {}", failed.len(), known_path.display());
        return ExitCode::SUCCESS;
    }
    let known: BTreeSet<String> = std::fs::read_to_string(&known_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut bad = false;
    for id in failed.difference(&known) {
        println!("NEW FAILURE: {id}");
        bad = true;
    }
    for id in known.difference(&failed) {
        if results.contains_key(id) {
            println!("now passing, remove from list: {id}");
        } else {
            println!("not found any more, remove from list: {id}");
        }
        bad = true;
    }
    if bad {
        println!(
            "known_failures.txt is out of date (STRATA_UPDATE_KNOWN_FAILURES=1 regenerates it)"
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
