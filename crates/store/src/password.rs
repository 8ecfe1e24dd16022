//! Password hashes for user accounts: Argon2id in PHC string form for the
//! passwords facteur sets, and the hashes Dovecot writes (`doveadm pw`), so
//! users moving from Dovecot keep their passwords ([`accepted_hash`]).
//!
//! A stored hash is one of:
//! - a PHC string `$argon2id$v=19$m=…` (facteur's own; `$argon2i$` too);
//! - a bcrypt string `$2y$NN$…` (`$2a$`, `$2b$`; not `$2x$`, which names
//!   the old buggy algorithm that no library here reproduces);
//! - a SHA-crypt string `$6$…` (SHA-512) or `$5$…` (SHA-256), with an
//!   optional `rounds=N$`;
//! - any of them behind Dovecot's `{SCHEME}` prefix: `{ARGON2ID}`,
//!   `{ARGON2I}`, `{BLF-CRYPT}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, or
//!   `{CRYPT}` (libc crypt(3): accepted for the forms above only).
//!
//! Refused: clear passwords (`{PLAIN}`), fast digests (`{SHA}`, `{SSHA512}`,
//! `{MD5}`, …), `{MD5-CRYPT}` and `{CRYPT}` DES: the user needs a new
//! password. Every kind is verified where [`verify`] always ran, on a
//! blocking thread through [`check`].

use std::cell::RefCell;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Hash a password for storage (Argon2id, default parameters, random salt).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing only fails on invalid parameters, which the defaults are not.
        .unwrap_or_default()
}

/// Work memory kept per thread between verifications up to this size
/// (64 MiB); a hash asking for more gets a buffer of its own.
const KEPT_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// Argon2's work memory (19 MiB with the default parameters), kept by
    /// the blocking thread that verifies: allocating it afresh costs the
    /// kernel a page fault and a zeroed page per KiB-block, a fifth of a
    /// login's CPU. Argon2 overwrites every block before reading it.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// [`verify`] on a blocking thread, at most one per core at a time. More at
/// once would only share the cores, thrash their caches (each verification
/// works through 19 MiB) and hold that memory each: a login storm (every
/// client reconnecting after an outage) would take the memory and the CPU
/// that sessions already logged in need to read their mail. Waiting here
/// holds no thread.
pub async fn check(password: String, stored: String) -> bool {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots =
        SLOTS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));
    let Ok(_slot) = slots.acquire().await else { return false };
    tokio::task::spawn_blocking(move || verify(&password, &stored)).await.unwrap_or(false)
}

/// [`check`] for a login: the user's hash, or `None` for a user that does
/// not exist, which is checked against a hash of nothing anyone types with
/// the default parameters, so an unknown user costs the same time as a
/// wrong password and a guesser cannot tell which users exist.
pub async fn check_login(password: String, stored: Option<String>) -> bool {
    match stored {
        Some(stored) => check(password, stored).await,
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = match DUMMY.get() {
                Some(d) => d.clone(),
                // Made once, off the async threads.
                None => tokio::task::spawn_blocking(|| DUMMY.get_or_init(|| hash(&unguessable())).clone())
                    .await
                    .unwrap_or_default(),
            };
            check(password, dummy).await;
            false
        }
    }
}

