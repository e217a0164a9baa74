//! Private database servers for the tests that must do to a server what the shared ones
//! (127.0.0.1:5432 and :3306) cannot suffer while other tests run against them in parallel:
//! settings that endanger every slot (`max_slot_wal_keep_size`), and stopping, crashing and
//! restarting the server under a running pipeline.
//!
//! Each server lives in its own temporary directory on its own port, and is stopped and
//! removed on drop. [`PrivateCluster`] is a PostgreSQL 15 cluster (`initdb`, `pg_ctl` as the
//! `postgres` user, since PostgreSQL refuses to run as root); [`PrivateMariadb`] is a
//! `mariadbd` child of the test (`mariadb-install-db`, root without a password over TCP, ROW
//! binlog with full images and metadata, as the pipelines need). Both are `None` with a note
//! when the binaries are missing, so the tests skip instead of failing on a laptop.
//!
//! Stopping sends the server's own signals directly, without a `pg_ctl` / `mariadb-admin`
//! process in between: a test that stops a server mid-snapshot has a window of a fraction of
//! a second, and the signal is what those tools send anyway.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
#[cfg(feature = "mysql")]
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::support::{free_port, suffix, Pipeline, PipelineSpec};

/// How [`PrivateCluster::stop`] stops the postmaster (`pg_ctl stop -m <mode>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PgStop {
    /// `-m fast` (SIGINT): sessions are terminated, a shutdown checkpoint is written.
    Fast,
    /// `-m immediate` (SIGQUIT): no checkpoint, crash recovery at the next start.
    Immediate,
}

/// Whether process `pid` still exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `signal` (`-INT`, `-TERM`, …) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Waits up to `timeout` for process `pid` to be gone.
fn wait_gone(pid: u32, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) still running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private PostgreSQL cluster (initdb in a temp dir, its own port, `wal_level = logical`)
/// whose settings may be changed, and which may be stopped or crashed, without touching the
/// shared server.
pub(crate) struct PrivateCluster {
    dir: PathBuf,
    pub(crate) port: u16,
    /// The server options of `pg_ctl start -o`, for [`PrivateCluster::start_again`].
    opts: String,
}

impl PrivateCluster {
    fn bin(name: &str) -> PathBuf {
        Path::new("/usr/lib/postgresql/15/bin").join(name)
    }

    fn as_postgres(cmd: &str) {
        let out = Command::new("su")
            .args(["postgres", "-c", cmd])
            .output()
            .expect("su postgres");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a fresh cluster with `settings` (`name=value`, after the defaults, so they may
    /// override them). `None` (with a note) when PostgreSQL 15's server binaries are not
    /// there.
    pub(crate) fn start(settings: &[&str]) -> Option<Self> {
        if !Self::bin("initdb").exists() {
            eprintln!("skipping: no /usr/lib/postgresql/15/bin/initdb");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("tidemark-pg-{}", suffix()));
        std::fs::create_dir_all(&dir).expect("dir");
        let port = free_port();
        Self::as_postgres(&format!(
            "chown postgres {0} 2>/dev/null; true",
            dir.display()
        ));
        let _ = Command::new("chown").args(["postgres"]).arg(&dir).status();
        Self::as_postgres(&format!(
            "{} -D {}/data --auth=trust -U postgres >/dev/null",
            Self::bin("initdb").display(),
            dir.display()
        ));
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_wal_senders=4 -c max_replication_slots=4",
            dir.display()
        );
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let pg = PrivateCluster { dir, port, opts };
        pg.start_again();
        Some(pg)
    }

    /// (Re)starts the postmaster on the same data directory, port and settings, and waits
    /// until it accepts connections (after crash recovery, following [`PgStop::Immediate`]).
    pub(crate) fn start_again(&self) {
        Self::as_postgres(&format!(
            "{} -D {}/data -l {}/log -w -t 120 -o '{}' start >/dev/null",
            Self::bin("pg_ctl").display(),
            self.dir.display(),
            self.dir.display(),
            self.opts
        ));
    }

    /// The postmaster's process id, from `postmaster.pid`, while it runs.
    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Stops the server as `pg_ctl stop -m <mode>` does (its signal, sent at once), and waits
    /// until the postmaster is gone: from then on connections are refused.
    pub(crate) fn stop(&self, mode: PgStop) {
        let pid = self
            .postmaster_pid()
            .expect("the private cluster is running");
        signal(
            pid,
            match mode {
                PgStop::Fast => "-INT",
                PgStop::Immediate => "-QUIT",
            },
        );
        wait_gone(pid, "the private postmaster", Duration::from_secs(120));
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub(crate) fn restart(&self, mode: PgStop) {
        self.stop(mode);
        self.start_again();
    }

    /// Runs `sql` in database `postgres`; panics with psql's stderr on failure.
    pub(crate) fn psql(&self, sql: &str) -> String {
        super::support::psql_at(Some(self.port), "postgres", sql)
    }

    /// A pipeline of `spec` whose source is this cluster instead of the shared server.
    pub(crate) fn pipeline(&self, spec: PipelineSpec) -> Pipeline {
        let p = Pipeline::new(spec);
        let config = std::fs::read_to_string(&p.config).expect("config");
        std::fs::write(
            &p.config,
            config.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port)),
        )
        .expect("config");
        p
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "{} -D {}/data -m immediate stop >/dev/null 2>&1",
                    Self::bin("pg_ctl").display(),
                    self.dir.display()
                ),
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How [`PrivateMariadb::stop`] stops the server.
#[cfg(feature = "mysql")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MyStop {
    /// SIGTERM: a clean shutdown (as `SHUTDOWN` / `mariadb-admin shutdown`).
    Clean,
    /// SIGKILL: a crash; InnoDB and binlog recovery at the next start.
    Kill,
}

