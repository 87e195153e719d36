//! Kamailio's `db_url` syntax.

use std::fmt;
use std::path::PathBuf;

use crate::DbError;

/// Which backend a `db_url` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Mysql,
    Postgres,
    /// Kamailio's db_text: a directory with one text file per table.
    Text,
}

impl DbKind {
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Mysql => "mysql",
            DbKind::Postgres => "postgres",
            DbKind::Text => "text",
        }
    }
}

/// A parsed `db_url`:
/// `mysql://user:pass@host[:port]/db`, `postgres://user[:pass]@host[:port]/db`
/// (also `postgresql://`, `pgsql://`), `sqlite:///abs/path/file.db` and `text:///dir`.
/// `Display` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub kind: DbKind,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Database name (MySQL, PostgreSQL).
    pub database: Option<String>,
    /// File (SQLite) or directory (db_text); relative paths are relative to the working
    /// directory.
    pub path: Option<PathBuf>,
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        let err = |reason: &str| DbError::Url {
            url: hide_password(url),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("expected SCHEME://…"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "mysql" => DbKind::Mysql,
            "postgres" | "postgresql" | "pgsql" => DbKind::Postgres,
            "sqlite" => DbKind::Sqlite,
            "text" => DbKind::Text,
            _ => {
                return Err(err(
                    "unsupported scheme (mysql, postgres, postgresql, sqlite, text)",
                ))
            }
        };
        if matches!(kind, DbKind::Sqlite | DbKind::Text) {
            if rest.is_empty() {
                return Err(err("missing path"));
            }
            return Ok(DbUrl {
                kind,
                user: None,
                password: None,
                host: None,
                port: None,
                database: None,
                path: Some(PathBuf::from(rest)),
            });
        }
        // The database name never holds '/', the password may hold '@' or ':'.
        let (authority, database) = match rest.rfind('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => return Err(err("missing /DATABASE")),
        };
        if database.is_empty() {
            return Err(err("missing database name"));
        }
        let (creds, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match creds {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(c.to_string()), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| err("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(err("garbage after ']'")),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(err("missing host"));
        }
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| err("bad port")))
            .transpose()?;
        Ok(DbUrl {
            kind,
            user: user.filter(|u| !u.is_empty()),
            password,
            host: Some(host.to_string()),
            port,
            database: Some(database.to_string()),
            path: None,
        })
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.name())?;
        if let Some(path) = &self.path {
            return write!(f, "{}", path.display());
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        let host = self.host.as_deref().unwrap_or("");
        if host.contains(':') {
            write!(f, "[{host}]")?;
        } else {
            f.write_str(host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.database.as_deref().unwrap_or(""))
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// A URL that did not parse, shown without what looks like a password.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match (rest.rfind('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_urls() {
        let u = DbUrl::parse("mysql://kamailio:kamailiorw@localhost/kamailio").unwrap();
        assert_eq!(u.kind, DbKind::Mysql);
        assert_eq!(u.user.as_deref(), Some("kamailio"));
        assert_eq!(u.password.as_deref(), Some("kamailiorw"));
        assert_eq!(u.host.as_deref(), Some("localhost"));
        assert_eq!(u.port, None);
        assert_eq!(u.database.as_deref(), Some("kamailio"));
        assert_eq!(u.to_string(), "mysql://kamailio:***@localhost/kamailio");

        let u = DbUrl::parse("postgres://postgres@127.0.0.1:5432/ferrosip").unwrap();
        assert_eq!(u.kind, DbKind::Postgres);
        assert_eq!(u.password, None);
        assert_eq!(u.port, Some(5432));
        assert_eq!(u.to_string(), "postgres://postgres@127.0.0.1:5432/ferrosip");
        assert_eq!(
            DbUrl::parse("postgresql://u:p@h/d").unwrap().kind,
            DbKind::Postgres
        );

        let u = DbUrl::parse("mysql://u:p@ss:w@rd@[::1]:3307/db").unwrap();
        assert_eq!(u.password.as_deref(), Some("p@ss:w@rd"));
        assert_eq!(u.host.as_deref(), Some("::1"));
        assert_eq!(u.port, Some(3307));
        assert_eq!(u.to_string(), "mysql://u:***@[::1]:3307/db");

        let u = DbUrl::parse("sqlite:///var/lib/ferrosip/ferrosip.db").unwrap();
        assert_eq!(u.kind, DbKind::Sqlite);
        assert_eq!(
            u.path.as_deref(),
            Some(std::path::Path::new("/var/lib/ferrosip/ferrosip.db"))
        );
        assert_eq!(u.to_string(), "sqlite:///var/lib/ferrosip/ferrosip.db");

        let u = DbUrl::parse("text:///etc/kamailio/dbtext").unwrap();
        assert_eq!(u.kind, DbKind::Text);
        assert_eq!(
            u.path.as_deref(),
            Some(std::path::Path::new("/etc/kamailio/dbtext"))
        );
    }

    #[test]
    fn bad_urls_hide_the_password() {
        for bad in [
            "mysql://u:secret@host",
            "mysql://u:secret@host:99999/db",
            "mysql://u:secret@/db",
            "oracle://u:secret@h/d",
            "sqlite://",
            "nonsense",
        ] {
            let e = DbUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
