//! Private database servers for the tests that stop and restart one: a PostgreSQL
//! (`initdb` + `postgres`) or MariaDB (`mariadb-install-db` + `mariadbd`) of the test's own,
//! with its data directory in the test's directory and a free port on loopback, started
//! and stopped by its PID. The machine's own MariaDB and PostgreSQL are never touched.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private database server, running until [`PrivateServer::stop`] or drop.
pub struct PrivateServer {
    child: Option<Child>,
    start: Box<dyn Fn() -> Child>,
    ready: Box<dyn Fn() -> bool>,
    /// The signal [`PrivateServer::stop`] sends (`kill -s`).
    stop_signal: &'static str,
    /// The `db_url` of the test's database on it.
    pub url: String,
}

impl PrivateServer {
    /// Starts the server and waits (at most 60 s) until it answers a query.
    pub fn run(&mut self) {
        self.child = Some((self.start)());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(self.ready)() {
            assert!(Instant::now() < deadline, "private database did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server as an operator (or a crash) would: a signal to its PID; returns
    /// once the process has ended.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", self.stop_signal, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// A PostgreSQL server on a free port with its data in `dir/pgdata`; the URL names the
    /// `postgres` database. `None` when PostgreSQL's server programs are not installed.
    pub fn postgres(dir: &Path) -> Option<PrivateServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("postgres").exists())?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).ok()?;
        // PostgreSQL refuses to run as root: the data belong to the postgres user.
        let as_postgres = |prog: &Path| {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(prog);
            c
        };
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .ok()?;
        let ok = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        assert!(ok, "initdb failed");
        let port = crate::free_port();
        let postgres = bin.join("postgres");
        let log = dir.join("postgres.log");
        let start = move || {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log");
            as_postgres(&postgres)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                // A commit does not wait for its WAL to reach the disk (the WAL writer
                // flushes it within 200 ms, and a shutdown flushes all): these servers
                // test the proxy around a restart, not the disk. On a machine busy with
                // the rest of the suite, seven REGISTERs 2.5 s after PostgreSQL's return
                // once timed out (1 s) on their location write, most likely behind one
                // commit's fsync, and db_faults failed (12-08).
                .args(["-c", "synchronous_commit=off"])
                .arg("-k")
                .arg(data.parent().unwrap_or(&data))
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .expect("postgres starts")
        };
        let ready = move || {
            Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(["-d", "postgres", "-c", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut server = PrivateServer {
            child: None,
            start: Box::new(start),
            ready: Box::new(ready),
            // Fast shutdown: clients are disconnected at once.
            stop_signal: "INT",
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        server.run();
        Some(server)
    }

    /// A MariaDB server on a free port with its data in `dir/mariadb`; the URL names the
    /// database `database`, created when the server first answers. `None` when
    /// `mariadb-install-db` cannot run.
    pub fn mariadb(dir: &Path, database: &str) -> Option<PrivateServer> {
        let data = dir.join("mariadb");
        std::fs::create_dir_all(&data).ok()?;
        // --no-defaults: the machine's my.cnf (log and socket paths) is not ours.
        let ok = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        assert!(ok, "mariadb-install-db failed");
        let port = crate::free_port();
        let log = dir.join("mariadb.log");
        let sock = dir.join("mariadb.sock");
        let start = move || {
            Command::new("mariadbd")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", sock.display()))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--pid-file={}", data.join("pid").display()))
                .args([
                    "--user=root",
                    "--bind-address=127.0.0.1",
                    "--skip-grant-tables",
                    // As synchronous_commit=off for PostgreSQL above: a commit writes its
                    // log to the OS, which flushes it every second.
                    "--innodb-flush-log-at-trx-commit=2",
                ])
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mariadbd starts")
        };
        let create = format!("CREATE DATABASE IF NOT EXISTS {database}");
        let ready = move || {
            Command::new("mysql")
                .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root"])
                .args(["-e", &create])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut server = PrivateServer {
            child: None,
            start: Box::new(start),
            ready: Box::new(ready),
            stop_signal: "TERM",
            url: format!("mysql://root@127.0.0.1:{port}/{database}"),
        };
        server.run();
        Some(server)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
