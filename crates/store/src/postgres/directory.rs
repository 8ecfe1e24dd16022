//! Domains, users and sender grants on PostgreSQL.

use super::{PgStore, db, execute, mail, query, query_one, query_opt};
use crate::invariants::{self, DEFAULT_MAILBOXES, canonical_address};
use crate::{Alias, Directory, Domain, Lookup, Quota, Result, StoreError, User};

fn user(r: &tokio_postgres::Row) -> User {
    User { address: r.get(0), password_hash: r.get(1), created_at: r.get(2) }
}

impl Directory for PgStore {
    async fn add_domain(&self, name: &str) -> Result<()> {
        let name = invariants::domain_name(name)?;
        let c = self.client().await?;
        let n = execute(
            &c,
            "INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &self.now()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Exists(format!("domain {name}")));
        }
        Ok(())
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        let name = canonical_address(name);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let users: i64 = query_one(&tx, "SELECT COUNT(*) FROM users WHERE domain = $1", &[&name]).await?.get(0);
        if users > 0 {
            return Err(StoreError::Invalid(format!(
                "domain {name} still has {users} user(s); remove them first (facteur user list)"
            )));
        }
        let aliases: i64 =
            query_one(&tx, "SELECT COUNT(*) FROM aliases WHERE right(address, length($1) + 1) = '@' || $1", &[&name])
                .await?
                .get(0);
        if aliases > 0 {
            return Err(StoreError::Invalid(format!(
                "domain {name} still has {aliases} alias target(s); remove them first (facteur alias list)"
            )));
        }
        if execute(&tx, "DELETE FROM domains WHERE name = $1", &[&name]).await? == 0 {
            return Err(StoreError::NotFound(format!("domain {name}")));
        }
        tx.commit().await.map_err(db)
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT d.name, d.created_at, (SELECT COUNT(*) FROM users u WHERE u.domain = d.name)
             FROM domains d ORDER BY d.name",
            &[],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| Domain { name: r.get(0), created_at: r.get(1), users: r.get::<_, i64>(2) as u64 })
            .collect())
    }

    async fn is_local_domain(&self, name: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(query_opt(&c, "SELECT 1 FROM domains WHERE name = $1", &[&canonical_address(name)]).await?.is_some())
    }

    async fn add_user(&self, address: &str, password_hash: &str) -> Result<()> {
        let address = canonical_address(address);
        let (_, domain) = invariants::split_address(&address)?;
        let now = self.now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        if query_opt(&tx, "SELECT 1 FROM domains WHERE name = $1", &[&domain]).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "domain {domain} is not a local domain; add it first: facteur domain add {domain}"
            )));
        }
        let n = execute(
            &tx,
            "INSERT INTO users (address, domain, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO NOTHING",
            &[&address, &domain, &password_hash, &now],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Exists(format!("user {address}")));
        }
        mail::create_mailbox(&tx, &address, "INBOX", None, now).await?;
        for (name, special_use) in DEFAULT_MAILBOXES {
            mail::create_mailbox(&tx, &address, name, Some(special_use), now).await?;
        }
        execute(
            &tx,
            "INSERT INTO subscriptions (owner, name) SELECT owner, name FROM mailboxes WHERE owner = $1
             ON CONFLICT DO NOTHING",
            &[&address],
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    async fn set_password(&self, address: &str, password_hash: &str) -> Result<()> {
        let address = canonical_address(address);
        let c = self.client().await?;
        let n =
            execute(&c, "UPDATE users SET password_hash = $1 WHERE address = $2", &[&password_hash, &address]).await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {address}")));
        }
        Ok(())
    }

    async fn remove_user(&self, address: &str) -> Result<()> {
        let address = canonical_address(address);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        if execute(&tx, "DELETE FROM users WHERE address = $1", &[&address]).await? == 0 {
            return Err(StoreError::NotFound(format!("user {address}")));
        }
        // No delivery on another node commits into its mailboxes meanwhile.
        let boxes: Vec<i64> = query(&tx, "SELECT id FROM mailboxes WHERE owner = $1", &[&address])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        mail::lock(&tx, boxes).await?;
        // Mailboxes go with the user; messages shared with other mailboxes
        // or the queue stay.
        let held = mail::message_ids(
            &tx,
            "DELETE FROM mailbox_messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE owner = $1)
             RETURNING message_id",
            &[&address],
        )
        .await?;
        mail::drop_unneeded(&tx, &held).await?;
        for sql in [
            "DELETE FROM uid_counters WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE owner = $1)",
            // The floor covers every name: an account made again later
            // starts above all the UIDVALIDITYs this one had.
            "INSERT INTO uidvalidity_floor (owner, value)
             SELECT owner, MAX(uidvalidity) FROM mailboxes WHERE owner = $1 GROUP BY owner
             ON CONFLICT (owner) DO UPDATE SET value = GREATEST(uidvalidity_floor.value, excluded.value)",
            "DELETE FROM former_names WHERE owner = $1",
            "DELETE FROM mailboxes WHERE owner = $1",
            "DELETE FROM sender_grants WHERE owner = $1",
        ] {
            execute(&tx, sql, &[&address]).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let c = self.client().await?;
        let rows =
            query(&c, "SELECT address, password_hash, created_at FROM users ORDER BY domain, address", &[]).await?;
        Ok(rows.iter().map(user).collect())
    }

    async fn get_user(&self, address: &str) -> Result<Option<User>> {
        let c = self.client().await?;
        let row = query_opt(
            &c,
            "SELECT address, password_hash, created_at FROM users WHERE address = $1",
            &[&canonical_address(address)],
        )
        .await?;
        Ok(row.as_ref().map(user))
    }

    async fn quota(&self, user: &str) -> Result<Option<Quota>> {
        let user = canonical_address(user);
        let c = self.client().await?;
        let row = query_opt(
            &c,
            "SELECT quota_bytes, quota_messages, used_bytes, used_messages, quota_warned FROM users WHERE address = $1",
            &[&user],
        )
        .await?;
        Ok(row.map(|r| Quota {
            limit_bytes: r.get::<_, Option<i64>>(0).map(|v| v.max(0) as u64),
            limit_messages: r.get::<_, Option<i64>>(1).map(|v| v.max(0) as u64),
            used_bytes: r.get::<_, i64>(2).max(0) as u64,
            used_messages: r.get::<_, i64>(3).max(0) as u64,
            warned: r.get(4),
        }))
    }

    async fn set_quota(&self, user: &str, bytes: Option<u64>, messages: Option<u64>) -> Result<()> {
        let user = canonical_address(user);
        let (bytes, messages) =
            (bytes.map(|b| b.min(i64::MAX as u64) as i64), messages.map(|m| m.min(i64::MAX as u64) as i64));
        let c = self.client().await?;
        let n = execute(
            &c,
            "UPDATE users SET quota_bytes = $2, quota_messages = $3 WHERE address = $1",
            &[&user, &bytes, &messages],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        Ok(())
    }

    async fn set_quota_warned(&self, user: &str, warned: bool) -> Result<()> {
        let user = canonical_address(user);
        let c = self.client().await?;
        execute(&c, "UPDATE users SET quota_warned = $2 WHERE address = $1", &[&user, &warned]).await?;
        Ok(())
    }

    async fn sender_grants(&self, owner: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = query(
            &c,
            "SELECT address FROM sender_grants WHERE owner = $1 ORDER BY address",
            &[&canonical_address(owner)],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn grant_sender(&self, owner: &str, address: &str) -> Result<()> {
        let owner = canonical_address(owner);
        let address = invariants::sender_grant(address)?;
        let c = self.client().await?;
        if query_opt(&c, "SELECT 1 FROM users WHERE address = $1", &[&owner]).await?.is_none() {
            return Err(StoreError::NotFound(format!("user {owner}")));
        }
        let n = execute(
            &c,
            "INSERT INTO sender_grants (owner, address, granted_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&owner, &address, &self.now()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Exists(format!("{owner} may already send as {address}")));
        }
        Ok(())
    }

    async fn revoke_sender(&self, owner: &str, address: &str) -> Result<()> {
        let (owner, address) = (canonical_address(owner), canonical_address(address));
        let c = self.client().await?;
        let n = execute(&c, "DELETE FROM sender_grants WHERE owner = $1 AND address = $2", &[&owner, &address]).await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no grant for {owner} to send as {address}")));
        }
        Ok(())
    }

    async fn lookup_recipient(&self, address: &str) -> Result<Lookup> {
        let address = canonical_address(address);
        let (_, domain) = invariants::split_address(&address)?;
        let c = self.client().await?;
        let r = query_one(
            &c,
            "SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1), EXISTS (SELECT 1 FROM users WHERE address = $2),
                    (SELECT array_agg(target ORDER BY created_at, target) FROM aliases WHERE address = $2)",
            &[&domain, &address],
        )
        .await?;
        Ok(match (r.get(0), r.get(1), r.get::<_, Option<Vec<String>>>(2)) {
            (true, _, Some(targets)) => Lookup::Alias(targets),
            (true, true, None) => Lookup::LocalUser(address),
            (true, false, None) => Lookup::UnknownUser,
            (false, ..) => Lookup::Remote,
        })
    }

    async fn add_alias(&self, address: &str, target: &str) -> Result<()> {
        let (key, domain) = invariants::alias_key(address)?;
        let target = invariants::alias_target(target)?;
        let c = self.client().await?;
        if query_opt(&c, "SELECT 1 FROM domains WHERE name = $1", &[&domain]).await?.is_none() {
            return Err(StoreError::NotFound(format!("local domain {domain} (facteur domain add {domain})")));
        }
        let n = execute(
            &c,
            "INSERT INTO aliases (address, target, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&key, &target, &self.now()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Exists(format!("{key} already goes to {target}")));
        }
        Ok(())
    }

    async fn remove_alias(&self, address: &str, target: Option<&str>) -> Result<u64> {
        let key = canonical_address(address);
        let target = target.map(canonical_address);
        let c = self.client().await?;
        let n = execute(
            &c,
            "DELETE FROM aliases WHERE address = $1 AND ($2::TEXT IS NULL OR target = $2)",
            &[&key, &target],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(match target {
                Some(t) => format!("alias {key} -> {t}"),
                None => format!("alias {key}"),
            }));
        }
        Ok(n)
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        let c = self.client().await?;
        let rows =
            query(&c, "SELECT address, target, created_at FROM aliases ORDER BY address, created_at, target", &[])
                .await?;
        Ok(rows.iter().map(|r| Alias { address: r.get(0), target: r.get(1), created_at: r.get(2) }).collect())
    }

    async fn alias_targets(&self, address: &str) -> Result<Vec<String>> {
        let key = canonical_address(address);
        let c = self.client().await?;
        let rows =
            query(&c, "SELECT target FROM aliases WHERE address = $1 ORDER BY created_at, target", &[&key]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn secret(&self, name: &str) -> Result<String> {
        let c = self.client().await?;
        execute(
            &c,
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &invariants::new_secret()],
        )
        .await?;
        Ok(query_one(&c, "SELECT value FROM secrets WHERE name = $1", &[&name]).await?.get(0))
    }
}
