//! The core of a deployment, end to end on the shipped example
//! `examples/registrar-auth.cfg`: a phone registers with digest authentication
//! (`auth_check` against the subscriber table, `save("location")`), then another
//! subscriber calls it, authenticating its INVITE, and the call reaches the phone through
//! `lookup("location")`. Run against SQLite, MariaDB, PostgreSQL (each with another usrloc
//! db_mode) and db_text, over UDP and TCP.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, have_sipp, log_tails, start_proxy, traced_sipp, wait_exit};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const USERS: [(&str, &str); 2] = [("alice@127.0.0.1", "secret"), ("bob@127.0.0.1", "bobpw")];

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/phones")
        .join(name)
}

fn example(port: u16, url: &str, db_mode: u8) -> String {
    // tests/tests/lua_phones.rs includes this file as a module: the same tests then run on
    // the Lua twin of the example (its Lua file named by path: the config is copied).
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (path, lua) = if module_path!().starts_with("lua_phones") {
        let lua = examples.join("lua/registrar-auth.lua");
        (
            examples.join("lua/registrar-auth.cfg"),
            format!("#!define REGISTRAR_LUA \"{}\"\n", lua.display()),
        )
    } else {
        (examples.join("registrar-auth.cfg"), String::new())
    };
    let text = format!("{lua}{}", std::fs::read_to_string(path).expect("example"));
    // The example's #!trydef values give way to these, as with `ferrosip run -A`.
    format!(
        "#!define PROXY_PORT {port}\n#!define DBURL \"{url}\"\n#!define DBMODE {db_mode}\n#!define TIMER_INTERVAL 5\n{text}"
    )
}

fn sipp(dir: &Path, tag: &str, file: &str, proxy: u16, transport: &str, args: &[&str]) -> Child {
    traced_sipp(dir, tag, &scenario(file), &format!("127.0.0.1:{proxy}"))
        .args(["-p", &free_port().to_string()])
        .args([
            "-t",
            transport,
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .args(args)
        .spawn()
        .expect("sipp starts")
}

/// alice's phone registers (401, then with credentials: 200 with its binding), bob calls
/// alice (407, then with credentials) and the call reaches the phone.
fn phone_is_called(backend: Backend, db_mode: u8, transport: &str) {
    if !have_sipp() {
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-phones-{}-{backend:?}-{transport}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let db = TestDb::with_users(backend, &dir, "auth_db,usrloc", &USERS);
    let port = free_port();
    let proxy = start_proxy(
        &format!("phones-{backend:?}-{transport}"),
        &example(port, &db.url, db_mode),
        port,
    );
    // The phone and the caller share the Call-ID (see uas_phone.xml).
    let call_id = format!("phones-{port}-%u");
    let phone = sipp(
        &dir,
        "phone",
        "uas_phone.xml",
        port,
        transport,
        &[
            "-s", "alice", "-au", "alice", "-ap", "secret", "-cid_str", &call_id,
        ],
    );
    // Lets the registration land first; the test does not depend on how long it takes
    // beyond that (the caller would get 404 and fail loudly).
    std::thread::sleep(Duration::from_millis(1000));
    let caller = sipp(
        &dir,
        "caller",
        "uac_call_auth.xml",
        port,
        transport,
        &[
            "-s", "alice", "-au", "bob", "-ap", "bobpw", "-cid_str", &call_id,
        ],
    );
    let caller_rc = wait_exit(caller, Duration::from_secs(30));
    let phone_rc = wait_exit(phone, Duration::from_secs(30));
    drop(proxy);
    assert_eq!(
        (phone_rc, caller_rc),
        (Some(0), Some(0)),
        "{backend:?} db_mode {db_mode} over {transport}: register + call failed\n{}",
        log_tails(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn phone_registered_in_sqlite_is_called_over_udp() {
    phone_is_called(Backend::Sqlite, 2, "u1");
}

#[test]
fn phone_registered_in_sqlite_is_called_over_tcp() {
    phone_is_called(Backend::Sqlite, 2, "t1");
}

#[test]
fn phone_registered_in_mariadb_is_called_over_udp() {
    phone_is_called(Backend::Mariadb, 1, "u1");
}

#[test]
fn phone_registered_in_postgres_is_called_over_tcp() {
    phone_is_called(Backend::Postgres, 3, "t1");
}

#[test]
fn phone_authenticated_against_db_text_is_called_over_udp() {
    phone_is_called(Backend::DbText, 0, "u1");
}
