//! The delivery-status parameters a message carries from MAIL and RCPT to
//! its notices and to the next hop (RFC 3461, RFC 6152).

use std::fmt;
use std::str::FromStr;

use crate::{ParseError, serde_as_text};

/// BODY= of MAIL (RFC 6152 §2; BINARYMIME is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

impl fmt::Display for BodyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        })
    }
}

impl FromStr for BodyType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_uppercase().as_str() {
            "7BIT" => Ok(BodyType::SevenBit),
            "8BITMIME" => Ok(BodyType::EightBitMime),
            _ => Err(ParseError::new("BODY", s, "7BIT or 8BITMIME")),
        }
    }
}
serde_as_text!(BodyType);

/// RET= of MAIL (RFC 3461 §4.3): what a notice returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    Full,
    Hdrs,
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        })
    }
}

impl FromStr for Ret {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_uppercase().as_str() {
            "FULL" => Ok(Ret::Full),
            "HDRS" => Ok(Ret::Hdrs),
            _ => Err(ParseError::new("RET", s, "FULL or HDRS")),
        }
    }
}
serde_as_text!(Ret);

/// NOTIFY= of RCPT (RFC 3461 §4.1): NEVER, or any of SUCCESS, FAILURE and
/// DELAY. A recipient without NOTIFY has `Option::None`; what that means is
/// [`Notify::effective`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub const NEVER: Notify = Notify { never: true, success: false, failure: false, delay: false };

    /// Which notices a recipient gets. Absent NOTIFY means FAILURE and
    /// DELAY (RFC 3461 §4.1 leaves the default to the MTA; this is what
    /// Postfix and Exim do).
    pub fn effective(notify: Option<Notify>) -> Notify {
        notify.unwrap_or(Notify { never: false, success: false, failure: true, delay: true })
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if self.never || kinds.is_empty() { f.write_str("NEVER") } else { f.write_str(&kinds.join(",")) }
    }
}

impl FromStr for Notify {
    type Err = ParseError;
    /// The stored form; the SMTP parser (which must also refuse NEVER mixed
    /// with others, RFC 3461 §4.1) is in `facteur-smtp-proto`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut n = Notify::default();
        for part in s.split(',') {
            match part.trim().to_ascii_uppercase().as_str() {
                "NEVER" => n.never = true,
                "SUCCESS" => n.success = true,
                "FAILURE" => n.failure = true,
                "DELAY" => n.delay = true,
                _ => return Err(ParseError::new("NOTIFY", s, "NEVER or a list of SUCCESS, FAILURE, DELAY")),
            }
        }
        Ok(n)
    }
}
serde_as_text!(Notify);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for b in [BodyType::SevenBit, BodyType::EightBitMime] {
            assert_eq!(b.to_string().parse::<BodyType>(), Ok(b));
        }
        for r in [Ret::Full, Ret::Hdrs] {
            assert_eq!(r.to_string().parse::<Ret>(), Ok(r));
        }
        let n = Notify { never: false, success: true, failure: false, delay: true };
        assert_eq!(n.to_string(), "SUCCESS,DELAY");
        assert_eq!("success,delay".parse::<Notify>(), Ok(n));
        assert_eq!(Notify::NEVER.to_string(), "NEVER");
        assert_eq!("NEVER".parse::<Notify>(), Ok(Notify::NEVER));
        assert!("SOMETIMES".parse::<Notify>().is_err());
        assert!("BINARYMIME".parse::<BodyType>().is_err());
    }

    #[test]
    fn absent_notify_means_failure_and_delay() {
        let n = Notify::effective(None);
        assert!(n.failure && n.delay && !n.success && !n.never);
        assert_eq!(Notify::effective(Some(Notify::NEVER)), Notify::NEVER);
    }

    #[test]
    fn json_is_the_text_form() {
        assert_eq!(serde_json::to_string(&Ret::Hdrs).unwrap(), "\"HDRS\"");
        assert_eq!(serde_json::from_str::<BodyType>("\"8BITMIME\"").unwrap(), BodyType::EightBitMime);
    }
}
