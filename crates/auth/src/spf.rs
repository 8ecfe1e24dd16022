//! SPF's check_host() (RFC 7208 §4), over the [`Dns`] trait.
//!
//! The evaluation counts RFC 7208 §4.6.4's limits before a query goes out:
//! at most 10 terms that cause DNS queries (include, a, mx, ptr, exists,
//! redirect), at most 2 void lookups, at most 10 MX names per "mx" and 10
//! PTR names per "ptr". A time budget over the whole evaluation is the
//! caller's (a timeout around it).
//!
//! Records are parsed here by §12's ABNF, and macros expanded by §7, rather
//! than by mail-auth (which still gives [`SpfResult`]): its parser (0.13)
//! takes what the RFC refuses (control characters between terms, non-ASCII
//! text, CIDR lengths over 32 or 128, `a/24/64`, a domain-spec without a
//! valid ending such as `a:1.2.3.4` or `exp=-all`, modifier names not
//! starting with a letter) and refuses what it allows (a `/` inside a
//! domain-spec or a modifier's value: `a:foo:bar/baz.example.com`); its
//! expansion writes escapes and IPv6 nibbles in lower case, where §7.4 and
//! RFC 3986 §2.1 use upper case.
//! Checked against the OpenSPF RFC 7208 test suite (tests/openspf.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_auth::SpfResult;

use crate::dns::{Dns, DnsFailure};

/// RFC 7208 §4.6.4.
pub const MAX_DNS_TERMS: u32 = 10;
pub const MAX_VOID_LOOKUPS: u32 = 2;
const MAX_NAMES_PER_TERM: usize = 10;

/// The outcome of check_host() for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfVerdict {
    pub result: SpfResult,
    /// The domain checked (the MAIL FROM domain, or the HELO name).
    pub domain: String,
    /// The `exp=` text of a fail (RFC 7208 §6.2), macros expanded.
    pub explanation: Option<String>,
    /// Why the result is an error, for the log and Authentication-Results.
    pub problem: Option<String>,
}

/// Which identity is checked (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// The HELO/EHLO name.
    Helo(&'a str),
    /// The MAIL FROM address (non-empty).
    MailFrom(&'a str),
}

/// Inputs every check shares.
pub struct Check<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// Our own host name (the `%{r}` macro).
    pub receiver: &'a str,
}

/// check_host() for one identity: the HELO name, or the MAIL FROM address
/// (an address without a local part is postmaster@, §4.3).
pub async fn check<D: Dns>(dns: &D, input: &Check<'_>, identity: Identity<'_>) -> SpfVerdict {
    let (domain, sender) = match identity {
        Identity::Helo(h) => (h.to_string(), format!("postmaster@{h}")),
        Identity::MailFrom(s) => match s.rsplit_once('@') {
            Some(("", d)) => (d.to_string(), format!("postmaster@{d}")),
            Some((_, d)) => (d.to_string(), s.to_string()),
            None => (s.to_string(), format!("postmaster@{s}")),
        },
    };
    // §5: an IPv4-mapped IPv6 address is an IPv4 client.
    let ip = match input.ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let mut eval = Eval {
        dns,
        ip,
        sender,
        helo: input.helo.to_string(),
        receiver: input.receiver.to_string(),
        terms: 0,
        voids: 0,
        validated: None,
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let (result, explanation, problem) = match eval.check_host(&domain).await {
        Ok((SpfResult::Fail, Some(exp))) => (SpfResult::Fail, eval.explain(&exp).await, None),
        Ok((result, _)) => (result, None, None),
        Err(Stop::Temp(why)) => (SpfResult::TempError, None, Some(why)),
        Err(Stop::Perm(why)) => (SpfResult::PermError, None, Some(why)),
    };
    SpfVerdict { result, domain, explanation, problem }
}

// ---------------------------------------------------------------------------
// Records (RFC 7208 §4.5, §4.6, §5, §6, §12)

/// The one SPF record among a name's TXT records (RFC 7208 §4.5): it
/// starts with "v=spf1" (any case) followed by a space or its end.
fn select(records: &[Vec<u8>]) -> Result<Option<&[u8]>, Stop> {
    let mut found = records
        .iter()
        .filter(|r| r.len() >= 6 && r[..6].eq_ignore_ascii_case(b"v=spf1") && (r.len() == 6 || r[6] == b' '));
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some(r), None) => Ok(Some(r)),
        (Some(_), Some(_)) => Err(Stop::Perm("more than one SPF record".into())),
    }
}

/// A parsed SPF record.
#[derive(Debug, Default)]
struct Record {
    directives: Vec<Directive>,
    redirect: Option<MacroString>,
    exp: Option<MacroString>,
}

#[derive(Debug)]
struct Directive {
    /// The qualifier's result (§4.6.2): "+" (or none) pass, "-" fail,
    /// "~" softfail, "?" neutral.
    result: SpfResult,
    mechanism: Mechanism,
}

