//! The `[delivery]` section and `[[route]]` entries of the configuration.

use serde::Deserialize;

/// TLS on an outbound connection.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// STARTTLS when offered, plaintext otherwise (RFC 3207; Postfix "may").
    #[default]
    Opportunistic,
    /// STARTTLS must succeed or the attempt is deferred (Postfix "encrypt").
    Require,
    /// Never STARTTLS.
    None,
}

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for RouteAuth {
    // The password never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteAuth").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// A static route: mail for `domain` goes to `via` instead of its MX.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Recipient domain, or `*.example.net` for its subdomains, or `*` for all.
    pub domain: String,
    /// `host:port` or `[ip]:port`; a host name is resolved to addresses (A/AAAA), not MX.
    pub via: String,
    #[serde(default)]
    pub tls: TlsPolicy,
    /// Credentials for AUTH PLAIN; they are only ever sent over TLS whose
    /// certificate was verified.
    #[serde(default)]
    pub auth: Option<RouteAuth>,
    /// PEM file of the certificate authorities to verify this route's
    /// server with (default: the system's).
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate even with credentials or
    /// `tls = "require"`: anyone on the path can then read the password.
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Run the delivery engine on this node (false: accept only).
    pub enabled: bool,
    /// Every message not matched by a route goes here instead of its MX
    /// (a smarthost), e.g. "smtp.provider.example:587".
    pub relay_host: Option<String>,
    /// TLS toward MX hosts and the relay host.
    pub tls: TlsPolicy,
    /// Certificate authorities (PEM) for MX hosts and the relay host when
    /// their certificate is verified (`tls = "require"`, or relay
    /// credentials); default: the system's.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Do not verify those certificates (loudly logged at start).
    pub tls_insecure_skip_verify: bool,
    /// Credentials for the relay host.
    pub relay_auth: Option<RouteAuth>,
    /// Deliveries at once on this node.
    pub max_concurrent: usize,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: usize,
    /// First retry after a temporary failure, in seconds (RFC 5321 §4.5.4.1: at least 30 min is
    /// suggested for the whole queue; facteur starts shorter and doubles).
    pub first_retry_secs: u64,
    /// Longest wait between two attempts, in seconds.
    pub max_retry_secs: u64,
    /// An unreachable destination's queued mail waits parked (one statement,
    /// not one attempt per message); facteur tries to connect to it this
    /// often, and the moment it answers all its mail is due.
    pub unreachable_probe_secs: u64,
    /// ± this fraction of randomness on every retry delay, so a backlog does not retry in step.
    pub retry_jitter: f64,
    /// Send a delay notice (Action: delayed) after this many seconds undelivered (RFC 3461).
    pub delay_warning_secs: u64,
    /// Bounce what is still undelivered after this many seconds (RFC 5321 §4.5.4.1: 4-5 days).
    pub queue_lifetime_secs: u64,
    /// Seconds to set up a TCP connection.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for any reply (RFC 5321 §4.5.3.2 suggests 5 minutes; 10 for the final one).
    pub command_timeout_secs: u64,
    /// Seconds a claimed message stays leased to this node.
    pub lease_secs: u64,
    /// Messages per second for the whole node (none: unlimited).
    pub max_rate: Option<f64>,
    /// Per-destination adaptive concurrency and rate (`[delivery.shaping]`).
    pub shaping: crate::shaping::ShapingConfig,
    /// Class weights when capacity is short (`[delivery.weights]`).
    pub weights: crate::fair::Weights,
    /// DNS servers for MX and address lookups; empty: /etc/resolv.conf.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Port of MX hosts: 25 (another value only makes sense in a lab).
    pub mx_port: u16,
    /// Honour recipient domains' MTA-STS policies (RFC 8461): under
    /// `mode: enforce`, only the MX hosts named and only over TLS with a
    /// verified certificate, deferred otherwise.
    pub mta_sts: bool,
    /// Port of MTA-STS policy hosts: 443 (another only in a lab).
    pub mta_sts_port: u16,
    /// DANE (RFC 7672): MX hosts with DNSSEC-secure TLSA records get TLS
    /// matched against them or no mail; facteur validates DNSSEC itself.
    pub dane: bool,
    /// DNSSEC trust anchors (DNSKEY records in zone-file form, as
    /// /usr/share/dns/root.key); default: the IANA root keys built in.
    pub dnssec_trust_anchor_file: Option<std::path::PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: true,
            relay_host: None,
            tls: TlsPolicy::Opportunistic,
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
            relay_auth: None,
            max_concurrent: 200,
            max_messages_per_connection: 100,
            first_retry_secs: 300,
            max_retry_secs: 4 * 3600,
            unreachable_probe_secs: 30,
            retry_jitter: 0.2,
            delay_warning_secs: 4 * 3600,
            queue_lifetime_secs: 5 * 86_400,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            lease_secs: 900,
            max_rate: None,
            // Gentler than the shaper's textbook defaults (halve, +1 msg/s per
            // second, 5 s cooldown), from bench/flood.sh and bench/outage.sh:
            // halving left bulk at ~70 % of what the destination accepts, +5
            // msg/s per second took over a minute to find the pace again after
            // an outage, and a 5 s cooldown let a burst of 421s through.
            shaping: crate::shaping::ShapingConfig {
                decrease_factor: 0.85,
                rate_increase: 25.0,
                cooldown_ms: 1_000,
                ..crate::shaping::ShapingConfig::default()
            },
            weights: crate::fair::Weights::default(),
            dns_servers: Vec::new(),
            mx_port: 25,
            mta_sts: true,
            mta_sts_port: 443,
            dane: true,
            dnssec_trust_anchor_file: None,
        }
    }
}

