//! An S3 API server for the lake sinks' object-storage tests: moto's standalone server from
//! PyPI (`scripts/s3-server.sh`, in memory, on a free port of 127.0.0.1), stopped on drop.
//! moto accepts any credentials; the clients still sign their requests.

use std::path::Path;
use std::process::Command;

use crate::support::free_port;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server.sh")
}

/// A moto server on a free port, stopped on drop.
pub struct S3Server {
    port: u16,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &port.to_string()])
            .output()
            .expect("run s3-server.sh");
        assert!(
            out.status.success(),
            "s3-server.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let endpoint = text
            .lines()
            .find_map(|l| l.strip_prefix("endpoint="))
            .unwrap_or_else(|| panic!("no endpoint= in {text}"))
            .to_owned();
        S3Server { port, endpoint }
    }

    /// `curl` against the server; the HTTP status and the body.
    pub fn curl(&self, method: &str, path: &str) -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-X", method, "-w", "\n%{http_code}"])
            .arg(format!("{}{path}", self.endpoint))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_owned(), body.to_owned())
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let (code, body) = self.curl("PUT", &format!("/{bucket}"));
        assert_eq!(code, "200", "create bucket {bucket}: {body}");
    }

    /// The keys of `bucket`'s objects (all pages).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = match &token {
                Some(t) => format!("/{bucket}?list-type=2&continuation-token={t}"),
                None => format!("/{bucket}?list-type=2"),
            };
            let (_, body) = self.curl("GET", &query);
            out.extend(
                body.split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .map(str::to_owned),
            );
            token = body
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|s| s.split("</NextContinuationToken>").next())
                .map(|t| {
                    t.replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D")
                });
            if token.is_none() {
                return out;
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.port.to_string()])
            .output();
    }
}