/// `name` on the `PATH` or in the usual server directories (`mariadbd` is in `/usr/sbin`,
/// which a test's `PATH` may lack).
#[cfg(feature = "mysql")]
fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A private MariaDB server (`mariadb-install-db` in a temp dir, its own port and socket,
/// binlog on), a child process of the test: root has no password over TCP, as on the shared
/// server, so [`super::mysql_support::MySpec`] pipelines connect to it unchanged but for the
/// port.
#[cfg(feature = "mysql")]
pub(crate) struct PrivateMariadb {
    dir: PathBuf,
    pub(crate) port: u16,
    server: PathBuf,
    child: Option<Child>,
}

#[cfg(feature = "mysql")]
impl PrivateMariadb {
    /// Initialises a data directory and starts the server. `None` (with a note) when
    /// `mariadbd` or `mariadb-install-db` is not there.
    pub(crate) fn start() -> Option<Self> {
        let (Some(server), Some(install)) = (find_bin("mariadbd"), find_bin("mariadb-install-db"))
        else {
            eprintln!("skipping: no mariadbd / mariadb-install-db");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("tidemark-my-{}", suffix()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut install = Command::new(install);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}/data", dir.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                // root@127.0.0.1 (not only root@localhost), as TCP clients are matched by IP.
                "--skip-name-resolve",
            ]);
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.output().expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut my = PrivateMariadb {
            dir,
            port: free_port(),
            server,
            child: None,
        };
        my.start_again();
        Some(my)
    }

    /// (Re)starts the server on the same data directory and port, and waits until it answers.
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "the private mariadbd is running");
        let d = self.dir.display();
        let mut cmd = Command::new(&self.server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={d}/data"))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={d}/sock"))
            .arg(format!("--pid-file={d}/mariadbd.pid"))
            .arg(format!("--log-error={d}/error.log"))
            .arg(format!("--log-bin={d}/binlog"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--server-id=1",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-buffer-pool-size=128M",
            ]);
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.try_sql("", "SELECT 1").is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("mariadbd exited ({status}):\n{}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not answering after 120 s:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (`mode`) and waits until it exited: from then on connections are
    /// refused.
    pub(crate) fn stop(&mut self, mode: MyStop) {
        let mut child = self.child.take().expect("the private mariadbd is running");
        match mode {
            MyStop::Kill => {
                let _ = child.kill();
            }
            MyStop::Clean => signal(child.id(), "-TERM"),
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().expect("wait for mariadbd").is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd still running 120 s after {mode:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub(crate) fn restart(&mut self, mode: MyStop) {
        self.stop(mode);
        self.start_again();
    }

    /// The server's error log so far (why it did not start).
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn try_sql(&self, db: &str, statements: &str) -> Result<String, String> {
        super::mysql_support::try_sql_at(self.port, db, statements)
    }

    /// Runs SQL as root in `db` (none when empty); panics with the client's stderr on
    /// failure.
    pub(crate) fn sql(&self, db: &str, statements: &str) -> String {
        self.try_sql(db, statements).unwrap_or_else(|e| {
            panic!(
                "mariadb (private, port {}) failed: {e}\n{}",
                self.port,
                statements.chars().take(2000).collect::<String>()
            )
        })
    }
}

#[cfg(feature = "mysql")]
impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tests run as root (then `mariadbd` needs `--user=root`).
#[cfg(feature = "mysql")]
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
