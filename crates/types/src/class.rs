//! The four traffic classes and their names.

use std::fmt;

/// The kind of traffic a message is, decided once at acceptance.
///
/// The order of the variants (and so `Ord`) is declaration order; it is a
/// stable order for reports and tables, not a scheduling policy: which class
/// flows first under pressure is the scheduler's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Mail about mail: delivery status notifications, postmaster traffic.
    System,
    /// A person writing to people.
    Interpersonal,
    /// Mail a person is waiting for: receipts, password resets, notifications.
    Transactional,
    /// Newsletters, marketing, mailing lists.
    Bulk,
}

impl Class {
    /// Every class, in declaration order.
    pub const ALL: [Class; 4] = [Class::System, Class::Interpersonal, Class::Transactional, Class::Bulk];

    /// The class's name as used in configuration, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::System => "system",
            Class::Interpersonal => "interpersonal",
            Class::Transactional => "transactional",
            Class::Bulk => "bulk",
        }
    }

    /// Position in [`Class::ALL`], for arrays indexed by class.
    pub const fn index(self) -> usize {
        match self {
            Class::System => 0,
            Class::Interpersonal => 1,
            Class::Transactional => 2,
            Class::Bulk => 3,
        }
    }

    /// The class named `s`, exactly as [`Class::as_str`] writes it (lower
    /// case, no surrounding blanks), like the configuration.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|class| class.as_str() == s)
    }
}

impl std::str::FromStr for Class {
    type Err = crate::ParseError;
    fn from_str(s: &str) -> Result<Self, crate::ParseError> {
        Class::parse(s)
            .ok_or_else(|| crate::ParseError::new("class", s, "system, interpersonal, transactional or bulk"))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in Class::ALL {
            assert_eq!(Class::parse(class.as_str()), Some(class));
            assert_eq!(class.to_string(), class.as_str());
        }
    }

    #[test]
    fn parse_is_exact() {
        assert_eq!(Class::parse("Bulk"), None);
        assert_eq!(Class::parse(" bulk"), None);
        assert_eq!(Class::parse(""), None);
        assert_eq!(Class::parse("marketing"), None);
    }

    #[test]
    fn order_is_declaration_order() {
        let mut sorted = [Class::Bulk, Class::System, Class::Transactional, Class::Interpersonal];
        sorted.sort();
        assert_eq!(sorted, Class::ALL);
    }
}