impl DeliveryConfig {
    /// Problems serde cannot see, each naming its key.
    pub fn problems(&self, routes: &[RouteConfig]) -> Vec<String> {
        let mut p = Vec::new();
        if self.first_retry_secs == 0 || self.max_retry_secs < self.first_retry_secs {
            p.push(format!(
                "delivery.first_retry_secs = {} must be > 0 and at most delivery.max_retry_secs = {}",
                self.first_retry_secs, self.max_retry_secs
            ));
        }
        if self.unreachable_probe_secs == 0 {
            p.push("delivery.unreachable_probe_secs must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.retry_jitter) {
            p.push(format!("delivery.retry_jitter = {} must be in [0, 1)", self.retry_jitter));
        }
        if self.queue_lifetime_secs <= self.delay_warning_secs {
            p.push(format!(
                "delivery.queue_lifetime_secs = {} must exceed delivery.delay_warning_secs = {}",
                self.queue_lifetime_secs, self.delay_warning_secs
            ));
        }
        if self.max_concurrent == 0 {
            p.push("delivery.max_concurrent must be at least 1".into());
        }
        if let Some(r) = self.max_rate
            && !(r.is_finite() && r > 0.0)
        {
            p.push(format!("delivery.max_rate = {r} must be a positive number of messages per second"));
        }
        for r in routes {
            if crate::route::parse_host_port(&r.via).is_none() {
                p.push(format!("route for {:?}: via = {:?} is not host:port", r.domain, r.via));
            }
            if r.auth.is_some() && r.tls == TlsPolicy::None {
                p.push(format!(
                    "route for {:?}: auth with tls = \"none\" would send the password in clear; use \"require\"",
                    r.domain
                ));
            }
            if let Some(f) = &r.tls_ca_file {
                p.extend(
                    crate::client::ca_file_problem(f).map(|e| format!("route for {:?}: tls_ca_file: {e}", r.domain)),
                );
            }
        }
        if self.relay_auth.is_some() && self.tls == TlsPolicy::None {
            p.push("delivery.relay_auth with delivery.tls = \"none\" would send the password in clear".into());
        }
        if let Some(f) = &self.tls_ca_file {
            p.extend(crate::client::ca_file_problem(f).map(|e| format!("delivery.tls_ca_file: {e}")));
        }
        if let Some(f) = &self.dnssec_trust_anchor_file {
            p.extend(crate::dane::anchor_file_problem(f).map(|e| format!("delivery.dnssec_trust_anchor_file: {e}")));
        }
        if let Some(h) = &self.relay_host
            && crate::route::parse_host_port(h).is_none()
        {
            p.push(format!("delivery.relay_host = {h:?} is not host:port"));
        }
        p
    }
}
