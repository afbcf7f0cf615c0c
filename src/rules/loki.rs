//! The Loki ruler: LogQL rule files per tenant, laid out as Loki's local
//! ruler storage (`<directory>/<tenant>/<namespace file>`), evaluated through
//! the LogQL engine over the log store. Results go to the tenant's metrics
//! store (as Loki's ruler remote-writes them) and alerts to the notifier the
//! Prometheus rules use.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::{Mapping, Value as Yaml};

use super::file::{parse_rule_file, GroupSpec, Lang, RuleFile, RuleKind};
use super::group::RuleQuerier;
use crate::model::{format_duration, Labels, Tenant};
use crate::query::logql::{self, QueryResult, RangeParams};

/// Rules' queries through the LogQL engine (metric queries only).
pub struct LogqlQuerier<'a>(pub &'a logql::Engine);

impl RuleQuerier for LogqlQuerier<'_> {
    fn query(&self, tenant: &Tenant, expr: &str, t_ms: i64) -> Result<Vec<(Labels, f64)>, String> {
        let parsed = logql::parse(expr).map_err(|e| e.to_string())?;
        let t = t_ms.saturating_mul(1_000_000);
        let rp = RangeParams {
            start: t,
            end: t,
            step: 0,
        };
        match self
            .0
            .eval_metric(tenant, &parsed, rp, true)
            .map_err(|e| e.to_string())?
        {
            QueryResult::Vector(_, v) => Ok(v.into_iter().map(|s| (s.labels, s.value)).collect()),
            QueryResult::Scalar(_, v) => Ok(vec![(Labels::empty(), v)]),
            QueryResult::Streams(_) | QueryResult::Matrix(_) => {
                Err("rule result is not a vector or scalar".into())
            }
        }
    }
}

/// One LogQL rule file of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRuleFile {
    /// The tenant (the folder's name).
    pub tenant: Tenant,
    /// The namespace (the file's name), as Loki names it.
    pub namespace: String,
    /// The parsed file.
    pub file: RuleFile,
}

/// Loads every tenant's rule files under `dir`: each sub-folder is a tenant,
/// each regular file in it a namespace. Hidden entries are skipped. Errors
/// name the file, as `strata check rules` does.
pub fn load_dir(dir: &Path) -> Result<Vec<TenantRuleFile>, Vec<String>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for tenant_dir in sorted_entries(dir).map_err(|e| vec![e])? {
        if !tenant_dir.is_dir() {
            continue;
        }
        let name = file_name(&tenant_dir);
        let tenant = match Tenant::new(&name) {
            Ok(t) => t,
            Err(e) => {
                errs.push(format!(
                    "{}: invalid tenant {name:?}: {e}",
                    tenant_dir.display()
                ));
                continue;
            }
        };
        let files = match sorted_entries(&tenant_dir) {
            Ok(f) => f,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        for path in files.into_iter().filter(|p| p.is_file()) {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errs.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            match parse_rule_file(&path, &text, Lang::LogQL, false) {
                Ok(file) => out.push(TenantRuleFile {
                    tenant: tenant.clone(),
                    namespace: file_name(&path),
                    file,
                }),
                Err(e) => errs.extend(e.into_iter().map(|e| format!("{}: {e}", path.display()))),
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Entries of `dir` without hidden ones, sorted.
fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut v: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| !file_name(p).starts_with('.'))
        .collect();
    v.sort();
    Ok(v)
}

/// A group as Loki's ruler API prints it (`/loki/api/v1/rules`): the rule
/// file's own YAML shape.
pub fn group_yaml(g: &GroupSpec) -> Yaml {
    let mut m = Mapping::new();
    m.insert("name".into(), g.name.clone().into());
    if let Some(i) = g.interval_ms {
        m.insert("interval".into(), format_duration(i).into());
    }
    if g.limit > 0 {
        m.insert("limit".into(), (g.limit as u64).into());
    }
    let rules = g
        .rules
        .iter()
        .map(|r| {
            let mut o = Mapping::new();
            match &r.kind {
                RuleKind::Record(name) => {
                    o.insert("record".into(), name.clone().into());
                }
                RuleKind::Alert {
                    name,
                    for_ms,
                    keep_firing_for_ms,
                } => {
                    o.insert("alert".into(), name.clone().into());
                    if *for_ms > 0 {
                        o.insert("for".into(), format_duration(*for_ms).into());
                    }
                    if *keep_firing_for_ms > 0 {
                        o.insert(
                            "keep_firing_for".into(),
                            format_duration(*keep_firing_for_ms).into(),
                        );
                    }
                }
            }
            o.insert("expr".into(), r.expr.clone().into());
            if !r.labels.is_empty() {
                o.insert("labels".into(), string_map(&r.labels));
            }
            if !r.annotations.is_empty() {
                o.insert("annotations".into(), string_map(&r.annotations));
            }
            Yaml::Mapping(o)
        })
        .collect();
    m.insert("rules".into(), Yaml::Sequence(rules));
    Yaml::Mapping(m)
}

fn string_map(m: &BTreeMap<String, String>) -> Yaml {
    Yaml::Mapping(
        m.iter()
            .map(|(k, v)| (k.clone().into(), v.clone().into()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_tenant_folders_and_rejects_log_queries() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = dir.path().join("team-a");
        std::fs::create_dir(&t1).unwrap();
        std::fs::write(
            t1.join("app.yaml"),
            "groups:\n- name: g\n  rules:\n  - alert: Errors\n    expr: sum(count_over_time({app=\"x\"} |= \"error\" [1m])) > 0\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        let files = load_dir(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].tenant.as_str(), "team-a");
        assert_eq!(files[0].namespace, "app.yaml");
        let yaml = serde_yaml::to_string(&group_yaml(&files[0].file.groups[0])).unwrap();
        assert!(yaml.contains("alert: Errors"), "{yaml}");

        std::fs::write(
            t1.join("bad.yaml"),
            "groups:\n- name: g\n  rules:\n  - alert: Logs\n    expr: '{app=\"x\"} |= \"error\"'\n  - record: r\n    expr: 'sum(rate({app=\"x\"}[1m])'\n",
        )
        .unwrap();
        let errs = load_dir(dir.path()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("bad.yaml") && errs[0].contains("only metric queries"));
        assert!(errs[1].contains("could not parse expression: parse error"));
    }

    #[test]
    fn check_rules_detects_the_language() {
        use crate::rules::file::load_rule_file_any;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, expr: &str| {
            let p = dir.path().join(name);
            std::fs::write(
                &p,
                format!("groups:\n- name: g\n  rules:\n  - record: r\n    expr: '{expr}'\n"),
            )
            .unwrap();
            p
        };
        let p = write("prom.yaml", "sum(rate(http_requests_total[5m]))");
        assert_eq!(load_rule_file_any(&p, false).unwrap().0, Lang::PromQL);
        let p = write("loki.yaml", "sum(rate({app=\"x\"} |= \"err\" [5m]))");
        assert_eq!(load_rule_file_any(&p, false).unwrap().0, Lang::LogQL);
        // Invalid as both: the error of the closer language is reported.
        let p = write("bad.yaml", "sum(rate({app=\"x\"} |= \"err\" [5m])");
        let errs = load_rule_file_any(&p, false).unwrap_err();
        assert!(errs[0].contains("could not parse expression"), "{errs:?}");
    }
}
