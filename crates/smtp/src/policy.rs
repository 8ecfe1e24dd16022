//! Answers to the session's questions: who may relay, which recipients
//! exist, whether credentials are right.

use std::net::IpAddr;

use facteur_net::Attempt;
use facteur_smtp_proto::{Address, AuthRequest, Reply};
use facteur_spool::addressing::{self, Resolution, Target};
use facteur_store::{Directory, Quota, Spool, password};

use crate::server::SmtpContext;

/// Reply for any storage failure while vetting: temporary, so the client
/// retries (STYLE 7: the unforeseen is 4xx, never 5xx).
fn temporary(e: impl std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "storage lookup failed; answering 451");
    Reply::new(451, (4, 3, 0), "Error: temporary lookup failure, try again later")
}

/// The address a recipient is looked up under: RFC 5321 §4.5.1 requires
/// `<Postmaster>` without a domain; it is the postmaster of our first domain.
pub(crate) async fn recipient_key<S: Directory + Spool>(ctx: &SmtpContext<S>, to: &Address) -> Result<String, Reply> {
    if to.domain.is_empty() {
        let domains = ctx.store.list_domains().await.map_err(temporary)?;
        let primary = domains.first().map(|d| d.name.clone()).unwrap_or_else(|| ctx.hostname.clone());
        return Ok(format!("postmaster@{primary}"));
    }
    Ok(format!("{}@{}", to.local, to.domain).to_lowercase())
}

/// RCPT policy: addresses of local domains that lead somewhere (users,
/// aliases, `+detail`, role addresses, SRS bounces; see
/// `facteur_spool::addressing`) are accepted with where they lead, unknown
/// ones refused (`550 5.1.1` at RCPT time: never accept-then-bounce), other
/// domains only for authenticated clients or trusted networks (`554 5.7.1`:
/// no open relay), as `None`: relayed as they are.
pub(crate) async fn vet_recipient<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    key: &str,
    authenticated: bool,
    peer: IpAddr,
) -> Result<Option<Vec<Target>>, Reply> {
    let days = ctx.clock.now_ms().div_euclid(86_400_000);
    match addressing::resolve(&ctx.store, &ctx.addressing, key, days).await.map_err(temporary)? {
        Resolution::Deliver(targets) => Ok(Some(targets)),
        Resolution::Unknown => Err(Reply::new(
            550,
            (5, 1, 1),
            format!("<{key}>: Recipient address rejected: User unknown in local recipient table"),
        )),
        Resolution::Remote if authenticated || ctx.config.trusted_networks.iter().any(|n| n.contains(&peer)) => {
            Ok(None)
        }
        Resolution::Remote => Err(Reply::new(554, (5, 7, 1), format!("<{key}>: Relay access denied"))),
    }
}

/// Quotas read during one transaction, by user: read once at RCPT, used
/// again at the end of DATA and to decide whether a warning may be due.
pub(crate) type Quotas = std::collections::HashMap<String, Option<Quota>>;

/// `user`'s quota, read once per transaction.
pub(crate) async fn quota_of<S: Directory>(
    store: &S,
    seen: &mut Quotas,
    user: &str,
) -> facteur_store::Result<Option<Quota>> {
    if let Some(q) = seen.get(user) {
        return Ok(*q);
    }
    let q = store.quota(user).await?;
    seen.insert(user.to_string(), q);
    Ok(q)
}

/// RFC 3463 X.2.2: a recipient all of whose places are local mailboxes
/// without room for `size` octets (the SIZE declared at MAIL, at least one)
/// is told to come back later (`452 4.2.2`); one with any other place
/// (another user with room, a forward) is taken.
pub(crate) async fn vet_quota<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    seen: &mut Quotas,
    key: &str,
    targets: &[Target],
    size: u64,
) -> Result<(), Reply> {
    let mut full = 0;
    for t in targets {
        let Target::Local { user, .. } = t else { return Ok(()) };
        match quota_of(&ctx.store, seen, user).await.map_err(temporary)? {
            Some(q) if !q.allows(size.max(1), 1) => full += 1,
            _ => return Ok(()),
        }
    }
    if full == 0 {
        return Ok(());
    }
    tracing::debug!(recipient = key, "recipient over quota; 452");
    Err(Reply::new(452, (4, 2, 2), format!("<{key}>: Mailbox full (over quota), try again later")))
}

/// What AUTH came to: the user or the reply, and whether the session must
/// end (the client's address is banned for failed logins).
pub(crate) struct AuthOutcome {
    pub result: Result<String, Reply>,
    pub close: bool,
}

