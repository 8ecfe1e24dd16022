//! Notices to senders (DSNs, RFC 3464): composed with `facteur-dsn`, sent
//! from the null reverse-path, and stored in the same transaction as the
//! state change that caused them. A message from `<>` never gets one
//! (RFC 5321 §4.5.5: no notice about a notice).

use facteur_dsn::{Action, DsnInput, DsnRecipient, ReturnContent};
use facteur_store::{Directory, NewMessage, NewRecipient, Route, StoredEnvelope};
use facteur_types::{Class, MessageId, Notify, Ret};

/// Which DSN a recipient's outcome calls for (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notice {
    Failed,
    Delayed,
    /// Passed to a server that does not do DSN (RFC 3464 §2.3.3).
    Relayed,
    /// Put in a local mailbox.
    Delivered,
}

/// The message a notice is about.
pub struct About<'a> {
    pub message_id: MessageId,
    pub received_at: i64,
    pub envelope: &'a StoredEnvelope,
    pub original: &'a [u8],
}

/// One recipient's line in a notice.
#[derive(Debug, Clone)]
pub struct NoticeItem {
    pub address: String,
    pub orcpt: Option<String>,
    pub notice: Notice,
    pub status: (u8, u16, u16),
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub last_attempt: Option<i64>,
    pub will_retry_until: Option<i64>,
}

fn action(n: Notice) -> Action {
    match n {
        Notice::Failed => Action::Failed,
        Notice::Delayed => Action::Delayed,
        Notice::Relayed => Action::Relayed,
        Notice::Delivered => Action::Delivered,
    }
}

/// One DSN per kind of notice, addressed to the original sender. Returns no
/// message for a null sender, or when the sender's address cannot receive
/// (a local domain without that user): logged, never looped.
pub async fn compose<S: Directory>(
    store: &S,
    about: &About<'_>,
    items: Vec<NoticeItem>,
    hostname: &str,
    now_ms: i64,
) -> Vec<NewMessage> {
    let sender = about.envelope.mail_from.as_str();
    if sender.is_empty() || items.is_empty() {
        return Vec::new();
    }
    let days = now_ms.div_euclid(86_400_000);
    let (to, route) = match crate::addressing::route_to(store, sender, days).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            tracing::warn!(message_id = %about.message_id, sender, "no such local address to notify; notice dropped");
            return Vec::new();
        }
        Err(e) => {
            // The state change is still recorded; losing a notice beats
            // retrying the delivery. Logged loudly.
            tracing::error!(message_id = %about.message_id, sender, error = %e, "cannot route the notice; dropped");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for kind in [Notice::Failed, Notice::Delayed, Notice::Relayed, Notice::Delivered] {
        let recipients: Vec<DsnRecipient> = items
            .iter()
            .filter(|i| i.notice == kind)
            .map(|i| DsnRecipient {
                final_recipient: i.address.clone(),
                original_recipient: i.orcpt.clone(),
                action: action(kind),
                status: i.status,
                remote_mta: i.remote_mta.clone(),
                diagnostic: i.diagnostic.clone(),
                last_attempt: i.last_attempt,
                will_retry_until: i.will_retry_until,
            })
            .collect();
        if recipients.is_empty() {
            continue;
        }
        let id = MessageId::new(now_ms.max(0) as u64 + out.len() as u64);
        let message_id = format!("{id}@{hostname}");
        let data = facteur_dsn::build(&DsnInput {
            reporting_mta: hostname,
            envelope_id: about.envelope.envid.as_deref(),
            arrival_date: about.received_at,
            now: now_ms.div_euclid(1000),
            original_sender: sender,
            recipients,
            return_content: about.envelope.ret.map(|r| match r {
                Ret::Full => ReturnContent::Full,
                Ret::Hdrs => ReturnContent::Headers,
            }),
            original: about.original,
            message_id: &message_id,
        });
        tracing::info!(message_id = %about.message_id, notice = %id, kind = ?kind, to = sender, "notice to the sender");
        metrics::counter!("facteur_dsn_generated_total", "kind" => action(kind).as_str()).increment(1);
        out.push(NewMessage {
            hold: false,
            id,
            received_at: now_ms.div_euclid(1000),
            // DSNs are system mail: they flow first under pressure.
            class: Class::System,
            envelope: StoredEnvelope {
                mail_from: String::new(),
                helo: hostname.to_string(),
                client_ip: "127.0.0.1".into(),
                ..StoredEnvelope::default()
            },
            recipients: vec![NewRecipient {
                address: to.clone(),
                // A notice about a notice is never sent (RFC 3461 §6.2).
                notify: Some(Notify::NEVER),
                orcpt: None,
                route: route.clone(),
            }],
            data: match &route {
                Route::Local { user, .. } => [crate::addressing::final_delivery_fields("", user, &[]), data].concat(),
                Route::Remote => data,
            },
        });
    }
    out
}
