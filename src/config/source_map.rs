//! Where each key of a TOML document sits, so errors found after figment has
//! merged the file with the environment (which drops positions) can still be
//! pointed at the line an admin has to edit.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The span protocol of `toml` 0.8 (`serde_spanned` 0.6): a deserializer
/// that knows a position hands it over when asked for a struct of this name
/// and these fields. `toml::Spanned` cannot be used directly because keys of
/// implicit tables (`a` and `b` in `[a.b.c]`) have no span and make it fail;
/// this module asks the same way and accepts a plain value too.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const START: &str = "$__serde_spanned_private_start";
const END: &str = "$__serde_spanned_private_end";
const VALUE: &str = "$__serde_spanned_private_value";
const FIELDS: &[&str] = &[START, END, VALUE];

/// Key positions of one parsed document.
#[derive(Debug, Default)]
pub(super) struct SourceMap {
    root: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_start: Option<usize>,
    value: Spanned,
}

#[derive(Debug)]
struct Spanned {
    start: Option<usize>,
    node: Node,
}

#[derive(Debug)]
enum Node {
    Leaf,
    Table(Vec<Entry>),
    Array(Vec<Spanned>),
}

impl SourceMap {
    /// Parses `source`, which must already be known to be valid TOML; a
    /// document that still fails gives an empty map, so its errors are
    /// reported against the whole file rather than not at all.
    pub(super) fn parse(source: &str) -> SourceMap {
        match toml::from_str::<Spanned>(source) {
            Ok(Spanned {
                node: Node::Table(root),
                ..
            }) => SourceMap { root },
            _ => SourceMap::default(),
        }
    }

    /// The byte offset of the deepest key along `path` that the document
    /// has (or of the nearest key before it with a known position), and how
    /// many segments of `path` that key covers (0: none). Array items are
    /// addressed by their index.
    pub(super) fn locate(&self, path: &[&str]) -> (usize, Option<usize>) {
        let mut entries = &self.root;
        let mut found = (0, None);
        let mut items: Option<&Vec<Spanned>> = None;
        for (depth, segment) in path.iter().enumerate() {
            let node = if let Some(list) = items.take() {
                let Some(item) = segment.parse::<usize>().ok().and_then(|i| list.get(i)) else {
                    break;
                };
                found = (depth + 1, item.start.or(found.1));
                &item.node
            } else {
                let Some(entry) = entries.iter().find(|e| e.key == *segment) else {
                    break;
                };
                found = (depth + 1, entry.key_start.or(found.1));
                &entry.value.node
            };
            match node {
                Node::Table(children) => entries = children,
                Node::Array(list) => items = Some(list),
                Node::Leaf => break,
            }
        }
        found
    }
}

impl<'de> Deserialize<'de> for Spanned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, FIELDS, NodeVisitor)
    }
}

/// The value inside a span: asking for a span again would loop.
struct Unspanned(Spanned);

impl<'de> Deserialize<'de> for Unspanned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(Unspanned)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Spanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Spanned, E> {
        Ok(leaf())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Spanned, E> {
        Ok(leaf())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Spanned, E> {
        Ok(leaf())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Spanned, E> {
        Ok(leaf())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Spanned, E> {
        Ok(leaf())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Spanned, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Spanned {
            start: None,
            node: Node::Array(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned, A::Error> {
        let mut entries = Vec::new();
        let mut start = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key.name.as_str() {
                START if key.start.is_none() => start = Some(map.next_value::<usize>()?),
                END if key.start.is_none() => {
                    map.next_value::<usize>()?;
                }
                VALUE if key.start.is_none() => {
                    let Unspanned(inner) = map.next_value()?;
                    return Ok(Spanned {
                        start,
                        node: inner.node,
                    });
                }
                _ => entries.push(Entry {
                    key: key.name,
                    key_start: key.start,
                    value: map.next_value()?,
                }),
            }
        }
        Ok(Spanned {
            start: None,
            node: Node::Table(entries),
        })
    }
}

fn leaf() -> Spanned {
    Spanned {
        start: None,
        node: Node::Leaf,
    }
}

/// A table key, with its position when the parser knows it.
struct Key {
    name: String,
    start: Option<usize>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(Key {
            name: name.to_owned(),
            start: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut span: Range<usize> = 0..0;
        let mut name = None;
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                START => span.start = map.next_value()?,
                END => span.end = map.next_value()?,
                _ => name = Some(map.next_value::<String>()?),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(VALUE))?;
        Ok(Key {
            name,
            start: Some(span.start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(source: &str, path: &[&str]) -> (usize, Option<(usize, usize)>) {
        let (depth, offset) = SourceMap::parse(source).locate(path);
        (
            depth,
            offset.map(|o| crate::diagnostics::line_column(source, o)),
        )
    }

    #[test]
    fn finds_keys_in_tables_headers_and_arrays() {
        let src =
            "[graph]\ntenant_id = \"x\"\n\n[mappings.profiles.a]\ngroups = [\"g1\", \"g2\"]\n";
        assert_eq!(at(src, &["graph", "tenant_id"]), (2, Some((2, 1))));
        assert_eq!(at(src, &["graph", "client_id"]), (1, Some((1, 2))));
        assert_eq!(
            at(src, &["mappings", "profiles", "a", "groups", "1"]),
            (5, Some((5, 17)))
        );
        assert_eq!(at(src, &["sync", "echo_window"]), (0, None));
    }

    #[test]
    fn datetimes_and_inline_tables_do_not_lose_the_map() {
        let src = "[graph]\nwhen = 1979-05-27\nx = { y = 1 }\n";
        assert_eq!(at(src, &["graph", "when"]), (2, Some((2, 1))));
        assert_eq!(at(src, &["graph", "x", "y"]), (3, Some((3, 7))));
    }
}
