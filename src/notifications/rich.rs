//! Rich notifications: the presence itself, encrypted for us, in
//! `encryptedContent`.
//!
//! Graph picks a random 32-byte key, wraps it with RSA-OAEP (SHA-1, MGF1
//! SHA-1) under the certificate we gave the subscription (`dataKey`),
//! encrypts the resource's JSON with AES-256-CBC and PKCS#7 padding, the IV
//! being the key's first 16 bytes (`data`), and signs the encrypted bytes
//! with HMAC-SHA256 under the same key (`dataSignature`). So, in order:
//! the certificate named must be ours; the key is unwrapped (the HMAC needs
//! it); the signature is checked, in constant time, before `data` is
//! decrypted at all — a tampered `data` never reaches the cipher; then
//! `data` is decrypted and read as a [`GraphPresence`].

use crate::graph::auth::pem_block;
use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use thiserror::Error;

use super::payload::EncryptedContent;
use crate::config::Secret;
use crate::graph::model::GraphPresence;

/// base64 with or without its `=` padding: Microsoft's examples show both
/// habits across resources.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why encrypted content was not used. [`RichError::reason`] names each for
/// the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RichError {
    #[error("the encryption certificate or key cannot be used: {0}")]
    Setup(String),
    #[error(
        "the content is encrypted for certificate `{found}`, not ours (`{ours}`); \
         the subscription was made with another certificate"
    )]
    WrongCertificate { found: String, ours: String },
    #[error(
        "the content is encrypted for the certificate with thumbprint {found}, not ours ({ours})"
    )]
    WrongThumbprint { found: String, ours: String },
    #[error("`{0}` is not base64")]
    NotBase64(&'static str),
    #[error("`dataKey` does not decrypt with our private key")]
    KeyUnwrap,
    #[error("`dataKey` holds {0} bytes, not the 32 of an AES-256 key")]
    KeyLength(usize),
    #[error("`dataSignature` does not match `data`: the content was changed on its way")]
    BadSignature,
    #[error("`data` does not decrypt (the cipher text or its padding is damaged)")]
    Undecryptable,
    #[error("the decrypted content is not a presence: {0}")]
    NotPresence(String),
}

impl RichError {
    /// A short, stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RichError::Setup(_) => "setup",
            RichError::WrongCertificate { .. } | RichError::WrongThumbprint { .. } => {
                "wrong_certificate"
            }
            RichError::NotBase64(_) => "not_base64",
            RichError::KeyUnwrap | RichError::KeyLength(_) => "key_unwrap",
            RichError::BadSignature => "bad_signature",
            RichError::Undecryptable => "undecryptable",
            RichError::NotPresence(_) => "not_presence",
        }
    }
}

/// Our side of rich notifications: the private key and which certificate
/// it belongs to.
pub struct Decryption {
    key: OaepPrivateDecryptingKey,
    /// The `encryptionCertificateId` the subscriptions were created with.
    certificate_id: String,
    /// SHA-1 of the certificate's DER.
    thumbprint: [u8; 20],
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryption")
            .field("certificate_id", &self.certificate_id)
            .field("thumbprint", &hex(&self.thumbprint))
            .finish_non_exhaustive()
    }
}

