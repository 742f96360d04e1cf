//! An RSA key and a minimal X.509 certificate around its public key (only
//! the SubjectPublicKeyInfo matters to Graph's encryption), for rich
//! notifications in tests.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

pub fn make() -> (PrivateDecryptingKey, Vec<u8>) {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki: PublicKeyX509Der = key.public_key().as_der().unwrap();
    // sha256WithRSAEncryption
    let alg = tlv(
        0x30,
        &[
            &[
                0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B,
            ][..],
            &[0x05, 0x00],
        ]
        .concat(),
    );
    let name = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(
                0x30,
                &[&[0x06, 0x03, 0x55, 0x04, 0x03][..], &tlv(0x0C, b"receiver")].concat(),
            ),
        ),
    );
    let validity = tlv(
        0x30,
        &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")].concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            tlv(0xA0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            alg.clone(),
            name.clone(),
            validity,
            name,
            spki.as_ref().to_vec(),
        ]
        .concat(),
    );
    let certificate = tlv(0x30, &[tbs, alg, tlv(0x03, &[0, 0])].concat());
    (key, certificate)
}

/// The same, as PEM files' text: the certificate, and the key as PKCS#8.
pub fn make_pem() -> (String, String) {
    use aws_lc_rs::encoding::Pkcs8V1Der;
    use base64::Engine;
    let (key, certificate) = make();
    let pkcs8: Pkcs8V1Der = key.as_der().unwrap();
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    (
        pem("CERTIFICATE", &certificate),
        pem("PRIVATE KEY", pkcs8.as_ref()),
    )
}
