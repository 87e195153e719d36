//! Subscriber accounts in the `subscriber` table, as `kamctl add` / `kamctl rm` keep them.

use md5::{Digest, Md5};

use crate::{Cond, Db, DbError, DbValue};

/// Lower-case hex MD5 of `user:realm:password`: the HA1 of RFC 2617/7616 digest
/// authentication with MD5, stored in `subscriber.ha1`.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(user.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new subscriber.
#[derive(Clone, Debug)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub domain: &'a str,
    /// The digest realm the hashes are computed for (usually the domain).
    pub realm: &'a str,
    pub password: &'a str,
    /// Also keep the password in clear in the `password` column (for `calculate_ha1`);
    /// otherwise that column stays empty and only the hashes are stored.
    pub store_password: bool,
}

/// What [`add_user`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUser {
    /// MD5(username:realm:password).
    pub ha1: String,
    /// MD5(username@domain:realm:password), for clients that send `user@domain` as the
    /// digest username.
    pub ha1b: String,
}

/// The error when the account already exists.
pub const USER_EXISTS: &str = "user already exists";

/// Adds a subscriber like `kamctl add`: refuses an existing username@domain, stores
/// ha1 and ha1b (and the password only when asked).
pub async fn add_user(db: &Db, user: &NewUser<'_>) -> Result<StoredUser, DbError> {
    let key = [
        Cond::eq("username", user.username),
        Cond::eq("domain", user.domain),
    ];
    if !db
        .select("subscriber", &["id"], &key, None)
        .await?
        .is_empty()
    {
        return Err(DbError::Invalid {
            url: db.url().to_string(),
            table: "subscriber".into(),
            message: format!("{}@{}: {USER_EXISTS}", user.username, user.domain),
        });
    }
    let stored = StoredUser {
        ha1: ha1(user.username, user.realm, user.password),
        ha1b: ha1(
            &format!("{}@{}", user.username, user.domain),
            user.realm,
            user.password,
        ),
    };
    let password = if user.store_password {
        user.password
    } else {
        ""
    };
    db.insert(
        "subscriber",
        &["username", "domain", "password", "ha1", "ha1b"],
        &[
            DbValue::from(user.username),
            DbValue::from(user.domain),
            DbValue::from(password),
            DbValue::Str(stored.ha1.clone()),
            DbValue::Str(stored.ha1b.clone()),
        ],
    )
    .await?;
    Ok(stored)
}

/// Removes a subscriber like `kamctl rm`; returns whether it existed.
pub async fn del_user(db: &Db, username: &str, domain: &str) -> Result<bool, DbError> {
    let n = db
        .delete(
            "subscriber",
            &[Cond::eq("username", username), Cond::eq("domain", domain)],
        )
        .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ha1_is_rfc2617_md5() {
        // RFC 2617 §3.5's example: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            super::ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }
}
