//! What a verdict does to a message: the `[auth]` settings and the
//! decision for each recipient domain.
//!
//! Safe defaults (those of the large mailbox providers): a DMARC failure
//! under `p=reject` is refused at the end of DATA (`550 5.7.1`, so no
//! bounce and no backscatter), under `p=quarantine` it goes to the Junk
//! folder, and an SPF fail alone (`-all`) changes nothing unless the
//! operator says so: forwarding breaks SPF and DMARC weighs it already.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::verify::{Arc, Dmarc, Requested, Verdict};

/// What happens to a message for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Into the mailbox it was meant for.
    Deliver,
    /// Into the recipient's Junk mailbox.
    Junk,
    /// Refused at the end of DATA with 550 5.7.1.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Junk => "junk",
            Action::Reject => "reject",
        }
    }
}

/// `[sender_auth]`: verification of mail from strangers on the MX port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Check SPF, DKIM, ARC and DMARC and add Authentication-Results.
    pub verify: bool,
    /// A DMARC failure whose domain publishes `p=reject`.
    pub dmarc_reject: Action,
    /// A DMARC failure whose domain publishes `p=quarantine`.
    pub dmarc_quarantine: Action,
    /// An SPF `fail` of the MAIL FROM domain, whatever DMARC says.
    pub spf_fail: Action,
    /// Time for all of one message's lookups; what is left undone is a
    /// temperror, and a temperror never refuses mail.
    pub budget_secs: u64,
    /// DKIM signatures checked per message (each costs a DNS query).
    pub max_signatures: usize,
    /// Intermediaries (mailing lists, forwarders) whose passing ARC chain
    /// (RFC 8617 §7.2) overrides a DMARC failure: the d= of their seal.
    pub trusted_arc_sealers: Vec<String>,
    /// Per recipient domain: other actions than the ones above.
    pub domains: BTreeMap<String, DomainPolicy>,
}

/// `[sender_auth.domains."example.com"]`: what differs for one local domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainPolicy {
    pub dmarc_reject: Option<Action>,
    pub dmarc_quarantine: Option<Action>,
    pub spf_fail: Option<Action>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            verify: true,
            dmarc_reject: Action::Reject,
            dmarc_quarantine: Action::Junk,
            spf_fail: Action::Deliver,
            budget_secs: 10,
            max_signatures: 5,
            trusted_arc_sealers: Vec::new(),
            domains: BTreeMap::new(),
        }
    }
}

/// The action for one recipient domain, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// For the log and the 550 reply; empty when delivered.
    pub reason: String,
    /// The enhanced status of a refusal: 5.7.1 for DMARC, 5.7.23 for SPF
    /// (RFC 7372 §3.2).
    pub status: (u8, u16, u16),
}

