//! Databases for the tests that run the binary: SQLite and db_text in a test directory,
//! and a database of its own on the machine's MariaDB (127.0.0.1:3306, root) or
//! PostgreSQL (127.0.0.1:5432, postgres), created for the test and dropped with it.
//! Tables and subscribers are made with the operator's tool, `ferrosip db`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mariadb,
    Postgres,
    DbText,
}

/// `ferrosip db ...`, which must succeed.
pub fn ferrosip_db(args: &[&str]) {
    ferrosip_db_with_input(args, "");
}

/// `ferrosip db ...` with `input` on its stdin (add-user reads the password there), which
/// must succeed.
pub fn ferrosip_db_with_input(args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(crate::ferrosip_bin())
        .arg("db")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrosip runs");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("ferrosip ends");
    assert!(
        out.status.success(),
        "ferrosip db {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs one SQL statement as the server's administrator; true when it succeeded.
pub fn admin(backend: Backend, sql: &str) -> bool {
    let status = match backend {
        Backend::Mariadb => Command::new("mysql")
            .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Backend::Postgres => Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        _ => return false,
    };
    status.map(|s| s.success()).unwrap_or(false)
}

/// One test's database; a server database is dropped when this goes.
pub struct TestDb {
    pub url: String,
    server_db: Option<(Backend, String)>,
}

impl TestDb {
    /// A database with no tables yet (db_text: an empty directory).
    pub fn empty(backend: Backend, dir: &Path) -> TestDb {
        let name = format!(
            "ferrosip_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                server_db: None,
            },
            Backend::DbText => {
                let tables = dir.join(format!("{name}-dbtext"));
                std::fs::create_dir_all(&tables).expect("db_text directory");
                TestDb {
                    url: format!("text://{}", tables.display()),
                    server_db: None,
                }
            }
            Backend::Mariadb | Backend::Postgres => {
                assert!(
                    admin(backend, &format!("CREATE DATABASE {name}")),
                    "cannot create database {name} on {backend:?} (is it running on loopback?)"
                );
                let url = if backend == Backend::Mariadb {
                    format!("mysql://root@127.0.0.1:3306/{name}")
                } else {
                    format!("postgres://postgres@127.0.0.1:5432/{name}")
                };
                TestDb {
                    url,
                    server_db: Some((backend, name)),
                }
            }
        }
    }

    /// A database with the tables of `modules` (`ferrosip db init --modules`) and the
    /// subscribers `users` (`user@domain`, password; the password is stored too).
    pub fn with_users(
        backend: Backend,
        dir: &Path,
        modules: &str,
        users: &[(&str, &str)],
    ) -> TestDb {
        let db = TestDb::empty(backend, dir);
        ferrosip_db(&["init", "--db-url", &db.url, "--modules", modules]);
        for (user, password) in users {
            ferrosip_db_with_input(
                &["add-user", user, "--db-url", &db.url, "--store-password"],
                &format!("{password}\n"),
            );
        }
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((backend, name)) = &self.server_db {
            let sql = if *backend == Backend::Postgres {
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            } else {
                format!("DROP DATABASE IF EXISTS {name}")
            };
            admin(*backend, &sql);
        }
    }
}
