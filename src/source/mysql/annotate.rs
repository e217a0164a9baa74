//! MariaDB's ANNOTATE_ROWS events for `include_query`: a loopback relay that sets
//! `BINLOG_SEND_ANNOTATE_ROWS_EVENT` in the replica's `COM_BINLOG_DUMP`.
//!
//! ```text
//!   mysql_async replica conn ──► 127.0.0.1:<ephemeral> ──relay──► server (host:port of the url)
//!     client → server: packets framed; the first COM_BINLOG_DUMP (sequence 0, command 0x12)
//!                      gets flags |= 2, then bytes are copied as they come
//!     server → client: bytes copied unchanged
//! ```
//!
//! MariaDB sends ANNOTATE_ROWS only to a replica that asks for them with flag 2 of
//! `COM_BINLOG_DUMP` (`sql_repl.cc`: a replica with `@mariadb_slave_capability` ≥ 2 that does not
//! ask gets nothing, the event is left out of the stream), which is what Debezium's MariaDB
//! connector does for `include.query` (`setUseSendAnnotateRowsEvent`). mysql_async 0.37 cannot
//! say it: `BinlogStreamRequest` keeps its `BinlogRequest` private and mysql_common's
//! `ComBinlogDump` masks every flag but `BINLOG_DUMP_NON_BLOCK`. So the replica connection goes
//! through this relay, which changes that one field and nothing else; authentication, TLS
//! negotiation of the server (none: see below) and the event stream pass through untouched.
//!
//! # Traps
//! - **TLS and compression hide the packets**: the relay cannot set the flag inside them, so
//!   `include_query` with a TLS or compressed connection to MariaDB is a configuration error
//!   ([`check_opts`]) rather than a stream that silently lacks the statements.
//! - **Only the first dump packet** is rewritten; then the relay is a plain copy, so the event
//!   stream costs one extra loopback hop and no parsing.
//! - The listener takes one connection and closes; the relay ends with either socket, and
//!   [`Relay`] aborts it when dropped with its session.

use std::io;
use std::net::SocketAddr;

use mysql_async::Opts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// `COM_BINLOG_DUMP`.
const COM_BINLOG_DUMP: u8 = 0x12;
/// MariaDB's `BINLOG_SEND_ANNOTATE_ROWS_EVENT` dump flag.
pub const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 2;

/// Why the relay cannot be used with these connection options, if it cannot.
pub fn check_opts(o: &Opts) -> Result<(), String> {
    if o.ssl_opts().is_some() {
        return Err(
            "include_query on MariaDB needs a connection without TLS: Tidemark asks for \
             ANNOTATE_ROWS events by setting a COM_BINLOG_DUMP flag its MySQL client library \
             cannot set, through a loopback relay that cannot see into TLS (set include_query = \
             false or drop require_ssl from source.url)"
                .into(),
        );
    }
    if o.compression().is_some() {
        return Err(
            "include_query on MariaDB needs a connection without protocol compression \
             (drop compression from source.url)"
                .into(),
        );
    }
    if o.socket().is_some() {
        return Err(
            "include_query on MariaDB needs a TCP connection (drop socket from source.url)".into(),
        );
    }
    Ok(())
}

/// A running relay; dropping it closes both sockets.
pub struct Relay {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Connects to `host:port` and listens on a loopback port for the one replica connection.
    pub async fn start(host: &str, port: u16) -> io::Result<Relay> {
        let server = TcpStream::connect((host, port)).await?;
        server.set_nodelay(true)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let client = match listener.accept().await {
                Ok((c, _)) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "mysql source: annotate relay: accept failed");
                    return;
                }
            };
            drop(listener);
            let _ = client.set_nodelay(true);
            if let Err(e) = relay(client, server).await {
                tracing::debug!(error = %e, "mysql source: annotate relay closed");
            }
        });
        Ok(Relay { addr, task })
    }

    /// The loopback port the replica connection must use.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes, setting the annotate flag of the first dump.