impl InboundConfig {
    /// Problems with the settings, each with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.budget_secs == 0 || self.budget_secs > 300 {
            errors.push(format!("sender_auth.budget_secs = {}: must be 1 to 300", self.budget_secs));
        }
        if self.max_signatures == 0 || self.max_signatures > 50 {
            errors.push(format!("sender_auth.max_signatures = {}: must be 1 to 50", self.max_signatures));
        }
        for d in self.domains.keys() {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                errors.push(format!("sender_auth.domains.{d:?}: not a domain name"));
            }
        }
        errors
    }

    /// What a verdict means for mail to `domain` (a recipient's domain).
    pub fn decide(&self, verdict: &Verdict, domain: &str) -> Decision {
        let local = self.domains.get(&domain.to_ascii_lowercase());
        let pick = |own: Option<Action>, default: Action| own.unwrap_or(default);
        let mut decision = Decision { action: Action::Deliver, reason: String::new(), status: (5, 7, 1) };
        if let Dmarc::Fail(requested) = verdict.dmarc {
            let action = match requested {
                Requested::Reject => pick(local.and_then(|l| l.dmarc_reject), self.dmarc_reject),
                Requested::Quarantine => pick(local.and_then(|l| l.dmarc_quarantine), self.dmarc_quarantine),
                Requested::None => Action::Deliver,
            };
            let trusted = match &verdict.arc {
                Arc::Pass { sealer } => self.trusted_arc_sealers.iter().any(|s| s.eq_ignore_ascii_case(sealer)),
                _ => false,
            };
            if action != Action::Deliver && !trusted {
                let p = if requested == Requested::Reject { "reject" } else { "quarantine" };
                decision = Decision {
                    action,
                    reason: format!(
                        "DMARC policy of {} (p={p}): not authenticated (SPF and DKIM fail or are not aligned)",
                        verdict.from_domain
                    ),
                    status: (5, 7, 1),
                };
            }
        }
        if verdict.spf.result == mail_auth::SpfResult::Fail {
            let action = pick(local.and_then(|l| l.spf_fail), self.spf_fail);
            if action > decision.action {
                let why =
                    verdict.spf.explanation.clone().unwrap_or_else(|| "the client is not one of its senders".into());
                let reason = format!("SPF of {} fails: {why}", verdict.spf.domain);
                decision = Decision { action, reason, status: (5, 7, 23) };
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spf::SpfVerdict;
    use mail_auth::SpfResult;

    fn verdict(dmarc: Dmarc, spf: SpfResult, arc: Arc) -> Verdict {
        Verdict {
            header: String::new(),
            spf: SpfVerdict { result: spf, domain: "bank.example".into(), explanation: None, problem: None },
            dkim_pass: Vec::new(),
            from_domain: "bank.example".into(),
            dmarc,
            arc,
        }
    }

    #[test]
    fn defaults_reject_quarantine_and_ignore_spf_alone() {
        let c = InboundConfig::default();
        let d = c.decide(&verdict(Dmarc::Fail(Requested::Reject), SpfResult::Fail, Arc::None), "example.test");
        assert_eq!(d.action, Action::Reject);
        assert!(d.reason.contains("bank.example (p=reject)"), "{}", d.reason);
        let d = c.decide(&verdict(Dmarc::Fail(Requested::Quarantine), SpfResult::None, Arc::None), "example.test");
        assert_eq!(d.action, Action::Junk);
        let d = c.decide(&verdict(Dmarc::Fail(Requested::None), SpfResult::Fail, Arc::None), "example.test");
        assert_eq!(d.action, Action::Deliver);
        for quiet in [Dmarc::Pass, Dmarc::None, Dmarc::TempError, Dmarc::PermError] {
            assert_eq!(
                c.decide(&verdict(quiet, SpfResult::TempError, Arc::None), "example.test").action,
                Action::Deliver
            );
        }
    }

    #[test]
    fn per_domain_settings_and_trusted_arc_sealers() {
        let mut c = InboundConfig { spf_fail: Action::Reject, ..Default::default() };
        c.domains.insert(
            "lax.test".into(),
            DomainPolicy { dmarc_reject: Some(Action::Junk), spf_fail: Some(Action::Deliver), ..Default::default() },
        );
        let failing = verdict(Dmarc::Fail(Requested::Reject), SpfResult::Fail, Arc::None);
        assert_eq!(c.decide(&failing, "LAX.test").action, Action::Junk);
        assert_eq!(c.decide(&verdict(Dmarc::Pass, SpfResult::Fail, Arc::None), "strict.test").action, Action::Reject);
        c.trusted_arc_sealers = vec!["lists.example".into()];
        c.spf_fail = Action::Deliver;
        let listed =
            verdict(Dmarc::Fail(Requested::Reject), SpfResult::Fail, Arc::Pass { sealer: "lists.example".into() });
        assert_eq!(c.decide(&listed, "strict.test").action, Action::Deliver);
        let other =
            verdict(Dmarc::Fail(Requested::Reject), SpfResult::Fail, Arc::Pass { sealer: "evil.example".into() });
        assert_eq!(c.decide(&other, "strict.test").action, Action::Reject);
    }
}
