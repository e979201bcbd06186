//! Reading a JSON patch text into its operation objects, refusing duplicate member
//! names.
//!
//! serde_json's `Value` keeps the last of two members with the same name, so
//! `{"op":"add","path":"/s","op":"remove"}` would read as a `remove`. RFC 8259
//! (section 4) leaves the meaning of such an object to the parser, and RFC 6902
//! (section 4) a patch has one `op` and one `path`: an operation object with a
//! duplicate member is refused in either mode. Inside the values a patch carries,
//! strict mode refuses duplicates too (I-JSON, RFC 7493 section 2.3: a value whose
//! meaning depends on the parser is not interoperable); lenient mode keeps the last,
//! as serde_json does.
//!
//! One pass over the text, building the same `Value`s serde_json would. The
//! parser's recursion limit (127 nested containers) still applies: serde_json
//! checks it before calling this visitor.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::StateError;

/// A member name found twice in one object: in operation `op`.
#[derive(Debug)]
struct Duplicate {
    op: usize,
    name: String,
}

/// Where a value sits in the patch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The patch itself (an array, or an error later).
    Patch,
    /// An element of the patch: an operation object.
    Operation,
    /// Inside an operation object: a member's value.
    Inside,
}

/// Reads one value at `place`, recording in `found` a duplicate member it refuses.
#[derive(Clone, Copy)]
struct Reader<'f> {
    place: Place,
    /// The operation being read (for `Operation` and `Inside`).
    op: usize,
    /// Refuse duplicates inside values too (strict mode).
    unique_values: bool,
    found: &'f Cell<Option<Duplicate>>,
}

impl Reader<'_> {
    /// The reader of element `index` of the array this one reads: the patch's
    /// elements are its operations, numbered.
    fn element(self, index: usize) -> Self {
        match self.place {
            Place::Patch => Self {
                place: Place::Operation,
                op: index,
                ..self
            },
            Place::Operation | Place::Inside => Self {
                place: Place::Inside,
                ..self
            },
        }
    }

    /// The reader of a member's value of the object this one reads.
    fn member(self) -> Self {
        match self.place {
            // Not a patch (an error later): no operation to name.
            Place::Patch => Self {
                place: Place::Inside,
                unique_values: false,
                ..self
            },
            Place::Operation | Place::Inside => Self {
                place: Place::Inside,
                ..self
            },
        }
    }

    fn refuses_duplicates(self) -> bool {
        match self.place {
            Place::Patch => false,
            Place::Operation => true,
            Place::Inside => self.unique_values,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own visitor (its parser yields finite numbers only).
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self.element(items.len()))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.member())?;
            if self.refuses_duplicates() && members.contains_key(&name) {
                let error = A::Error::custom(format_args!("duplicate member `{name}`"));
                self.found.set(Some(Duplicate { op: self.op, name }));
                return Err(error);
            }
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// Parses `text` as serde_json does, refusing an operation object with a duplicate
/// member (and, if `unique_values`, any object with one inside the patch) with
/// [`StateError::DuplicateMember`]; other failures are
/// [`StateError::InvalidPatch`].
pub(crate) fn parse(text: &str, unique_values: bool) -> Result<Value, StateError> {
    let found = Cell::new(None);
    let reader = Reader {
        place: Place::Patch,
        op: 0,
        unique_values,
        found: &found,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let result = reader
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|error| match found.take() {
        Some(Duplicate { op, name }) => StateError::DuplicateMember { op, name },
        None => StateError::InvalidPatch(alloc::string::ToString::to_string(&error)),
    })
}