/// AUTH: the user must exist and the password match its Argon2 hash; an
/// unknown user costs the same as a wrong password. Failures are throttled
/// by address and account with IMAP and POP3 (`facteur_net::AuthThrottle`,
/// before the password is looked at), and answered after a delay.
pub(crate) async fn authenticate<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    req: AuthRequest,
    listener: &str,
    peer: std::net::SocketAddr,
) -> AuthOutcome {
    // RFC 4954 §4: an authorization identity other than the user is not supported.
    let authz_ok =
        |address: &str| req.authzid.as_deref().is_none_or(|z| z.is_empty() || z.eq_ignore_ascii_case(address));
    let check = async {
        let user = password::login(&ctx.store, &req.username, &req.password).await?;
        Ok::<_, facteur_store::StoreError>(user.filter(|u| authz_ok(u)))
    };
    let failed = || Reply::new(535, (5, 7, 8), "Error: authentication credentials invalid");
    let (result, close) = match ctx.auth.attempt(listener, peer, &req.username, check).await {
        Ok(Attempt::Ok(u)) => {
            tracing::info!(user = %u, mechanism = %req.mechanism, "authenticated");
            (Ok(u), false)
        }
        Ok(Attempt::Failed) => {
            tracing::debug!(user = %req.username, mechanism = %req.mechanism, "authentication failed");
            tokio::time::sleep(std::time::Duration::from_secs(ctx.config.auth_failure_delay_secs)).await;
            (Err(failed()), false)
        }
        Ok(Attempt::Throttled) => (Err(failed()), false),
        // RFC 4954 §6 says nothing of bans: the attempt is refused like a
        // failure, with a temporary code, and the connection then closes.
        Ok(Attempt::Banned) => {
            (Err(Reply::new(454, (4, 7, 0), "Error: too many failed logins from your address; try again later")), true)
        }
        Err(e) => (Err(temporary(e)), false),
    };
    AuthOutcome { result, close }
}

fn not_owned(address: &str, user: &str, what: &str) -> Reply {
    tracing::debug!(user, address, what, "sender refused: not owned by the authenticated user");
    Reply::new(553, (5, 7, 1), format!("<{address}>: {what} rejected: not owned by user {user}"))
}

/// RFC 6409 §6.1: an authenticated user sends as itself or as what the
/// operator granted it (`facteur user sender add`), never as anyone.
pub(crate) async fn vet_sender_address<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    user: &str,
    address: &str,
) -> Result<(), Reply> {
    let grants = ctx.store.sender_grants(user).await.map_err(temporary)?;
    if facteur_store::may_send_as(user, &grants, address) {
        Ok(())
    } else {
        Err(not_owned(address, user, "Sender address"))
    }
}

/// The same rule for the `From:` field: every address in it must be the
/// user's. One `From:` only (RFC 5322 §3.6: a second one could show the
/// forged address to the reader while the checked one is the other); a
/// `From:` with no address that can be read is refused; a message without
/// `From:` has nothing to check. The field is found as a MIME parser finds
/// it (`From :` with a space is still From), so no spelling slips past.
pub(crate) async fn vet_from_header<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    user: &str,
    data: &[u8],
) -> Result<(), Reply> {
    use mail_parser::{HeaderName, HeaderValue};
    let header = crate::headers::header_section(data);
    let parsed = mail_parser::MessageParser::new().parse_headers(header);
    let froms: Vec<&HeaderValue<'_>> = parsed
        .as_ref()
        .map(|m| m.headers().iter().filter(|h| h.name == HeaderName::From).map(|h| &h.value).collect())
        .unwrap_or_default();
    let refuse = |why: &str| Err(Reply::new(553, (5, 7, 1), format!("Error: {why}")));
    match froms.as_slice() {
        // Unreadable to the parser: refused only if some line names From.
        [] if parsed.is_none() && names_from(header) => {
            refuse("the header section cannot be read to check its From: field")
        }
        [] => Ok(()),
        [one] => {
            let addresses: Vec<&str> =
                one.as_address().map(|a| a.iter().filter_map(|a| a.address()).collect()).unwrap_or_default();
            if addresses.is_empty() {
                return refuse("the From: field holds no address that can be checked");
            }
            let grants = ctx.store.sender_grants(user).await.map_err(temporary)?;
            match addresses.iter().find(|a| !facteur_store::may_send_as(user, &grants, a)) {
                Some(a) => Err(not_owned(a, user, "From: header address")),
                None => Ok(()),
            }
        }
        _ => refuse("more than one From: field (RFC 5322 \u{a7}3.6)"),
    }
}

/// A header line whose field name, spaces aside, is From (any case).
fn names_from(header: &[u8]) -> bool {
    header.split(|&b| b == b'\n').any(|line| {
        line.iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| line[..colon].trim_ascii().eq_ignore_ascii_case(b"from"))
    })
}
