//! Connection settings shared by the replication and the control connection, and a parser for
//! libpq-style URLs (`postgres://user:pass@host:port/db?sslmode=require`).
//!
//! Supported query parameters: `sslmode` (disable, prefer, require, verify-ca, verify-full;
//! `allow` is read as prefer), `sslrootcert`, `application_name`, `connect_timeout` (seconds),
//! and `user`, `password`, `host`, `port`, `dbname` overriding the URL parts. Unknown parameters
//! are rejected (libpq does the same), so a typo never silently weakens TLS.
//! A host starting with `/` is a Unix socket directory (`<dir>/.s.PGSQL.<port>`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::error::PgSourceError;

/// How TLS is negotiated, after libpq's `sslmode`.
///
/// `Prefer` and `Require` encrypt without checking the certificate (as libpq does), except that
/// `Require` with a `tls_root_cert` behaves like `VerifyCa` (also as libpq does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP, no SSLRequest.
    Disable,
    /// TLS if the server accepts the SSLRequest, plain otherwise.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked.
    Require,
    /// TLS, certificate chain checked against `tls_root_cert` (or the webpki roots), host name not.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl TlsMode {
    /// Parses a libpq `sslmode` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Default `connect_timeout`: libpq has none (waits for the OS), we prefer a bounded wait so a
/// blackholed host surfaces as a transient error quickly.
pub const fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Settings for one PostgreSQL server connection.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConnectConfig {
    /// Host name, IP address, or a Unix socket directory (starts with `/`).
    pub host: String,
    /// TCP port (also names the Unix socket file). Default 5432.
    pub port: u16,
    /// Role to log in as. Needs REPLICATION (or superuser) for the replication connection.
    pub user: String,
    /// Password for cleartext, md5 or SCRAM-SHA-256 auth; `None` for trust.
    pub password: Option<String>,
    /// Database whose changes are decoded (logical slots belong to one database).
    pub dbname: String,
    /// TLS negotiation mode.
    pub tls: TlsMode,
    /// PEM file with the CA certificate(s) to trust instead of the webpki roots.
    pub tls_root_cert: Option<PathBuf>,
    /// Shown in `pg_stat_activity` / `pg_stat_replication`. Default `tidemark`.
    pub application_name: String,
    /// Limit for TCP connect + TLS + authentication.
    pub connect_timeout: Duration,
}

impl fmt::Debug for PgConnectConfig {
    // The password is a secret: never printed (STYLE.md §5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnectConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("tls", &self.tls)
            .field("tls_root_cert", &self.tls_root_cert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PgConnectConfig {
    /// A config with defaults for everything but host, user and database.
    pub fn new(
        host: impl Into<String>,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> Self {
        PgConnectConfig {
            host: host.into(),
            port: 5432,
            user: user.into(),
            password: None,
            dbname: dbname.into(),
            tls: TlsMode::default(),
            tls_root_cert: None,
            application_name: "tidemark".to_string(),
            connect_timeout: default_connect_timeout(),
        }
    }

    /// `host:port`, or the socket path, for error locations and logs.
    pub fn addr(&self) -> String {
        if self.is_unix_socket() {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether `host` names a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// Parses `postgres://user:pass@host:port/db?sslmode=...` (also `postgresql://`).
    pub fn from_url(url: &str) -> Result<Self, PgSourceError> {
        let err = |m: String| PgSourceError::Config { message: m };
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| err("URL must start with postgres:// or postgresql://".into()))?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = main.split_once('/').unwrap_or((main, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut cfg = PgConnectConfig::new("localhost", "postgres", "");
        if let Some(ui) = userinfo {
            let (u, p) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            cfg.user = percent_decode(u).map_err(err)?;
            cfg.password = p.map(percent_decode).transpose().map_err(err)?;
        }
        parse_host_port(&mut cfg, hostport).map_err(err)?;
        cfg.dbname = percent_decode(path).map_err(err)?;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).map_err(err)?;
            apply_param(&mut cfg, k, v).map_err(err)?;
        }
        if cfg.dbname.is_empty() {
            cfg.dbname = cfg.user.clone();
        }
        Ok(cfg)
    }
}

fn parse_host_port(cfg: &mut PgConnectConfig, hostport: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in IPv6 host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (percent_decode(h)?, Some(p)),
            None => (percent_decode(hostport)?, None),
        }
    };
    if !host.is_empty() {
        cfg.host = host;
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        cfg.port = p
            .parse()
            .map_err(|_| format!("port {p:?} is not a number 1-65535"))?;
    }
    Ok(())
}

fn apply_param(cfg: &mut PgConnectConfig, key: &str, v: String) -> Result<(), String> {
    match key {
        "sslmode" => {
            cfg.tls = TlsMode::parse(&v).ok_or_else(|| {
                format!("sslmode {v:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")
            })?
        }
        "sslrootcert" => cfg.tls_root_cert = Some(PathBuf::from(v)),
        "application_name" => cfg.application_name = v,
        "connect_timeout" => {
            let secs: u64 = v.parse().map_err(|_| format!("connect_timeout {v:?} is not a number of seconds"))?;
            cfg.connect_timeout = Duration::from_secs(secs.max(1));
        }
        "user" => cfg.user = v,
        "password" => cfg.password = Some(v),
        "host" => cfg.host = v,
        "port" => cfg.port = v.parse().map_err(|_| format!("port {v:?} is not a number 1-65535"))?,
        "dbname" => cfg.dbname = v,
        other => return Err(format!("unknown URL parameter {other:?}")),
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            let v =
                u8::from_str_radix(hex, 16).map_err(|_| format!("bad percent escape in {s:?}"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 after percent-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let c = PgConnectConfig::from_url(
            "postgres://ti%40de:p%3Ass@db.example:6543/shop?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&connect_timeout=3",
        )
        .expect("valid url");
        assert_eq!(c.user, "ti@de");
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(
            (c.host.as_str(), c.port, c.dbname.as_str()),
            ("db.example", 6543, "shop")
        );
        assert_eq!(c.tls, TlsMode::VerifyFull);
        assert_eq!(c.tls_root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.application_name, "x");
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert!(
            !format!("{c:?}").contains("p:ss"),
            "password must not be printed"
        );
    }

    #[test]
    fn defaults_ipv6_and_socket() {
        let c = PgConnectConfig::from_url("postgresql://u@[::1]/d").expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("::1", 5432, TlsMode::Prefer)
        );
        assert_eq!(c.addr(), "[::1]:5432");
        let c = PgConnectConfig::from_url("postgres:///d?host=%2Fvar%2Frun%2Fpostgresql&user=p")
            .expect("valid");
        assert!(c.is_unix_socket());
        assert_eq!(c.addr(), "/var/run/postgresql/.s.PGSQL.5432");
        let c = PgConnectConfig::from_url("postgres://bob@h").expect("valid");
        assert_eq!(c.dbname, "bob", "dbname defaults to the user, like libpq");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "mysql://x",
            "postgres://h:99999/d",
            "postgres://h/d?sslmode=maybe",
            "postgres://h/d?sslmod=require",
            "postgres://h/d%zz",
        ] {
            assert!(PgConnectConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
