//! Where each key of a TOML document sits, so errors found after figment has
//! merged the file with the environment (which drops positions) can still be
//! pointed at the line an admin has to edit. Read with `toml_edit`, which
//! keeps a span for every key and value (the mapping loader reads its files
//! the same way).

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// Key positions of one parsed document.
#[derive(Debug, Default)]
pub(super) struct SourceMap {
    doc: Option<ImDocument<String>>,
}

/// Where a walk down the document stands.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Item(&'a Item),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    /// The child at `segment` (a key, or an array index), with the span of
    /// its key (or of the item itself when the key has none).
    fn child(self, segment: &str) -> Option<(Node<'a>, Option<Range<usize>>)> {
        let index = || segment.parse::<usize>().ok();
        match self {
            Node::Table(table) | Node::Item(Item::Table(table)) => {
                let (key, item) = table.get_key_value(segment)?;
                Some((Node::Item(item), key.span().or_else(|| item.span())))
            }
            Node::Item(Item::ArrayOfTables(tables)) => {
                let table = tables.get(index()?)?;
                Some((Node::Table(table), table.span()))
            }
            Node::Item(Item::Value(value)) | Node::Value(value) => match value {
                Value::InlineTable(table) => {
                    let (key, item) = table.get_key_value(segment)?;
                    Some((Node::Item(item), key.span().or_else(|| item.span())))
                }
                Value::Array(items) => {
                    let value = items.get(index()?)?;
                    Some((Node::Value(value), value.span()))
                }
                _ => None,
            },
            Node::Item(Item::None) => None,
        }
    }
}

impl SourceMap {
    /// Parses `source`, which must already be known to be valid TOML; a
    /// document that still fails gives an empty map, so its errors are
    /// reported against the whole file rather than not at all.
    pub(super) fn parse(source: &str) -> SourceMap {
        SourceMap {
            doc: ImDocument::parse(source.to_string()).ok(),
        }
    }

    /// The byte offset of the deepest key along `path` that the document
    /// has (or of the nearest key before it with a known position), and how
    /// many segments of `path` that key covers (0: none). Array items are
    /// addressed by their index.
    pub(super) fn locate(&self, path: &[&str]) -> (usize, Option<usize>) {
        let Some(doc) = &self.doc else {
            return (0, None);
        };
        let mut node = Node::Table(doc.as_table());
        let mut found = (0, None);
        for (depth, segment) in path.iter().enumerate() {
            let Some((child, span)) = node.child(segment) else {
                break;
            };
            found = (depth + 1, span.map(|s| s.start).or(found.1));
            node = child;
        }
        found
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
