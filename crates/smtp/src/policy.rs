//! Answers to the session's questions: who may relay, which recipients
//! exist, whether credentials are right.

use std::net::IpAddr;

use facteur_net::Attempt;
use facteur_smtp_proto::{Address, AuthRequest, Reply};
use facteur_store::{Lookup, Route, Store, password};

use crate::server::SmtpContext;

/// Reply for any storage failure while vetting: temporary, so the client
/// retries (STYLE 7: the unforeseen is 4xx, never 5xx).
fn temporary(e: impl std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "storage lookup failed; answering 451");
    Reply::new(451, (4, 3, 0), "Error: temporary lookup failure, try again later")
}

/// The address a recipient is looked up under: RFC 5321 §4.5.1 requires
/// `<Postmaster>` without a domain; it is the postmaster of our first domain.
pub(crate) async fn recipient_key<S: Store>(ctx: &SmtpContext<S>, to: &Address) -> Result<String, Reply> {
    if to.domain.is_empty() {
        let domains = ctx.store.list_domains().await.map_err(temporary)?;
        let primary = domains.first().map(|d| d.name.clone()).unwrap_or_else(|| ctx.hostname.clone());
        return Ok(format!("postmaster@{primary}"));
    }
    Ok(format!("{}@{}", to.local, to.domain).to_lowercase())
}

/// RCPT policy: local users are accepted, unknown local users refused
/// (`550 5.1.1` at RCPT time: never accept-then-bounce), other domains only
/// for authenticated clients or trusted networks (`554 5.7.1`: no open relay).
pub(crate) async fn vet_recipient<S: Store>(
    ctx: &SmtpContext<S>,
    key: &str,
    authenticated: bool,
    peer: IpAddr,
) -> Result<Route, Reply> {
    match ctx.store.lookup_recipient(key).await.map_err(temporary)? {
        Lookup::LocalUser(user) => Ok(Route::Local { user }),
        Lookup::UnknownUser => Err(Reply::new(
            550,
            (5, 1, 1),
            format!("<{key}>: Recipient address rejected: User unknown in local recipient table"),
        )),
        Lookup::Remote if authenticated || ctx.config.trusted_networks.iter().any(|n| n.contains(&peer)) => {
            Ok(Route::Remote)
        }
        Lookup::Remote => Err(Reply::new(554, (5, 7, 1), format!("<{key}>: Relay access denied"))),
    }
}

/// AUTH: the user must exist and the password match its Argon2 hash; an
/// unknown user costs the same as a wrong password. Failures are throttled
/// by address and account with IMAP and POP3 (`facteur_net::AuthThrottle`,
/// before the password is looked at), and answered after a delay.
pub(crate) async fn authenticate<S: Store>(
    ctx: &SmtpContext<S>,
    req: AuthRequest,
    listener: &str,
    peer: std::net::SocketAddr,
) -> Result<String, Reply> {
    let check = async {
        let user = ctx.store.get_user(&req.username).await.map_err(temporary)?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let good = password::check_login(req.password.clone(), hash).await;
        // RFC 4954 §4: an authorization identity other than the user is not supported.
        Ok(user
            .filter(|u| {
                good && req.authzid.as_deref().is_none_or(|z| z.is_empty() || z.eq_ignore_ascii_case(&u.address))
            })
            .map(|u| u.address))
    };
    let failed = || Reply::new(535, (5, 7, 8), "Error: authentication credentials invalid");
    match ctx.auth.attempt(listener, peer, &req.username, check).await? {
        Attempt::Ok(u) => {
            tracing::info!(user = %u, mechanism = %req.mechanism, "authenticated");
            Ok(u)
        }
        Attempt::Failed => {
            tracing::warn!(user = %req.username, mechanism = %req.mechanism, "authentication failed");
            tokio::time::sleep(std::time::Duration::from_secs(ctx.config.auth_failure_delay_secs)).await;
            Err(failed())
        }
        Attempt::Throttled => Err(failed()),
        // RFC 4954 §6 says nothing of bans: the attempt is refused like a
        // failure, with a temporary code, and the connection then closes.
        Attempt::Banned => {
            Err(Reply::new(454, (4, 7, 0), "Error: too many failed logins from your address; try again later"))
        }
    }
}

fn not_owned(address: &str, user: &str, what: &str) -> Reply {
    tracing::warn!(user, address, what, "sender refused: not owned by the authenticated user");
    Reply::new(553, (5, 7, 1), format!("<{address}>: {what} rejected: not owned by user {user}"))
}

/// RFC 6409 §6.1: an authenticated user sends as itself or as what the
/// operator granted it (`facteur user sender add`), never as anyone.
pub(crate) async fn vet_sender_address<S: Store>(ctx: &SmtpContext<S>, user: &str, address: &str) -> Result<(), Reply> {
    let grants = ctx.store.sender_grants(user).await.map_err(temporary)?;
    if facteur_store::may_send_as(user, &grants, address) {
        Ok(())
    } else {
        Err(not_owned(address, user, "Sender address"))
    }
}

/// The same rule for the `From:` field: every address in it must be the
/// user's; a `From:` with no address that can be read is refused too. A
/// message without `From:` has nothing to check.
pub(crate) async fn vet_from_header<S: Store>(ctx: &SmtpContext<S>, user: &str, data: &[u8]) -> Result<(), Reply> {
    let header = crate::headers::header_section(data);
    if !crate::headers::has_field(header, "From") {
        return Ok(());
    }
    let parsed = mail_parser::MessageParser::new().parse_headers(header);
    let addresses: Vec<String> = parsed
        .as_ref()
        .and_then(|m| m.from())
        .map(|from| from.iter().filter_map(|a| a.address().map(str::to_string)).collect())
        .unwrap_or_default();
    if addresses.is_empty() {
        return Err(Reply::new(553, (5, 7, 1), "Error: the From: field holds no address that can be checked"));
    }
    let grants = ctx.store.sender_grants(user).await.map_err(temporary)?;
    match addresses.iter().find(|a| !facteur_store::may_send_as(user, &grants, a)) {
        Some(a) => Err(not_owned(a, user, "From: header address")),
        None => Ok(()),
    }
}
