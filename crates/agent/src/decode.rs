//! Consul's decoding of agent API bodies and service files: a struct's keys match its fields
//! regardless of case, or in snake_case (`sidecar_service` for `SidecarService`,
//! `check_id` for `CheckID`), plus a few older names ([`ALIASES`]). This is what Consul's
//! `lib/decode` hooks and `TranslateKeys` do before mapstructure decodes case-insensitively.
//!
//! Done as a serde [`Deserializer`] adapter ([`Keys`]) around the format's own deserializer,
//! so that:
//! - only the keys of structs are translated, against the very field names serde derived for
//!   them (no second field table to drift); the keys of maps (`Meta`, `TaggedAddresses`)
//!   are the user's data and stay as they are;
//! - a key that matches no field reaches serde untouched, so `deny_unknown_fields` still
//!   names it as the user wrote it, and serde_json still adds the line and column;
//! - API bodies (JSON), `*.json` and `*.hcl` files go through the same code.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::fmt;

/// Other names Consul accepts: (alias, field it stands for): an older name, and a check's
/// `ID` in service files. Used only when the struct
/// has the field and no field of the alias's own name.
const ALIASES: &[(&str, &str)] = &[
    ("DestinationServiceName", "DestinationName"),
    ("ID", "CheckID"),
];

/// `SidecarService` -> `sidecar_service`, `CheckID` -> `check_id`, `TLSSkipVerify` ->
/// `tls_skip_verify`: an underscore where a lower-case letter or digit meets an upper-case
/// one, and before the last capital of a run that starts a word.
pub fn snake_case(field: &str) -> String {
    let chars: Vec<char> = field.chars().collect();
    let mut out = String::with_capacity(field.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn matches(key: &str, field: &str) -> bool {
    key.eq_ignore_ascii_case(field) || key == snake_case(field)
}

/// The field of `fields` that `key` names, if any.
fn canonical(key: &str, fields: &'static [&'static str]) -> Option<&'static str> {
    if let Some(f) = fields.iter().find(|f| matches(key, f)) {
        return Some(f);
    }
    ALIASES
        .iter()
        .find(|(alias, field)| matches(key, alias) && fields.contains(field))
        .map(|(_, field)| *field)
}

/// A deserializer whose structs take Consul's keys. Wrap the format's deserializer:
/// `T::deserialize(Keys(&mut serde_json::Deserializer::from_slice(b)))`.
pub struct Keys<D>(pub D);

/// Deserializes one JSON document (an API body or a `*.json` file) the Consul way; errors
/// carry serde_json's line and column.
pub fn json<T: de::DeserializeOwned>(text: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = T::deserialize(Keys(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Deserializes an HCL document the Consul way. hcl-rs keeps no positions past parsing, so an
/// error naming a key says the line where that key first appears (which is the culprit
/// unless the same key is also valid earlier, at another level).
pub fn hcl<T: de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = hcl::de::Deserializer::from_str(text).map_err(|e| e.to_string())?;
    T::deserialize(Keys(de)).map_err(|e| {
        let msg = e.to_string();
        match named_key(&msg).and_then(|k| Some((k, line_of_key(text, k)?))) {
            Some((key, line)) => format!("{msg} (`{key}` first appears at line {line})"),
            None => msg,
        }
    })
}

/// The key an error message quotes: serde's `unknown field `x``, `duplicate field `x``.
fn named_key(msg: &str) -> Option<&str> {
    let rest = msg.split_once("field `")?.1;
    Some(&rest[..rest.find('`')?])
}

/// The first line (1-based) where `key` is assigned (`key =`) or opens a block (`key {`).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches(['{', ',', ' ']);
            let line = line
                .strip_prefix('"')
                .and_then(|l| l.strip_prefix(key)?.strip_prefix('"'))
                .or_else(|| line.strip_prefix(key));
            line.is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with('{') || rest.starts_with(':')
            })
        })
        .map(|i| i + 1)
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Wrap { inner: visitor, fields: None })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Keys<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap::new(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap::new(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap::new(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Wrap::new(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap {
            inner: visitor,
            fields: Some(fields),
        };
        self.0.deserialize_struct(name, fields, wrap)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap::new(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor whose nested values are read through [`Keys`]; `fields` when it reads a struct.
struct Wrap<V> {
    inner: V,
    fields: Option<&'static [&'static str]>,
}

impl<V> Wrap<V> {
    fn new(inner: V) -> Self {
        Wrap {
            inner,
            fields: None,
        }
    }
}

macro_rules! visit {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit!(
        visit_bool: bool, visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64,
        visit_i128: i128, visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64,
        visit_u128: u128, visit_f32: f32, visit_f64: f64, visit_char: char, visit_str: &str,
        visit_borrowed_str: &'de str, visit_string: String, visit_bytes: &[u8],
        visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>,
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Keys(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Keys(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            fields: self.fields,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Enum(data))
    }
}

/// A seed whose value is read through [`Keys`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(Keys(d))
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A> {
    inner: A,
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(fields) = self.fields else {
            return self.inner.next_key_seed(seed);
        };
        let Some(key) = self.inner.next_key::<String>()? else {
            return Ok(None);
        };
        let key = match canonical(&key, fields) {
            Some(field) => field.to_owned(),
            None => key,
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (v, variant) = self.0.variant_seed(seed)?;
        Ok((v, Variant(variant)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::new(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let wrap = Wrap {
            inner: visitor,
            fields: Some(fields),
        };
        self.0.struct_variant(fields, wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_of_consul_fields() {
        for (field, snake) in [
            ("SidecarService", "sidecar_service"),
            ("CheckID", "check_id"),
            ("ID", "id"),
            ("HTTP", "http"),
            ("TLSSkipVerify", "tls_skip_verify"),
            ("DestinationServiceID", "destination_service_id"),
            (
                "DeregisterCriticalServiceAfter",
                "deregister_critical_service_after",
            ),
            ("LocalBindPort", "local_bind_port"),
        ] {
            assert_eq!(snake_case(field), snake, "{field}");
        }
    }

    #[test]
    fn keys_match_in_any_case_snake_case_or_an_older_name() {
        let fields: &'static [&'static str] = &["DestinationName", "LocalBindPort", "ID"];
        assert_eq!(
            canonical("destinationname", fields),
            Some("DestinationName")
        );
        assert_eq!(
            canonical("DESTINATIONNAME", fields),
            Some("DestinationName")
        );
        assert_eq!(
            canonical("destination_name", fields),
            Some("DestinationName")
        );
        assert_eq!(
            canonical("DestinationServiceName", fields),
            Some("DestinationName")
        );
        assert_eq!(
            canonical("destination_service_name", fields),
            Some("DestinationName")
        );
        assert_eq!(canonical("id", fields), Some("ID"));
        // Underscores only where snake_case puts them.
        assert_eq!(canonical("dest_ination_name", fields), None);
        assert_eq!(canonical("LocalBindPrt", fields), None);
        // The older name is not an alias where it is a field of its own.
        let proxy: &'static [&'static str] = &["DestinationServiceName", "DestinationName"];
        assert_eq!(
            canonical("destination_service_name", proxy),
            Some("DestinationServiceName")
        );
    }

    #[test]
    fn hcl_errors_name_the_line_of_the_key() {
        let text = "service {\n  name = \"a\"\n  prot = 1\n}\n";
        assert_eq!(line_of_key(text, "prot"), Some(3));
        assert_eq!(line_of_key(text, "service"), Some(1));
        assert_eq!(line_of_key(text, "nothere"), None);
        assert_eq!(
            named_key("unknown field `prot`, expected one of"),
            Some("prot")
        );
    }
}