/// 32 random characters.
fn unguessable() -> String {
    use argon2::password_hash::rand_core::RngCore;
    let mut b = [0u8; 24];
    argon2::password_hash::rand_core::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A login: `user`'s canonical address if `password` is its password,
/// `None` for a wrong password or an unknown user (the same hash work
/// either way, see [`check_login`]).
pub async fn login<S: crate::Directory>(store: &S, user: &str, password: &str) -> crate::Result<Option<String>> {
    let found = store.get_user(user).await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let good = check_login(password.to_string(), hash).await;
    Ok(found.filter(|_| good).map(|u| u.address))
}

/// Check a password against a stored hash (any form the module header
/// lists); a malformed or refused hash never matches. The comparison of
/// the outputs takes constant time. CPU-bound: call it through [`check`].
pub fn verify(password: &str, stored: &str) -> bool {
    // facteur's own hashes go straight to Argon2, as they always did.
    if stored.starts_with("$argon2") {
        return verify_argon2(password, stored);
    }
    match kind(stored) {
        Ok(Kind::Argon2(phc)) => verify_argon2(password, phc),
        // Passwords past 72 octets count by their first 72, as in crypt(3)
        // where Dovecot made the hash.
        Ok(Kind::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
        Ok(Kind::ShaCrypt(h)) => <sha_crypt::ShaCrypt as sha_crypt::PasswordVerifier<str>>::verify_password(
            &sha_crypt::ShaCrypt::default(),
            password.as_bytes(),
            h,
        )
        .is_ok(),
        Err(_) => false,
    }
}

/// An Argon2 PHC string checked with the kept work memory.
fn verify_argon2(password: &str, stored: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else { return false };
    let Ok(version) = h.version.map(Version::try_from).transpose() else { return false };
    let Ok(params) = Params::try_from(&h) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = vec![0u8; expected.len()];
    let done = if blocks <= KEPT_BLOCKS {
        MEMORY.with_borrow_mut(|memory| {
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        })
    } else {
        argon.hash_password_into(password.as_bytes(), salt, &mut out)
    };
    done.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

/// What a stored hash is once its `{SCHEME}` prefix is read: the string
/// each library verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'a> {
    /// A PHC string, `$argon2id$…` or `$argon2i$…` (`$argon2d$` too).
    Argon2(&'a str),
    /// `$2a$`, `$2b$` or `$2y$`.
    Bcrypt(&'a str),
    /// `$6$` (SHA-512) or `$5$` (SHA-256).
    ShaCrypt(&'a str),
}

/// The schemes an imported hash may name, for the messages.
const ACCEPTED: &str = "{ARGON2ID}, {ARGON2I}, {BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, \
     or {CRYPT} with one of their forms ($argon2id$, $argon2i$, $2y$, $6$, $5$)";

/// Read the `{SCHEME}` prefix (Dovecot's, case-insensitive) and the form
/// of what follows. An error says why the hash is refused.
fn kind(stored: &str) -> Result<Kind<'_>, String> {
    let (scheme, rest) = match stored.strip_prefix('{').and_then(|s| s.split_once('}')) {
        Some((scheme, rest)) => (Some(scheme.to_ascii_uppercase()), rest),
        None => (None, stored),
    };
    let form = crypt_form(rest);
    let wrong = |scheme: &str, expected: &str| {
        format!("{{{scheme}}} should be followed by a {expected} string, not {:?}", shorten(rest))
    };
    match scheme.as_deref() {
        None => form,
        // crypt(3): whatever libc understood, so the form decides.
        Some("CRYPT") => form.map_err(|why| format!("{{CRYPT}}: {why}")),
        Some("ARGON2ID") if rest.starts_with("$argon2id$") => form,
        Some("ARGON2ID") => Err(wrong("ARGON2ID", "$argon2id$")),
        Some("ARGON2I") if rest.starts_with("$argon2i$") => form,
        Some("ARGON2I") => Err(wrong("ARGON2I", "$argon2i$")),
        Some("BLF-CRYPT") if matches!(form, Ok(Kind::Bcrypt(_))) => form,
        Some("BLF-CRYPT") => Err(form.err().unwrap_or_else(|| wrong("BLF-CRYPT", "bcrypt ($2y$)"))),
        Some("SHA512-CRYPT") if rest.starts_with("$6$") => form,
        Some("SHA512-CRYPT") => Err(wrong("SHA512-CRYPT", "$6$")),
        Some("SHA256-CRYPT") if rest.starts_with("$5$") => form,
        Some("SHA256-CRYPT") => Err(wrong("SHA256-CRYPT", "$5$")),
        Some(other) => Err(refused_scheme(other)),
    }
}

/// The form of a crypt-style string by its leading `$id$`.
fn crypt_form(s: &str) -> Result<Kind<'_>, String> {
    if s.starts_with("$argon2") {
        Ok(Kind::Argon2(s))
    } else if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
        Ok(Kind::Bcrypt(s))
    } else if s.starts_with("$2x$") {
        Err("bcrypt $2x$ marks hashes made by the old buggy algorithm, which facteur cannot check; \
             the user needs a new password"
            .into())
    } else if s.starts_with("$6$") || s.starts_with("$5$") {
        Ok(Kind::ShaCrypt(s))
    } else if s.starts_with("$1$") {
        Err("MD5-crypt ($1$) is refused: too weak to keep; the user needs a new password".into())
    } else if s.len() == 13 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/') {
        Err("DES crypt (13 characters) is refused: it keeps only 8 characters of a password and is \
             broken; the user needs a new password"
            .into())
    } else {
        Err(format!("not a password hash facteur knows: {:?}; accepted: {ACCEPTED}", shorten(s)))
    }
}

/// Why a Dovecot scheme that is not accepted is refused.
fn refused_scheme(scheme: &str) -> String {
    let why = match scheme.split('.').next().unwrap_or(scheme) {
        "PLAIN" | "CLEAR" | "CLEARTEXT" | "PLAIN-TRUNC" => {
            "the password itself, in clear: facteur keeps no clear passwords; \
             set it as the user's password instead (--password-stdin)"
        }
        "DES-CRYPT" => "DES crypt keeps only 8 characters of a password and is broken; the user needs a new password",
        "MD5-CRYPT" => "MD5-crypt is too weak to keep; the user needs a new password",
        "SHA" | "SSHA" | "SHA1" | "SHA256" | "SSHA256" | "SHA512" | "SSHA512" | "MD5" | "SMD5" | "PLAIN-MD5"
        | "LDAP-MD5" | "PLAIN-MD4" => {
            "a fast digest, which a stolen database gives up in hours; the user needs a new password"
        }
        _ => "not a scheme facteur checks; the user needs a new password",
    };
    format!("password scheme {{{scheme}}} refused: {why} (accepted: {ACCEPTED})")
}

/// The start of a string for a message (a hash may be long; a mistaken
/// paste longer still).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Argon2 work memory an imported hash may ask for: 256 MiB (Dovecot's
/// default is 64 MiB). Every login holds that much per core.
const IMPORTED_ARGON2_MAX_KIB: u32 = 256 * 1024;
/// The bcrypt cost an imported hash may have: 2^16 rounds, seconds a login.
const IMPORTED_BCRYPT_MAX_COST: u32 = 16;
/// SHA-crypt rounds an imported hash may have (Dovecot writes 5000).
const IMPORTED_SHA_CRYPT_MAX_ROUNDS: u32 = 5_000_000;

/// A password hash made elsewhere (Dovecot's `doveadm pw`, its passwd-file
/// or SQL table), checked and returned in the form to store: as given
/// (less surrounding blanks), `{SCHEME}` prefix kept, since [`verify`]
/// reads it. An error names the scheme and says why it is refused: an
/// unknown or weak scheme, a string that does not parse, or a cost that
/// would make every login slow.
pub fn accepted_hash(stored: &str) -> Result<String, String> {
    let stored = stored.trim();
    match kind(stored)? {
        Kind::Argon2(phc) => check_argon2(phc)?,
        Kind::Bcrypt(h) => check_bcrypt(h)?,
        Kind::ShaCrypt(h) => check_sha_crypt(h)?,
    }
    Ok(stored.to_string())
}

fn check_argon2(phc: &str) -> Result<(), String> {
    let bad = |why: String| format!("Argon2 hash {:?} does not parse: {why}", shorten(phc));
    let h = PasswordHash::new(phc).map_err(|e| bad(e.to_string()))?;
    Algorithm::try_from(h.algorithm).map_err(|e| bad(e.to_string()))?;
    h.version.map(Version::try_from).transpose().map_err(|e| bad(e.to_string()))?;
    let params = Params::try_from(&h).map_err(|e| bad(e.to_string()))?;
    let (Some(salt), Some(_)) = (h.salt, h.hash) else { return Err(bad("no salt or no output".into())) };
    salt.decode_b64(&mut [0u8; 64]).map_err(|e| bad(e.to_string()))?;
    if params.m_cost() > IMPORTED_ARGON2_MAX_KIB {
        return Err(format!(
            "Argon2 hash asks for {} MiB per login, more than the {} MiB facteur accepts; the user needs a new password",
            params.m_cost() / 1024,
            IMPORTED_ARGON2_MAX_KIB / 1024
        ));
    }
    Ok(())
}

fn check_bcrypt(h: &str) -> Result<(), String> {
    let parts: bcrypt::HashParts =
        h.parse().map_err(|e| format!("bcrypt hash {:?} does not parse: {e}", shorten(h)))?;
    match parts.get_cost() {
        4..=IMPORTED_BCRYPT_MAX_COST => Ok(()),
        cost => Err(format!(
            "bcrypt cost {cost} is outside 4..={IMPORTED_BCRYPT_MAX_COST} (a login would take too long, or the hash is damaged)"
        )),
    }
}

fn check_sha_crypt(h: &str) -> Result<(), String> {
    let bad = |why: &str| format!("SHA-crypt hash {:?} does not parse: {why}", shorten(h));
    // $id$[rounds=N$]salt$hash (the crypt(3) form, Drepper's specification).
    let mut fields = h.strip_prefix('$').unwrap_or(h).split('$');
    let (id, mut next) = (fields.next(), fields.next());
    let length = match id {
        Some("6") => 86,
        Some("5") => 43,
        _ => return Err(bad("not $5$ or $6$")),
    };
    if let Some(rounds) = next.and_then(|f| f.strip_prefix("rounds=")) {
        let rounds: u32 = rounds.parse().map_err(|_| bad("rounds= is not a number"))?;
        // crypt(3) would clamp a count outside these bounds; the library
        // refuses it, so such a hash could never be checked.
        if !(sha_crypt::Params::ROUNDS_MIN..=IMPORTED_SHA_CRYPT_MAX_ROUNDS).contains(&rounds) {
            return Err(format!(
                "SHA-crypt rounds={rounds} is outside {}..={IMPORTED_SHA_CRYPT_MAX_ROUNDS}; the user needs a new password",
                sha_crypt::Params::ROUNDS_MIN
            ));
        }
        next = fields.next();
    }
    let crypt64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    match (next, fields.next(), fields.next()) {
        (Some(salt), Some(hash), None) if !salt.is_empty() && crypt64(hash) && hash.len() == length => {
            sha_crypt::PasswordHashRef::new(h).map_err(|e| bad(&e.to_string()))?;
            Ok(())
        }
        _ => Err(bad("expected $id$[rounds=N$]salt$hash")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong", &h));
        // Twice on one thread: the kept work memory gives the same answers.
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("correct hors", &h));
        assert!(!super::verify("x", "not a hash"));
    }

    #[test]
    fn hashes_made_elsewhere_verify() {
        // Another algorithm, other costs and a 16-octet output, as another
        // system may have written them: the parameters come from the string.
        let custom = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let p = argon2::Params::new(4096, 3, 2, Some(16)).unwrap();
            let a = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, p);
            a.hash_password(b"pw", &SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap()).unwrap().to_string()
        };
        assert!(custom.starts_with("$argon2i$v=19$m=4096,t=3,p=2$"));
        assert!(super::verify("pw", &custom));
        assert!(!super::verify("pW", &custom));
    }

    /// Made by Dovecot 2.3.19.1's `doveadm pw -s SCHEME -p 'correct horse'`
    /// (SHA512-CRYPT also with `-r 10000`, BLF-CRYPT also with `-r 4`).
    const DOVEADM: [&str; 8] = [
        "{SHA512-CRYPT}$6$0/f7u/Sv5WwTPWqf$s8DYgkzUfQUUmhNOKN3f5ehB6KqiUdfZHJHqwgt8j2gXm4rQFFebN.mXvnAjVQ5HpnceH5TuWHSA/B3INM1hi/",
        "{SHA512-CRYPT}$6$rounds=10000$bmo8.MbBZQTKmdGX$Sm8pbvBq8RWQeA/zC5.3k8eSRoDOvP/axEa/nMENgV2TZgRvKS573kne9SVcfo3PDIEOlNoUgZfKwJWCce1JB/",
        "{SHA256-CRYPT}$5$L4yHprtvtO2eri6.$LHJbV3JNOkz5gf5W6TvYF1cdHyYh4D2.B0y5EcK8cQD",
        "{BLF-CRYPT}$2y$05$1aDZOMMRw2s0rOomZra6L.x8QyfAIOtSdIb135hom03jU87AasoQW",
        "{BLF-CRYPT}$2y$04$/0iWKiN.oH2xm40QcRnELOZaq.AMwPNpumYxzA7bxHN0CM3TcE3G2",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Y7phJgmEJU5U2e3uap/agA$rKGnSR4Fp1nnYgiPpiIwbN3qEaN1+YuWdvQ6A9vGi8Y",
        "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$/eOwsWpdde5C2GPNTYR5rQ$yrsg45e1CR4wP3GeyXwXk4N4BXYuu1nk8QDZT31wSHA",
        // Dovecot 2.3's {CRYPT} is libc crypt(3), which made bcrypt here.
        "{CRYPT}$2y$05$j93ItRtfUo6B5hnJdTMaIOcDRrawGx/KeNfvK/p2velEBJVN.XjEe",
    ];

    #[test]
    fn dovecot_hashes_verify() {
        for h in DOVEADM {
            assert_eq!(super::accepted_hash(h).as_deref(), Ok(h), "{h}");
            assert!(super::verify("correct horse", h), "{h}");
            assert!(!super::verify("correct horsE", h), "{h}");
            assert!(!super::verify("", h), "{h}");
            // Without the prefix: the plain crypt or PHC string.
            let plain = &h[h.find('}').unwrap() + 1..];
            assert_eq!(super::accepted_hash(plain).as_deref(), Ok(plain));
            assert!(super::verify("correct horse", plain), "{plain}");
            // The scheme name is case-insensitive, as in Dovecot.
            let lower = h.replacen(&h[..h.find('}').unwrap()], &h[..h.find('}').unwrap()].to_lowercase(), 1);
            assert!(super::verify("correct horse", &lower), "{lower}");
        }
    }

    #[test]
    fn published_vectors_verify() {
        // From Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
        // specification, also sha-crypt 0.6.0's tests/mcf.rs (rounds=10000,
        // the salt "saltstringsaltstring" cut to its 16 characters).
        let sha512 = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
        let sha256 = "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA";
        let sha512_default =
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        for h in [sha512, sha256, sha512_default] {
            assert!(super::accepted_hash(h).is_ok(), "{h}");
            assert!(super::verify("Hello world!", h), "{h}");
            assert!(!super::verify("Hello world", h), "{h}");
        }
        // bcrypt 0.19.3's own test (src/lib.rs, `can_verify_hash_generated_from_some_online_tool`):
        // "password" under $2a$04$.
        let bf = "$2a$04$UuTkLRZZ6QofpDOlMz32MuuxEHA43WOemOYHPz6.SjsVsyO1tDU96";
        assert!(super::accepted_hash(&format!("{{BLF-CRYPT}}{bf}")).is_ok());
        assert!(super::verify("password", bf));
        assert!(!super::verify("Password", bf));
    }

    #[test]
    fn hashes_made_by_the_crates_verify() {
        let bf = bcrypt::hash("pw with ünïcode", 4).unwrap();
        let sha512 = {
            use sha_crypt::PasswordHasher;
            sha_crypt::ShaCrypt::SHA512.hash_password_with_salt(b"pw", b"abcdefgh").unwrap().to_string()
        };
        let sha256 = {
            use sha_crypt::CustomizedPasswordHasher;
            sha_crypt::ShaCrypt::SHA256
                .hash_password_customized(b"pw", b"0123456789abcdef", None, None, sha_crypt::Params::new(2000).unwrap())
                .unwrap()
                .to_string()
        };
        assert!(sha256.starts_with("$5$rounds=2000$"), "{sha256}");
        for (pw, h) in [
            ("pw with ünïcode", format!("{{BLF-CRYPT}}{bf}")),
            ("pw", format!("{{SHA512-CRYPT}}{sha512}")),
            ("pw", format!("{{SHA256-CRYPT}}{sha256}")),
            ("pw", format!("{{CRYPT}}{sha512}")),
            ("pw", sha256.clone()),
        ] {
            assert_eq!(super::accepted_hash(&h), Ok(h.clone()));
            assert!(super::verify(pw, &h), "{h}");
            assert!(!super::verify("pW", &h), "{h}");
        }
        // facteur's own hash is accepted too, and blanks around a paste go.
        let own = super::hash("pw");
        assert_eq!(super::accepted_hash(&format!(" {own}\n")), Ok(own.clone()));
        assert_eq!(super::accepted_hash(&format!("{{ARGON2ID}}{own}")), Ok(format!("{{ARGON2ID}}{own}")));
        assert!(super::verify("pw", &format!("{{ARGON2ID}}{own}")));
    }

    #[test]
    fn refused_hashes_name_their_scheme() {
        let refused = |h: &str, says: &str| {
            let e = super::accepted_hash(h).expect_err(h);
            assert!(e.contains(says), "{h}: {e}");
            // Never a login either (a cost refused here would run: not tried).
            if !e.contains("cost") && !e.contains("MiB") && !e.contains("rounds") {
                assert!(!super::verify("secret", h) && !super::verify("x", h), "{h}");
            }
        };
        refused("{PLAIN}secret", "{PLAIN} refused: the password itself, in clear");
        refused("{CLEAR}secret", "{CLEAR} refused");
        // doveadm pw -s DES-CRYPT -p x, and the same under {CRYPT}.
        refused("{DES-CRYPT}1xOqWpRLRRh9w", "{DES-CRYPT} refused");
        refused("{CRYPT}1xOqWpRLRRh9w", "{CRYPT}: DES crypt (13 characters) is refused");
        refused("1xOqWpRLRRh9w", "DES crypt");
        // doveadm pw -s MD5-CRYPT -p x
        refused("{MD5-CRYPT}$1$Cm.s1.0f$E8uxhvoEos1h34K7zCz9M1", "{MD5-CRYPT} refused");
        refused("{CRYPT}$1$Cm.s1.0f$E8uxhvoEos1h34K7zCz9M1", "MD5-crypt ($1$) is refused");
        // doveadm pw -s SSHA512 -p secret
        refused(
            "{SSHA512}NDW1KPwV7+Dx0wOK30dw+t1TatDGKXLoFEAb4BPZTpjncDtbg0PEXS/erj1MhVb1UAxzxVNRiXOzpybS8D2jbBkxanA=",
            "{SSHA512} refused: a fast digest",
        );
        refused("{SHA256.hex}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", "{SHA256.HEX} refused");
        refused("{PBKDF2}$1$abc$1000$def", "{PBKDF2} refused");
        refused("{NOPE}x", "{NOPE} refused");
        refused("$2x$05$1aDZOMMRw2s0rOomZra6L.x8QyfAIOtSdIb135hom03jU87AasoQW", "$2x$");
        refused("not a hash", "not a password hash facteur knows");
        refused("", "not a password hash");
        // A scheme and a form that disagree.
        refused(
            "{SHA512-CRYPT}$5$L4yHprtvtO2eri6.$LHJbV3JNOkz5gf5W6TvYF1cdHyYh4D2.B0y5EcK8cQD",
            "should be followed by a $6$",
        );
        refused(
            "{ARGON2I}$argon2id$v=19$m=65536,t=3,p=1$Y7phJgmEJU5U2e3uap/agA$rKGnSR4Fp1nnYgiPpiIwbN3qEaN1+YuWdvQ6A9vGi8Y",
            "$argon2i$",
        );
        refused("{BLF-CRYPT}$6$0/f7u/Sv5WwTPWqf$x", "bcrypt");
        // Damaged strings: cut short, bad characters, wrong costs.
        refused(
            "{SHA512-CRYPT}$6$0/f7u/Sv5WwTPWqf$s8DYgkzUfQUUmhNOKN3f5ehB6KqiUdfZHJHqwgt8j2gXm4rQFF",
            "does not parse",
        );
        refused(
            "{SHA512-CRYPT}$6$rounds=999$abc$s8DYgkzUfQUUmhNOKN3f5ehB6KqiUdfZHJHqwgt8j2gXm4rQFFebN.mXvnAjVQ5HpnceH5TuWHSA/B3INM1hi/",
            "rounds=999",
        );
        refused("{BLF-CRYPT}$2y$05$1aDZOMMRw2s0rOomZra6L.x8QyfAIOtSdIb135hom03jU87Aaso", "does not parse");
        refused("{BLF-CRYPT}$2y$31$1aDZOMMRw2s0rOomZra6L.x8QyfAIOtSdIb135hom03jU87AasoQW", "cost 31");
        refused("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Y7phJgmEJU5U2e3uap/agA", "does not parse");
        refused(
            "{ARGON2ID}$argon2id$v=19$m=4194304,t=3,p=1$Y7phJgmEJU5U2e3uap/agA$rKGnSR4Fp1nnYgiPpiIwbN3qEaN1+YuWdvQ6A9vGi8Y",
            "4096 MiB",
        );
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_hash_check_and_fails() {
        assert!(!super::check_login("anything".into(), None).await);
        let h = super::hash("pw");
        assert!(super::check_login("pw".into(), Some(h.clone())).await);
        assert!(!super::check_login("pW".into(), Some(h)).await);
        // The time is the point: both paths run one Argon2 verification of
        // the default cost (measured in crates/facteur/tests/abuse.rs).
    }

    #[tokio::test]
    async fn check_answers_many_at_once() {
        let h = super::hash("pw");
        let tries: Vec<_> = ["pw", "pW", "pw", "", "pw", "x", "pw", "pw "]
            .iter()
            .map(|p| tokio::spawn(super::check(p.to_string(), h.clone())))
            .collect();
        let mut got = Vec::new();
        for t in tries {
            got.push(t.await.unwrap());
        }
        assert_eq!(got, [true, false, true, false, true, false, true, false]);
    }
}
