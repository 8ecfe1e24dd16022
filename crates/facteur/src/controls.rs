//! Operator controls, shared by the CLI and the HTTP admin API: pause and
//! resume delivery for a class, a destination or both; set a destination's
//! or the node's rate; retry a destination now. Controls are stored (they
//! survive a restart), audited with who and when, and a running engine
//! applies them within a second.

use anyhow::bail;
use facteur_store::{Admin, Spool};
use facteur_types::{Class, ControlKey};
use serde::Deserialize;

/// What a control applies to: a class, a destination (recipient domain), or both.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub class: Option<String>,
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    Pause {
        #[serde(flatten)]
        scope: Scope,
    },
    Resume {
        #[serde(flatten)]
        scope: Scope,
    },
    /// Messages per second for a destination, or the node when no
    /// destination is given; `rate: None` lifts it.
    Rate { destination: Option<String>, rate: Option<f64> },
    /// Every queued recipient of the scope becomes due now.
    Retry {
        #[serde(flatten)]
        scope: Scope,
    },
}

fn checked(scope: &Scope) -> anyhow::Result<(Option<Class>, Option<String>)> {
    let class = match &scope.class {
        Some(c) => match Class::parse(&c.to_ascii_lowercase()) {
            Some(c) => Some(c),
            None => bail!("class {c:?} is not one of system, interpersonal, transactional, bulk"),
        },
        None => None,
    };
    let dest = match &scope.destination {
        Some(d) if d.is_empty() || d.contains(['@', ':', ' ']) => {
            bail!("destination {d:?} is not a domain name")
        }
        other => other.as_ref().map(|d| d.to_ascii_lowercase()),
    };
    Ok((class, dest))
}

fn pause_key(class: Option<Class>, dest: &Option<String>) -> anyhow::Result<ControlKey> {
    match ControlKey::pause(dest.clone(), class) {
        Some(key) => Ok(key),
        None => bail!("say what to pause or resume: a class, a destination, or both"),
    }
}

/// Apply a control; returns a sentence saying what changed.
pub async fn apply<S: Spool + Admin>(store: &S, action: &Action, now: i64, actor: &str) -> anyhow::Result<String> {
    match action {
        Action::Pause { scope } => {
            let (class, dest) = checked(scope)?;
            let key = pause_key(class, &dest)?;
            store.set_control(&key, Some("1"), now, actor).await?;
            Ok(format!("paused ({key}); queued mail stays queued until resumed"))
        }
        Action::Resume { scope } => {
            let (class, dest) = checked(scope)?;
            let key = pause_key(class, &dest)?;
            store.set_control(&key, None, now, actor).await?;
            let n = store.queue_retry_where(dest.as_deref(), class, now, actor).await?;
            Ok(format!("resumed ({key}); {n} recipient(s) due now"))
        }
        Action::Rate { destination, rate } => {
            let (_, dest) = checked(&Scope { class: None, destination: destination.clone() })?;
            if let Some(r) = rate
                && !(r.is_finite() && *r > 0.0)
            {
                bail!("rate {r} must be a positive number of messages per second");
            }
            let key = ControlKey::Rate { destination: dest };
            store.set_control(&key, rate.map(|r| r.to_string()).as_deref(), now, actor).await?;
            Ok(match rate {
                Some(r) => format!("{key} set to {r} messages per second"),
                None => format!("{key} lifted"),
            })
        }
        Action::Retry { scope } => {
            let (class, dest) = checked(scope)?;
            let n = store.queue_retry_where(dest.as_deref(), class, now, actor).await?;
            Ok(format!("{n} recipient(s) due now"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_bodies() {
        let a: Action = serde_json::from_str(r#"{"action":"pause","class":"bulk","destination":"gmail.com"}"#).unwrap();
        assert_eq!(
            a,
            Action::Pause { scope: Scope { class: Some("bulk".into()), destination: Some("gmail.com".into()) } }
        );
        let a: Action = serde_json::from_str(r#"{"action":"rate","rate":50}"#).unwrap();
        assert_eq!(a, Action::Rate { destination: None, rate: Some(50.0) });
        assert!(serde_json::from_str::<Action>(r#"{"action":"explode"}"#).is_err());
    }

    #[test]
    fn scope_is_checked() {
        assert!(checked(&Scope { class: Some("spam".into()), destination: None }).is_err());
        assert!(checked(&Scope { class: None, destination: Some("a@b".into()) }).is_err());
        assert!(pause_key(None, &None).is_err());
        assert_eq!(
            checked(&Scope { class: Some("Bulk".into()), destination: Some("Example.COM".into()) }).unwrap(),
            (Some(Class::Bulk), Some("example.com".into()))
        );
    }
}
