#!/usr/bin/env python3
"""The MariaDB workload of the end-to-end benchmark: `tidemark generate`'s shape on MariaDB.

Same tables (`customers`, `orders`), the same 4 inserts : 2 updates : 1 delete transactions of
`--batch` multi-row statements with a `payload` of `--row-width` bytes, as `src/generate.rs` does
on PostgreSQL. Statements go through the `mariadb` command-line client (one process, its stdin
fed as the workload runs), so no Python driver is needed and the generator is never the
bottleneck.

One difference, for latency: MariaDB's binlog timestamps (`source.ts_ms`) have one-second
resolution, so every inserted or updated row carries `mark_us`, the server's
`UNIX_TIMESTAMP(NOW(6))` in microseconds at the statement's start. The benchmark measures commit
→ delivery from it (inserts and updates; a delete's row has only its old mark).

Usable as a module (`Workload`) or a script:
  benches/e2e/mariadb_workload.py --database tidemark_bench --reset --changes 200000
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
MARK = "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"


def client(host: str, port: int, user: str, database: str | None, **kw) -> list[str]:
    cmd = ["mariadb", f"-h{host}", f"-P{port}", f"-u{user}", "-N", "-B", "--default-character-set=utf8mb4"]
    return cmd + ([database] if database else [])


def sql(host: str, port: int, user: str, database: str | None, statements: str) -> str:
    out = subprocess.run(client(host, port, user, database) + ["-e", statements], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"mariadb: {out.stderr.strip()} ({statements[:200]})")
    return out.stdout.strip()


SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
  id BIGINT PRIMARY KEY, name VARCHAR(200) NOT NULL, email VARCHAR(200),
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));
CREATE TABLE IF NOT EXISTS orders (
  id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, status VARCHAR(16) NOT NULL,
  amount DECIMAL(12,2) NOT NULL, quantity INT NOT NULL, payload TEXT,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), updated_at TIMESTAMP(6) NULL,
  mark_us BIGINT);
"""


class Workload:
    """Deterministic per seed: the same transactions (and counts) every run on a fresh table."""

    def __init__(self, batch: int, row_width: int, seed: int = 42, next_id: int = 1) -> None:
        self.batch = max(1, batch)
        self.row_width = row_width
        self.rng = random.Random(seed)
        self.next_id = next_id
        self.live: list[int] = []
        self.step = 0
        self.stats = {"inserts": 0, "updates": 0, "deletes": 0, "transactions": 0}

    def changes(self) -> int:
        return self.stats["inserts"] + self.stats["updates"] + self.stats["deletes"]

    def payload(self) -> str:
        return "".join(self.rng.choice(ALPHABET) for _ in range(self.row_width))

    def transactions(self, changes: int):
        """Yields one SQL transaction (text) at a time until `changes` more row changes."""
        goal = self.changes() + changes
        while self.changes() < goal:
            n = min(self.batch, goal - self.changes())
            kind = 0 if self.step % 7 <= 3 else (1 if self.step % 7 <= 5 else 2)
            if kind > 0 and len(self.live) < n:
                kind = 0
            if kind == 0:
                rows = []
                for _ in range(n):
                    rows.append(f"({self.next_id},{self.rng.randrange(1, 10_000)},'new',"
                                f"{self.rng.randrange(1, 100_000)}.{self.rng.randrange(0, 100):02},"
                                f"{self.rng.randrange(1, 20)},'{self.payload()}',{MARK})")
                    self.live.append(self.next_id)
                    self.next_id += 1
                self.stats["inserts"] += n
                stmt = ("INSERT INTO orders (id, customer_id, status, amount, quantity, payload, mark_us) VALUES "
                        + ",".join(rows))
            elif kind == 1:
                start = self.rng.randrange(0, len(self.live) - n + 1)
                ids = self.live[start:start + n]
                self.stats["updates"] += n
                stmt = (f"UPDATE orders SET status = 'paid', amount = amount + 1, updated_at = NOW(6), "
                        f"mark_us = {MARK} WHERE id IN ({','.join(map(str, ids))})")
            else:
                start = self.rng.randrange(0, len(self.live) - n + 1)
                ids = self.live[start:start + n]
                del self.live[start:start + n]
                self.stats["deletes"] += n
                stmt = f"DELETE FROM orders WHERE id IN ({','.join(map(str, ids))})"
            self.stats["transactions"] += 1
            self.step += 1
            yield f"BEGIN; {stmt}; COMMIT;\n"


def reset(host: str, port: int, user: str, database: str) -> None:
    sql(host, port, user, None, f"DROP DATABASE IF EXISTS `{database}`; CREATE DATABASE `{database}`")
    sql(host, port, user, database, SCHEMA)


def run(w: Workload, changes: int, rate_tps: float, host: str, port: int, user: str, database: str) -> dict:
    """Commits `changes` row changes through one `mariadb` client, `rate_tps` transactions/s
    (0 = as fast as the server takes them); returns the counts."""
    before = dict(w.stats)
    p = subprocess.Popen(client(host, port, user, database), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    start = time.time()
    sent = 0
    assert p.stdin is not None
    for txn in w.transactions(changes):
        p.stdin.write(txn)
        sent += 1
        if rate_tps > 0:
            p.stdin.flush()
            due = start + sent / rate_tps
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
    p.stdin.close()
    err = p.stderr.read() if p.stderr else ""
    if p.wait() != 0:
        raise RuntimeError(f"mariadb workload failed: {err.strip()}")
    d = {k: w.stats[k] - before[k] for k in w.stats}
    d["changes"] = d["inserts"] + d["updates"] + d["deletes"]
    d["seconds"] = round(time.time() - start, 2)
    return d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--user", default="root")
    p.add_argument("--database", default="tidemark_bench")
    p.add_argument("--changes", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--row-width", type=int, default=64)
    p.add_argument("--rate", type=float, default=0.0, help="transactions per second (0 = max)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--reset", action="store_true")
    a = p.parse_args()
    if a.reset:
        reset(a.host, a.port, a.user, a.database)
    top = sql(a.host, a.port, a.user, a.database, "SELECT coalesce(max(id), 0) FROM orders")
    w = Workload(a.batch, a.row_width, a.seed, int(top) + 1)
    s = run(w, a.changes, a.rate, a.host, a.port, a.user, a.database)
    print(f"committed {s['changes']} changes ({s['inserts']} inserts, {s['updates']} updates, "
          f"{s['deletes']} deletes) in {s['transactions']} transactions, {s['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