#[derive(Debug)]
enum Mechanism {
    All,
    Include(MacroString),
    A(Option<MacroString>, Cidr),
    Mx(Option<MacroString>, Cidr),
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

/// A dual-cidr-length: the prefix lengths for IPv4 and IPv6 addresses.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    v4: u8,
    v6: u8,
}

impl Record {
    /// A record [`select`] chose, parsed whole: a syntax error anywhere in
    /// it is a permerror before any mechanism is evaluated (§4.6).
    fn parse(text: &[u8]) -> Result<Record, String> {
        // §12: nothing but printable 7-bit ASCII and spaces (§3.1: 7-bit).
        let text = std::str::from_utf8(text).ok().filter(|t| t.is_ascii()).ok_or("not 7-bit ASCII")?;
        let mut record = Record::default();
        // §4.6.1, §12: terms are separated by one or more SP (not any other
        // white space); spaces may trail.
        for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
            record.term(term).map_err(|why| format!("{term:?}: {why}"))?;
        }
        Ok(record)
    }

    fn term(&mut self, term: &str) -> Result<(), String> {
        // §4.6.1, §12: a modifier is name "=" ..., with
        // name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
        if let Some((name, value)) = term.split_once('=')
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return self.modifier(name, value);
        }
        let (result, body) = match term.as_bytes()[0] {
            b'+' => (SpfResult::Pass, &term[1..]),
            b'-' => (SpfResult::Fail, &term[1..]),
            b'~' => (SpfResult::SoftFail, &term[1..]),
            b'?' => (SpfResult::Neutral, &term[1..]),
            _ => (SpfResult::Pass, term),
        };
        let (name, arg) = body.split_at(body.find([':', '/']).unwrap_or(body.len()));
        let mechanism = match name.to_ascii_lowercase().as_str() {
            // §5.1: "all", alone.
            "all" if arg.is_empty() => Mechanism::All,
            // §5.2, §5.7: ":" domain-spec, required.
            "include" => Mechanism::Include(colon_domain_spec(arg)?),
            "exists" => Mechanism::Exists(colon_domain_spec(arg)?),
            // §5.3, §5.4: [ ":" domain-spec ] [ dual-cidr-length ].
            "a" => {
                let (domain, cidr) = domain_and_cidr(arg)?;
                Mechanism::A(domain, cidr)
            }
            "mx" => {
                let (domain, cidr) = domain_and_cidr(arg)?;
                Mechanism::Mx(domain, cidr)
            }
            // §5.5: [ ":" domain-spec ], no CIDR length.
            "ptr" if arg.is_empty() => Mechanism::Ptr(None),
            "ptr" => Mechanism::Ptr(Some(colon_domain_spec(arg)?)),
            // §5.6: ":" network [ cidr-length ], the address as in RFC 4291 §2.2
            // for IPv6; the standard library takes exactly these forms (no
            // leading zeros or omitted parts in IPv4, §5.6's ip4-network).
            "ip4" => {
                let (addr, len) = network(arg, 32)?;
                Mechanism::Ip4(addr.parse().map_err(|_| format!("{addr:?} is no IPv4 address"))?, len)
            }
            "ip6" => {
                let (addr, len) = network(arg, 128)?;
                Mechanism::Ip6(addr.parse().map_err(|_| format!("{addr:?} is no IPv6 address"))?, len)
            }
            _ => return Err("unknown mechanism".into()),
        };
        self.directives.push(Directive { result, mechanism });
        Ok(())
    }

    fn modifier(&mut self, name: &str, value: &str) -> Result<(), String> {
        let slot = match name.to_ascii_lowercase().as_str() {
            "redirect" => &mut self.redirect,
            "exp" => &mut self.exp,
            // §6: unknown modifiers are ignored, but their value must still
            // be a macro-string (§12).
            _ => return macro_string(value, Context::Modifier).map(drop),
        };
        // §6: redirect and exp may each appear once at most.
        if slot.is_some() {
            return Err("appears twice".into());
        }
        // §6.1, §6.2: "=" domain-spec; an empty one is an error too.
        *slot = Some(domain_spec(value)?);
        Ok(())
    }
}

/// `":" domain-spec`.
fn colon_domain_spec(arg: &str) -> Result<MacroString, String> {
    domain_spec(arg.strip_prefix(':').ok_or("\":\" domain-spec expected")?)
}

