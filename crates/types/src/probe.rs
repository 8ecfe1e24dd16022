//! The synthetic probes' addresses (see `facteur-watch`): a domain of its
//! own that can never be anyone's (`.invalid`, RFC 2606 §2), so probe mail
//! is told from real traffic by its envelope and left out of its counts.

/// The probes' domain, local on every node.
pub const DOMAIN: &str = "facteur.invalid";

/// The probe account of node `node`: `probe-NODE@facteur.invalid`, the
/// node name kept to letters, digits, `-` and `.` (others become `-`).
pub fn address(node: &str) -> String {
    address_in(node, DOMAIN)
}

/// The same local part in `domain`: the echo probes' address, which must
/// be reachable from outside for the answers to come back.
pub fn address_in(node: &str, domain: &str) -> String {
    let name: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let name = name.trim_matches(['.', '-']);
    format!("probe-{}@{}", if name.is_empty() { "node" } else { name }, domain.to_ascii_lowercase())
}

/// Whether `address` is a probe's (its domain is [`DOMAIN`]).
pub fn is_probe(address: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(DOMAIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_name_becomes_a_plain_local_part() {
        assert_eq!(address("mx1.example.net"), "probe-mx1.example.net@facteur.invalid");
        assert_eq!(address("Node A_1"), "probe-node-a-1@facteur.invalid");
        assert_eq!(address("..."), "probe-node@facteur.invalid");
        assert!(is_probe(&address("x")));
        assert!(is_probe("probe-x@FACTEUR.invalid"));
        assert!(!is_probe("alice@example.test"));
        assert!(!is_probe("facteur.invalid"));
    }
}
