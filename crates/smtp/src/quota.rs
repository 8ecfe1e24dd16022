//! The warning a user gets when their mailboxes near their quota: once when
//! their use passes `quota.warn_percent` of a limit, again only after it
//! went back under (the flag is kept with the user).

use facteur_store::{Directory, NewMessage, NewRecipient, Quota, Route, Spool, StoredEnvelope};
use facteur_types::{Class, MessageId, Notify};

/// After a delivery to `users`: warn those past `percent`, and clear the
/// flag of those back under it. Runs after the reply; a failure is logged.
pub async fn warn<S: Directory + Spool>(store: S, users: Vec<String>, percent: u8, hostname: String, now_ms: i64) {
    let line = f64::from(percent) / 100.0;
    for user in users {
        let q = match store.quota(&user).await {
            Ok(Some(q)) => q,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(user, error = %e, "cannot read a quota to warn about it");
                continue;
            }
        };
        let past = q.share() >= line;
        if past == q.warned {
            continue;
        }
        if past {
            let id = MessageId::new(now_ms.max(0) as u64);
            let msg = NewMessage {
                hold: false,
                id,
                received_at: now_ms.div_euclid(1000),
                class: Class::System,
                envelope: StoredEnvelope {
                    helo: hostname.clone(),
                    client_ip: "127.0.0.1".into(),
                    ..StoredEnvelope::default()
                },
                recipients: vec![NewRecipient {
                    address: user.clone(),
                    notify: Some(Notify::NEVER),
                    orcpt: None,
                    route: Route::inbox(user.clone()),
                }],
                data: message(&user, &q, &hostname, id, now_ms.div_euclid(1000)),
            };
            if let Err(e) = store.store_message(msg).await {
                tracing::warn!(user, error = %e, "cannot store the quota warning");
                continue;
            }
            tracing::info!(user, share = q.share(), "user warned: mailboxes near their quota");
        }
        if let Err(e) = store.set_quota_warned(&user, past).await {
            tracing::warn!(user, error = %e, "cannot record the quota warning");
        }
    }
}

fn amount(used: u64, limit: Option<u64>, unit: &str) -> Option<String> {
    limit.map(|l| format!("{used} of {l} {unit} ({:.0} %)", used as f64 * 100.0 / l.max(1) as f64))
}

/// The warning itself (RFC 5322, plain ASCII; Auto-Submitted per RFC 3834).
fn message(user: &str, q: &Quota, hostname: &str, id: MessageId, secs: i64) -> Vec<u8> {
    let uses: Vec<String> =
        [amount(q.used_bytes, q.limit_bytes, "octets"), amount(q.used_messages, q.limit_messages, "messages")]
            .into_iter()
            .flatten()
            .collect();
    format!(
        "Return-Path: <>\r\nDelivered-To: {user}\r\nFrom: \"Mail Delivery System\" <MAILER-DAEMON@{hostname}>\r\n\
         To: <{user}>\r\nSubject: Your mailbox is {:.0} % full\r\nDate: {}\r\nMessage-ID: <{id}@{hostname}>\r\n\
         Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         Your mailboxes ({user}) use {}.\r\n\r\n\
         When they are full, new mail to you is refused for a while and then\r\n\
         returned to its senders. Delete messages you do not need, and empty\r\n\
         the Trash, to make room.\r\n",
        q.share() * 100.0,
        facteur_dsn::rfc5322_date(secs),
        uses.join(" and "),
    )
    .into_bytes()
}