/// The `[ ":" domain-spec ] [ dual-cidr-length ]` of a and mx (§5.3, §5.4).
/// A domain-spec may hold "/" but never ends with "/" and digits (it ends
/// with a toplabel or a macro-expand), so the lengths are read from the right.
fn domain_and_cidr(arg: &str) -> Result<(Option<MacroString>, Cidr), String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut rest = arg;
    let mut cidr = Cidr { v4: 32, v6: 128 };
    if let Some((head, len)) = rest.rsplit_once("//")
        && digits(len)
    {
        cidr.v6 = cidr_length(len, 128)?;
        rest = head;
    }
    if let Some((head, len)) = rest.rsplit_once('/')
        && digits(len)
    {
        cidr.v4 = cidr_length(len, 32)?;
        rest = head;
    }
    let domain = if rest.is_empty() { None } else { Some(colon_domain_spec(rest)?) };
    Ok((domain, cidr))
}

/// The `":" network [ "/" length ]` of ip4 and ip6 (§5.6).
fn network(arg: &str, max: u8) -> Result<(&str, u8), String> {
    let spec = arg.strip_prefix(':').ok_or("\":\" and an address expected")?;
    match spec.split_once('/') {
        Some((addr, len)) => Ok((addr, cidr_length(len, max)?)),
        None => Ok((spec, max)),
    }
}

/// A CIDR length (§5.6, §12): "0", or digits without a leading zero, at
/// most 32 for IPv4 and 128 for IPv6; anything else is a syntax error.
fn cidr_length(len: &str, max: u8) -> Result<u8, String> {
    let well_formed =
        len == "0" || (!len.starts_with('0') && !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()));
    match len.parse::<u8>() {
        Ok(n) if well_formed && n <= max => Ok(n),
        _ => Err(format!("bad CIDR length {len:?} (0 to {max})")),
    }
}

// ---------------------------------------------------------------------------
// Macro-strings (RFC 7208 §7)

/// A macro-string: literal text (with `%%`, `%_` and `%-` already turned
/// into "%", " " and "%20") and macros.
#[derive(Debug, Clone)]
struct MacroString(Vec<Piece>);

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Macro(Macro),
}

/// `%{` macro-letter transformers *delimiter `}` (§7.1).
#[derive(Debug, Clone)]
struct Macro {
    /// In lower case.
    letter: u8,
    /// An upper-case letter: the value is URL-escaped (§7.3).
    escape: bool,
    /// The rightmost parts to keep; all of them if none.
    keep: Option<usize>,
    reverse: bool,
    /// The characters the value is split on: "." if none is given.
    delimiters: String,
}

/// Where a macro-string stands, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A domain-spec: "c", "r" and "t" are for explanations only (§7.1).
    Domain,
    /// An unknown modifier's value: any macro-letter of §12.
    Modifier,
    /// The TXT record exp= names: an explain-string, spaces allowed (§6.2).
    Explanation,
}

impl Context {
    fn letters(self) -> &'static [u8] {
        match self {
            Context::Domain => b"slodiphv",
            Context::Modifier | Context::Explanation => b"slodiphvcrt",
        }
    }
}

/// Parses a macro-string (§7.1): also returns where its last macro-expand
/// ends (0 if it has none), for [`domain_spec`].
fn macro_string(s: &str, context: Context) -> Result<(MacroString, usize), String> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut expand_end = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // macro-literal = %x21-24 / %x26-7E; an explain-string adds SP.
            let allowed = (b'!'..=b'~').contains(&b) || (b == b' ' && context == Context::Explanation);
            if !allowed {
                return Err(format!("character {:?} not allowed", char::from(b)));
            }
            text.push(char::from(b));
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'%') => text.push('%'),
            Some(b'_') => text.push(' '),
            Some(b'-') => text.push_str("%20"),
            Some(b'{') => {
                let close = s[i..].find('}').ok_or("unclosed \"%{\"")? + i;
                let m = parse_macro(&s[i + 2..close], context)?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Macro(m));
                i = close + 1;
                expand_end = i;
                continue;
            }
            // §7.1: "%" followed by anything else is a syntax error.
            _ => return Err("\"%\" not followed by \"{\", \"%\", \"_\" or \"-\"".into()),
        }
        i += 2;
        expand_end = i;
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok((MacroString(pieces), expand_end))
}

