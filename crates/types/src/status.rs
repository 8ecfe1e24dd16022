//! Where a recipient stands, what one attempt came to, and how bad an
//! invariant finding is.

use std::fmt;
use std::str::FromStr;

use crate::{ParseError, serde_as_text};

/// The state of one recipient of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    /// Waiting for its next attempt.
    Queued,
    /// Held by an operator: never claimed until released.
    Held,
    /// Final: put in a local mailbox or accepted by the next hop.
    Delivered,
    /// Final: failed for good; the DSN went to the sender (or the sender was `<>`).
    Bounced,
    /// Final: removed by an operator (audited).
    Deleted,
}

impl RecipientStatus {
    pub const ALL: [RecipientStatus; 5] = [Self::Queued, Self::Held, Self::Delivered, Self::Bounced, Self::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Held => "held",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Deleted => "deleted",
        }
    }

    /// Nothing more will happen to this recipient.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Bounced | Self::Deleted)
    }
}

/// What one delivery attempt came to for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    Deferred,
    Bounced,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Self::Delivered, Self::Deferred, Self::Bounced];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
        }
    }
}

/// How bad one finding of an invariant check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The data is inconsistent now.
    Error,
    /// It was, and the check fixed it from the data.
    Repaired,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Self::Error, Self::Repaired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Repaired => "repaired",
        }
    }
}

macro_rules! text_enum {
    ($t:ty, $what:literal, $expected:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                <$t>::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| ParseError::new($what, s, $expected))
            }
        }
        serde_as_text!($t);
    };
}
text_enum!(RecipientStatus, "recipient state", "queued, held, delivered, bounced or deleted");
text_enum!(Outcome, "attempt outcome", "delivered, deferred or bounced");
text_enum!(Severity, "severity", "error or repaired");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_finality() {
        for s in RecipientStatus::ALL {
            assert_eq!(s.to_string().parse::<RecipientStatus>(), Ok(s));
        }
        for o in Outcome::ALL {
            assert_eq!(o.to_string().parse::<Outcome>(), Ok(o));
        }
        assert!(RecipientStatus::Bounced.is_final() && !RecipientStatus::Held.is_final());
        assert!("Queued".parse::<RecipientStatus>().is_err(), "the stored form is exact");
        assert_eq!(serde_json::to_string(&Severity::Repaired).unwrap(), "\"repaired\"");
    }
}
