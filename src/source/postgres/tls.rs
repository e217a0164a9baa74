//! Transport for both connections: plain TCP, Unix socket, or TLS (rustls with the `ring`
//! provider; aws-lc would need a C/cmake build).
//!
//! The replication connection negotiates TLS itself (SSLRequest, one byte `S`/`N`, then the
//! handshake; see `replication.rs`). The control connection uses tokio-postgres, which does the
//! SSLRequest and then calls [`RustlsConnector`] (our `MakeTlsConnect`, so we need no
//! tokio-postgres-rustls and share one verifier between both connections).
//!
//! # Traps
//! - libpq's `require` does not check the certificate at all; `verify-ca` checks the chain but
//!   not the name; only `verify-full` checks the name. Many managed services hand out
//!   certificates whose name does not match the endpoint, so `verify-ca` matters.
//! - With `require` and a root cert configured, libpq verifies the chain (verify-ca). We do the
//!   same so a configured CA is never silently ignored.
//! - `prefer` falls back to plain TCP only when the server answers `N` to the SSLRequest; a
//!   failed TLS handshake is an error (libpq would retry without TLS; we would rather not
//!   silently downgrade).
//! - SCRAM channel binding (`-PLUS`) needs the server certificate hash; we do not offer it and
//!   say so (`n,,` gs2 header), which servers accept unless `channel_binding=require` is set
//!   on the client side (we never set it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use super::config::{PgConnectConfig, TlsMode};
use super::error::{Location, PgSourceError};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client config for the mode (`None` for [`TlsMode::Disable`]).
pub fn client_config(cfg: &PgConnectConfig) -> Result<Option<Arc<ClientConfig>>, PgSourceError> {
    let at = Location::server(cfg.addr());
    let tls_err = |message: String| PgSourceError::Tls {
        at: at.clone(),
        message,
        definite: true,
    };
    let verify = match (cfg.tls, &cfg.tls_root_cert) {
        (TlsMode::Disable, _) => return Ok(None),
        (TlsMode::Prefer, _) | (TlsMode::Require, None) => None,
        (TlsMode::Require, Some(_)) | (TlsMode::VerifyCa, _) => Some(false),
        (TlsMode::VerifyFull, _) => Some(true),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        None => Arc::new(NoCertCheck(provider())),
        Some(check_name) => {
            let roots = Arc::new(root_store(cfg).map_err(tls_err)?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| tls_err(e.to_string()))?;
            Arc::new(ChainCheck { inner, check_name })
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn root_store(cfg: &PgConnectConfig) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &cfg.tls_root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// The server name for SNI and verify-full (IP addresses are fine: rustls then skips SNI).
pub fn server_name(cfg: &PgConnectConfig) -> Result<ServerName<'static>, PgSourceError> {
    ServerName::try_from(cfg.host.clone()).map_err(|e| PgSourceError::Tls {
        at: Location::server(cfg.addr()),
        message: format!("host {:?} is not a valid TLS server name: {e}", cfg.host),
        definite: true,
    })
}

/// `prefer`/`require`: encrypt, accept any certificate (handshake signatures still checked).
#[derive(Debug)]
struct NoCertCheck(Arc<CryptoProvider>);

/// `verify-ca` (`check_name = false`) and `verify-full`.
#[derive(Debug)]
struct ChainCheck {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for NoCertCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            // webpki checks the chain before the name, so a name error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The replication connection's byte stream.
pub enum PgStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            PgStream::Tcp($s) => $e,
            #[cfg(unix)]
            PgStream::Unix($s) => $e,
            PgStream::Tls($s) => $e,
        }
    };
}

impl AsyncRead for PgStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for PgStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// `MakeTlsConnect` for the tokio-postgres control connection, using the same rustls config.
#[derive(Clone)]
pub struct RustlsConnector(pub Arc<ClientConfig>);

/// One pending handshake, for one host.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// The TLS stream handed to tokio-postgres.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        // No tls-server-end-point: SCRAM without -PLUS (see the module traps).
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