impl Decryption {
    /// From the private key and the certificate's DER (the one sent as
    /// `encryptionCertificate`).
    pub fn new(
        key: PrivateDecryptingKey,
        certificate_der: &[u8],
        certificate_id: impl Into<String>,
    ) -> Result<Self, RichError> {
        let key = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| RichError::Setup("the key cannot decrypt with RSA-OAEP".into()))?;
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate_der);
        let mut thumbprint = [0; 20];
        thumbprint.copy_from_slice(sha1.as_ref());
        Ok(Decryption {
            key,
            certificate_id: certificate_id.into(),
            thumbprint,
        })
    }

    /// From the PEM certificate and the PEM private key (PKCS#8 `PRIVATE
    /// KEY`, or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &Secret,
        certificate_id: impl Into<String>,
    ) -> Result<Self, RichError> {
        let certificate = pem_block(certificate_pem, "CERTIFICATE").ok_or_else(|| {
            RichError::Setup("no CERTIFICATE block in the certificate file".into())
        })?;
        let pkcs8 = if let Some(der) = pem_block(key_pem.expose(), "PRIVATE KEY") {
            der
        } else if let Some(der) = pem_block(key_pem.expose(), "RSA PRIVATE KEY") {
            pkcs1_in_pkcs8(&der)
        } else {
            return Err(RichError::Setup(
                "no PRIVATE KEY or RSA PRIVATE KEY block in the key file".into(),
            ));
        };
        let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|e| {
            RichError::Setup(format!("the private key is not a usable RSA key: {e}"))
        })?;
        Decryption::new(key, &certificate, certificate_id)
    }

    /// The certificate's SHA-1 thumbprint in upper-case hex, as Graph
    /// writes it.
    pub fn thumbprint(&self) -> String {
        hex(&self.thumbprint)
    }

    /// The presence inside `content`, after every check above.
    pub fn decrypt(&self, content: &EncryptedContent) -> Result<GraphPresence, RichError> {
        if let Some(found) = &content.encryption_certificate_id
            && *found != self.certificate_id
        {
            return Err(RichError::WrongCertificate {
                found: found.chars().take(200).collect(),
                ours: self.certificate_id.clone(),
            });
        }
        if let Some(found) = &content.encryption_certificate_thumbprint
            && !found.eq_ignore_ascii_case(&hex(&self.thumbprint))
        {
            return Err(RichError::WrongThumbprint {
                found: found.chars().take(80).collect(),
                ours: hex(&self.thumbprint),
            });
        }
        let wrapped = decode(&content.data_key, "dataKey")?;
        let mut data = decode(&content.data, "data")?;
        let signature = decode(&content.data_signature, "dataSignature")?;

        let mut unwrapped = vec![0; self.key.min_output_size()];
        let key = self
            .key
            .decrypt(&OAEP_SHA1_MGF1SHA1, &wrapped, &mut unwrapped, None)
            .map_err(|_| RichError::KeyUnwrap)?;
        let key: [u8; 32] =
            <[u8; 32]>::try_from(&key[..]).map_err(|_| RichError::KeyLength(key.len()))?;

        // The signature first: nothing unauthenticated is decrypted.
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &key), &data, &signature)
            .map_err(|_| RichError::BadSignature)?;

        let mut iv = [0; 16];
        iv.copy_from_slice(&key[..16]);
        let cipher = UnboundCipherKey::new(&AES_256, &key)
            .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
            .map_err(|_| RichError::Undecryptable)?;
        let plain = cipher
            .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| RichError::Undecryptable)?;
        serde_json::from_slice::<GraphPresence>(plain)
            .map_err(|e| RichError::NotPresence(e.to_string()))
    }
}

