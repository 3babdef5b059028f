//! A fast block-YAML writer for the shapes routes have, byte-identical to `serde-saphyr`.
//!
//! `serde-saphyr` stays the YAML library of this project. Its serializer, though, formats every
//! key into its own `String` and runs several quoting scans on every scalar, which made it a
//! large part of `iter8-render`'s time (measured in `docs/performance.md`). Routes are plain trees of structs, lists, string maps, numbers, booleans and short
//! name-like strings, so this module writes those directly, in the layout `serde-saphyr` uses
//! (two-space indent, list items at their key's column), and gives up, returning `None`, on
//! anything else:
//!
//! - a string is written bare only when it is name-like (letters, digits, `.`, `_`, `/`, `-`,
//!   starting with a letter or `/`, at most 64 bytes, not a YAML 1.1 boolean, null, `nan` or
//!   `inf` word); the empty string is `""`; any other string is formatted by `serde-saphyr`
//!   itself, and used when that gives one line;
//! - map keys must be name-like;
//! - empty lists or maps, lists of lists, floats, unit values, `None` and enum payloads are not
//!   handled.
//!
//! [`crate::HttpRoute::to_yaml`] falls back to `serde-saphyr` for the whole value on `None`, so
//! the output never depends on which path wrote it; property tests compare the two on arbitrary
//! routes and check that `serde-saphyr` prints every name-like string bare.

use serde::ser::{self, Impossible, Serialize};

/// `value` as block YAML, exactly as `serde_saphyr::to_string` writes it, or `None` when the
/// value has a shape this writer does not handle (see the module docs).
pub fn to_block_yaml<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    let mut out = String::with_capacity(2048);
    value
        .serialize(Writer {
            out: &mut out,
            at: At::Top,
        })
        .ok()?;
    Some(out)
}

/// True when `serde-saphyr` writes `s` bare, as a value or a key (checked by a property test).
pub fn is_name_like(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if bytes.len() > 64 || !(first.is_ascii_alphabetic() || first == b'/') {
        return false;
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return false;
    }
    // Words a YAML 1.1 reader takes for booleans, null or special floats.
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    !(bytes.len() <= 5 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(s)))
}

/// Where the value being written goes.
#[derive(Clone, Copy)]
enum At {
    /// The document itself: only a map.
    Top,
    /// After `key:`, written at this column.
    Key(usize),
    /// After `- `, written at this column.
    Dash(usize),
}

fn pad(out: &mut String, columns: usize) {
    out.extend(std::iter::repeat_n(' ', columns));
}

/// Writes one value straight into the output; on `Err` the caller throws the output away.
struct Writer<'a> {
    out: &'a mut String,
    at: At,
}

impl<'a> Writer<'a> {
    /// A scalar, already formatted.
    fn scalar(self, text: &str) -> Result<(), Unsupported> {
        match self.at {
            At::Top => return Err(Unsupported),
            At::Key(_) => self.out.push(' '),
            At::Dash(_) => {}
        }
        self.out.push_str(text);
        self.out.push('\n');
        Ok(())
    }

    fn string(self, s: &str) -> Result<(), Unsupported> {
        if s.is_empty() {
            return self.scalar("\"\"");
        }
        if is_name_like(s) {
            return self.scalar(s);
        }
        // Anything else is formatted by serde-saphyr itself, when that gives one line.
        let text = serde_saphyr::to_string(&s).map_err(|_| Unsupported)?;
        match text.strip_suffix('\n') {
            Some(line) if !line.contains('\n') && !line.starts_with(['|', '>']) => {
                self.scalar(line)
            }
            _ => Err(Unsupported),
        }
    }

    fn number(self, v: impl std::fmt::Display) -> Result<(), Unsupported> {
        self.scalar(&v.to_string())
    }

    fn map(self) -> Result<MapWriter<'a>, Unsupported> {
        let (indent, after_dash) = match self.at {
            At::Top => (0, false),
            At::Key(column) => {
                self.out.push('\n');
                (column + 2, false)
            }
            At::Dash(column) => (column + 2, true),
        };
        Ok(MapWriter {
            out: self.out,
            indent,
            after_dash,
            entries: 0,
        })
    }

    fn seq(self) -> Result<SeqWriter<'a>, Unsupported> {
        match self.at {
            // Compact lists: the items sit at their key's column.
            At::Key(column) => {
                self.out.push('\n');
                Ok(SeqWriter {
                    out: self.out,
                    column,
                    items: 0,
                })
            }
            At::Top | At::Dash(_) => Err(Unsupported),
        }
    }
}

/// The value has a shape this writer leaves to `serde-saphyr`.
#[derive(Debug)]
struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape not handled by the fast YAML writer")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

