//! Request bodies are JSON objects. serde's derived `Deserialize` also
//! reads a JSON array as a struct's fields in order (`["Renamed", {}]`
//! as `{"name": "Renamed", "policy": {}}`); [`Object`] refuses that, so a
//! body means what its field names say.

use std::ops::Deref;

use serde::de::{Deserialize, Deserializer, Visitor};

/// A request body that must be a JSON object: `web::Json<Object<T>>`.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<T> Deref for Object<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(d)).map(Object)
    }
}

/// Reads a struct from a map only (never from a sequence).
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Named {
        name: String,
        #[serde(default)]
        loud: bool,
    }

    #[test]
    fn an_object_reads_and_an_array_is_refused() {
        let ok: Object<Named> = serde_json::from_str(r#"{"name": "Ann"}"#).unwrap();
        assert_eq!(
            ok.0,
            Named {
                name: "Ann".into(),
                loud: false
            }
        );
        let err = serde_json::from_str::<Object<Named>>(r#"["Ann", true]"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: sequence"), "{err}");
        assert!(serde_json::from_str::<Object<Named>>(r#"{"name": "A", "x": 1}"#).is_err());
        assert!(serde_json::from_str::<Object<Named>>("null").is_err());
    }
}
