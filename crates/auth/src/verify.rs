//! The verdict on one inbound message: SPF (our own check_host, for the
//! HELO name and the MAIL FROM domain), DKIM, ARC and DMARC (mail-auth),
//! and the Authentication-Results field (RFC 8601) that records them.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use mail_auth::common::crypto::Algorithm;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult,
};

use crate::spf::{self, Check, Identity, SpfVerdict};

/// What the checks found, as facteur uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The whole `Authentication-Results: ...\r\n` field to prepend.
    pub header: String,
    /// SPF of the MAIL FROM domain (of the HELO name for the null sender).
    pub spf: SpfVerdict,
    /// d= of each DKIM signature that passed.
    pub dkim_pass: Vec<String>,
    /// The RFC 5322 From domain DMARC was evaluated for ("" if none).
    pub from_domain: String,
    pub dmarc: Dmarc,
    /// The ARC chain's result and the domain of its latest seal.
    pub arc: Arc,
}

/// DMARC's answer (RFC 7489 §6.6.2), reduced to what policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dmarc {
    /// SPF or DKIM passed, aligned with the From domain.
    Pass,
    /// Neither passed aligned; the domain asks for this treatment.
    Fail(Requested),
    /// No record, several From domains, or no From.
    None,
    /// A DNS failure: nothing to conclude.
    TempError,
    /// A broken record.
    PermError,
}

/// The `p=`/`sp=` a failing domain publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    None,
    Quarantine,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arc {
    Pass { sealer: String },
    Fail,
    None,
}

impl Verdict {
    /// Someone vouches for the message: DMARC passed, or (without DMARC)
    /// SPF passed for the sender or a DKIM signature verified.
    pub fn authenticated(&self) -> bool {
        self.dmarc == Dmarc::Pass || self.spf.result == SpfResult::Pass || !self.dkim_pass.is_empty()
    }
}

/// An SPF result as in Authentication-Results (RFC 8601 §2.7.2).
pub fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

impl Dmarc {
    /// As in Authentication-Results (RFC 7489 §11.2).
    pub fn as_str(self) -> &'static str {
        match self {
            Dmarc::Pass => "pass",
            Dmarc::Fail(_) => "fail",
            Dmarc::None => "none",
            Dmarc::TempError => "temperror",
            Dmarc::PermError => "permerror",
        }
    }
}

/// Inputs about one message.
pub struct Inbound<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The envelope sender, "" for the null sender.
    pub mail_from: &'a str,
    pub message: &'a [u8],
}

/// The verifier a server keeps: the resolver and the limits.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    /// Our host name: the authserv-id of the field and `%{r}`.
    hostname: String,
    /// For the whole of one message's checks.
    budget: Duration,
    /// DKIM signatures looked at per message (each costs a lookup).
    max_signatures: usize,
}

impl Verifier {
    pub fn new(resolver: TokioResolver, hostname: &str, budget: Duration, max_signatures: usize) -> Verifier {
        Verifier {
            authenticator: MessageAuthenticator(resolver),
            hostname: hostname.to_string(),
            budget,
            max_signatures,
        }
    }

    /// Every check, within the time budget. What the budget cuts short
    /// is a temperror (RFC 8601 §2.7.1), never a failure.
    pub async fn verify(&self, input: &Inbound<'_>) -> Verdict {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut message = parse(input.message).unwrap_or_default();
        // RFC 8301 §3.1: rsa-sha1 signatures are never valid.
        let mut extra = Vec::new();
        message.dkim_headers.retain(|h| {
            if h.header.a == Algorithm::RsaSha1 {
                extra.push(format!(
                    "dkim=policy reason=\"rsa-sha1 (RFC 8301)\" header.d={} header.s={}",
                    pvalue(&h.header.d),
                    pvalue(&h.header.s)
                ));
            }
            h.header.a != Algorithm::RsaSha1
        });
        // Each signature costs a DNS query: past the cap they are not looked at.
        message.dkim_headers.truncate(self.max_signatures);
        let dns = &self.authenticator.0;
        let check = Check { ip: input.ip, helo: input.helo, receiver: &self.hostname };
        let mail_from_domain = input.mail_from.rsplit_once('@').map_or(input.helo, |(_, d)| d);
        let spf_work = async {
            let helo = spf::check(dns, &check, Identity::Helo(input.helo)).await;
            let spf = match input.mail_from {
                "" => helo.clone(),
                sender => spf::check(dns, &check, Identity::MailFrom(sender)).await,
            };
            (helo, spf)
        };
        let out_of_time = |domain: &str| SpfVerdict {
            result: SpfResult::TempError,
            domain: domain.to_ascii_lowercase(),
            explanation: None,
            problem: Some("time budget spent".into()),
        };
        let (helo, spf) = match tokio::time::timeout_at(deadline, spf_work).await {
            Ok(done) => done,
            Err(_) => (out_of_time(input.helo), out_of_time(mail_from_domain)),
        };
        let spf_output = SpfOutput::new(spf.domain.clone()).with_result(spf.result);
        let auth = &self.authenticator;
        let rest = async {
            let dkim = auth.verify_dkim(&message).await;
            let arc = auth.verify_arc(&message).await;
            let dmarc = auth.verify_dmarc(DmarcParameters::new(&message, &dkim, &spf.domain, &spf_output)).await;
            (dkim, arc, dmarc)
        };
        let rest = tokio::time::timeout_at(deadline, rest).await;
        let (dmarc, from_domain) = match &rest {
            Ok((_, _, dmarc)) => (dmarc_of(dmarc), dmarc.domain().to_ascii_lowercase()),
            Err(_) => {
                extra.push("dkim=temperror reason=\"time budget spent\"".into());
                (Dmarc::TempError, String::new())
            }
        };
        let found = Found {
            dkim: rest.as_ref().map_or(&[][..], |(dkim, _, _)| dkim.as_slice()),
            arc: rest.as_ref().ok().map(|(_, arc, _)| arc),
            helo: &helo,
            spf: &spf,
            dmarc,
            from_domain: &from_domain,
            extra: &extra,
        };
        let header = results_field(&self.hostname, input, &found);
        let (dkim_pass, arc) = match &rest {
            Ok((dkim, arc, _)) => (
                dkim.iter()
                    .filter(|o| o.result() == &DkimResult::Pass)
                    .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
                    .collect(),
                match arc.result() {
                    DkimResult::Pass => Arc::Pass {
                        sealer: arc.sets().last().map(|s| s.seal.header.d.to_ascii_lowercase()).unwrap_or_default(),
                    },
                    DkimResult::None => Arc::None,
                    _ => Arc::Fail,
                },
            ),
            Err(_) => (Vec::new(), Arc::None),
        };
        Verdict { header, spf, dkim_pass, from_domain, dmarc, arc }
    }
}

