//! HTTPS for the simulator: a throwaway certificate authority made at test
//! time (ECDSA P-256 through aws-lc-rs, certificates written in DER by
//! hand), a server certificate it signs, and the listener that serves TLS
//! with it. A client trusts the CA through `[graph] ca_file`, as it would
//! a TLS-inspecting proxy's, so that path is tested for real.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// Why a certificate could not be made or served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a key: {0}")]
    Key(String),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("the TLS server cannot be set up: {0}")]
    Server(String),
}

/// A certificate and its key, in DER.
#[derive(Clone, Debug)]
pub struct Issued {
    pub certificate_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

impl Issued {
    pub fn certificate_pem(&self) -> String {
        pem("CERTIFICATE", &self.certificate_der)
    }

    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_der)
    }
}

/// A certificate authority for tests.
pub struct TestCa {
    ca: Issued,
    key: EcdsaKeyPair,
    name: String,
}

impl TestCa {
    /// A new CA named `name`, valid from an hour ago for a year.
    pub fn new(name: &str) -> Result<TestCa, TlsError> {
        let (key, key_der) = new_key()?;
        let now = Utc::now();
        let tbs = tbs(
            1,
            name,
            name,
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(365),
            key.public_key().as_ref(),
            &[
                extension(oid::BASIC_CONSTRAINTS, true, &seq(&[boolean(true)])),
                // keyCertSign and cRLSign.
                extension(oid::KEY_USAGE, true, &[0x03, 0x02, 0x01, 0x06]),
            ],
        );
        let certificate_der = sign(&key, tbs)?;
        Ok(TestCa {
            ca: Issued {
                certificate_der,
                key_der,
            },
            key,
            name: name.to_owned(),
        })
    }

    /// The CA's certificate: what a client trusts.
    pub fn certificate(&self) -> &Issued {
        &self.ca
    }

    /// A server certificate for `ips` and `dns` names, valid until
    /// `not_after`.
    pub fn issue_server(
        &self,
        ips: &[IpAddr],
        dns: &[&str],
        not_after: DateTime<Utc>,
    ) -> Result<Issued, TlsError> {
        self.issue(ips, dns, not_after, oid::SERVER_AUTH)
    }

    /// A client certificate (e.g. an app's credential) until `not_after`.
    pub fn issue_client(&self, name: &str, not_after: DateTime<Utc>) -> Result<Issued, TlsError> {
        self.issue(&[], &[name], not_after, oid::CLIENT_AUTH)
    }

    fn issue(
        &self,
        ips: &[IpAddr],
        dns: &[&str],
        not_after: DateTime<Utc>,
        usage: &[u8],
    ) -> Result<Issued, TlsError> {
        let (key, key_der) = new_key()?;
        let mut names = Vec::new();
        for ip in ips {
            let octets = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            names.extend(tlv(0x87, &octets));
        }
        for name in dns {
            names.extend(tlv(0x82, name.as_bytes()));
        }
        let mut serial = [0u8; 8];
        SystemRandom::new()
            .fill(&mut serial)
            .map_err(|_| TlsError::Key("no randomness".into()))?;
        let subject = dns.first().copied().unwrap_or("presence-sync test");
        let tbs = tbs(
            u64::from_be_bytes(serial) >> 1,
            &self.name,
            subject,
            Utc::now() - chrono::Duration::hours(1),
            not_after,
            key.public_key().as_ref(),
            &[
                extension(oid::BASIC_CONSTRAINTS, true, &seq(&[])),
                // digitalSignature.
                extension(oid::KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]),
                extension(oid::EXT_KEY_USAGE, false, &seq(&[usage.to_vec()])),
                extension(oid::SUBJECT_ALT_NAME, false, &tlv(0x30, &names)),
            ],
        );
        Ok(Issued {
            certificate_der: sign(&self.key, tbs)?,
            key_der,
        })
    }
}

