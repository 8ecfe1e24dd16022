//! The `[smtp]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

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
    /// Commands in one session before it is closed with 421.
    pub max_commands: usize,
    /// Error replies in one session before it is closed with 421.
    pub max_errors: usize,
    /// Seconds a client may stay silent before `421 4.4.2` (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub idle_timeout_secs: u64,
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
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 2048,
            max_data_line: 1000,
            max_commands: 1000,
            max_errors: 20,
            idle_timeout_secs: 300,
            max_connections: 1000,
            auth_failure_delay_secs: 1,
            trusted_networks: vec!["127.0.0.0/8".parse().unwrap_or_default(), "::1/128".parse().unwrap_or_default()],
            max_connections_per_ip: 50,
            max_messages_per_minute_per_ip: 300,
            max_messages_per_minute_per_user: 300,
        }
    }
}

impl SmtpConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}