/// The inside of `%{...}`: macro-letter, transformers (*DIGIT [ "r" ]) and
/// delimiters, in that order (§7.1).
fn parse_macro(inner: &str, context: Context) -> Result<Macro, String> {
    let bad = |why: &str| format!("macro %{{{inner}}}: {why}");
    let letter = inner.bytes().next().ok_or_else(|| bad("no letter"))?;
    if !context.letters().contains(&letter.to_ascii_lowercase()) {
        return Err(bad("letter not allowed here"));
    }
    let rest = &inner[1..];
    let (digits, rest) = rest.split_at(rest.bytes().take_while(u8::is_ascii_digit).count());
    // §7.3: a DIGIT transformer must be nonzero; more parts than there are
    // means all of them.
    let keep = match digits {
        "" => None,
        d if d.bytes().all(|b| b == b'0') => return Err(bad("zero parts")),
        d => Some(d.parse().unwrap_or(usize::MAX)),
    };
    let (reverse, rest) = match rest.strip_prefix(['r', 'R']) {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if !rest.bytes().all(|b| b".-+,/_=".contains(&b)) {
        return Err(bad("bad transformer or delimiter"));
    }
    Ok(Macro {
        letter: letter.to_ascii_lowercase(),
        escape: letter.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: if rest.is_empty() { ".".into() } else { rest.into() },
    })
}

/// domain-spec = macro-string domain-end, where
/// domain-end = ( "." toplabel [ "." ] ) / macro-expand (§7.1, §12).
fn domain_spec(s: &str) -> Result<MacroString, String> {
    let (m, expand_end) = macro_string(s, Context::Domain)?;
    let tail = &s[expand_end..];
    let ends_well = if tail.is_empty() {
        expand_end > 0
    } else {
        let tail = tail.strip_suffix('.').unwrap_or(tail);
        tail.rsplit_once('.').is_some_and(|(_, top)| toplabel(top))
    };
    if ends_well { Ok(m) } else { Err(format!("{s:?} does not end with a toplabel or a macro")) }
}

/// toplabel = ( *alphanum ALPHA *alphanum ) /
///            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) (§7.1):
/// letters, digits and inner dashes, never all digits.
fn toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().any(|c| !c.is_ascii_digit())
}