/// What the checks found, for [`results_field`].
pub struct Found<'a, 'x> {
    pub dkim: &'a [DkimOutput<'x>],
    pub arc: Option<&'a ArcOutput<'x>>,
    pub helo: &'a SpfVerdict,
    pub spf: &'a SpfVerdict,
    pub dmarc: Dmarc,
    /// The From domain DMARC was evaluated for ("": none).
    pub from_domain: &'a str,
    /// Results mail-auth does not write (`dkim=policy`, `temperror`).
    pub extra: &'a [String],
}

/// The Authentication-Results field (RFC 8601) for what was found: the
/// methods mail-auth knows written by it, then ours; one field, folded,
/// ending in CRLF. Pure, and fuzzed (`fuzz_checks::auth_results`): the
/// HELO name, the sender and the From domain are the client's words.
pub fn results_field(hostname: &str, input: &Inbound<'_>, found: &Found<'_, '_>) -> String {
    let from = found.from_domain;
    let spf_output = SpfOutput::new(found.spf.domain.clone()).with_result(found.spf.result);
    let helo_output = SpfOutput::new(found.helo.domain.clone()).with_result(found.helo.result);
    let mut results = AuthenticationResults::new(hostname).with_dkim_results(found.dkim, from);
    if !input.mail_from.is_empty() {
        results = results.with_spf_ehlo_result(&helo_output, input.ip, input.helo);
    }
    results = results.with_spf_mailfrom_result(&spf_output, input.ip, input.mail_from, input.helo);
    if let Some(arc) = found.arc {
        results = results.with_arc_result(arc, input.ip);
    }
    let mut extra: Vec<String> = found.extra.to_vec();
    // mail-auth writes dmarc=none when nothing aligned; RFC 7489 §11.2
    // says fail, so this part is ours.
    if !from.is_empty() {
        let policy = match found.dmarc {
            Dmarc::Fail(Requested::Reject) => " policy.dmarc=reject",
            Dmarc::Fail(Requested::Quarantine) => " policy.dmarc=quarantine",
            Dmarc::Fail(Requested::None) => " policy.dmarc=none",
            _ => "",
        };
        extra.push(format!("dmarc={} header.from={}{policy}", found.dmarc.as_str(), pvalue(from)));
    }
    let mut header = results.to_header();
    if !extra.is_empty() {
        header.truncate(header.trim_end().len());
        for r in &extra {
            header.push_str(";\r\n\t");
            header.push_str(r);
        }
        header.push_str("\r\n");
    }
    header
}

/// Parse for DKIM/ARC (headers, and the body hashes each signature needs).
fn parse(message: &[u8]) -> Option<AuthenticatedMessage<'_>> {
    crate::heavy(message.len(), || AuthenticatedMessage::parse(message))
}

fn dmarc_of(d: &DmarcOutput) -> Dmarc {
    let (spf, dkim) = (d.spf_result(), d.dkim_result());
    if d.domain().is_empty() || d.dmarc_record().is_none() {
        return match (spf, dkim) {
            (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => Dmarc::TempError,
            (DmarcResult::PermError(_), _) | (_, DmarcResult::PermError(_)) => Dmarc::PermError,
            _ => Dmarc::None,
        };
    }
    if *spf == DmarcResult::Pass || *dkim == DmarcResult::Pass {
        return Dmarc::Pass;
    }
    if matches!(spf, DmarcResult::TempError(_)) || matches!(dkim, DmarcResult::TempError(_)) {
        return Dmarc::TempError;
    }
    Dmarc::Fail(match d.policy() {
        Policy::Reject => Requested::Reject,
        Policy::Quarantine => Requested::Quarantine,
        Policy::None | Policy::Unspecified => Requested::None,
    })
}

/// A value for a header field: a token as it is, anything else quoted
/// (RFC 8601 §2.2, RFC 2045 §5.1), control characters dropped.
pub fn pvalue(v: &str) -> String {
    let token = !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b));
    if token {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvalues_are_quoted_when_not_tokens() {
        assert_eq!(pvalue("example.org"), "example.org");
        assert_eq!(pvalue("a b\"c\r\nX-Evil: 1"), "\"a b\\\"cX-Evil: 1\"");
        assert_eq!(pvalue(""), "\"\"");
    }
}
