//! Reading a parsed configuration file into the raw serde structs (`super::raw`) while
//! collecting *every* type mistake, not just the first one serde meets.
//!
//! The file (TOML, merged with the `ESTATE_GW__*` overrides) is first a `serde_json::Value`
//! tree. `deserialize` reads the raw struct from it through `Node`, a strict deserializer
//! that records where an error happened (`devices[2].modbus.unit`); on a type error it notes
//! the mistake, removes the offending key from the tree (so its documented default applies)
//! and reads again, until the struct reads. Every key is removed at most once, so this ends.
//!
//! Strictness: a boolean is `true` or `false` (not `"yes"`, `1` or `"on"`), a number is a
//! number; only where a string is wanted is a number or a boolean taken as its text (an
//! environment override `ESTATE_GW__GATEWAY__SITE=123` arrives as a number).

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path in the config crate's notation: `devices[3].modbus.unit`.
fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A type mistake at `path`.
#[derive(Debug)]
pub(super) struct TypeError {
    path: Vec<Seg>,
    message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TypeError {}

/// What serde's visitors expect, said for a person editing a TOML file.
fn expected_text(exp: &dyn de::Expected) -> String {
    let e = exp.to_string();
    match e.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "an integer (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "a boolean: true or false (without quotes)".into(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
        "a map" => "a table".into(),
        s if s.starts_with("struct ") => "a table".into(),
        _ => e,
    }
}

impl de::Error for TypeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TypeError {
            path: Vec::new(),
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {}, got {unexp}", expected_text(exp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {}, got {unexp}", expected_text(exp)))
    }
}

impl TypeError {
    fn within(mut self, seg: Seg) -> Self {
        self.path.insert(0, seg);
        self
    }
}

/// One type mistake, for `Errors`: the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mistake {
    pub key: String,
    pub message: String,
}

/// What `deserialize` read: the struct (defaults where a key had the wrong type), the
/// unknown keys (serde_ignored's paths), the type mistakes, and the keys removed for them
/// (errors a builder derives from their defaults are not worth reporting).
pub(super) struct Read<T> {
    pub value: T,
    pub unknown: Vec<String>,
    pub mistakes: Vec<Mistake>,
    pub removed: Vec<String>,
}

/// Reads `T` from `tree`, collecting every type mistake (see the module docs).
pub(super) fn deserialize<T: DeserializeOwned + Default>(mut tree: Value) -> Read<T> {
    let mut mistakes = Vec::new();
    let mut removed = Vec::new();
    loop {
        let mut unknown = Vec::new();
        let res: Result<T, TypeError> =
            serde_ignored::deserialize(Node(&tree), |p| unknown.push(p.to_string()));
        match res {
            Ok(value) => {
                return Read {
                    value,
                    unknown,
                    mistakes,
                    removed,
                }
            }
            Err(e) => {
                let key = render(&e.path);
                mistakes.push(Mistake {
                    key: if key.is_empty() { "-".into() } else { key },
                    message: e.message,
                });
                match remove(&mut tree, &e.path) {
                    Some(k) => removed.push(k),
                    None => {
                        return Read {
                            value: T::default(),
                            unknown: Vec::new(),
                            mistakes,
                            removed,
                        }
                    }
                }
            }
        }
    }
}

/// Removes the innermost table key on `path` (an element of a list goes with its list);
/// returns its key path, or `None` when there is nothing to remove.
fn remove(tree: &mut Value, path: &[Seg]) -> Option<String> {
    let last_key = path.iter().rposition(|s| matches!(s, Seg::Key(_)))?;
    let mut node = tree;
    for s in &path[..last_key] {
        node = match s {
            Seg::Key(k) => node.get_mut(k.as_str())?,
            Seg::Index(i) => node.get_mut(*i)?,
        };
    }
    let Seg::Key(k) = &path[last_key] else {
        return None;
    };
    node.as_object_mut()?.remove(k)?;
    Some(render(&path[..=last_key]))
}

/// A strict deserializer over a node of the tree.
struct Node<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = TypeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypeError> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    v.visit_i64(i)
                } else if let Some(u) = n.as_u64() {
                    v.visit_u64(u)
                } else {
                    v.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => v.visit_str(s),
            Value::Array(a) => v.visit_seq(Seq {
                items: a.iter().enumerate(),
            }),
            Value::Object(m) => v.visit_map(Map {
                entries: m.iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypeError> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypeError> {
        match self.0 {
            Value::Number(n) => v.visit_string(n.to_string()),
            Value::Bool(b) => v.visit_string(b.to_string()),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TypeError> {
        self.deserialize_str(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, TypeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TypeError> {
        match self.0 {
            Value::String(s) => v.visit_enum(de::value::StrDeserializer::<TypeError>::new(s)),
            _ => self.deserialize_any(v),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = TypeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TypeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, v)) => seed
                .deserialize(Node(v))
                .map(Some)
                .map_err(|e| e.within(Seg::Index(i))),
        }
    }
}

struct Map<'a> {
    entries: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = TypeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TypeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.pending = Some((k, v));
                seed.deserialize(de::value::StrDeserializer::<TypeError>::new(k))
                    .map(Some)
                    .map_err(|e| e.within(Seg::Key(k.clone())))
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, TypeError> {
        match self.pending.take() {
            Some((k, v)) => seed
                .deserialize(Node(v))
                .map_err(|e| e.within(Seg::Key(k.clone()))),
            None => Err(de::Error::custom("a value without a key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        n: u32,
        on: bool,
        names: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Outer {
        name: String,
        inner: Inner,
        list: Vec<Inner>,
    }

    #[test]
    fn every_type_mistake_is_collected_with_its_path() {
        let tree = serde_json::json!({
            "name": 42,
            "inner": {"n": -3, "on": "yes", "names": ["a", {"x": 1}]},
            "list": [{"n": 1}, {"n": "x", "colour": 1}],
        });
        let r: Read<Outer> = deserialize(tree);
        let keys: Vec<&str> = r.mistakes.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            ["inner.n", "inner.names[1]", "inner.on", "list[1].n"],
            "{:#?}",
            r.mistakes
        );
        assert_eq!(
            r.mistakes[0].message,
            "expected an integer (0 or more), got integer `-3`"
        );
        assert_eq!(
            r.mistakes[2].message,
            "expected a boolean: true or false (without quotes), got string \"yes\""
        );
        // A number where a string is wanted is its text; the rest are the defaults.
        assert_eq!(r.value.name, "42");
        assert_eq!(r.value.inner, Inner::default());
        assert_eq!(r.value.list[0].n, 1);
        assert_eq!(
            r.removed,
            ["inner.n", "inner.names", "inner.on", "list[1].n"]
        );
        assert_eq!(r.unknown, ["list.1.colour"]);
    }

    #[test]
    fn a_wrong_root_gives_the_default() {
        let r: Read<Outer> = deserialize(serde_json::json!("text"));
        assert_eq!(r.value, Outer::default());
        assert_eq!(r.mistakes.len(), 1);
        assert_eq!(r.mistakes[0].key, "-");
    }
}
