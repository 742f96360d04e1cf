//! `application/x-www-form-urlencoded` decoding for token request bodies and
//! query strings (axum's `form` feature is not enabled, and this is small).

/// Decodes `a=1&b=x+y` into pairs; malformed escapes are kept literally
/// rather than refused, as lenient servers do.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The first value of `name`, if any.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (unreserved characters and `,` kept).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~,".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_keeps_malformed_escapes() {
        let pairs = parse("scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&a=x+y&b=%zz&flag");
        assert_eq!(
            get(&pairs, "scope"),
            Some("https://graph.microsoft.com/.default")
        );
        assert_eq!(get(&pairs, "a"), Some("x y"));
        assert_eq!(get(&pairs, "b"), Some("%zz"));
        assert_eq!(get(&pairs, "flag"), Some(""));
        assert_eq!(get(&pairs, "missing"), None);
        assert_eq!(parse("%").len(), 1);
    }

    #[test]
    fn encode_round_trips() {
        let text = "a b/c?d=é,f";
        assert_eq!(parse(&format!("k={}", encode(text)))[0].1, text);
    }
}