impl Macro {
    /// Appends the macro's value once transformed (§7.3): split on the
    /// delimiters, reversed if asked, the rightmost parts kept, joined with
    /// "."; then URL-escaped for an upper-case letter.
    fn expand_into(&self, value: &str, out: &mut String) {
        let mut parts: Vec<&str> = value.split(|c: char| self.delimiters.contains(c)).collect();
        if self.reverse {
            parts.reverse();
        }
        let skip = parts.len().saturating_sub(self.keep.unwrap_or(usize::MAX));
        let joined = parts[skip..].join(".");
        if !self.escape {
            out.push_str(&joined);
            return;
        }
        // §7.3: every character outside RFC 3986's "unreserved" set is
        // escaped, in upper-case hexadecimal (RFC 3986 §2.1).
        for b in joined.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation (RFC 7208 §4, §5, §6)

/// Why an evaluation stopped early.
#[derive(Debug)]
enum Stop {
    Temp(String),
    Perm(String),
}

/// The exp= of the record whose directive decided, and that record's domain.
struct Exp {
    spec: MacroString,
    domain: String,
}

type Outcome = Result<(SpfResult, Option<Exp>), Stop>;

struct Eval<'d, D> {
    dns: &'d D,
    ip: IpAddr,
    /// `%{s}`: the MAIL FROM address, or postmaster@ the domain.
    sender: String,
    helo: String,
    receiver: String,
    terms: u32,
    voids: u32,
    /// The client's validated names (§5.5), looked up once: for "ptr" and
    /// `%{p}`. `Err`: the PTR query failed.
    validated: Option<Result<Vec<String>, DnsFailure>>,
}

/// RFC 7208 §4.3: a name with an empty or over-long label, or a single
/// label, is not a domain SPF can be checked for.
fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && !d.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 7208 §7.3: an expanded name longer than 253 characters loses
/// labels on the left until it fits.
fn truncate_left(name: &str) -> &str {
    let mut n = name.strip_suffix('.').unwrap_or(name);
    while n.len() > 253 {
        match n.split_once('.') {
            Some((_, rest)) => n = rest,
            None => break,
        }
    }
    n
}

/// A name from an answer (MX, PTR), as names are compared.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn v4_match(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

fn v6_match(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

impl<D: Dns> Eval<'_, D> {
    /// Count a term that queries DNS, before it does.
    fn count_term(&mut self) -> Result<(), Stop> {
        self.terms += 1;
        if self.terms > MAX_DNS_TERMS {
            return Err(Stop::Perm(format!("more than {MAX_DNS_TERMS} DNS-querying terms")));
        }
        Ok(())
    }

    /// Count a void lookup (no records, or no such name).
    fn count_void(&mut self) -> Result<(), Stop> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(Stop::Perm(format!("more than {MAX_VOID_LOOKUPS} void lookups")));
        }
        Ok(())
    }

    /// A lookup's records: a void answer is counted and empty, a temporary
    /// failure stops with temperror.
    fn records<T>(&mut self, answer: Result<Vec<T>, DnsFailure>) -> Result<Vec<T>, Stop> {
        match answer {
            Ok(v) => Ok(v),
            Err(DnsFailure::Temporary(why)) => Err(Stop::Temp(why)),
            Err(_) => self.count_void().map(|()| Vec::new()),
        }
    }

    /// A macro-string expanded for the current `domain` (§7.3).
    async fn expand(&mut self, m: &MacroString, domain: &str) -> String {
        let wants_p = m.0.iter().any(|piece| matches!(piece, Piece::Macro(mac) if mac.letter == b'p'));
        if wants_p && self.validated.is_none() {
            self.validated = Some(self.validated_names().await);
        }
        let mut out = String::new();
        for piece in &m.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Macro(m) => m.expand_into(&self.value(m.letter, domain), &mut out),
            }
        }
        out
    }

    /// A macro letter's value (§7.3).
    fn value(&self, letter: u8, domain: &str) -> String {
        let (local, sender_domain) = self.sender.rsplit_once('@').unwrap_or(("postmaster", &self.sender));
        match letter {
            b's' => self.sender.clone(),
            b'l' => local.to_string(),
            b'o' => sender_domain.to_string(),
            b'd' => domain.to_string(),
            // §7.3: dotted quads; for IPv6 the nibbles of RFC 3596 §2.5, in
            // upper case as in §7.4's example.
            b'i' => match self.ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => {
                    let nibbles = v6.octets().into_iter().flat_map(|b| [b >> 4, b & 0xf]);
                    nibbles.map(|n| format!("{n:X}")).collect::<Vec<_>>().join(".")
                }
            },
            b'p' => self.validated_for(domain),
            b'v' => (if self.ip.is_ipv4() { "in-addr" } else { "ip6" }).to_string(),
            b'h' => self.helo.clone(),
            // §7.3: an address for humans (RFC 5952's form for IPv6).
            b'c' => self.ip.to_string(),
            b'r' if self.receiver.is_empty() => "unknown".to_string(),
            b'r' => self.receiver.clone(),
            b't' => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string(),
            _ => String::new(),
        }
    }

    /// The target name of a mechanism or modifier (§4.8): its domain-spec
    /// expanded, or the current domain; too long, it loses labels on the
    /// left (§7.3); a trailing dot goes.
    async fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            None => domain.to_string(),
            Some(spec) => {
                let expanded = self.expand(spec, domain).await;
                truncate_left(&expanded).to_ascii_lowercase()
            }
        }
    }

    /// §5.5: the client's PTR names (the first 10, §4.6.4) whose address
    /// records hold the client's address; a name whose address lookup
    /// fails is skipped.
    async fn validated_names(&self) -> Result<Vec<String>, DnsFailure> {
        let names = self.dns.ptr(self.ip).await?;
        let mut valid = Vec::new();
        for name in names.iter().take(MAX_NAMES_PER_TERM).map(|n| normalize(n)) {
            if self.has_address(&name).await {
                valid.push(name);
            }
        }
        Ok(valid)
    }

    /// `%{p}` (§7.3): the domain itself if validated, else a validated
    /// subdomain of it, else any validated name; "unknown" if none.
    fn validated_for(&self, domain: &str) -> String {
        let names = match &self.validated {
            Some(Ok(names)) => names.as_slice(),
            _ => &[],
        };
        let suffix = format!(".{domain}");
        names
            .iter()
            .find(|n| *n == domain)
            .or_else(|| names.iter().find(|n| n.ends_with(&suffix)))
            .or(names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    /// Whether `name` has an address record equal to the client's; a
    /// failed lookup says no.
    async fn has_address(&self, name: &str) -> bool {
        match self.ip {
            IpAddr::V4(ip) => self.dns.a(name).await.is_ok_and(|v| v.contains(&ip)),
            IpAddr::V6(ip) => self.dns.aaaa(name).await.is_ok_and(|v| v.contains(&ip)),
        }
    }

    /// The client's address against `name`'s A or AAAA records, within the
    /// prefix lengths. `count_void`: an empty answer counts as a void lookup.
    async fn address_match(&mut self, name: &str, cidr: Cidr, count_void: bool) -> Result<bool, Stop> {
        let answer = match self.ip {
            IpAddr::V4(ip) => self.dns.a(name).await.map(|v| v.iter().any(|a| v4_match(*a, ip, cidr.v4))),
            IpAddr::V6(ip) => self.dns.aaaa(name).await.map(|v| v.iter().any(|a| v6_match(*a, ip, cidr.v6))),
        };
        match answer {
            Ok(hit) => Ok(hit),
            Err(DnsFailure::Temporary(why)) => Err(Stop::Temp(why)),
            Err(_) if count_void => self.count_void().map(|()| false),
            Err(_) => Ok(false),
        }
    }

    /// check_host(ip, domain, sender) (RFC 7208 §4): the result, and the
    /// exp= that explains it if it is a fail.
    fn check_host<'s>(&'s mut self, domain: &'s str) -> Pin<Box<dyn Future<Output = Outcome> + Send + 's>> {
        Box::pin(async move {
            if !valid_domain(domain) {
                return Ok((SpfResult::None, None));
            }
            // §4.4: a server failure or a timeout is a temperror; no name,
            // or no TXT record, is none.
            let records = match self.dns.txt(domain).await {
                Ok(r) => r,
                Err(DnsFailure::Temporary(why)) => return Err(Stop::Temp(why)),
                Err(_) => return Ok((SpfResult::None, None)),
            };
            let Some(text) = select(&records)? else {
                return Ok((SpfResult::None, None));
            };
            let record = Record::parse(text)
                .map_err(|why| Stop::Perm(format!("syntax error in the SPF record of {domain}: {why}")))?;
            for directive in &record.directives {
                if self.matches(&directive.mechanism, domain).await? {
                    let exp = match (directive.result, &record.exp) {
                        (SpfResult::Fail, Some(spec)) => Some(Exp { spec: spec.clone(), domain: domain.to_string() }),
                        _ => None,
                    };
                    return Ok((directive.result, exp));
                }
            }
            if let Some(spec) = &record.redirect {
                self.count_term()?;
                let target = self.target(Some(spec), domain).await;
                // §6.1: the target's result is ours, but a target without a
                // record (or no domain at all) is a permerror; §6.2: its
                // exp=, not ours, explains a fail.
                return match self.check_host(&target).await? {
                    (SpfResult::None, _) => Err(Stop::Perm(format!("redirect to {target}, which has no SPF record"))),
                    outcome => Ok(outcome),
                };
            }
            // §4.7: no match, no redirect.
            Ok((SpfResult::Neutral, None))
        })
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, Stop> {
        match mechanism {
            Mechanism::All => Ok(true),
            // §5.6: an IPv4 client only matches ip4, an IPv6 one only ip6.
            Mechanism::Ip4(addr, len) => Ok(matches!(self.ip, IpAddr::V4(ip) if v4_match(*addr, ip, *len))),
            Mechanism::Ip6(addr, len) => Ok(matches!(self.ip, IpAddr::V6(ip) if v6_match(*addr, ip, *len))),
            Mechanism::Include(spec) => {
                self.count_term()?;
                let target = self.target(Some(spec), domain).await;
                // §5.2: pass matches; fail, softfail and neutral do not;
                // an included domain without a record is a permerror. The
                // included record's exp= is never used (§6.2).
                match self.check_host(&target).await?.0 {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => Err(Stop::Temp(format!("include:{target}"))),
                    SpfResult::PermError | SpfResult::None => {
                        Err(Stop::Perm(format!("include:{target} has no usable SPF record")))
                    }
                }
            }
            // An expanded target that is no domain name matches nothing (as
            // for the checked domain, §4.3; RFC 7208 leaves it undefined).
            Mechanism::A(spec, cidr) => {
                self.count_term()?;
                let target = self.target(spec.as_ref(), domain).await;
                if !valid_domain(&target) {
                    return Ok(false);
                }
                self.address_match(&target, *cidr, true).await
            }
            Mechanism::Mx(spec, cidr) => {
                self.count_term()?;
                let target = self.target(spec.as_ref(), domain).await;
                if !valid_domain(&target) {
                    return Ok(false);
                }
                let answer = self.dns.mx(&target).await;
                let mut hosts = self.records(answer)?;
                // §4.6.4: more than 10 MX names is a permerror.
                if hosts.len() > MAX_NAMES_PER_TERM {
                    return Err(Stop::Perm(format!("mx:{target} has more than {MAX_NAMES_PER_TERM} MX records")));
                }
                hosts.sort_by_key(|h| h.0);
                for (_, host) in hosts {
                    let host = normalize(&host);
                    // The null MX "." names no host (RFC 7505).
                    if host.is_empty() {
                        continue;
                    }
                    if self.address_match(&host, *cidr, false).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_term()?;
                let target = self.target(spec.as_ref(), domain).await;
                if self.validated.is_none() {
                    self.validated = Some(self.validated_names().await);
                }
                // §5.5: a validated name equal to the target or under it
                // matches; a failed PTR lookup is no match, never an error.
                let names = match &self.validated {
                    Some(Ok(names)) => names,
                    Some(Err(DnsFailure::Temporary(_))) | None => return Ok(false),
                    Some(Err(_)) => return self.count_void().map(|()| false),
                };
                let suffix = format!(".{target}");
                Ok(names.iter().any(|n| *n == target || n.ends_with(&suffix)))
            }
            Mechanism::Exists(spec) => {
                self.count_term()?;
                let target = self.target(Some(spec), domain).await;
                if !valid_domain(&target) {
                    return Ok(false);
                }
                // §5.7: an A query whatever the client's address family.
                let answer = self.dns.a(&target).await;
                Ok(!self.records(answer)?.is_empty())
            }
        }
    }

    /// The explanation of a fail (§6.2): the one TXT record of the exp=
    /// target, an explain-string, expanded. Any trouble (no such record,
    /// several, a DNS error, a syntax error, non-ASCII text) means none;
    /// the lookup counts against no limit.
    async fn explain(&mut self, exp: &Exp) -> Option<String> {
        let target = self.target(Some(&exp.spec), &exp.domain).await;
        if !valid_domain(&target) {
            return None;
        }
        let texts = self.dns.txt(&target).await.ok()?;
        let [text] = texts.as_slice() else { return None };
        let (m, _) = macro_string(std::str::from_utf8(text).ok()?, Context::Explanation).ok()?;
        Some(self.expand(&m, &exp.domain).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Table;

    fn zone(records: &[(&str, &str)]) -> Table {
        let mut t = Table::default();
        for (name, txt) in records {
            t.entry(name).txt.push(txt.as_bytes().to_vec());
        }
        t
    }

    async fn run(t: &Table, ip: &str, sender: &str) -> SpfVerdict {
        let input = Check { ip: ip.parse().unwrap(), helo: "mail.example.net", receiver: "mx.example.test" };
        check(t, &input, Identity::MailFrom(sender)).await
    }

    #[tokio::test]
    async fn ip4_pass_and_fail_with_explanation() {
        let mut t = zone(&[("example.org", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.org")]);
        t.entry("why.example.org").txt.push(b"%{i} is not one of %{d}'s senders".to_vec());
        assert_eq!(run(&t, "192.0.2.7", "a@example.org").await.result, SpfResult::Pass);
        let v = run(&t, "198.51.100.1", "a@example.org").await;
        assert_eq!(v.result, SpfResult::Fail);
        assert_eq!(v.explanation.as_deref(), Some("198.51.100.1 is not one of example.org's senders"));
    }

    #[tokio::test]
    async fn ten_dns_terms_pass_and_the_eleventh_is_a_permerror() {
        // Edge: exactly ten DNS-querying terms are allowed (RFC 7208 §4.6.4).
        let mut records = vec![("example.org".to_string(), String::new())];
        let mut top = String::from("v=spf1");
        for i in 0..10 {
            top.push_str(&format!(" include:i{i}.example.org"));
            records.push((format!("i{i}.example.org"), "v=spf1 -all".into()));
        }
        records[0].1 = format!("{top} ip4:192.0.2.1 -all");
        let refs: Vec<(&str, &str)> = records.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(run(&zone(&refs), "192.0.2.1", "a@example.org").await.result, SpfResult::Pass);
        records[0].1 = format!("{top} a:one-more.example.org ip4:192.0.2.1 -all");
        let refs: Vec<(&str, &str)> = records.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let v = run(&zone(&refs), "192.0.2.1", "a@example.org").await;
        assert_eq!(v.result, SpfResult::PermError, "{v:?}");
    }

    #[tokio::test]
    async fn two_void_lookups_pass_and_the_third_is_a_permerror() {
        let t = zone(&[("two.example.org", "v=spf1 a:n1.example.org a:n2.example.org ip4:192.0.2.1 -all")]);
        assert_eq!(run(&t, "192.0.2.1", "a@two.example.org").await.result, SpfResult::Pass);
        let t = zone(&[(
            "three.example.org",
            "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org ip4:192.0.2.1 -all",
        )]);
        assert_eq!(run(&t, "192.0.2.1", "a@three.example.org").await.result, SpfResult::PermError);
    }

    #[tokio::test]
    async fn no_record_is_none_and_two_records_are_a_permerror() {
        let t = zone(&[("example.org", "v=spf1 -all"), ("example.org", "v=spf1 +all")]);
        assert_eq!(run(&t, "192.0.2.1", "a@example.org").await.result, SpfResult::PermError);
        assert_eq!(run(&t, "192.0.2.1", "a@elsewhere.example").await.result, SpfResult::None);
    }

    #[tokio::test]
    async fn a_timeout_is_a_temperror() {
        let mut t = zone(&[("example.org", "v=spf1 a:slow.example.org -all")]);
        t.entry("slow.example.org").timeout = true;
        assert_eq!(run(&t, "192.0.2.1", "a@example.org").await.result, SpfResult::TempError);
    }

    #[tokio::test]
    async fn mx_and_mapped_ipv6_clients() {
        let mut t = zone(&[("example.org", "v=spf1 mx -all")]);
        t.entry("example.org").mx.push((10, "mail.example.org".into()));
        t.entry("mail.example.org").a.push("192.0.2.25".parse().unwrap());
        assert_eq!(run(&t, "::ffff:192.0.2.25", "a@example.org").await.result, SpfResult::Pass);
        assert_eq!(run(&t, "192.0.2.26", "a@example.org").await.result, SpfResult::Fail);
    }

    #[test]
    fn records_are_held_to_the_abnf() {
        // RFC 7208 §12, and the OpenSPF suite's syntax cases.
        for ok in [
            "v=spf1",
            "v=spf1 a  -all ",
            "V=SPF1 +A:example.org/24//64 ?MX//0 ~ptr ptr:example.org -all",
            "v=spf1 a:foo:bar/baz.example.com mx:foo:bar/baz.example.com/24",
            "v=spf1 a:%{d} exists:%{i}.%{l2r-}.user.%{d2} include:_spf.%{d2} redirect=%{d}.example.org.",
            "v=spf1 moo.cow-far_out=man:dog/cat default=+ ra=postmaster",
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:::ffff:1.2.3.4 ip4:1.1.1.1/0",
            "v=spf1 a:foo.example.xn--zckzah a:x.123-4 exp=%{d}",
        ] {
            assert!(Record::parse(ok.as_bytes()).is_ok(), "{ok:?}: {:?}", Record::parse(ok.as_bytes()));
        }
        for bad in [
            "v=spf1 a:example.com\r-all",
            "v=spf1 ip4:192.0.2.5\n include:example.org",
            "v=spf1 \u{80}a:example.net -all",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip6:::1/129",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 a:1.2.3.4",
            "v=spf1 a:museum.",
            "v=spf1 a:example.-com",
            "v=spf1 a:",
            "v=spf1 a:foo.example.com\0",
            "v=spf1 ptr/0",
            "v=spf1 include",
            "v=spf1 include:example.com/24",
            "v=spf1 -all.",
            "v=spf1 -all:foo",
            "v=spf1 moo",
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 redirect:example.com",
            "v=spf1 exp=",
            "v=spf1 exp=-all",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 foo=%abc",
            "v=spf1 exists:%(ir).example.com",
            "v=spf1 exists:%{a}.example.com",
            "v=spf1 exists:%{r}.example.com",
            "v=spf1 exists:%{d0}.example.com",
        ] {
            assert!(Record::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn macros_expand_as_in_rfc_7208_section_7_4() {
        let t = Table::default();
        let mut eval = Eval {
            dns: &t,
            ip: "192.0.2.3".parse().unwrap(),
            sender: "strong-bad@email.example.com".into(),
            helo: "mail.example.net".into(),
            receiver: "mx.example.test".into(),
            terms: 0,
            voids: 0,
            validated: None,
        };
        let domain = "email.example.com";
        for (spec, want) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
            ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
            ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
            ("%%%_%-%{p}", "% %20unknown"),
        ] {
            let (m, _) = macro_string(spec, Context::Domain).unwrap();
            assert_eq!(eval.expand(&m, domain).await, want, "{spec}");
        }
        eval.ip = "2001:db8::cb01".parse().unwrap();
        eval.sender = "~jack&jill=up@email.example.com".into();
        for (spec, want) in [
            (
                "%{ir}.%{v}._spf.%{d2}",
                "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com",
            ),
            ("%{c} sent for %{L}", "2001:db8::cb01 sent for ~jack%26jill%3Dup"),
        ] {
            let (m, _) = macro_string(spec, Context::Explanation).unwrap();
            assert_eq!(eval.expand(&m, domain).await, want, "{spec}");
        }
    }

    #[tokio::test]
    async fn the_explanation_comes_from_the_deciding_record() {
        // §6.2: an included record's exp= is never used; a redirect's
        // target's exp= replaces ours.
        let mut t = zone(&[
            ("inc.example.org", "v=spf1 include:other.example.org -all exp=mine.example.org"),
            ("other.example.org", "v=spf1 -all exp=theirs.example.org"),
            ("red.example.org", "v=spf1 exp=mine.example.org redirect=other.example.org"),
        ]);
        t.entry("mine.example.org").txt.push(b"ours".to_vec());
        t.entry("theirs.example.org").txt.push(b"theirs".to_vec());
        let v = run(&t, "192.0.2.1", "a@inc.example.org").await;
        assert_eq!((v.result, v.explanation.as_deref()), (SpfResult::Fail, Some("ours")));
        let v = run(&t, "192.0.2.1", "a@red.example.org").await;
        assert_eq!((v.result, v.explanation.as_deref()), (SpfResult::Fail, Some("theirs")));
    }

    #[tokio::test]
    async fn ptr_and_p_use_validated_names_only() {
        // §5.5, §7.3: a PTR name counts once its address leads back to the client.
        let mut t = zone(&[("example.org", "v=spf1 ptr -all exp=why.example.org")]);
        t.entry("why.example.org").txt.push(b"%{p}".to_vec());
        t.entry("7.2.0.192.in-addr.arpa").ptr.extend(["forged.example.org".to_string(), "Mail.Example.ORG.".into()]);
        t.entry("mail.example.org").a.push("192.0.2.7".parse().unwrap());
        t.entry("8.2.0.192.in-addr.arpa").ptr.push("forged.example.org".into());
        assert_eq!(run(&t, "192.0.2.7", "a@example.org").await.result, SpfResult::Pass);
        let v = run(&t, "192.0.2.8", "a@example.org").await;
        assert_eq!((v.result, v.explanation.as_deref()), (SpfResult::Fail, Some("unknown")));
    }
}
