//! Matching envelope addresses, domains and text against configured patterns.
//!
//! Every comparison here is ASCII case-insensitive and allocation-free.
//! Domains are case-insensitive (RFC 5321 §2.4); local parts may in theory be
//! case-sensitive, but no mail system relies on that for the mailboxes
//! configured here, so sender entries match regardless of case.

/// The domain of an envelope address: what follows the last `@`, if that is
/// not empty. A quoted local part may itself hold an `@`
/// (`"a@b"@example.com`, RFC 5321 §4.1.2), so the last one is the separator.
pub(crate) fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain).filter(|domain| !domain.is_empty())
}

/// The local part of an envelope address: what precedes the last `@`, or the
/// whole address when it has none (RFC 5321 §4.1.1.3 allows a bare
/// `<Postmaster>` recipient).
pub(crate) fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

/// Whether `domain` matches `pattern`: either the same domain, or a pattern
/// `*.example.com` that matches every proper subdomain of `example.com` at
/// any depth (`a.example.com`, `b.a.example.com`) but not `example.com`
/// itself.
pub(crate) fn domain_matches(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix('*') {
        // `suffix` keeps its leading dot, so `badexample.com` cannot match.
        Some(suffix) if suffix.starts_with('.') => {
            domain.len() > suffix.len() && ends_with_ignore_ascii_case(domain, suffix)
        }
        _ => pattern.eq_ignore_ascii_case(domain),
    }
}

/// Whether the envelope sender is in a list of addresses (`news@example.com`,
/// matched whole) and domain patterns (`example.com`, `*.example.com`). The
/// null sender is in no list.
pub(crate) fn sender_listed(list: &[String], mail_from: &str) -> bool {
    if mail_from.is_empty() {
        return false;
    }
    let domain = domain_of(mail_from);
    list.iter().any(|entry| {
        if entry.contains('@') {
            entry.eq_ignore_ascii_case(mail_from)
        } else {
            domain.is_some_and(|domain| domain_matches(entry, domain))
        }
    })
}

/// Whether `needle` occurs in `haystack`, ignoring case. ASCII text is
/// compared without allocating; anything else (UTF-8 header values, RFC 6532)
/// is compared through Unicode lower case.
pub(crate) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
        needle.is_empty() || haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(&needle.to_lowercase())
    }
}

fn ends_with_ignore_ascii_case(s: &str, suffix: &str) -> bool {
    let (s, suffix) = (s.as_bytes(), suffix.as_bytes());
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_parts() {
        assert_eq!(domain_of("a@example.com"), Some("example.com"));
        assert_eq!(domain_of("\"a@b\"@example.com"), Some("example.com"));
        assert_eq!(domain_of("postmaster"), None);
        assert_eq!(domain_of("a@"), None);
        assert_eq!(domain_of(""), None);
        assert_eq!(local_part("Postmaster@example.com"), "Postmaster");
        assert_eq!(local_part("\"a@b\"@example.com"), "\"a@b\"");
        assert_eq!(local_part("postmaster"), "postmaster");
    }

    #[test]
    fn exact_domains_ignore_case() {
        assert!(domain_matches("example.com", "example.com"));
        assert!(domain_matches("Example.COM", "example.com"));
        assert!(!domain_matches("example.com", "a.example.com"));
        assert!(!domain_matches("example.com", "example.co"));
    }

    #[test]
    fn wildcards_match_proper_subdomains_only() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(domain_matches("*.example.com", "b.a.EXAMPLE.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "badexample.com"));
        assert!(!domain_matches("*.example.com", ".example.com"));
        // Not a wildcard: a star not followed by a dot is an ordinary character.
        assert!(!domain_matches("*example.com", "badexample.com"));
        assert!(domain_matches("*example.com", "*example.com"));
    }

    #[test]
    fn sender_lists() {
        let list = ["news@example.com".to_string(), "mailer.example.net".to_string(), "*.shop.test".to_string()];
        assert!(sender_listed(&list, "news@example.com"));
        assert!(sender_listed(&list, "NEWS@Example.com"));
        assert!(!sender_listed(&list, "alice@example.com"));
        assert!(sender_listed(&list, "anyone@mailer.example.net"));
        assert!(sender_listed(&list, "x@eu.shop.test"));
        assert!(!sender_listed(&list, "x@shop.test"));
        assert!(!sender_listed(&list, ""));
        assert!(!sender_listed(&list, "mailer.example.net"));
    }

    #[test]
    fn containment() {
        assert!(contains_ignore_case("Newsletter <weekly.example.com>", "WEEKLY"));
        assert!(contains_ignore_case("abc", ""));
        assert!(!contains_ignore_case("ab", "abc"));
        assert!(contains_ignore_case("Lettre de l'ÉTÉ", "été"));
        assert!(!contains_ignore_case("Lettre d'hiver", "été"));
    }
}
