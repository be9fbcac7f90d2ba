//! TLS for the HTTP API: the self-signed certificate `dta init --api-tls` makes, the server
//! side (a listener that completes handshakes away from its accept loop, so a slow client
//! holds up nobody else), and the client side, which trusts exactly one certificate: the one
//! whose SHA-256 fingerprint it was given. There is no CA: an operator passes the fingerprint
//! `init` printed (or a client with `--home` reads it from `node.json`).
//!
//! What it does not do: decide when TLS is needed (`run` refuses a plain API on a non-loopback
//! address), or renew certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The certificate `dta init --api-tls` writes into a home.
pub const CERT_FILE: &str = "api-cert.pem";
/// Its private key.
pub const KEY_FILE: &str = "api-key.pem";

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes done and not yet taken by the server.
const READY_CAPACITY: usize = 64;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate could not be made.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate and key.
    #[error("the API's certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    /// A fingerprint that is not 64 hex digits.
    #[error(
        "a certificate fingerprint is 64 hex digits (SHA-256), as `dta init --api-tls` prints it"
    )]
    Fingerprint,
}

/// The SHA-256 of a certificate (DER), in lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes a self-signed certificate for `hosts` (names or IP addresses; `localhost` and
/// `127.0.0.1` are always in it) and its key in `home`, both mode 0600; its fingerprint.
pub fn make_self_signed(home: &Path, hosts: &[String]) -> Result<String, TlsError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(
        hosts
            .iter()
            .filter(|h| !names.contains(h))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let key = zeroize::Zeroizing::new(made.key_pair.serialize_pem());
    for (file, bytes) in [
        (KEY_FILE, key.as_bytes()),
        (CERT_FILE, made.cert.pem().as_bytes()),
    ] {
        let path = home.join(file);
        crate::private::write_private_file(&path, bytes).map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(fingerprint(made.cert.der()))
}

/// The server's side: its configuration and its certificate's fingerprint.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// The fingerprint clients pin.
    pub fingerprint: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate (the first in the file is the server's) and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem = |path: &Path, reason: String| TlsError::Pem {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem(cert, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem(cert, e.to_string()))?;
        let first = certs
            .first()
            .ok_or_else(|| pem(cert, "no certificate in it".into()))?;
        let fingerprint = fingerprint(first);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
        })
    }
}

/// A TLS listener for `axum::serve`: a task accepts TCP connections and runs each handshake
/// in a task of its own; finished ones are handed to the server. A failed or slow handshake
/// is dropped (logged at debug).
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS on `tcp`.
    pub fn new(tcp: TcpListener, tls: &ServerTls) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_CAPACITY);
        let acceptor = tls.acceptor.clone();
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::debug!(%err, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, %err, "API TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended (it does not, short of a panic): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A fingerprint as given (hex, any case, colons allowed), checked.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(digits.trim()).map_err(|_| TlsError::Fingerprint)?;
    bytes.try_into().map_err(|_| TlsError::Fingerprint)
}

/// Trusts the one certificate whose SHA-256 is `pinned`, and checks that the server holds its
/// key (the handshake signatures) as any TLS client does.
#[derive(Debug)]
struct PinnedCertificate {
    pinned: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if subtle::ConstantTimeEq::ct_eq(&seen[..], &self.pinned[..]).into() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the API's certificate has fingerprint {}, not the pinned {}",
                hex::encode(seen),
                hex::encode(self.pinned)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration that trusts only the certificate with this fingerprint.
pub fn pinned_client_config(pinned: [u8; 32]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedCertificate {
        pinned,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A path from the config: relative ones are inside the home.
pub fn in_home(home: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        home.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_certificate_loads_with_the_fingerprint_it_was_made_with() {
        let home = tempfile::tempdir().unwrap();
        let made = make_self_signed(home.path(), &["10.1.2.3".into()]).unwrap();
        let loaded =
            ServerTls::load(&home.path().join(CERT_FILE), &home.path().join(KEY_FILE)).unwrap();
        assert_eq!(made, loaded.fingerprint);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(home.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0);
        assert_eq!(parse_fingerprint(&made.to_uppercase()).unwrap().len(), 32);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        // A key that is not a key: a clear error naming the file.
        std::fs::write(home.path().join("bad.pem"), "nothing").unwrap();
        let bad = ServerTls::load(&home.path().join(CERT_FILE), &home.path().join("bad.pem"));
        assert!(matches!(bad, Err(TlsError::Pem { path, .. }) if path.ends_with("bad.pem")));
    }
}
