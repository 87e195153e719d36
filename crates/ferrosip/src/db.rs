//! `ferrosip db …`: the operator's database tools (Kamailio's `kamdbctl create`,
//! `kamctl add`, `kamctl rm`).

use std::process::ExitCode;

use clap::Subcommand;
use ferrosip_db::accounts::{self, NewUser};
use ferrosip_db::{schema, Db, DbError};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create the Kamailio-compatible tables that are missing, with their `version` rows
    /// (existing tables and rows are left alone).
    Init {
        /// The database, as in `db_url`: sqlite:///path/file.db, mysql://user:pass@host/db,
        /// postgres://user@host/db, text:///dir. Default: $FERROSIP_DB_URL (which, unlike
        /// an argument, other users cannot read in the process list).
        #[arg(long = "db-url", value_name = "URL")]
        db_url: Option<String>,
        /// Only the tables of these modules, comma separated (e.g. usrloc,auth_db); the
        /// `version` table is always created. Default: every module's tables.
        #[arg(long, value_name = "MODULES", value_delimiter = ',')]
        modules: Vec<String>,
        /// Print the SQL script for the backend of --db-url instead of running it.
        #[arg(long)]
        print_sql: bool,
    },
    /// Add a subscriber, like `kamctl add`: stores ha1 = MD5(user:realm:password) and
    /// ha1b = MD5(user@domain:realm:password). The password is asked for on a terminal,
    /// otherwise read as the first line of stdin (never an argument: the process list
    /// shows those to every user).
    AddUser {
        /// USER@DOMAIN (without a domain: --realm, then $SIP_DOMAIN, as kamctl does).
        user: String,
        /// The database, as in `db_url` (see `ferrosip db init --help`; default
        /// $FERROSIP_DB_URL).
        #[arg(long = "db-url", value_name = "URL")]
        db_url: Option<String>,
        /// The digest realm the hashes are for. Default: the domain.
        #[arg(long)]
        realm: Option<String>,
        /// Also store the password in clear in the `password` column (needed by
        /// auth_db's calculate_ha1); otherwise only the hashes are stored.
        #[arg(long)]
        store_password: bool,
    },
    /// Remove a subscriber, like `kamctl rm`.
    DelUser {
        /// USER@DOMAIN (without a domain: $SIP_DOMAIN).
        user: String,
        /// The database, as in `db_url` (see `ferrosip db init --help`; default
        /// $FERROSIP_DB_URL).
        #[arg(long = "db-url", value_name = "URL")]
        db_url: Option<String>,
    },
}

pub fn run(command: DbCommand) -> ExitCode {
    crate::run_async_command(execute(command))
}

/// Where the database URL comes from when `--db-url` is not given.
pub const DB_URL_ENV: &str = "FERROSIP_DB_URL";

/// `--db-url`, else $FERROSIP_DB_URL.
fn resolve_db_url(given: Option<String>) -> Result<String, String> {
    given
        .or_else(|| std::env::var(DB_URL_ENV).ok().filter(|u| !u.is_empty()))
        .ok_or_else(|| format!("no database: give --db-url URL or set {DB_URL_ENV}"))
}

/// The new subscriber's password: asked for without echo when stdin is a terminal,
/// otherwise the first line of stdin (`printf '%s\n' "$PW" | ferrosip db add-user ...`).
fn read_password(user: &str) -> Result<String, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("password for {user}: ");
        let _ = std::io::stderr().flush();
        let echo = EchoOff::new();
        let read = stdin.lock().read_line(&mut line);
        drop(echo);
        eprintln!();
        read.map_err(|e| format!("cannot read the password: {e}"))?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    }
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err("empty password (give it on stdin or at the prompt)".into());
    }
    Ok(password)
}

/// The terminal's echo, off while it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios value we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

/// Splits USER@DOMAIN; a bare USER takes the domain from `fallback`, then $SIP_DOMAIN.
fn split_user(user: &str, fallback: Option<&str>) -> Result<(String, String), String> {
    let (name, domain) = match user.rsplit_once('@') {
        Some((n, d)) => (n.to_string(), d.to_string()),
        None => {
            let env = std::env::var("SIP_DOMAIN").ok();
            let d = fallback
                .map(str::to_string)
                .or(env)
                .ok_or("give USER@DOMAIN (or --realm, or set SIP_DOMAIN)")?;
            (user.to_string(), d)
        }
    };
    if name.is_empty() || domain.is_empty() {
        return Err(format!("'{user}': empty user or domain"));
    }
    Ok((name, domain))
}

async fn execute(command: DbCommand) -> Result<(), String> {
    let text = |e: DbError| e.to_string();
    match command {
        DbCommand::Init {
            db_url,
            modules,
            print_sql,
        } => {
            let db_url = resolve_db_url(db_url)?;
            let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
            let modules = (!modules.is_empty()).then_some(modules.as_slice());
            if print_sql {
                let url = ferrosip_db::DbUrl::parse(&db_url).map_err(text)?;
                if url.kind == ferrosip_db::DbKind::Text {
                    return Err("db_text has no SQL; run without --print-sql".into());
                }
                print!("{}", schema::create_script(url.kind, modules)?);
                return Ok(());
            }
            let db = Db::connect(&db_url).await.map_err(text)?;
            let created = schema::init(&db, modules).await.map_err(text)?;
            if created.is_empty() {
                println!("{}: every table exists already", db.url());
            } else {
                println!("{}: created {}", db.url(), created.join(", "));
            }
            Ok(())
        }
        DbCommand::AddUser {
            user,
            db_url,
            realm,
            store_password,
        } => {
            let db_url = resolve_db_url(db_url)?;
            let (username, domain) = split_user(&user, realm.as_deref())?;
            let password = read_password(&format!("{username}@{domain}"))?;
            let realm = realm.unwrap_or_else(|| domain.clone());
            let db = Db::connect(&db_url).await.map_err(text)?;
            accounts::add_user(
                &db,
                &NewUser {
                    username: &username,
                    domain: &domain,
                    realm: &realm,
                    password: &password,
                    store_password,
                },
            )
            .await
            .map_err(text)?;
            println!("added {username}@{domain} (realm {realm})");
            Ok(())
        }
        DbCommand::DelUser { user, db_url } => {
            let db_url = resolve_db_url(db_url)?;
            let (username, domain) = split_user(&user, None)?;
            let db = Db::connect(&db_url).await.map_err(text)?;
            if accounts::del_user(&db, &username, &domain)
                .await
                .map_err(text)?
            {
                println!("removed {username}@{domain}");
                Ok(())
            } else {
                Err(format!("no subscriber {username}@{domain}"))
            }
        }
    }
}