async fn relay(client: TcpStream, server: TcpStream) -> io::Result<()> {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = async {
        tokio::io::copy(&mut sr, &mut cw).await?;
        cw.shutdown().await
    };
    let up = async {
        let mut head = [0u8; 4];
        loop {
            cr.read_exact(&mut head).await?;
            let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
            let mut body = vec![0u8; len];
            cr.read_exact(&mut body).await?;
            let dump = set_annotate_flag(head[3], &mut body);
            sw.write_all(&head).await?;
            sw.write_all(&body).await?;
            if dump {
                break;
            }
        }
        tokio::io::copy(&mut cr, &mut sw).await?;
        sw.shutdown().await
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// Sets `BINLOG_SEND_ANNOTATE_ROWS_EVENT` if `body` (sequence id `seq`) is a `COM_BINLOG_DUMP`:
/// command byte, position (4), flags (2), server id (4), file name. True if it was one.
pub fn set_annotate_flag(seq: u8, body: &mut [u8]) -> bool {
    if seq != 0 || body.len() < 11 || body[0] != COM_BINLOG_DUMP {
        return false;
    }
    let flags = u16::from_le_bytes([body[5], body[6]]) | BINLOG_SEND_ANNOTATE_ROWS_EVENT;
    body[5..7].copy_from_slice(&flags.to_le_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_the_flag_of_a_dump_only() {
        // COM_BINLOG_DUMP pos 4, flags 0, server id 6401, "mariadb-bin.000007".
        let mut dump = vec![0x12, 4, 0, 0, 0, 0, 0];
        dump.extend(6401u32.to_le_bytes());
        dump.extend(b"mariadb-bin.000007");
        let before = dump.clone();
        assert!(set_annotate_flag(0, &mut dump));
        assert_eq!(&dump[5..7], &[2, 0]);
        assert_eq!(dump[..5], before[..5]);
        assert_eq!(dump[7..], before[7..]);
        // NON_BLOCK kept.
        let mut nb = before.clone();
        nb[5] = 1;
        assert!(set_annotate_flag(0, &mut nb));
        assert_eq!(&nb[5..7], &[3, 0]);
        // A query, a handshake response (sequence 1) and a short packet stay as they are.
        let mut q = b"\x03SET @master_heartbeat_period = 1".to_vec();
        let q0 = q.clone();
        assert!(!set_annotate_flag(0, &mut q));
        assert_eq!(q, q0);
        let mut hs = before.clone();
        assert!(!set_annotate_flag(1, &mut hs));
        assert_eq!(hs, before);
        let mut short = vec![0x12, 4, 0];
        assert!(!set_annotate_flag(0, &mut short));
    }

    #[tokio::test]
    async fn relays_both_ways_and_rewrites_the_dump() {
        let server = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = server.local_addr().unwrap().port();
        let relay_task = tokio::spawn(async move { Relay::start("127.0.0.1", port).await });
        let (mut upstream, _) = server.accept().await.unwrap();
        let relay = relay_task.await.unwrap().unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", relay.port()))
            .await
            .unwrap();
        // Server greeting passes through.
        upstream.write_all(b"\x03\x00\x00\x00abc").await.unwrap();
        let mut greet = [0u8; 7];
        client.read_exact(&mut greet).await.unwrap();
        assert_eq!(&greet, b"\x03\x00\x00\x00abc");
        // A query, then the dump, then raw bytes after it.
        let mut dump = vec![0x12, 4, 0, 0, 0, 0, 0];
        dump.extend(1u32.to_le_bytes());
        dump.extend(b"f.000001");
        let mut out = vec![2, 0, 0, 0, 0x0e, 0x00];
        out.extend([dump.len() as u8, 0, 0, 0]);
        out.extend(&dump);
        out.extend(b"\x12\x00\x00\x00raw");
        client.write_all(&out).await.unwrap();
        let mut got = vec![0u8; out.len()];
        upstream.read_exact(&mut got).await.unwrap();
        let mut want = out.clone();
        want[6 + 4 + 5] = 2;
        assert_eq!(got, want);
        drop(relay);
    }
}
