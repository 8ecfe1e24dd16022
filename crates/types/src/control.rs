//! Operator controls: what an operator paused or slowed down, as stored.

use std::fmt;
use std::str::FromStr;

use crate::{Class, ParseError, serde_as_text};

/// What a stored control applies to. Destinations are recipient domains in
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlKey {
    /// Delivery paused for a destination, a class, or a class at a
    /// destination; at least one of the two is given.
    Pause { destination: Option<String>, class: Option<Class> },
    /// Messages per second toward a destination, or for the whole node
    /// (`None`).
    Rate { destination: Option<String> },
}

impl ControlKey {
    /// A pause; `None` when neither a destination nor a class is given.
    pub fn pause(destination: Option<String>, class: Option<Class>) -> Option<ControlKey> {
        (destination.is_some() || class.is_some()).then_some(ControlKey::Pause { destination, class })
    }

    /// Does this pause cover mail of `class` to `domain`?
    pub fn pauses(&self, domain: &str, class: Class) -> bool {
        match self {
            ControlKey::Pause { destination, class: c } => {
                destination.as_deref().is_none_or(|d| d == domain) && c.is_none_or(|c| c == class)
            }
            ControlKey::Rate { .. } => false,
        }
    }
}

impl fmt::Display for ControlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlKey::Pause { destination: Some(d), class: Some(c) } => write!(f, "pause:dest:{d}:class:{c}"),
            ControlKey::Pause { destination: Some(d), class: None } => write!(f, "pause:dest:{d}"),
            ControlKey::Pause { destination: None, class: Some(c) } => write!(f, "pause:class:{c}"),
            // Not constructible through `pause` or `from_str`.
            ControlKey::Pause { destination: None, class: None } => f.write_str("pause:nothing"),
            ControlKey::Rate { destination: Some(d) } => write!(f, "rate:dest:{d}"),
            ControlKey::Rate { destination: None } => f.write_str("rate:node"),
        }
    }
}

impl FromStr for ControlKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("control", s, "pause:dest:D[:class:C], pause:class:C, rate:dest:D or rate:node");
        let class = |c: &str| Class::parse(c).ok_or_else(bad);
        let parts: Vec<&str> = s.split(':').collect();
        Ok(match parts.as_slice() {
            ["pause", "class", c] => ControlKey::Pause { destination: None, class: Some(class(c)?) },
            ["pause", "dest", d] if !d.is_empty() => {
                ControlKey::Pause { destination: Some(d.to_string()), class: None }
            }
            ["pause", "dest", d, "class", c] if !d.is_empty() => {
                ControlKey::Pause { destination: Some(d.to_string()), class: Some(class(c)?) }
            }
            ["rate", "dest", d] if !d.is_empty() => ControlKey::Rate { destination: Some(d.to_string()) },
            ["rate", "node"] => ControlKey::Rate { destination: None },
            _ => return Err(bad()),
        })
    }
}
serde_as_text!(ControlKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = [
            ControlKey::pause(Some("gmail.com".into()), Some(Class::Bulk)).unwrap(),
            ControlKey::pause(Some("gmail.com".into()), None).unwrap(),
            ControlKey::pause(None, Some(Class::Bulk)).unwrap(),
            ControlKey::Rate { destination: Some("gmail.com".into()) },
            ControlKey::Rate { destination: None },
        ];
        for k in keys {
            assert_eq!(k.to_string().parse::<ControlKey>(), Ok(k.clone()), "{k}");
        }
        assert_eq!(ControlKey::pause(None, None), None);
        for bad in ["pause:nothing", "pause:class:spam", "rate:dest:", "pause", ""] {
            assert!(bad.parse::<ControlKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_pause_covers() {
        let k = ControlKey::pause(Some("a.test".into()), None).unwrap();
        assert!(k.pauses("a.test", Class::Bulk) && !k.pauses("b.test", Class::Bulk));
        let k = ControlKey::pause(None, Some(Class::Bulk)).unwrap();
        assert!(k.pauses("a.test", Class::Bulk) && !k.pauses("a.test", Class::System));
        assert!(!ControlKey::Rate { destination: None }.pauses("a.test", Class::Bulk));
    }
}