fn decode(text: &str, field: &'static str) -> Result<Vec<u8>, RichError> {
    BASE64
        .decode(text.trim())
        .map_err(|_| RichError::NotBase64(field))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A PKCS#1 `RSAPrivateKey` wrapped as the PKCS#8 `PrivateKeyInfo` aws-lc
/// reads: `SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption, NULL }, OCTET
/// STRING pkcs1 }`.
fn pkcs1_in_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const VERSION: &[u8] = &[0x02, 0x01, 0x00];
    const ALGORITHM: &[u8] = &[
        0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut inner = Vec::with_capacity(pkcs1.len() + 32);
    inner.extend_from_slice(VERSION);
    inner.extend_from_slice(ALGORITHM);
    der_push(&mut inner, 0x04, pkcs1);
    let mut out = Vec::with_capacity(inner.len() + 8);
    der_push(&mut out, 0x30, &inner);
    out
}

fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::KeySize;

    use super::*;
    use crate::notifications::testing::{shared_decryption, test_decryption};
    use crate::presence::Presence;

    const PRESENCE: &str = r##"{"@odata.type":"#microsoft.graph.presence","@odata.id":"users/u1/presence","id":"u1","availability":"Busy","activity":"InACall","sequenceNumber":"C0005"}"##;

    #[test]
    fn encrypted_presence_decrypts_and_reads() {
        let (decryption, encryptor) = shared_decryption();
        let content = encryptor.encrypt(PRESENCE.as_bytes());
        let presence = decryption.decrypt(&content).unwrap();
        assert_eq!(presence.id, "u1");
        assert_eq!(presence.presence, Presence::from_graph("Busy", "InACall"));
        assert_eq!(presence.sequence_number.as_deref(), Some("C0005"));
    }

    #[test]
    fn a_tampered_data_is_refused_by_its_signature_before_decryption() {
        let (decryption, encryptor) = shared_decryption();
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        let mut data = BASE64.decode(&content.data).unwrap();
        data[0] ^= 1;
        content.data = BASE64.encode(&data);
        assert_eq!(decryption.decrypt(&content), Err(RichError::BadSignature));
        // Even a `data` the cipher would refuse is stopped by the signature.
        content.data = BASE64.encode(b"short");
        assert_eq!(decryption.decrypt(&content), Err(RichError::BadSignature));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let (decryption, encryptor) = shared_decryption();
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        let mut signature = BASE64.decode(&content.data_signature).unwrap();
        signature[5] ^= 0x80;
        content.data_signature = BASE64.encode(&signature);
        assert_eq!(decryption.decrypt(&content), Err(RichError::BadSignature));
        content.data_signature = BASE64.encode([0u8; 31]);
        assert_eq!(decryption.decrypt(&content), Err(RichError::BadSignature));
    }

    #[test]
    fn content_for_another_certificate_or_key_is_refused() {
        let (decryption, encryptor) = shared_decryption();
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        content.encryption_certificate_id = Some("another".into());
        assert!(matches!(
            decryption.decrypt(&content),
            Err(RichError::WrongCertificate { .. })
        ));
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        content.encryption_certificate_thumbprint = Some("00".repeat(20));
        assert_eq!(
            decryption.decrypt(&content).unwrap_err().reason(),
            "wrong_certificate"
        );
        // Lower-case hex is the same thumbprint.
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        content.encryption_certificate_thumbprint = Some(decryption.thumbprint().to_lowercase());
        assert!(decryption.decrypt(&content).is_ok());

        let (_, stranger) = test_decryption();
        let mut content = stranger.encrypt(PRESENCE.as_bytes());
        content.encryption_certificate_thumbprint = None;
        content.encryption_certificate_id = None;
        assert_eq!(decryption.decrypt(&content), Err(RichError::KeyUnwrap));
    }

    #[test]
    fn damaged_fields_and_non_presence_content_are_named() {
        let (decryption, encryptor) = shared_decryption();
        let mut content = encryptor.encrypt(PRESENCE.as_bytes());
        content.data_key = "not base64!".into();
        assert_eq!(
            decryption.decrypt(&content),
            Err(RichError::NotBase64("dataKey"))
        );
        let content = encryptor.encrypt(br#"{"availability":"Busy"}"#);
        assert!(matches!(
            decryption.decrypt(&content),
            Err(RichError::NotPresence(_))
        ));
    }

    #[test]
    fn keys_are_read_from_pkcs8_and_pkcs1_pem() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = key.as_der().unwrap();
        let pem = |label: &str, der: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                base64::engine::general_purpose::STANDARD.encode(der)
            )
        };
        let cert = pem("CERTIFICATE", b"stand-in certificate DER");
        let from8 =
            Decryption::from_pem(&cert, &Secret::new(pem("PRIVATE KEY", pkcs8.as_ref())), "c")
                .unwrap();
        assert_eq!(from8.thumbprint().len(), 40);
        // The PKCS#1 key inside the PKCS#8 document: its OCTET STRING.
        let der = pkcs8.as_ref();
        let pkcs1 = &der[der.len() - pkcs1_len(der)..];
        assert_eq!(pkcs1_in_pkcs8(pkcs1), der);
        assert!(
            Decryption::from_pem(&cert, &Secret::new(pem("RSA PRIVATE KEY", pkcs1)), "c").is_ok()
        );
        assert!(matches!(
            Decryption::from_pem(&cert, &Secret::new("nothing"), "c"),
            Err(RichError::Setup(_))
        ));
        assert!(matches!(
            Decryption::from_pem("", &Secret::new(pem("PRIVATE KEY", pkcs8.as_ref())), "c"),
            Err(RichError::Setup(_))
        ));
    }

    /// The length of the last element (the OCTET STRING) of a PKCS#8 document.
    fn pkcs1_len(pkcs8: &[u8]) -> usize {
        // SEQUENCE header, version (3), algorithm (15), OCTET STRING header.
        let header = if pkcs8[1] & 0x80 != 0 {
            2 + usize::from(pkcs8[1] & 0x7F)
        } else {
            2
        };
        let octet = &pkcs8[header + 3 + 15..];
        let len_header = if octet[1] & 0x80 != 0 {
            2 + usize::from(octet[1] & 0x7F)
        } else {
            2
        };
        octet.len() - len_header
    }

    proptest::proptest! {
        #[test]
        fn any_content_is_refused_or_read_never_a_panic(
            data in "[A-Za-z0-9+/=]{0,80}",
            key in "[A-Za-z0-9+/=]{0,400}",
            signature in "[A-Za-z0-9+/=]{0,60}",
        ) {
            let (decryption, _) = shared_decryption();
            let _ = decryption.decrypt(&EncryptedContent {
                data,
                data_signature: signature,
                data_key: key,
                encryption_certificate_id: None,
                encryption_certificate_thumbprint: None,
            });
        }
    }
}
