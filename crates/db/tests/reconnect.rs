//! A database server restarts (or is down for a while) under a running `Db`: queries fail
//! only while it is down and succeed again afterwards, with the same `Db` and no restart of
//! Ferrosip.
//!
//! The servers restarted here are private MariaDB and PostgreSQL instances, real servers
//! from the machine's own packages on a free port with a data directory of their own.
//! Restarting the shared servers on 3306/5432 would break every other test that happens
//! to be using them at that moment.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{admin_exec, Server, TempDatabase};
use ferrosip_db::{schema, Cond, Db, DbValue};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the server takes an admin connection.
fn wait_ready(server: Server, admin_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match admin_exec(server, admin_url, "SELECT 1") {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{admin_url} not ready: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A PostgreSQL cluster of our own, run by the `postgres` user with `pg_ctl`.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = tempfile::Builder::new()
            .prefix("ferrosip-pg")
            .tempdir()
            .unwrap();
        run(Command::new("chown").arg("postgres").arg(dir.path()));
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        run(pg
            .as_postgres(&pg.bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(pg.data()));
        pg.pg_ctl("start");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn as_postgres(&self, program: &Path) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut c = self.as_postgres(&self.bin.join("pg_ctl"));
        c.args(["-w", "-m", "fast", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, action]);
        run(&mut c);
        if action != "stop" {
            wait_ready(Server::Postgres, &self.admin_url());
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A MariaDB server of our own: `mariadb-install-db` into a temp directory, `mariadbd`
/// as the `mysql` user.
struct PrivateMariadb {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateMariadb {
    fn start() -> PrivateMariadb {
        let dir = tempfile::Builder::new()
            .prefix("ferrosip-my")
            .tempdir()
            .unwrap();
        run(Command::new("chown").arg("mysql").arg(dir.path()));
        run(Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", dir.path().join("data").display())));
        let mut m = PrivateMariadb {
            dir,
            port: free_port(),
            child: None,
        };
        m.launch();
        m
    }

    fn admin_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err").display()))
            .args([
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--skip-name-resolve",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        wait_ready(Server::Mysql, &self.admin_url());
    }

    fn stop(&mut self) {
        // MariaDB's SHUTDOWN statement: a clean shutdown, as `mariadb-admin shutdown` does.
        let _ = admin_exec(Server::Mysql, &self.admin_url(), "SHUTDOWN");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Queries the `Db` in a loop from another task, as SIP traffic would, counting successes
/// and failures, until told to stop.
struct Traffic {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(db: Db) -> Traffic {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s) = (ok.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match db
                    .select(
                        "location",
                        &["contact"],
                        &[Cond::eq("username", "alice")],
                        None,
                    )
                    .await
                {
                    Ok(rows) if rows.len() == 1 => o.fetch_add(1, Ordering::Relaxed),
                    _ => f.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Traffic {
            ok,
            failed,
            stop,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn prepare(url: &str) -> Db {
    let db = Db::connect(url).await.unwrap();
    schema::init(&db, Some(&["usrloc"])).await.unwrap();
    db.insert(
        "location",
        &["ruid", "username", "contact", "expires"],
        &[
            DbValue::Str("r1".into()),
            DbValue::Str("alice".into()),
            DbValue::Str("sip:alice@192.0.2.1".into()),
            DbValue::Time(2_000_000_000),
        ],
    )
    .await
    .unwrap();
    // Open several pooled connections, so that all of them die with the server.
    let queries = (0..4).map(|_| {
        let db = db.clone();
        async move { db.select("location", &[], &[], None).await }
    });
    for r in futures_join(queries).await {
        r.unwrap();
    }
    db
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// After the server came back: every operation works on the same `Db`.
async fn works_again(db: &Db) {
    let rows = db
        .select(
            "location",
            &["contact"],
            &[Cond::eq("username", "alice")],
            None,
        )
        .await
        .expect("select after restart");
    assert_eq!(rows, vec![vec![DbValue::Str("sip:alice@192.0.2.1".into())]]);
    db.insert(
        "location",
        &["ruid", "username"],
        &[DbValue::Str("r2".into()), DbValue::Str("bob".into())],
    )
    .await
    .expect("insert after restart");
    db.update(
        "location",
        &[Cond::eq("ruid", "r2")],
        &[("cseq", DbValue::Int(7))],
    )
    .await
    .expect("update after restart");
    db.delete("location", &[Cond::eq("ruid", "r2")])
        .await
        .expect("delete after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_and_outage() {
    let server = PrivatePostgres::start();
    let tmp = TempDatabase::create_on(Server::Postgres, &server.admin_url());
    let db = prepare(&tmp.url).await;

    // A restart in the middle of traffic.
    let traffic = Traffic::start(db.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| server.pg_ctl("restart"));
    works_again(&db).await;
    let ok_at_restart = traffic.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = traffic.finish().await;
    eprintln!("queries around the restart: {ok} ok, {failed} failed");
    assert!(
        ok > ok_at_restart,
        "traffic resumed: {ok} ok, {failed} failed"
    );

    // An outage: queries fail with a connection error while the server is down, and the
    // same Db works once it is back.
    tokio::task::block_in_place(|| server.pg_ctl("stop"));
    let e = db.select("location", &[], &[], None).await.unwrap_err();
    assert!(e.is_connection_error(), "{e}");
    tokio::task::block_in_place(|| server.pg_ctl("start"));
    works_again(&db).await;
    drop(db);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restart_and_outage() {
    let mut server = PrivateMariadb::start();
    let tmp = TempDatabase::create_on(Server::Mysql, &server.admin_url());
    let db = prepare(&tmp.url).await;

    let traffic = Traffic::start(db.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| {
        server.stop();
        server.launch();
    });
    works_again(&db).await;
    let ok_at_restart = traffic.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = traffic.finish().await;
    eprintln!("queries around the restart: {ok} ok, {failed} failed");
    assert!(
        ok > ok_at_restart,
        "traffic resumed: {ok} ok, {failed} failed"
    );

    tokio::task::block_in_place(|| server.stop());
    let e = db.select("location", &[], &[], None).await.unwrap_err();
    assert!(e.is_connection_error(), "{e}");
    tokio::task::block_in_place(|| server.launch());
    works_again(&db).await;
    drop(db);
    drop(tmp);
}

/// Polls (bounded) until `$probe` (an expression giving `Option<i64>`) finds the id of our
/// blocked session.
macro_rules! find_blocked {
    ($probe:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = $probe {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "the query never blocked on the lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// The server kills our connection while a query runs on it (after the pool's ping said it
/// was fine): the query is retried once on a new connection and succeeds. The query is
/// held in flight by a table lock another session takes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_query_killed_midway_is_retried() {
    use sqlx::Connection;
    let tmp = TempDatabase::mysql();
    let db = prepare(&tmp.url).await;
    let mut admin = sqlx::MySqlConnection::connect(&tmp.url).await.unwrap();
    sqlx::raw_sql("LOCK TABLES location WRITE")
        .execute(&mut admin)
        .await
        .unwrap();
    let query = tokio::spawn({
        let db = db.clone();
        async move {
            db.select(
                "location",
                &["contact"],
                &[Cond::eq("username", "alice")],
                None,
            )
            .await
        }
    });
    let victim: i64 = find_blocked!(sqlx::query_as::<_, (i64,)>(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND INFO LIKE 'SELECT%'",
    )
    .fetch_optional(&mut admin)
    .await
    .unwrap()
    .map(|r| r.0));
    sqlx::query(&format!("KILL CONNECTION {victim}"))
        .execute(&mut admin)
        .await
        .unwrap();
    // The retry blocks on the lock too until it is released.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::raw_sql("UNLOCK TABLES")
        .execute(&mut admin)
        .await
        .unwrap();
    let rows = query.await.unwrap().expect("retried on a new connection");
    assert_eq!(rows, vec![vec![DbValue::Str("sip:alice@192.0.2.1".into())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_query_killed_midway_is_retried() {
    use sqlx::Connection;
    let tmp = TempDatabase::postgres();
    let db = prepare(&tmp.url).await;
    let mut admin = sqlx::PgConnection::connect(&tmp.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE location IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .unwrap();
    let query = tokio::spawn({
        let db = db.clone();
        async move {
            db.update(
                "location",
                &[Cond::eq("ruid", "r1")],
                &[("cseq", DbValue::Int(9))],
            )
            .await
        }
    });
    let victim: i64 = find_blocked!(sqlx::query_as::<_, (i32,)>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
    )
    .fetch_optional(&mut admin)
    .await
    .unwrap()
    .map(|r| i64::from(r.0)));
    sqlx::query("SELECT pg_terminate_backend($1::int)")
        .bind(victim as i32)
        .execute(&mut admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::raw_sql("COMMIT").execute(&mut admin).await.unwrap();
    let n = query.await.unwrap().expect("retried on a new connection");
    assert_eq!(n, 1);
    let rows = db
        .select("location", &["cseq"], &[Cond::eq("ruid", "r1")], None)
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![DbValue::Int(9)]]);
}
