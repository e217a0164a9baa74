//! The `tidemark` command line: the binary's edge, where errors become `anyhow` reports.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tidemark::config::Config;

/// See Cargo.toml: per-row allocations are a measurable share of the snapshot and stream paths.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Change data capture from PostgreSQL into Debezium-compatible events and lakehouse tables"
)]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(
        long,
        global = true,
        env = "TIDEMARK_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until interrupted (Ctrl-C / SIGTERM stop it cleanly after a checkpoint).
    Run {
        /// The pipeline's TOML file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a pipeline's config (no IO), then, unless --offline, the source server's settings.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        /// Only check the file.
        #[arg(long)]
        offline: bool,
    },
    /// Show the checkpoint, the replication slot and its lag.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Remove the pipeline's checkpoint, and its slot if Tidemark may drop it.
    Reset {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a running pipeline for an incremental snapshot of tables (watermarks; the stream
    /// keeps flowing), optionally of only the rows matching a filter.
    Snapshot {
        #[arg(long, short)]
        config: PathBuf,
        /// `schema.table` (`db.table` for MySQL); repeat for several.
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        /// A SQL condition on the columns of the `--table` just before it, e.g.
        /// `--table public.t --filter "color = 'blue'"`: only matching rows are re-read (as
        /// Debezium's `additional-conditions`). At most one per table.
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Commit a realistic insert/update/delete workload to PostgreSQL.
    Generate(tidemark::generate::GenerateArgs),
    /// Compare two event streams (JSON-lines files or Kafka topics) event by event: matched,
    /// missing, extra and differing events. Exits 1 when they differ.
    Compare(tidemark::compare::CompareArgs),
    /// Maintenance of the pipeline's Iceberg tables.
    #[cfg(feature = "iceberg")]
    Iceberg {
        #[command(subcommand)]
        action: IcebergAction,
    },
}

#[cfg(feature = "iceberg")]
#[derive(Subcommand)]
enum IcebergAction {
    /// Rewrite each table's data files with its deletes applied (one `replace` snapshot).
    Compact {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table (`namespace.name` in the catalog).
        #[arg(long)]
        table: Option<String>,
    },
    /// Remove old snapshots and delete the files only they reference.
    Expire {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        table: Option<String>,
        /// Age past which snapshots go (`1h`, `7days`). Default: the sink's `maintenance.max_snapshot_age`.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Snapshots always kept. Default: the sink's `maintenance.keep_snapshots`.
        #[arg(long)]
        keep: Option<u32>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`), unless
/// `MIMALLOC_ALLOW_THP` is set, in which case mimalloc's own handling of it stands.
///
/// Why: on a host with THP `always`, the snapshot's batch buffers (freshly allocated per
/// chunk, freed after the sink) keep landing in new 2 MiB pages the kernel must zero; a
/// 1,000,000-row MariaDB snapshot took about a tenth more CPU and a fifth more memory with them
/// (docs/benchmarks.md, "Allocator"). Returns why it could not, for the log.
fn thp_off() -> Option<String> {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
            return Some(format!("prctl(PR_SET_THP_DISABLE): {e}"));
        }
    }
    None
}

/// THP is turned off before the runtime's threads and buffers exist (the flag is the process's,
/// and is inherited by child processes, across `exec` too).
fn main() -> anyhow::Result<()> {
    let thp = thp_off();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(thp))
}

async fn run(thp: Option<String>) -> anyhow::Result<()> {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format);
    if let Some(why) = thp {
        tracing::debug!(%why, "transparent huge pages stay as the host has them");
    }
    match cli.command {
        Command::Run { config } => {
            let config = load(&config)?;
            tidemark::pipeline::run(config)
                .await
                .context("pipeline stopped")?;
        }
        Command::Validate { config, offline } => {
            let config = load(&config)?;
            println!("config ok: pipeline {}", config.pipeline.name);
            if !offline {
                let report = tidemark::pipeline::healthcheck(&config).await?;
                println!("{report}");
            }
        }
        Command::Snapshot {
            config,
            tables,
            filters,
        } => {
            let config = load(&config)?;
            // Each --filter belongs to the --table before it: pair them by position.
            let at = |id: &str, values: Vec<String>| -> Vec<(usize, String)> {
                let sub = matches.subcommand_matches("snapshot");
                let idx = sub.and_then(|m| m.indices_of(id));
                idx.into_iter().flatten().zip(values).collect()
            };
            let requests = tidemark::snapshot::filter::pair_cli(
                &at("tables", tables),
                &at("filters", filters),
            )?;
            println!(
                "{}",
                tidemark::pipeline::signal_snapshot(&config, &requests).await?
            );
        }
        Command::Status { config } => {
            let config = load(&config)?;
            println!("{}", tidemark::pipeline::status(&config).await?);
        }
        Command::Reset { config } => {
            let config = load(&config)?;
            println!("{}", tidemark::pipeline::reset(&config).await?);
        }
        #[cfg(feature = "iceberg")]
        Command::Iceberg { action } => {
            use tidemark::iceberg_cli::{run, Action};
            let (config, action, table) = match action {
                IcebergAction::Compact { config, table } => (config, Action::Compact, table),
                IcebergAction::Expire {
                    config,
                    table,
                    older_than,
                    keep,
                } => (config, Action::Expire { older_than, keep }, table),
            };
            let config = load(&config)?;
            println!("{}", run(&config, action, table.as_deref()).await?);
        }
        Command::Compare(args) => {
            let (report, equal) = tidemark::compare::run(&args)?;
            print!("{report}");
            if !equal {
                std::process::exit(1);
            }
        }
        Command::Generate(args) => {
            let started = std::time::Instant::now();
            let stats = tidemark::generate::run(&args).await?;
            println!(
                "committed {} changes ({} inserts, {} updates, {} deletes) in {} transactions, {:.1}s",
                stats.changes(),
                stats.inserts,
                stats.updates,
                stats.deletes,
                stats.transactions,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
