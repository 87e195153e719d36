//! Test databases: each test gets its own uniquely named database on the machine's
//! MariaDB (127.0.0.1:3306, root, no password) or PostgreSQL (127.0.0.1:5432, postgres,
//! trust), created through an admin connection and dropped when the guard goes out of
//! scope, also when the test fails. `FERROSIP_TEST_MYSQL` / `FERROSIP_TEST_PG` override the
//! admin URLs (sqlx syntax, without a database).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique_name() -> String {
    format!(
        "ferrosip_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn mysql_admin() -> String {
    std::env::var("FERROSIP_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn pg_admin() -> String {
    std::env::var("FERROSIP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Server {
    Mysql,
    Postgres,
}

/// Runs one statement on the server's admin connection, from a thread of its own so that
/// it also works from `Drop` inside an async test.
pub fn admin_exec(server: Server, admin_url: &str, sql: &str) -> Result<(), String> {
    let admin_url = admin_url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            match server {
                Server::Mysql => {
                    let mut c = sqlx::MySqlConnection::connect(&format!("{admin_url}/mysql"))
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(&sql)
                        .execute(&mut c)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Server::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&format!("{admin_url}/postgres"))
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(&sql)
                        .execute(&mut c)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// A database created for one test and dropped with this guard.
pub struct TempDatabase {
    pub server: Server,
    pub name: String,
    admin_url: String,
    /// The Kamailio-style db_url of the database.
    pub url: String,
}

impl TempDatabase {
    pub fn mysql() -> TempDatabase {
        Self::create_on(Server::Mysql, &mysql_admin())
    }

    pub fn postgres() -> TempDatabase {
        Self::create_on(Server::Postgres, &pg_admin())
    }

    pub fn create_on(server: Server, admin_url: &str) -> TempDatabase {
        let name = unique_name();
        admin_exec(server, admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name} on {admin_url}: {e}"));
        TempDatabase {
            server,
            url: format!("{admin_url}/{name}"),
            name,
            admin_url: admin_url.to_string(),
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = match self.server {
            Server::Mysql => format!("DROP DATABASE IF EXISTS {}", self.name),
            // Pools of the test may still hold connections.
            Server::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        };
        if let Err(e) = admin_exec(self.server, &self.admin_url, &sql) {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}
