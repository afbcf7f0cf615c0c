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
    /// Unit-test things, like `promtool test`.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
    /// Check files, like `promtool check`.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run promtool-format rule unit tests (exit 0: all passed, 1: not).
    Rules {
        /// Only test groups whose name matches this regex (repeatable).
        #[arg(long = "run", value_name = "REGEX")]
        run: Vec<String>,
        /// Ignore unknown fields in rule files.
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate Prometheus or Loki (LogQL) rule files (exit 0: valid, 1: not).
    Rules {
        /// Ignore unknown fields in rule files.
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        Command::Test {
            what:
                TestCommand::Rules {
                    run,
                    ignore_unknown_fields,
                    files,
                },
        } => {
            let opts = strata::rules::unittest::TestOptions {
                run,
                ignore_unknown_fields,
            };
            std::process::exit(strata::rules::unittest::run(&files, &opts));
        }
        Command::Check {
            what:
                CheckCommand::Rules {
                    ignore_unknown_fields,
                    files,
                },
        } => std::process::exit(check_rules(&files, ignore_unknown_fields)),
    }
}

/// `strata check rules`: promtool's output and exit codes.
fn check_rules(files: &[PathBuf], ignore_unknown_fields: bool) -> i32 {
    use strata::rules::file::load_rule_file_any;
    let mut code = 0;
    for f in files {
        println!("Checking {}", f.display());
        // PromQL or LogQL (Loki ruler files), whichever the file parses as.
        match load_rule_file_any(f, ignore_unknown_fields) {
            Ok((_, rf)) => {
                let n: usize = rf.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {n} rules found");
            }
            Err(errs) => {
                println!("  FAILED:");
                for e in errs {
                    println!("{}: {e}", f.display());
                }
                code = 1;
            }
        }
        println!();
    }
    code
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
