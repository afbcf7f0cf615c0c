//! Assembles the process: storage, engines, the router and the listeners,
//! and shuts them down in order (stop accepting, finish in-flight requests,
//! close storage so the WAL is fsynced).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{router, AppState};
use crate::config::Config;
use crate::query::promql::{Engine, EngineOptions};
use crate::rules::manager::RuleManager;
use crate::rules::notifier::{Notifier, NotifierOptions};
use crate::storage::logs::{LogStore, LogStoreOptions};
use crate::storage::tsdb::{Tsdb, TsdbOptions};
use crate::storage::StorageError;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be prepared.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A store (metrics or logs) could not be opened (unreadable or corrupt WAL, ...).
    #[error("cannot open the store in {path}: {source}")]
    Storage {
        /// The store's directory.
        path: String,
        /// Underlying error.
        #[source]
        source: StorageError,
    },
}

/// A started server: its bound addresses and a way to stop it.
pub struct Running {
    /// The addresses actually bound (useful with port 0).
    pub addrs: Vec<SocketAddr>,
    stop: Arc<watch::Sender<bool>>,
    tasks: JoinSet<()>,
    rules: Arc<RuleManager>,
    tsdb: Arc<Tsdb>,
    logs: Arc<LogStore>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, then closes storage
    /// (the WAL is fsynced) and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.rules.stop();
        while self.tasks.join_next().await.is_some() {}
        close_storage(self.tsdb, self.logs).await;
    }
}

/// Closes the metrics and log stores on a blocking thread (each waits for
/// in-flight writes and fsyncs its WAL).
async fn close_storage(tsdb: Arc<Tsdb>, logs: Arc<LogStore>) {
    match tokio::task::spawn_blocking(move || (tsdb.close(), logs.close())).await {
        Ok((m, l)) => {
            for (what, res) in [("metrics", m), ("log", l)] {
                match res {
                    Ok(()) => tracing::info!("{what} store closed"),
                    Err(e) => tracing::error!(error = %e, "closing the {what} store failed"),
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "closing storage panicked"),
    }
}

/// Builds the state shared by all handlers. The metrics store's maintenance
/// thread stops once the state and every clone of it are dropped.
pub fn build_state(config: Config) -> Result<AppState, ServerError> {
    build(config).map(|(state, _, _)| state)
}

/// Opens a store in `<data_dir>/<sub>`.
fn open_store<T>(
    config: &Config,
    sub: &str,
    open: impl FnOnce(&std::path::Path) -> Result<T, StorageError>,
) -> Result<Arc<T>, ServerError> {
    let dir = config.data_dir.join(sub);
    open(&dir)
        .map(Arc::new)
        .map_err(|source| ServerError::Storage {
            path: dir.display().to_string(),
            source,
        })
}

/// Opens storage (`<data_dir>/tsdb` and `<data_dir>/logs`, replaying their
/// WALs), starts its maintenance and builds the handlers' state.
fn build(config: Config) -> Result<(AppState, Arc<Tsdb>, Arc<LogStore>), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = open_store(&config, "tsdb", |d| {
        Tsdb::open(d, TsdbOptions::from_config(&config))
    })?;
    store.start_maintenance();
    let engine = Engine::new(
        store.clone(),
        EngineOptions {
            lookback_delta_ms: config.query.lookback_delta.0,
            max_samples: config.limits.max_samples_per_query,
            timeout: config.query.timeout.to_std(),
            enable_experimental_functions: config.query.enable_experimental_functions,
        },
    )
    .with_parse_cache(config.query.parse_cache_entries);
    let logs = open_store(&config, "logs", |d| {
        LogStore::open(d, LogStoreOptions::from_config(&config))
    })?;
    logs.start_maintenance();
    let state = AppState {
        logs_reader: logs.clone(),
        logs_writer: logs.clone(),
        logs_admin: Some(logs.clone()),
        config: Arc::new(config),
        metrics_reader: store.clone(),
        metrics_writer: store.clone(),
        metrics_admin: store.clone(),
        promql: Arc::new(engine),
        rules: None,
        shutdown: Arc::new(watch::channel(false).0),
    };
    Ok((state, store, logs))
}

/// Binds every configured listener and serves until [`Running::shutdown`].
pub async fn start(config: Config) -> Result<Running, ServerError> {
    crate::telemetry::install();
    let listen = config.listen.clone();
    // Opening storage replays the WAL (seconds to minutes of blocking work):
    // keep it off the async runtime's worker threads.
    let (mut state, tsdb, logs) = match tokio::task::spawn_blocking(move || build(config)).await {
        Ok(built) => built?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let stop = state.shutdown.clone();
    let stop_rx = stop.subscribe();
    let mut tasks = JoinSet::new();
    let rules = start_rules(&mut state, &mut tasks, &stop_rx);
    let app = router(state);
    let mut addrs = Vec::new();
    for addr in listen {
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        addrs.push(local);
        let app = app.clone();
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(addr = %local, error = %e, "listener failed");
            }
        });
        tracing::info!(addr = %local, "listening");
    }
    Ok(Running {
        addrs,
        stop,
        tasks,
        rules,
        tsdb,
        logs,
    })
}

