//! Configuration: operator rules and the lists and limits of the built-in
//! rules, with a check that reports every problem at once.

use std::collections::HashSet;
use std::fmt;

use crate::Class;

/// One configured rule; the first matching rule wins; every condition given
/// must hold. A rule with no condition matches every message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in decisions (`config:{name}`), logs and metrics.
    pub name: String,
    /// The class given to a message this rule matches.
    pub class: Class,
    /// The envelope sender's domain is one of these: `example.com` exactly,
    /// or `*.example.com` for any proper subdomain. The null sender has no
    /// domain and never matches.
    #[serde(default)]
    pub sender_domain: Vec<String>,
    /// Some envelope recipient's domain is one of these (same patterns).
    #[serde(default)]
    pub recipient_domain: Vec<String>,
    /// The message was submitted by one of these authenticated users.
    #[serde(default)]
    pub auth_user: Vec<String>,
    /// The client's address is in one of these networks.
    #[serde(default)]
    pub client_network: Vec<ipnet::IpNet>,
    /// A header field of this name is present (any case)...
    #[serde(default)]
    pub header: Option<String>,
    /// ...and, if given, the unfolded, trimmed value of one such field
    /// contains this text, ignoring case. Matched against the value as
    /// written: RFC 2047 encoded words are not decoded.
    #[serde(default)]
    pub header_value: Option<String>,
}

/// How messages are classified: operator rules first, then the built-in
/// rules with these lists and limits.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyConfig {
    /// Checked in order, before the built-in rules.
    pub rules: Vec<Rule>,
    /// Sender addresses (`news@example.com`) or domains (`example.com`,
    /// `*.example.com`) whose mail is always bulk.
    pub bulk_senders: Vec<String>,
    /// Sender addresses or domains whose mail is transactional.
    pub transactional_senders: Vec<String>,
    /// Authenticated users whose mail is transactional.
    pub transactional_users: Vec<String>,
    /// More recipients than this in one message from an authenticated user
    /// is not "few": the message is bulk (default 10).
    pub interpersonal_max_recipients: usize,
    /// A sender repeating identical content this many times recently is bulk
    /// (default 20).
    pub identical_bulk_threshold: u32,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        ClassifyConfig {
            rules: Vec::new(),
            bulk_senders: Vec::new(),
            transactional_senders: Vec::new(),
            transactional_users: Vec::new(),
            interpersonal_max_recipients: 10,
            identical_bulk_threshold: 20,
        }
    }
}

/// One problem in a [`ClassifyConfig`]: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path inside the classify section, e.g. `rules[2].header_value`.
    pub path: String,
    /// What is wrong, for a person.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl ClassifyConfig {
    /// Checks what deserialisation cannot: names, patterns, networks, header
    /// names and limits. Returns every problem found, not just the first.
    /// [`crate::classify`] works with any configuration (an entry that makes
    /// no sense simply never matches), but a server should refuse to start
    /// with one that fails this check.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Errors::default();
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |key: &str| format!("rules[{i}].{key}");
            if !is_rule_name(&rule.name) {
                errors.push(at("name"), "must be 1 to 64 of A-Z a-z 0-9 . _ -");
            } else if !names.insert(rule.name.as_str()) {
                errors.push(at("name"), format!("\"{}\" names an earlier rule too", rule.name));
            }
            for (j, pattern) in rule.sender_domain.iter().enumerate() {
                check_domain_pattern(&mut errors, format!("rules[{i}].sender_domain[{j}]"), pattern);
            }
            for (j, pattern) in rule.recipient_domain.iter().enumerate() {
                check_domain_pattern(&mut errors, format!("rules[{i}].recipient_domain[{j}]"), pattern);
            }
            check_users(&mut errors, &at("auth_user"), &rule.auth_user);
            for (j, network) in rule.client_network.iter().enumerate() {
                if network.trunc() != *network {
                    let problem = format!("{network} has host bits set; the network is {}", network.trunc());
                    errors.push(format!("rules[{i}].client_network[{j}]"), problem);
                }
            }
            match (&rule.header, &rule.header_value) {
                (None, Some(_)) => errors.push(at("header_value"), "needs `header`, the field to look in"),
                (Some(name), _) if !is_field_name(name) => {
                    // RFC 5322 §3.6.8: printable US-ASCII except colon.
                    errors.push(at("header"), "is not a header field name (printable ASCII, no colon)")
                }
                _ => {}
            }
            match rule.header_value.as_deref() {
                Some("") => errors.push(at("header_value"), "is empty; leave it out to test presence only"),
                Some(value) if value.contains(['\r', '\n']) => {
                    errors.push(at("header_value"), "holds a line break; values are matched unfolded")
                }
                _ => {}
            }
        }
        check_senders(&mut errors, "bulk_senders", &self.bulk_senders);
        check_senders(&mut errors, "transactional_senders", &self.transactional_senders);
        check_users(&mut errors, "transactional_users", &self.transactional_users);
        if self.interpersonal_max_recipients == 0 {
            errors.push("interpersonal_max_recipients", "must be at least 1");
        }
        if self.identical_bulk_threshold == 0 {
            errors.push("identical_bulk_threshold", "must be at least 1");
        }
        errors.finish()
    }
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), problem: problem.into() });
    }

    fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

fn is_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|byte| (33..=126).contains(&byte) && byte != b':')
}

/// A domain (`example.com`, `[192.0.2.1]`, UTF-8 labels allowed) or a
/// wildcard `*.example.com`: no blanks or control characters, no `@`, no
/// `*` elsewhere, no empty label.
fn domain_problem(pattern: &str) -> Option<&'static str> {
    let domain = pattern.strip_prefix("*.").unwrap_or(pattern);
    if domain.is_empty() {
        Some("is empty")
    } else if domain.contains('*') {
        Some("may only start with \"*.\" (any subdomain), nowhere else")
    } else if domain.contains('@') {
        Some("is an address; a domain is expected here")
    } else if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("holds blanks or control characters")
    } else if domain.split('.').any(str::is_empty) {
        Some("has an empty label (leading, trailing or doubled dot)")
    } else {
        None
    }
}

fn check_domain_pattern(errors: &mut Errors, path: String, pattern: &str) {
    if let Some(problem) = domain_problem(pattern) {
        errors.push(path, format!("\"{pattern}\" {problem}"));
    }
}

/// Sender lists take whole addresses (`news@example.com`) or domain patterns.
fn check_senders(errors: &mut Errors, key: &str, list: &[String]) {
    for (j, entry) in list.iter().enumerate() {
        let path = format!("{key}[{j}]");
        match entry.rsplit_once('@') {
            None => check_domain_pattern(errors, path, entry),
            Some(("", _)) => errors.push(path, format!("\"{entry}\" has an empty local part")),
            Some((local, domain)) => {
                if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    errors.push(path, format!("\"{entry}\" holds blanks or control characters"));
                } else if domain.starts_with("*.") {
                    errors.push(path, format!("\"{entry}\": a wildcard is for domains, not addresses"));
                } else if let Some(problem) = domain_problem(domain) {
                    errors.push(path, format!("\"{entry}\": domain {problem}"));
                }
            }
        }
    }
}

fn check_users(errors: &mut Errors, key: &str, users: &[String]) {
    for (j, user) in users.iter().enumerate() {
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(format!("{key}[{j}]"), format!("\"{user}\" is not a user name"));
        }
    }
}
