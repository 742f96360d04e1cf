//! How deliveries are signed: the sink signs, receivers verify.
//!
//! The signature is HMAC-SHA256, keyed with the webhook secret, over
//! `<timestamp>.<body>`: the `X-PresenceSync-Timestamp` value (unix seconds,
//! as sent), a full stop, and the request body byte for byte. Signing the
//! timestamp lets a receiver refuse old deliveries replayed at it; it should
//! accept a timestamp only within a few minutes of its own clock.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;

/// The header that carries `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-PresenceSync-Signature";
/// The header that carries the signing time, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-PresenceSync-Timestamp";
/// The header that names a delivery: `<first event id>-<last event id>`,
/// the same on every attempt at the same batch.
pub const DELIVERY_HEADER: &str = "X-PresenceSync-Delivery";

const SCHEME: &str = "sha256=";
const TAG_LEN: usize = 32;

/// The signature header value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    sign_with(&key, timestamp, body)
}

/// [`sign`] with a key made once, as the sink does.
pub(super) fn sign_with(key: &hmac::Key, timestamp: &str, body: &[u8]) -> String {
    let tag = tag(key, timestamp, body);
    let mut header = String::with_capacity(SCHEME.len() + 2 * TAG_LEN);
    header.push_str(SCHEME);
    for byte in tag.as_ref() {
        header.push(hex_digit(byte >> 4));
        header.push(hex_digit(byte & 0x0f));
    }
    header
}

/// Whether `header` (the `X-PresenceSync-Signature` value) is the signature
/// of `body` sent at `timestamp` (the `X-PresenceSync-Timestamp` value) with
/// `secret`. The comparison takes the same time wherever the first wrong
/// byte is. Checking that `timestamp` is recent is the caller's part.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix(SCHEME).and_then(decode_hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let expected = tag(&key, timestamp, body);
    verify_slices_are_equal(expected.as_ref(), &given).is_ok()
}

fn tag(key: &hmac::Key, timestamp: &str, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// Exactly one tag's worth of hex digits (either case).
fn decode_hex(text: &str) -> Option<[u8; TAG_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * TAG_LEN {
        return None;
    }
    let mut out = [0u8; TAG_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // Computed with Python's hmac module, as a receiver would:
        // hmac.new(b"whsec-test", b'1700000000.{"events":[]}', sha256).hexdigest()
        assert_eq!(
            sign(b"whsec-test", "1700000000", br#"{"events":[]}"#),
            "sha256=f6508d728f59e4a4c30a839747614dc39926dae93caf45c8e91908c852f5ce5d"
        );
    }

    #[test]
    fn accepts_upper_case_hex_and_surrounding_space() {
        let header = sign(b"k", "1700000000", b"{}");
        let upper = format!(" sha256={} ", header[SCHEME.len()..].to_ascii_uppercase());
        assert!(verify_signature(b"k", "1700000000", b"{}", &upper));
    }

    #[test]
    fn rejects_malformed_headers() {
        let header = sign(b"k", "1", b"x");
        for bad in [
            "",
            "sha256=",
            &header[SCHEME.len()..],
            &header.replace("sha256=", "sha1="),
            &header[..header.len() - 1],
            &format!("{header}0"),
            &header.replace(&header[header.len() - 1..], "g"),
        ] {
            assert!(!verify_signature(b"k", "1", b"x", bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn a_signature_verifies_and_any_change_breaks_it(
            secret in prop::collection::vec(any::<u8>(), 1..64),
            other_secret in prop::collection::vec(any::<u8>(), 1..64),
            timestamp in 0u64..4_000_000_000,
            other_timestamp in 0u64..4_000_000_000,
            body in prop::collection::vec(any::<u8>(), 0..512),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let ts = timestamp.to_string();
            let header = sign(&secret, &ts, &body);
            prop_assert!(verify_signature(&secret, &ts, &body, &header));
            if other_secret != secret {
                prop_assert!(!verify_signature(&other_secret, &ts, &body, &header));
            }
            if other_timestamp != timestamp {
                prop_assert!(!verify_signature(&secret, &other_timestamp.to_string(), &body, &header));
            }
            if !body.is_empty() {
                let mut tampered = body.clone();
                tampered[flip.index(body.len())] ^= 1 << bit;
                prop_assert!(!verify_signature(&secret, &ts, &tampered, &header));
            }
            let mut longer = body.clone();
            longer.push(b' ');
            prop_assert!(!verify_signature(&secret, &ts, &longer, &header));
        }

        #[test]
        fn never_panics_on_any_header(header in "\\PC{0,100}", body in ".{0,40}") {
            let _ = verify_signature(b"secret", "1700000000", body.as_bytes(), &header);
        }
    }
}
