//! Password hashes for user accounts: Argon2id in PHC string form.

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

/// Check a password against a stored hash; a malformed hash never matches.
/// The comparison of the outputs takes constant time.
pub fn verify(password: &str, stored: &str) -> bool {
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
