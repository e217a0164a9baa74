//! The byte level of the replication connection: connect, SSLRequest, startup, authentication,
//! and framing of backend messages.
//!
//! Frontend messages are encoded with `postgres_protocol::message::frontend`. Backend messages
//! are framed here (tag byte + Int32 length that counts itself) and then decoded with
//! `postgres_protocol::message::backend::Message::parse`, except CopyBothResponse (`W`), which
//! that parser does not know.
//!
//! [`Wire::read_frame`] is cancel-safe: bytes are only appended to `rbuf` by
//! `AsyncReadExt::read_buf` (cancel-safe) and frames are split off synchronously, so dropping
//! the future loses nothing.

use std::collections::BTreeMap;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::config::{PgConnectConfig, TlsMode};
use super::error::{Location, PgSourceError, ServerError};
use super::tls::{self, PgStream};

/// PostgreSQL caps a message at 1 GiB (`PQ_LARGE_MESSAGE_LIMIT`); anything bigger is garbage.
const MAX_FRAME_LEN: usize = 0x4000_0000;
const COPY_BOTH_RESPONSE_TAG: u8 = b'W';

/// One backend message.
pub(crate) enum Backend {
    /// CopyBothResponse: START_REPLICATION succeeded.
    CopyBoth,
    Msg(Message),
}

/// What the server told us at startup.
#[derive(Debug, Clone, Default)]
pub struct StartupInfo {
    /// ParameterStatus values (`server_version`, `integer_datetimes`, ...).
    pub params: BTreeMap<String, String>,
    /// Our backend's PID (the `active_pid` of the slot while we stream).
    pub backend_pid: i32,
}

/// The split socket plus read/write buffers.
pub(crate) struct Wire {
    reader: ReadHalf<PgStream>,
    writer: WriteHalf<PgStream>,
    rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) at: Location,
}

