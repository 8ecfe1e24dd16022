//! The vocabulary every facteur crate shares.
//!
//! Purpose: one definition of the values that cross crate boundaries, so
//! no crate passes another a string to be parsed again: message ids
//! ([`MessageId`]), traffic classes ([`Class`]), recipient states and
//! attempt outcomes ([`RecipientStatus`], [`Outcome`]), the DSN parameters
//! of RFC 3461 and RFC 6152 ([`Notify`], [`Ret`], [`BodyType`]), operator
//! controls ([`ControlKey`]) and time ([`Clock`]).
//!
//! Invariants: pure data, no I/O; every type that is stored or shown has
//! one text form ([`std::fmt::Display`] and [`std::str::FromStr`] agree,
//! serde uses the same), so storage, the CLI's `--json` and the HTTP API
//! all spell a value the same way.

pub mod class;
pub mod clock;
pub mod control;
pub mod dsn;
pub mod fault;
pub mod id;
pub mod probe;
pub mod signal;
pub mod status;

pub use class::Class;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use control::ControlKey;
pub use dsn::{BodyType, Notify, Ret};
pub use id::{BadMessageId, MessageId};
pub use status::{Outcome, RecipientStatus, Severity};

/// A text form that is not one of a type's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what} (expected {expected})")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        ParseError { what, value: value.to_string(), expected }
    }
}

/// Serde through `Display`/`FromStr`, so the JSON form is the text form.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;
