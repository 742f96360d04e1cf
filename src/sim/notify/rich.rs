//! Rich notifications' `encryptedContent`, as Microsoft documents it: a
//! random 32-byte key wrapped with RSA-OAEP (SHA-1, MGF1-SHA-1) under the
//! subscription certificate's public key (`dataKey`), the resource's JSON
//! in AES-256-CBC with PKCS#7 padding and the key's first 16 bytes as IV
//! (`data`), and HMAC-SHA256 of the encrypted bytes under the same key
//! (`dataSignature`); the certificate named by its id and its hex SHA-1.
//!
//! The public key is read from the certificate by walking its DER to the
//! `SubjectPublicKeyInfo` (nothing else of the certificate is checked: Graph
//! does not check it either, beyond its key).

use aws_lc_rs::cipher::{AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Why content could not be encrypted for a certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RichError {
    #[error("the certificate is not DER-encoded X.509")]
    NotCertificate,
    #[error("the certificate's key is not an RSA key of 2048 to 4096 bits")]
    NotRsa,
    #[error("encryption failed")]
    Crypto,
}

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The `SubjectPublicKeyInfo` (whole DER element) of an X.509 certificate.
pub fn subject_public_key_info(certificate_der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = element(certificate_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // The optional explicit [0] version.
    if rest.first() == Some(&0xA0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = element(rest)?.2;
    }
    let (tag, _, after) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(&rest[..rest.len() - after.len()])
}

fn public_key(certificate_der: &[u8]) -> Result<OaepPublicEncryptingKey, RichError> {
    let spki = subject_public_key_info(certificate_der).ok_or(RichError::NotCertificate)?;
    let key = PublicEncryptingKey::from_der(spki).map_err(|_| RichError::NotRsa)?;
    if !(2048..=4096).contains(&key.key_size_bits()) {
        return Err(RichError::NotRsa);
    }
    OaepPublicEncryptingKey::new(key).map_err(|_| RichError::NotRsa)
}

/// Whether a subscription may use this certificate for rich notifications.
pub fn check_certificate(certificate_der: &[u8]) -> Result<(), String> {
    public_key(certificate_der)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Hex SHA-1 of the certificate's DER, upper case as Graph sends it.
pub fn thumbprint(certificate_der: &[u8]) -> String {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate_der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `encryptedContent` for `content` under the certificate.
pub fn encrypt(
    certificate_der: &[u8],
    certificate_id: &str,
    content: &Value,
) -> Result<Value, RichError> {
    let public = public_key(certificate_der)?;
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| RichError::Crypto)?;
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let wrapped = public
        .encrypt(&OAEP_SHA1_MGF1SHA1, &key, &mut wrapped, None)
        .map_err(|_| RichError::Crypto)?
        .to_vec();
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let cipher = UnboundCipherKey::new(&AES_256, &key)
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| RichError::Crypto)?;
    let mut data = content.to_string().into_bytes();
    cipher
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| RichError::Crypto)?;
    let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &data);
    Ok(json!({
        "data": STANDARD.encode(&data),
        "dataSignature": STANDARD.encode(signature.as_ref()),
        "dataKey": STANDARD.encode(&wrapped),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": thumbprint(certificate_der),
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = subject_public_key_info(&bytes);
            prop_assert!(check_certificate(&bytes).is_err());
        }
    }

    #[test]
    fn long_lengths_are_read() {
        let mut der = vec![0x04, 0x82, 0x01, 0x00];
        der.extend(vec![7u8; 256]);
        let (tag, content, rest) = element(&der).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (0x04, 256, 0));
        assert!(element(&[0x04, 0x82, 0x01]).is_none());
    }
}