impl Wire {
    /// Connects, negotiates TLS, starts up with `replication=database` and authenticates.
    pub(crate) async fn connect(
        cfg: &PgConnectConfig,
    ) -> Result<(Wire, StartupInfo), PgSourceError> {
        let at = Location::server(cfg.addr());
        let timeout = cfg.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(cfg, at.clone())).await {
            Ok(r) => r,
            Err(_) => Err(PgSourceError::Timeout {
                at,
                op: "connect",
                after: timeout,
            }),
        }
    }

    async fn connect_inner(
        cfg: &PgConnectConfig,
        at: Location,
    ) -> Result<(Wire, StartupInfo), PgSourceError> {
        let stream = open_stream(cfg, &at).await?;
        let (reader, writer) = tokio::io::split(stream);
        let mut wire = Wire {
            reader,
            writer,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            at,
        };
        let params = [
            ("user", cfg.user.as_str()),
            ("database", cfg.dbname.as_str()),
            // Logical replication walsender that also accepts SQL (for slot checks).
            ("replication", "database"),
            ("application_name", cfg.application_name.as_str()),
            ("client_encoding", "UTF8"),
            // pgoutput's text values are printed by the walsender with *its* session settings;
            // the model's parsers expect these (model/src/pg_value: ISO dates, `postgres`
            // intervals, UTC, round-trip floats). Startup parameters are GUCs.
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "3"),
        ];
        frontend::startup_message(params.iter().copied(), &mut wire.wbuf)
            .map_err(|e| wire.io("startup", e))?;
        wire.flush("startup").await?;
        wire.authenticate(cfg).await?;
        let info = wire.await_ready().await?;
        Ok((wire, info))
    }

    pub(crate) fn io(&self, op: &'static str, source: std::io::Error) -> PgSourceError {
        PgSourceError::Io {
            at: self.at.clone(),
            op,
            source,
        }
    }

    pub(crate) fn protocol(&self, message: String) -> PgSourceError {
        PgSourceError::Protocol {
            at: self.at.clone(),
            message,
        }
    }

    /// Writes and flushes `wbuf`. Not cancel-safe: call it outside `select!` branches.
    pub(crate) async fn flush(&mut self, op: &'static str) -> Result<(), PgSourceError> {
        let buf = self.wbuf.split();
        let r = async {
            self.writer.write_all(&buf).await?;
            self.writer.flush().await
        }
        .await;
        r.map_err(|e| self.io_or_closed(op, e))
    }

    fn io_or_closed(&self, op: &'static str, e: std::io::Error) -> PgSourceError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
                PgSourceError::Closed {
                    at: self.at.clone(),
                    op,
                }
            }
            _ => self.io(op, e),
        }
    }

    /// Reads the next backend message. Cancel-safe (see the module doc).
    pub(crate) async fn read_frame(&mut self, op: &'static str) -> Result<Backend, PgSourceError> {
        loop {
            if let Some(msg) = self.split_frame()? {
                return Ok(msg);
            }
            let n = self
                .reader
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| self.io_or_closed(op, e))?;
            if n == 0 {
                return Err(PgSourceError::Closed {
                    at: self.at.clone(),
                    op,
                });
            }
        }
    }

    fn split_frame(&mut self) -> Result<Option<Backend>, PgSourceError> {
        let Some(header) = self.rbuf.get(..5) else {
            return Ok(None);
        };
        let tag = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if !(4..=MAX_FRAME_LEN).contains(&len) {
            return Err(self.protocol(format!(
                "message {:?} declares invalid length {len}",
                tag as char
            )));
        }
        if self.rbuf.len() < len + 1 {
            self.rbuf.reserve(len + 1 - self.rbuf.len());
            return Ok(None);
        }
        let mut frame = self.rbuf.split_to(len + 1);
        if tag == COPY_BOTH_RESPONSE_TAG {
            return Ok(Some(Backend::CopyBoth));
        }
        match Message::parse(&mut frame) {
            Ok(Some(m)) => Ok(Some(Backend::Msg(m))),
            Ok(None) => Err(self.protocol(format!(
                "incomplete {:?} message after framing",
                tag as char
            ))),
            Err(e) => Err(self.protocol(format!("cannot parse {:?} message: {e}", tag as char))),
        }
    }

    /// Reads one message, failing on ErrorResponse (after draining to ReadyForQuery when the
    /// server will send one, so the connection stays usable).
    async fn read_msg(&mut self, op: &'static str) -> Result<Message, PgSourceError> {
        match self.read_frame(op).await? {
            Backend::CopyBoth => {
                Err(self.protocol(format!("unexpected CopyBothResponse during {op}")))
            }
            Backend::Msg(Message::ErrorResponse(body)) => Err(PgSourceError::from_server(
                self.at.clone(),
                server_error(&body),
            )),
            Backend::Msg(m) => Ok(m),
        }
    }

    async fn authenticate(&mut self, cfg: &PgConnectConfig) -> Result<(), PgSourceError> {
        let auth_err = |at: &Location, message: String| PgSourceError::Auth {
            at: at.clone(),
            user: cfg.user.clone(),
            message,
        };
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let msg = match self.read_msg("authentication").await {
                Err(PgSourceError::Auth { at, message, .. }) => return Err(auth_err(&at, message)),
                other => other?,
            };
            let password = || {
                cfg.password.as_deref().ok_or_else(|| {
                    auth_err(
                        &self.at,
                        "the server asks for a password but none is configured".into(),
                    )
                })
            };
            match msg {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.wbuf)
                        .map_err(|e| self.io("auth", e))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(cfg.user.as_bytes(), password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf)
                        .map_err(|e| self.io("auth", e))?;
                }
                Message::AuthenticationSasl(body) => {
                    let mechs: Vec<String> = body
                        .mechanisms()
                        .map(|m| Ok(m.to_string()))
                        .collect()
                        .map_err(|e| self.protocol(format!("SASL mechanisms: {e}")))?;
                    if !mechs.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                        return Err(auth_err(
                            &self.at,
                            format!(
                                "server offers only SASL {mechs:?}; SCRAM-SHA-256 is supported"
                            ),
                        ));
                    }
                    // No channel binding: "n,,", accepted even when the server offers -PLUS.
                    let s = sasl::ScramSha256::new(
                        password()?.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        s.message(),
                        &mut self.wbuf,
                    )
                    .map_err(|e| self.io("auth", e))?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("SASLContinue before SASL".into()))?;
                    s.update(body.data())
                        .map_err(|e| auth_err(&self.at, format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.wbuf)
                        .map_err(|e| self.io("auth", e))?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("SASLFinal before SASL".into()))?;
                    // Verifies the server signature: a server that does not know the password fails here.
                    s.finish(body.data())
                        .map_err(|e| auth_err(&self.at, format!("SCRAM server signature: {e}")))?;
                    continue;
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationGssContinue(_) => {
                    return Err(auth_err(&self.at, "the server asks for Kerberos/GSS/SSPI, which is not supported; use scram-sha-256 in pg_hba.conf".into()));
                }
                _ => return Err(self.protocol("unexpected message during authentication".into())),
            }
            self.flush("auth").await?;
        }
    }

    async fn await_ready(&mut self) -> Result<StartupInfo, PgSourceError> {
        let mut info = StartupInfo::default();
        loop {
            match self.read_msg("startup").await? {
                Message::ReadyForQuery(_) => return Ok(info),
                Message::ParameterStatus(p) => {
                    if let (Ok(k), Ok(v)) = (p.name(), p.value()) {
                        info.params.insert(k.to_string(), v.to_string());
                    }
                }
                Message::BackendKeyData(k) => info.backend_pid = k.process_id(),
                Message::NoticeResponse(_) => {}
                _ => return Err(self.protocol("unexpected message during startup".into())),
            }
        }
    }

    /// Reads until ReadyForQuery, discarding; used after an error and when stopping a copy.
    pub(crate) async fn drain_to_ready(
        &mut self,
        op: &'static str,
    ) -> Result<Option<ServerError>, PgSourceError> {
        let mut err = None;
        loop {
            match self.read_frame(op).await? {
                Backend::Msg(Message::ReadyForQuery(_)) => return Ok(err),
                Backend::Msg(Message::ErrorResponse(body)) => err = Some(server_error(&body)),
                _ => {}
            }
        }
    }

    /// Sends Terminate and shuts the socket down; errors are irrelevant at that point.
    pub(crate) async fn terminate(mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush("terminate").await;
        let _ = self.writer.shutdown().await;
    }
}