type Done = Result<(), Unsupported>;

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = SeqWriter<'a>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = MapWriter<'a>;
    type SerializeStruct = MapWriter<'a>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Done {
        self.scalar(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Done {
        self.number(v)
    }
    fn serialize_i16(self, v: i16) -> Done {
        self.number(v)
    }
    fn serialize_i32(self, v: i32) -> Done {
        self.number(v)
    }
    fn serialize_i64(self, v: i64) -> Done {
        self.number(v)
    }
    fn serialize_u8(self, v: u8) -> Done {
        self.number(v)
    }
    fn serialize_u16(self, v: u16) -> Done {
        self.number(v)
    }
    fn serialize_u32(self, v: u32) -> Done {
        self.number(v)
    }
    fn serialize_u64(self, v: u64) -> Done {
        self.number(v)
    }
    fn serialize_f32(self, _: f32) -> Done {
        Err(Unsupported)
    }
    fn serialize_f64(self, _: f64) -> Done {
        Err(Unsupported)
    }
    fn serialize_char(self, v: char) -> Done {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Done {
        self.string(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Done {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Done {
        Err(Unsupported)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        Err(Unsupported)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        Err(Unsupported)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Done {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Done {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Done {
        Err(Unsupported)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<SeqWriter<'a>, Unsupported> {
        self.seq()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapWriter<'a>, Unsupported> {
        self.map()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapWriter<'a>, Unsupported> {
        self.map()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

/// A list's items, each `- ` at `column`; an empty list is refused.
struct SeqWriter<'a> {
    out: &'a mut String,
    column: usize,
    items: usize,
}

impl ser::SerializeSeq for SeqWriter<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        pad(self.out, self.column);
        self.out.push_str("- ");
        self.items += 1;
        value.serialize(Writer {
            out: self.out,
            at: At::Dash(self.column),
        })
    }
    fn end(self) -> Done {
        if self.items == 0 {
            return Err(Unsupported);
        }
        Ok(())
    }
}

/// A map's entries, keys at `indent` (the first one after a `- ` when `after_dash`); an empty
/// map is refused.
struct MapWriter<'a> {
    out: &'a mut String,
    indent: usize,
    after_dash: bool,
    entries: usize,
}

impl MapWriter<'_> {
    fn key(&mut self, key: &str) -> Done {
        if !is_name_like(key) {
            return Err(Unsupported);
        }
        if self.entries > 0 || !self.after_dash {
            pad(self.out, self.indent);
        }
        self.entries += 1;
        self.out.push_str(key);
        self.out.push(':');
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        value.serialize(Writer {
            out: self.out,
            at: At::Key(self.indent),
        })
    }

    fn finish(self) -> Done {
        if self.entries == 0 {
            return Err(Unsupported);
        }
        Ok(())
    }
}

impl ser::SerializeMap for MapWriter<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Done {
        // Keys of string maps (labels): only strings, and only name-like ones.
        match serde_json::to_value(key) {
            Ok(serde_json::Value::String(key)) => self.key(&key),
            _ => Err(Unsupported),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Done {
        self.value(value)
    }
    fn end(self) -> Done {
        self.finish()
    }
}

impl ser::SerializeStruct for MapWriter<'_> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Done {
        self.key(key)?;
        self.value(value)
    }
    fn end(self) -> Done {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn name_like_strings() {
        for s in [
            "httpbin",
            "/",
            "/api",
            "app.kubernetes.io/managed-by",
            "v1",
            "Exact",
        ] {
            assert!(is_name_like(s), "{s}");
        }
        for s in [
            "", "1", "true", "No", "y", "null", "Inf", "NaN", "a b", "a:b", "-x", ".x", "é",
        ] {
            assert!(!is_name_like(s), "{s}");
        }
    }

    #[test]
    fn nested_lists_and_maps_lay_out_as_saphyr_does() {
        let value = serde_json::json!({
            "a": [{"b": [{"c": {"d": 1}}, "x"], "e": "it's"}, "y: z", ""],
            "f": {"g": true},
        });
        let ours = to_block_yaml(&value).expect("handled");
        assert_eq!(ours, serde_saphyr::to_string(&value).expect("saphyr"));
    }

    #[test]
    fn shapes_left_to_saphyr() {
        let empty: Vec<String> = Vec::new();
        assert!(to_block_yaml(&BTreeMap::from([("a", &empty)])).is_none());
        assert!(to_block_yaml(&BTreeMap::from([("a", 1.5)])).is_none());
        assert!(to_block_yaml(&BTreeMap::from([("a b", 1)])).is_none());
        assert!(to_block_yaml(&BTreeMap::from([("a", "x\ny")])).is_none());
        assert!(to_block_yaml(&vec![1, 2]).is_none());
    }
}
