//! The rule manager: loads the configured rule files (Prometheus files and
//! the Loki ruler's per-tenant LogQL files), evaluates each group on its
//! interval (aligned per group, as Prometheus does), sends alerts to the
//! notifier, and reloads on SIGHUP or `POST /-/reload`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::file::{expand_globs, load_rule_file, Lang};
use super::group::{EvalContext, Group, RuleQuerier};
use super::loki::{self, LogqlQuerier};
use super::notifier::Notifier;
use super::PromqlQuerier;
use crate::config::RulesConfig;
use crate::model::{Labels, Tenant};
use crate::query::promql::Engine;
use crate::storage::{MetricsReader, MetricsWriter};

/// Loaded groups and their evaluation state.
pub struct RuleManager {
    cfg: RulesConfig,
    base_dir: std::path::PathBuf,
    tenant: Tenant,
    external_labels: Labels,
    groups: Mutex<Vec<Arc<Mutex<Group>>>>,
    engine: Arc<Engine>,
    logql: Option<Arc<crate::query::logql::Engine>>,
    reader: Arc<dyn MetricsReader>,
    writer: Arc<dyn MetricsWriter>,
    notifier: Arc<Notifier>,
    stop: AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RuleManager {
    /// A manager; call [`RuleManager::reload`] to load the files. Without
    /// a LogQL engine the Loki ruler's directory is not loaded.
    pub fn new(
        cfg: RulesConfig,
        base_dir: &Path,
        engine: Arc<Engine>,
        logql: Option<Arc<crate::query::logql::Engine>>,
        reader: Arc<dyn MetricsReader>,
        writer: Arc<dyn MetricsWriter>,
        notifier: Arc<Notifier>,
    ) -> Arc<RuleManager> {
        let tenant = Tenant::new(&cfg.tenant).unwrap_or_else(|_| Tenant::anonymous());
        let external_labels = Labels::from_pairs(cfg.external_labels.clone());
        Arc::new(RuleManager {
            cfg,
            base_dir: base_dir.to_path_buf(),
            tenant,
            external_labels,
            groups: Mutex::new(Vec::new()),
            engine,
            logql,
            reader,
            writer,
            notifier,
            stop: AtomicBool::new(false),
        })
    }

    /// (Re)loads every rule file. On any error the old rules stay in force
    /// and the errors are returned.
    pub fn reload(&self) -> Result<usize, String> {
        let files = expand_globs(&self.cfg.files, &self.base_dir);
        let mut new_groups = Vec::new();
        let mut errs = Vec::new();
        for f in &files {
            match load_rule_file(f, Lang::PromQL, false) {
                Ok(rf) => {
                    for g in rf.groups {
                        new_groups.push(Group::new(
                            g,
                            &f.display().to_string(),
                            self.cfg.evaluation_interval.0,
                            false,
                        ));
                    }
                }
                Err(e) => errs.extend(e.into_iter().map(|e| format!("{}: {e}", f.display()))),
            }
        }
        if !self.cfg.loki.directory.is_empty() && self.logql.is_some() {
            let dir = self.base_dir.join(&self.cfg.loki.directory);
            match loki::load_dir(&dir) {
                Ok(files) => {
                    for f in files {
                        for g in f.file.groups {
                            let mut g = Group::new(
                                g,
                                &f.namespace,
                                self.cfg.loki.evaluation_interval.0,
                                false,
                            );
                            g.lang = Lang::LogQL;
                            g.tenant = Some(f.tenant.clone());
                            new_groups.push(g);
                        }
                    }
                }
                Err(e) => errs.extend(e),
            }
        }
        if !errs.is_empty() {
            metrics::counter!("strata_rules_reload_failures_total").increment(1);
            return Err(errs.join("; "));
        }
        let mut groups = self.groups.lock();
        let n = new_groups.len();
        let new: Vec<Arc<Mutex<Group>>> = new_groups
            .into_iter()
            .map(|mut g| {
                if let Some(old) = groups.iter().find(|o| {
                    let o = o.lock();
                    o.spec.name == g.spec.name && o.file == g.file && o.tenant == g.tenant
                }) {
                    g.copy_state_from(&old.lock());
                }
                Arc::new(Mutex::new(g))
            })
            .collect();
        *groups = new;
        metrics::gauge!("strata_rule_groups").set(n as f64);
        tracing::info!(files = files.len(), groups = n, "rules loaded");
        Ok(n)
    }

    /// Snapshot of the groups (for the API).
    pub fn groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups.lock().clone()
    }

    /// The tenant Prometheus rule files evaluate in.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The tenant a group evaluates in.
    pub fn group_tenant<'a>(&'a self, g: &'a Group) -> &'a Tenant {
        g.tenant.as_ref().unwrap_or(&self.tenant)
    }

    /// Evaluates every group whose time has come at `now`; returns the
    /// milliseconds until the next one is due.
    pub fn tick(&self, now: i64) -> i64 {
        let promql = PromqlQuerier(&self.engine);
        let logql = self.logql.as_deref().map(LogqlQuerier);
        let mut next_due = i64::MAX;
        for g in self.groups() {
            let mut g = g.lock();
            let interval = g.interval_ms.max(1);
            let offset = group_offset(&g.spec.name, &g.file, interval);
            // The latest aligned slot at or before now.
            let slot = (now - offset).div_euclid(interval) * interval + offset;
            let due = match g.last_evaluation {
                None => true,
                Some(last) => slot > last,
            };
            if due {
                if let Some(last) = g.last_evaluation {
                    let missed = (slot - last) / interval - 1;
                    if missed > 0 {
                        g.missed += missed as u64;
                        metrics::counter!("strata_rule_group_iterations_missed_total")
                            .increment(missed as u64);
                    }
                }
                let querier: &dyn RuleQuerier = match (&g.lang, &logql) {
                    (Lang::LogQL, Some(q)) => q,
                    _ => &promql,
                };
                let tenant = self.group_tenant(&g).clone();
                let ctx = EvalContext {
                    querier,
                    writer: self.writer.as_ref(),
                    reader: self.reader.as_ref(),
                    tenant: &tenant,
                    external_labels: &self.external_labels,
                    external_url: &self.cfg.external_url,
                };
                let (alerts, err) = g.eval(slot, &ctx, self.cfg.resend_delay.0);
                metrics::counter!("strata_rule_evaluations_total").increment(1);
                metrics::histogram!("strata_rule_group_duration_seconds")
                    .record(g.evaluation_seconds);
                if let Some(e) = err {
                    metrics::counter!("strata_rule_evaluation_failures_total").increment(1);
                    tracing::warn!(group = %g.spec.name, error = %e, "rule evaluation failed");
                }
                self.notifier.send(alerts);
            }
            next_due = next_due.min(slot + interval - now);
        }
        next_due
    }

    /// Runs the evaluation loop on the current thread until [`stop`](Self::stop).
    pub fn run(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            let wait = self.tick(now_ms()).clamp(10, 1000);
            std::thread::sleep(Duration::from_millis(wait as u64));
        }
    }

    /// Ends [`run`](Self::run).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A stable offset within the interval so groups spread out.
fn group_offset(name: &str, file: &str, interval: i64) -> i64 {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{file}\u{0}{name}").as_bytes());
    (h % interval as u64) as i64
}