async fn open_stream(cfg: &PgConnectConfig, at: &Location) -> Result<PgStream, PgSourceError> {
    let io = |op, source| PgSourceError::Io {
        at: at.clone(),
        op,
        source,
    };
    if cfg.is_unix_socket() {
        #[cfg(unix)]
        {
            // The server never offers SSL on Unix sockets; libpq ignores sslmode there too.
            let s = tokio::net::UnixStream::connect(cfg.addr())
                .await
                .map_err(|e| io("connect", e))?;
            return Ok(PgStream::Unix(s));
        }
        #[cfg(not(unix))]
        return Err(PgSourceError::Config {
            message: "Unix sockets are not supported on this platform".into(),
        });
    }
    let mut tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|e| io("connect", e))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls_config) = tls::client_config(cfg)? else {
        return Ok(PgStream::Tcp(tcp));
    };
    let mut req = BytesMut::new();
    frontend::ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(|e| io("SSLRequest", e))?;
    let answer = tcp.read_u8().await.map_err(|e| io("SSLRequest", e))?;
    match (answer, cfg.tls) {
        (b'S', _) => {}
        (b'N', TlsMode::Prefer) => return Ok(PgStream::Tcp(tcp)),
        (b'N', mode) => {
            return Err(PgSourceError::Tls {
                at: at.clone(),
                message: format!("sslmode {mode:?} but the server does not accept SSL (ssl = off); enable ssl on the server or use sslmode=prefer/disable"),
                definite: true,
            })
        }
        (other, _) => {
            return Err(PgSourceError::Protocol { at: at.clone(), message: format!("unexpected answer {other:#x} to SSLRequest") })
        }
    }
    let connector = tokio_rustls::TlsConnector::from(tls_config);
    match connector.connect(tls::server_name(cfg)?, tcp).await {
        Ok(s) => Ok(PgStream::Tls(Box::new(s))),
        Err(e) => {
            // rustls reports certificate problems as InvalidData: retrying will not help.
            let definite = e.kind() == std::io::ErrorKind::InvalidData;
            Err(PgSourceError::Tls {
                at: at.clone(),
                message: format!("handshake failed: {e}"),
                definite,
            })
        }
    }
}

/// Decodes the fields of an ErrorResponse / NoticeResponse.
pub(crate) fn server_error(body: &ErrorResponseBody) -> ServerError {
    let mut e = ServerError::default();
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            _ => {}
        }
    }
    e
}
