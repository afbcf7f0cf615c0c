//! The `strata` command line: `strata serve` runs the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use strata::config::Config;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "One backend for Prometheus, Loki and Elasticsearch clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults: data in ./data, listen on 0.0.0.0:9090).
    Serve {
        /// Address to listen on; repeat to serve several (e.g. :9090, :3100, :9200).
        #[arg(long = "listen", value_name = "ADDR")]
        listen: Vec<String>,
        /// Data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// YAML configuration file (see deploy/strata.example.yaml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            let mut cfg = match &config {
                Some(path) => Config::from_file(path)?,
                None => Config::default(),
            };
            if !listen.is_empty() {
                cfg.listen = listen;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            cfg.validate()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(strata::server::run_until(cfg, shutdown_signal()))?;
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