/// `-----BEGIN {label}-----` armour.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn new_key() -> Result<(EcdsaKeyPair, Vec<u8>), TlsError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let der = pkcs8.as_ref().to_vec();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((key, der))
}

fn sign(key: &EcdsaKeyPair, tbs: Vec<u8>) -> Result<Vec<u8>, TlsError> {
    let signature = key
        .sign(&SystemRandom::new(), &tbs)
        .map_err(|e| TlsError::Sign(e.to_string()))?;
    Ok(seq(&[
        tbs,
        seq(&[oid::ECDSA_SHA256.to_vec()]),
        bit_string(signature.as_ref()),
    ]))
}

mod oid {
    pub const ECDSA_SHA256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    pub const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    pub const COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x06, 0x03, 0x55, 0x1D, 0x13];
    pub const KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1D, 0x0F];
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x1D, 0x11];
    pub const EXT_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1D, 0x25];
    pub const SERVER_AUTH: &[u8] = &[0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    pub const CLIENT_AUTH: &[u8] = &[0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

fn boolean(value: bool) -> Vec<u8> {
    tlv(0x01, &[if value { 0xFF } else { 0x00 }])
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

fn integer(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn name(common_name: &str) -> Vec<u8> {
    seq(&[tlv(
        0x31,
        &seq(&[oid::COMMON_NAME.to_vec(), tlv(0x0C, common_name.as_bytes())]),
    )])
}

/// UTCTime up to 2049, GeneralizedTime after (RFC 5280).
fn time(at: DateTime<Utc>) -> Vec<u8> {
    use chrono::Datelike;
    if at.year() < 2050 {
        tlv(0x17, at.format("%y%m%d%H%M%SZ").to_string().as_bytes())
    } else {
        tlv(0x18, at.format("%Y%m%d%H%M%SZ").to_string().as_bytes())
    }
}

fn extension(id: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![id.to_vec()];
    if critical {
        parts.push(boolean(true));
    }
    parts.push(tlv(0x04, value));
    seq(&parts)
}

fn tbs(
    serial: u64,
    issuer: &str,
    subject: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    public_key: &[u8],
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    seq(&[
        tlv(0xA0, &integer(2)),
        integer(serial),
        seq(&[oid::ECDSA_SHA256.to_vec()]),
        name(issuer),
        seq(&[time(not_before), time(not_after)]),
        name(subject),
        seq(&[
            seq(&[oid::EC_PUBLIC_KEY.to_vec(), oid::P256.to_vec()]),
            bit_string(public_key),
        ]),
        tlv(0xA3, &seq(extensions)),
    ])
}

/// A TCP listener that serves TLS with one certificate: for `axum::serve`.
/// Handshakes run in the accept loop under a deadline; a client that fails
/// its handshake is dropped and the next one accepted.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

/// How long a client may take over its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, chain: &[Vec<u8>], key_der: &[u8]) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certificates = chain
            .iter()
            .map(|der| rustls::pki_types::CertificateDer::from(der.clone()))
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.to_vec().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Server(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .map_err(|e| TlsError::Server(e.to_string()))?;
        Ok(TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                // Out of descriptors and the like: wait, as axum does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match tokio::time::timeout(HANDSHAKE, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_over_127_use_the_long_form() {
        assert_eq!(tlv(0x04, &[0; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer(0x80), [0x02, 0x02, 0x00, 0x80]);
    }

    #[test]
    fn a_certificate_is_issued_and_armoured() {
        let ca = TestCa::new("test CA").unwrap();
        let server = ca
            .issue_server(
                &["127.0.0.1".parse().unwrap()],
                &["localhost"],
                Utc::now() + chrono::Duration::days(1),
            )
            .unwrap();
        assert!(
            server
                .certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );
        assert!(server.key_pem().contains("PRIVATE KEY"));
        assert_eq!(server.certificate_der[0], 0x30);
    }
}
