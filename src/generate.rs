//! `tidemark generate`: a realistic change workload against PostgreSQL.
//!
//! It creates (if missing) a small shop schema and commits transactions of inserts, updates and
//! deletes in the proportions of the Debezium baseline (`../shared/research/debezium-baseline.md`:
//! 4 inserts : 2 updates : 1 delete), so quickstart, crash tests and benchmarks all use the same
//! shape of data. Rows carry a `payload` of configurable width.
//!
//! Every statement is multi-row (`INSERT … VALUES (…),(…)`, `UPDATE … WHERE id = ANY(…)`) so the
//! generator is never the bottleneck of a benchmark.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls};

/// What to generate.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// libpq-style URL of the database.
    #[arg(
        long,
        env = "TIDEMARK_GENERATE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tidemark"
    )]
    pub url: String,
    /// Schema that holds the generated tables.
    #[arg(long, default_value = "tidemark_demo")]
    pub schema: String,
    /// Total row changes to commit.
    #[arg(long, default_value_t = 200_000)]
    pub changes: u64,
    /// Row changes per transaction.
    #[arg(long, default_value_t = 1_000)]
    pub batch: u64,
    /// Bytes of the `payload` text column of each row.
    #[arg(long, default_value_t = 64)]
    pub row_width: usize,
    /// Transactions per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed of the random generator, for repeatable workloads.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Drop and recreate the tables first.
    #[arg(long)]
    pub reset: bool,
}

/// What was committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GenerateStats {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub transactions: u64,
}

impl GenerateStats {
    /// All row changes.
    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// Connects and runs the workload.
pub async fn run(args: &GenerateArgs) -> anyhow::Result<GenerateStats> {
    let (client, connection) = tokio_postgres::connect(&args.url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "generate: connection ended");
        }
    });
    setup(&client, &args.schema, args.reset).await?;
    generate(&client, args).await
}

async fn setup(client: &Client, schema: &str, reset: bool) -> anyhow::Result<()> {
    let q = quote_ident(schema);
    if reset {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {q} CASCADE"))
            .await?;
    }
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q};
             CREATE TABLE IF NOT EXISTS {q}.customers (
                 id bigint PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS {q}.orders (
                 id bigserial PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
                 amount numeric(12,2) NOT NULL, quantity integer NOT NULL, payload text,
                 created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz);"
        ))
        .await?;
    Ok(())
}

async fn generate(client: &Client, args: &GenerateArgs) -> anyhow::Result<GenerateStats> {
    let q = quote_ident(&args.schema);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut stats = GenerateStats::default();
    let batch = args.batch.max(1);
    let start = Instant::now();
    // Live ids, so updates and deletes hit existing rows.
    let row = client
        .query_one(&format!("SELECT coalesce(max(id), 0) FROM {q}.orders"), &[])
        .await?;
    let mut next_id: i64 = row.get::<_, i64>(0) + 1;
    let mut live: Vec<i64> = Vec::new();
    let mut step = 0u64;
    while stats.changes() < args.changes {
        let n = batch.min(args.changes - stats.changes());
        // 4 : 2 : 1 by transaction, like the baseline's 100 insert, 50 update, 25 delete txns;
        // with too few live rows, insert instead.
        let kind = match step % 7 {
            0..=3 => 0,
            4 | 5 => 1,
            _ => 2,
        };
        let kind = if kind > 0 && (live.len() as u64) < n {
            0
        } else {
            kind
        };
        let sql = match kind {
            0 => {
                let mut values = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    values.push(format!(
                        "({next_id}, {}, 'new', {}.{:02}, {}, '{}')",
                        rng.gen_range(1..10_000),
                        rng.gen_range(1..100_000),
                        rng.gen_range(0..100),
                        rng.gen_range(1..20),
                        payload(&mut rng, args.row_width)
                    ));
                    live.push(next_id);
                    next_id += 1;
                }
                stats.inserts += n;
                format!(
                    "INSERT INTO {q}.orders (id, customer_id, status, amount, quantity, payload) VALUES {}",
                    values.join(",")
                )
            }
            1 => {
                let ids = pick(&mut rng, &live, n as usize);
                stats.updates += n;
                format!(
                    "UPDATE {q}.orders SET status = 'paid', amount = amount + 1, updated_at = now() WHERE id IN ({})",
                    join_ids(&ids)
                )
            }
            _ => {
                let ids = take(&mut rng, &mut live, n as usize);
                stats.deletes += n;
                format!("DELETE FROM {q}.orders WHERE id IN ({})", join_ids(&ids))
            }
        };
        client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT;"))
            .await?;
        stats.transactions += 1;
        step += 1;
        if args.rate > 0.0 {
            let due = start + Duration::from_secs_f64(stats.transactions as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    Ok(stats)
}

fn payload(rng: &mut StdRng, width: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    (0..width)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `n` distinct live ids, chosen at random (they stay live).
fn pick(rng: &mut StdRng, live: &[i64], n: usize) -> Vec<i64> {
    let start = rng.gen_range(0..=live.len().saturating_sub(n));
    live[start..(start + n).min(live.len())].to_vec()
}

/// Removes `n` live ids, chosen at random.
fn take(rng: &mut StdRng, live: &mut Vec<i64>, n: usize) -> Vec<i64> {
    let start = rng.gen_range(0..=live.len().saturating_sub(n));
    let end = (start + n).min(live.len());
    live.drain(start..end).collect()
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn take_removes_what_it_returns() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut live: Vec<i64> = (1..=10).collect();
        let gone = take(&mut rng, &mut live, 4);
        assert_eq!(gone.len(), 4);
        assert_eq!(live.len(), 6);
        assert!(gone.iter().all(|g| !live.contains(g)));
    }
}
