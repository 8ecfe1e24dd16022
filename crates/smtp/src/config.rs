//! The `[smtp]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// What a client that is neither authenticated nor on a trusted network
/// gets for NOTIFY=SUCCESS (RFC 3461) on mail delivered here.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SuccessNotices {
    /// No success notice: with a forged sender, one would carry the message
    /// to anyone (what Postfix operators get by not offering DSN outside).
    #[default]
    None,
    /// A notice quoting the header only, whatever RET asked.
    Headers,
    /// As asked (RET=FULL returns the whole message).
    Full,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Largest message accepted, in octets (advertised with SIZE, RFC 1870).
    pub max_message_size: u64,
    /// Recipients per message (RFC 5321 §4.5.3.1.8: at least 100).
    pub max_recipients: usize,
    /// Longest command line, in octets including CRLF.
    pub max_command_line: usize,
    /// Longest line of message data, in octets including CRLF (RFC 5321 §4.5.3.1.6).
    pub max_data_line: usize,
    /// A message that has already made more hops than this (`Received:` and
    /// `Delivered-To:` fields) is refused with `554 5.4.6`: it is looping
    /// (RFC 5321 §6.3; Postfix's hopcount_limit is 50).
    pub max_hops: usize,
    /// NOTIFY=SUCCESS from strangers (neither authenticated nor trusted):
    /// "none", "headers" or "full".
    pub success_notices_for_strangers: SuccessNotices,
    /// Messages accepted on one connection; the next MAIL gets 421 (as Exim).
    pub max_messages_per_connection: usize,
    /// Error replies since the last accepted message before the session is
    /// closed with 421.
    pub max_errors: usize,
    /// NOOP, RSET, VRFY, EXPN, HELP, EHLO and HELO allowed between two
    /// messages before each counts as an error (Postfix's smtpd_junk_command_limit).
    pub max_junk_commands: usize,
    /// Replaced by `max_messages_per_connection` (it counted every command,
    /// which cut bulk senders); still read so old files load, and ignored
    /// with a warning.
    pub max_commands: Option<usize>,
    /// Seconds a client may stay silent before `421 4.4.2` (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub idle_timeout_secs: u64,
    /// Seconds one command, or one message's content, may take to arrive,
    /// plus one second per `min_data_rate` octets received (Postfix's
    /// smtpd_per_request_deadline and smtpd_min_data_rate).
    pub request_timeout_secs: u64,
    /// Octets per second a slow client is credited with (0: no credit).
    pub min_data_rate: u64,
    /// Seconds replies may stay unread before the session ends.
    pub write_timeout_secs: u64,
    /// While three quarters of `max_connections` are taken, the idle timeout
    /// of sessions that have not authenticated and the request timeout are
    /// at most this (Postfix's stress mode); at the cap, a connection
    /// stalled for a fifth of it makes room for a new client.
    pub stress_timeout_secs: u64,
    /// Milliseconds a client of the MX port waits for the greeting; one
    /// that talks first gets `554 5.5.0` (0: no pause). Trusted networks
    /// and the submission ports do not wait.
    pub greet_pause_ms: u64,
    /// Simultaneous SMTP connections, all listeners together.
    pub max_connections: usize,
    /// Seconds to wait after a failed AUTH before answering (slows password guessing).
    pub auth_failure_delay_secs: u64,
    /// Networks allowed to relay without authentication (Postfix's mynetworks).
    /// They are also exempt from the per-client limits below.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Simultaneous connections from one IP address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Messages per minute from one IP address (0: no limit).
    pub max_messages_per_minute_per_ip: u32,
    /// Messages per minute from one authenticated user (0: no limit).
    pub max_messages_per_minute_per_user: u32,
    /// Messages to other domains one authenticated user may send in an
    /// hour; past it their mail is accepted but held (`facteur queue
    /// release`) and the operator told, so a stolen password cannot flood
    /// (0: no limit).
    pub max_messages_per_hour_per_user: u32,
    /// Recipients in one message from an authenticated user; past it RCPT
    /// gets `452 4.5.3` (0: only `max_recipients`).
    pub max_recipients_per_message_per_user: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_data_line: 1000,
            max_hops: 100,
            success_notices_for_strangers: SuccessNotices::None,
            max_messages_per_connection: 1000,
            max_errors: 20,
            max_junk_commands: 100,
            max_commands: None,
            idle_timeout_secs: 300,
            request_timeout_secs: 300,
            min_data_rate: 500,
            write_timeout_secs: 300,
            stress_timeout_secs: 10,
            greet_pause_ms: 1000,
            max_connections: 1000,
            auth_failure_delay_secs: 1,
            trusted_networks: vec!["127.0.0.0/8".parse().unwrap_or_default(), "::1/128".parse().unwrap_or_default()],
            max_connections_per_ip: 50,
            max_messages_per_minute_per_ip: 300,
            max_messages_per_minute_per_user: 300,
            max_messages_per_hour_per_user: 500,
            max_recipients_per_message_per_user: 100,
        }
    }
}

impl SmtpConfig {
    /// The per-client rates [`crate::limits::ClientLimits`] counts.
    pub fn limit_config(&self) -> crate::limits::LimitConfig {
        crate::limits::LimitConfig {
            messages_per_minute_per_ip: self.max_messages_per_minute_per_ip,
            messages_per_minute_per_user: self.max_messages_per_minute_per_user,
            messages_per_hour_per_user: self.max_messages_per_hour_per_user,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// The gate and timeouts of the SMTP listeners. SMTP has no login
    /// before which to be stricter: the idle timeout applies from the start
    /// (and tightens under pressure).
    pub fn limits(&self) -> (facteur_net::GateConfig, facteur_net::Timeouts) {
        facteur_net::limits(
            self.max_connections,
            self.max_connections_per_ip,
            [
                self.idle_timeout_secs,
                self.idle_timeout_secs,
                self.request_timeout_secs,
                self.min_data_rate,
                self.write_timeout_secs,
                self.stress_timeout_secs,
            ],
        )
    }
}

/// The `[quota]` section: limits new users get, and when a user is warned.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Octets a new user's mailboxes may hold together (0: no limit).
    pub default_bytes: u64,
    /// Messages a new user's mailboxes may hold together (0: no limit).
    pub default_messages: u64,
    /// A user whose use passes this share of a limit gets one message saying
    /// so (again only after going back under it); 0: never.
    pub warn_percent: u8,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig { default_bytes: 0, default_messages: 0, warn_percent: 90 }
    }
}