/// Loads the rule files and starts their evaluation thread, the
/// Alertmanager notifier and the SIGHUP reload handler.
fn start_rules(
    state: &mut AppState,
    tasks: &mut JoinSet<()>,
    stop_rx: &watch::Receiver<bool>,
) -> Arc<RuleManager> {
    let cfg = state.config.rules.clone();
    let notifier = Notifier::new(NotifierOptions {
        alertmanagers: cfg.alertmanagers.clone(),
        queue_capacity: cfg.notification_queue_capacity,
        max_batch: 64,
        timeout: cfg.notification_timeout.to_std(),
        max_attempts: 3,
        external_labels: crate::model::Labels::from_pairs(cfg.external_labels.clone()),
    });
    let manager = RuleManager::new(
        cfg,
        std::path::Path::new("."),
        state.promql.clone(),
        Some(Arc::new(crate::query::logql::Engine::new(
            state.logs_reader.clone(),
            (&state.config.logql).into(),
        ))),
        state.metrics_reader.clone(),
        state.metrics_writer.clone(),
        notifier.clone(),
    );
    if let Err(e) = manager.reload() {
        tracing::error!(error = %e, "loading rule files failed; no rules are evaluated");
    }
    let mut rx = stop_rx.clone();
    tasks.spawn(notifier.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let m = manager.clone();
    std::thread::Builder::new()
        .name("rules".into())
        .spawn(move || m.run())
        .map_err(|e| tracing::error!(error = %e, "cannot start the rule evaluator"))
        .ok();
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let m = manager.clone();
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    r = rx.changed() => {
                        if r.is_err() || *rx.borrow() {
                            return;
                        }
                    }
                    _ = hup.recv() => {
                        let m = m.clone();
                        let res = tokio::task::spawn_blocking(move || m.reload()).await;
                        if let Ok(Err(e)) = res {
                            tracing::error!(error = %e, "reloading rule files failed");
                        }
                    }
                }
            }
        });
    }
    state.rules = Some(manager.clone());
    manager
}

/// Runs until `signal` resolves, then shuts down gracefully within the
/// configured timeout.
pub async fn run_until(
    config: Config,
    signal: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let timeout = config.shutdown_timeout.to_std();
    let running = start(config).await?;
    signal.await;
    tracing::info!("shutting down");
    let (tsdb, logs) = (running.tsdb.clone(), running.logs.clone());
    if tokio::time::timeout(timeout, running.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown timeout");
        // Appends still running finish or are refused; the WAL is fsynced.
        close_storage(tsdb, logs).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogEntry, LogWriter, PushStream};
    use crate::model::{Labels, Matcher, Sample, Tenant};
    use crate::storage::{MetricsWriter, SeriesWrite, WriteBatch};

    #[tokio::test]
    async fn acknowledged_writes_survive_a_restart_of_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            listen: vec!["127.0.0.1:0".into()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let running = start(config.clone()).await.unwrap();
        let t = Tenant::anonymous();
        let batch = WriteBatch {
            series: vec![SeriesWrite {
                labels: Labels::from_pairs([("__name__", "up")]),
                samples: vec![Sample::new(1_000, 1.0)],
                exemplars: vec![],
            }],
            metadata: vec![],
        };
        let w = running.tsdb.clone();
        let out = tokio::task::spawn_blocking(move || w.append(&t, batch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.samples_written, 1);
        let w = running.logs.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            w.push(
                &Tenant::anonymous(),
                vec![PushStream {
                    labels: Labels::from_pairs([("app", "api")]),
                    entries: vec![LogEntry::new(1_000, "started")],
                }],
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(pushed.entries_written, 1);
        running.shutdown().await;
        assert!(dir.path().join("tsdb/wal").is_dir());
        assert!(dir.path().join("logs/wal").is_dir());
        let state = build_state(config).unwrap();
        let got = state
            .metrics_reader
            .select(
                &Tenant::anonymous(),
                &[Matcher::equal("__name__", "up")],
                0,
                2_000,
            )
            .unwrap();
        assert_eq!(got[0].samples, vec![Sample::new(1_000, 1.0)]);
        let logs = state
            .logs_reader
            .streams(&Tenant::anonymous(), &[], 0, 2_000)
            .unwrap();
        assert_eq!(logs, [Labels::from_pairs([("app", "api")])]);
    }
}
