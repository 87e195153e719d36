//! Kamailio's stock `kamailio.cfg`, as Debian's kamailio package installs it, run
//! unmodified (only `-A` defines), the way a new operator starts: no `listen=`, so the
//! server binds every interface address on port 5060, and `myself` must cover them.
//! With `WITH_MYSQL WITH_AUTH WITH_USRLOCDB` on MariaDB and on PostgreSQL, with tables made
//! by Kamailio's own SQL scripts and subscribers added as kamctl adds them, SIPp phones
//! register with digest authentication and call each other through `lookup`; the plain
//! config answers OPTIONS keepalives and relays between two registered phones. A small
//! script checks what `myself` matches when listening on every interface.
//!
//! Then the feature set of issue 21 on MariaDB, for the stock config of each Kamailio
//! release (5.6, 6.0, 6.1 from Debian; 5.8 and the development branch where a Kamailio
//! git repository lays them out) with that release's SQL scripts: `WITH_MYSQL WITH_AUTH
//! WITH_USRLOCDB WITH_ANTIFLOOD WITH_IPAUTH WITH_ALIASDB WITH_SPEEDDIAL WITH_MULTIDOMAIN
//! WITH_ACCDB WITH_NAT`, with rtpengine as the media relay on the config's own control
//! sockets (its rtpproxy port 7722; for 6.1 `WITH_RTPENGINE` too, its ng port 2223). A
//! phone behind a NAT (private Via, Contact and SDP) registers and takes four calls: from
//! a registered subscriber, to an `alias_db` alias, to a speed-dial number, and from a
//! caller trusted by its source address (127.0.0.2 in `address`) without credentials;
//! each INVITE reaches the phone at the address it registered from, with the relay in
//! its SDP, and `acc` writes a record of each.
//!
//! Every test binds port 5060 on every interface: they take [`PORT_5060`] in turn.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{
    free_port, have_sipp, kamailio_release, kamailio_sql_dir, kamailio_stock_cfg, log_tails,
    traced_sipp, wait_exit, Kamailio, Launch, Proxy, Rtpengine,
};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

/// Held by each test for as long as its server has port 5060.
static PORT_5060: Mutex<()> = Mutex::new(());

fn lock_5060() -> std::sync::MutexGuard<'static, ()> {
    PORT_5060.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether Kamailio's packaged files (its config and SQL scripts) are there; under
/// `FERROSIP_REQUIRE_STOCK_CFG` (scripts/test.sh, which unpacks them) they must be.
fn have_stock_package() -> bool {
    let sql = kamailio_sql_dir();
    let found = kamailio_stock_cfg().exists()
        && sql.join("mysql/standard-create.sql").exists()
        && sql.join("postgres/standard-create.sql").exists();
    if !found {
        assert!(
            std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "scripts/test.sh unpacks kamailio, kamailio-mysql-modules and kamailio-postgres-modules, but {} or {}/{{mysql,postgres}} is missing",
            kamailio_stock_cfg().display(),
            sql.display()
        );
        eprintln!("skipped: Kamailio's packages are not there (scripts/test.sh unpacks them)");
    }
    found
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-stock-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// `ferrosip run -f cfg args...`, its log in `dir`, once it holds UDP and TCP 5060 on
/// 127.0.0.1 (it binds every interface; loopback is one of them).
fn start_server(dir: &Path, cfg: &Path, args: &[String]) -> Proxy {
    // The server binds 5060 on every interface address. A server another test of this
    // group stopped may still be closing its sockets, and a SIPp of another test binary
    // that was given no port takes 5060 on the machine's address while it is free: wait
    // for both to let go.
    let mut addresses = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    addresses.extend(outward_address());
    addresses.extend(outward_address_v6());
    let taken = || {
        addresses.iter().copied().find(|ip| {
            let at = SocketAddr::new(*ip, 5060);
            UdpSocket::bind(at).is_err() || std::net::TcpListener::bind(at).is_err()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(ip) = taken() {
        if std::time::Instant::now() > deadline {
            let holders = Command::new("ss")
                .args(["-tuapn", "sport = :5060"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("port 5060 on {ip} is taken by another process: these tests need it free\n{holders}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // An address this check does not know of may still be taken for a moment: the
    // server then exits at once with EADDRINUSE, and is started again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let launch = Launch::new(cfg)
            .args(args)
            .log(dir.join("ferrosip.log"))
            .listening_on(5060);
        match launch.try_start() {
            Ok(proxy) => return proxy,
            Err(why) if attempts < 5 && why.contains("Address already in use") => {
                std::thread::sleep(Duration::from_secs(3));
            }
            Err(why) => panic!("{why}"),
        }
    }
}

fn scenario(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(path)
}

/// A SIPp phone talking UDP to the server at 127.0.0.1:5060.
fn sipp(dir: &Path, tag: &str, file: &str, args: &[&str]) -> Child {
    traced_sipp(dir, tag, &scenario(file), "127.0.0.1:5060")
        .args(["-p", &free_port().to_string()])
        .args(["-t", "u1", "-m", "1", "-timeout", "30s", "-timeout_error"])
        .args(args)
        .spawn()
        .expect("sipp starts")
}

/// The database name at the end of a test database's URL.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// Runs SQL (a statement, or a script file) in the test's database with the server's
/// own client; returns its output, one row a line, columns separated by `|`.
fn sql(backend: Backend, db: &str, input: SqlInput<'_>) -> String {
    let mut cmd = match backend {
        Backend::Mariadb => {
            let mut c = Command::new("mysql");
            c.args([
                "-h",
                "127.0.0.1",
                "-P",
                "3306",
                "-u",
                "root",
                "-N",
                "-B",
                db,
            ]);
            match input {
                SqlInput::Statement(s) => {
                    c.args(["-e", s]);
                }
                SqlInput::File(path) => {
                    c.stdin(std::fs::File::open(path).expect("SQL script"));
                }
            }
            c
        }
        Backend::Postgres => {
            let mut c = Command::new("psql");
            c.args(["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db]);
            c.args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"]);
            match input {
                SqlInput::Statement(s) => c.args(["-c", s]),
                SqlInput::File(path) => c.arg("-f").arg(path),
            };
            c
        }
        other => panic!("{other:?} has no SQL client"),
    };
    let out = cmd.output().expect("the database client runs");
    assert!(
        out.status.success(),
        "{backend:?} {input:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace('\t', "|")
}

#[derive(Debug, Clone, Copy)]
enum SqlInput<'a> {
    Statement(&'a str),
    File(&'a Path),
}

/// A database made as an operator following Kamailio's docs makes it: an empty database,
/// then Kamailio's own creation scripts (the `version` table first, then the tables of
/// the modules the config loads with these defines: auth_db and usrloc).
fn kamailio_database(backend: Backend, dir: &Path) -> TestDb {
    let db = TestDb::empty(backend, dir);
    let scripts = kamailio_sql_dir().join(match backend {
        Backend::Mariadb => "mysql",
        _ => "postgres",
    });
    for module in ["standard", "auth_db", "usrloc"] {
        let file = scripts.join(format!("{module}-create.sql"));
        sql(backend, db_name(&db.url), SqlInput::File(&file));
    }
    db
}

/// Adds a subscriber as `kamctl add user@domain password` does: the password, and the
/// two digest hashes ha1 = MD5(user:realm:password) and ha1b = MD5(user@domain:realm:password),
/// the realm being the domain.
fn kamctl_add(backend: Backend, db: &TestDb, user: &str, domain: &str, password: &str) {
    let statement = format!(
        "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES \
         ('{user}', '{domain}', '{password}', MD5('{user}:{domain}:{password}'), \
         MD5('{user}@{domain}:{domain}:{password}'))"
    );
    sql(backend, db_name(&db.url), SqlInput::Statement(&statement));
}

/// alice's phone registers (401, then 200), bob's phone registers and calls alice (407,
/// then with credentials); the call reaches alice through `lookup("location")`; once the
/// server stops, both contacts are in `location` (usrloc db_mode 2 writes them back).
fn stock_config_with_database(backend: Backend) {
    if !have_sipp() || !have_stock_package() {
        return;
    }
    let _port = lock_5060();
    let dir = test_dir(&format!("{backend:?}"));
    let db = kamailio_database(backend, &dir);
    kamctl_add(backend, &db, "alice", "127.0.0.1", "secret");
    kamctl_add(backend, &db, "bob", "127.0.0.1", "bobpw");
    let defines: Vec<String> = [
        "WITH_MYSQL".to_string(),
        "WITH_AUTH".to_string(),
        "WITH_USRLOCDB".to_string(),
        // The config's `#!trydef DBURL` gives way to this one, as with `kamailio -A`.
        format!("DBURL=\"{}\"", db.url),
    ]
    .iter()
    .flat_map(|d| ["-A".to_string(), d.clone()])
    .collect();
    let server = start_server(&dir, &kamailio_stock_cfg(), &defines);
    let call_id = format!("stock-{backend:?}-%u");
    let phone = sipp(
        &dir,
        "alice",
        "phones/uas_phone.xml",
        &[
            "-s", "alice", "-au", "alice", "-ap", "secret", "-cid_str", &call_id,
        ],
    );
    // alice's registration lands first; if it did not, bob's call would fail with 404.
    std::thread::sleep(Duration::from_millis(1000));
    let caller = sipp(
        &dir,
        "bob",
        "stock/uac_register_call_auth.xml",
        &[
            "-s", "alice", "-au", "bob", "-ap", "bobpw", "-cid_str", &call_id,
        ],
    );
    let caller_rc = wait_exit(caller, Duration::from_secs(40));
    let phone_rc = wait_exit(phone, Duration::from_secs(40));
    let log = server.stop();
    assert_eq!(
        (phone_rc, caller_rc),
        (Some(0), Some(0)),
        "{backend:?}: register + call on the stock config failed\n{}",
        log_tails(&dir)
    );
    let rows = sql(
        backend,
        db_name(&db.url),
        SqlInput::Statement("SELECT username, contact FROM location ORDER BY username"),
    );
    let users: Vec<&str> = rows
        .lines()
        .filter_map(|l| l.split('|').next())
        .map(str::trim)
        .collect();
    assert_eq!(users, ["alice", "bob"], "location holds {rows:?}\n{log}");
    assert!(
        rows.contains("sip:alice@127.0.0.1:") && rows.contains("sip:bob@127.0.0.1:"),
        "{rows}"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stock_config_with_auth_and_usrloc_on_mariadb() {
    stock_config_with_database(Backend::Mariadb);
}

#[test]
fn stock_config_with_auth_and_usrloc_on_postgres() {
    stock_config_with_database(Backend::Postgres);
}

/// The config with no defines: OPTIONS keepalives to the server get 200, and a call
/// between two phones that registered (no authentication) is relayed.
#[test]
fn stock_config_plain_answers_keepalives_and_relays_between_phones() {
    if !have_sipp() || !have_stock_package() {
        return;
    }
    let _port = lock_5060();
    let dir = test_dir("plain");
    let server = start_server(&dir, &kamailio_stock_cfg(), &[]);
    let keepalive = sipp(&dir, "keepalive", "options_uac.xml", &[]);
    let keepalive_rc = wait_exit(keepalive, Duration::from_secs(20));
    let call_id = "stock-plain-%u";
    let phone = sipp(
        &dir,
        "alice",
        "registrar/uas_registered.xml",
        &["-s", "alice", "-cid_str", call_id],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let caller = sipp(
        &dir,
        "bob",
        "stock/uac_register_call.xml",
        &["-s", "alice", "-cid_str", call_id],
    );
    let caller_rc = wait_exit(caller, Duration::from_secs(40));
    let phone_rc = wait_exit(phone, Duration::from_secs(40));
    server.stop();
    assert_eq!(
        (keepalive_rc, phone_rc, caller_rc),
        (Some(0), Some(0), Some(0)),
        "plain stock config: keepalive, register + call failed\n{}",
        log_tails(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The defines of the issue-21 run.
const FULL_FEATURES: [&str; 10] = [
    "WITH_MYSQL",
    "WITH_AUTH",
    "WITH_USRLOCDB",
    "WITH_ANTIFLOOD",
    "WITH_IPAUTH",
    "WITH_ALIASDB",
    "WITH_SPEEDDIAL",
    "WITH_MULTIDOMAIN",
    "WITH_ACCDB",
    "WITH_NAT",
];

/// Where the stock configs' `WITH_NAT` media relay relays: not a phone's address, so a
/// rewritten SDP shows (the phones' scenarios look for it).
const RELAY_IP: &str = "127.0.0.4";

/// Which control protocol the stock config drives the media relay with.
#[derive(Clone, Copy, PartialEq)]
enum MediaRelay {
    /// The rtpproxy module, to udp:127.0.0.1:7722.
    Rtpproxy,
    /// `WITH_RTPENGINE`: the rtpengine module, to udp:127.0.0.1:2223.
    Rtpengine,
}

/// The `ALTER TABLE acc|missed_calls ...` statements the stock config asks for in its
/// `ACCDB_COMMENT` block (the columns of its `db_extra`).
fn acc_columns(cfg_text: &str) -> Vec<String> {
    cfg_text
        .lines()
        .skip_while(|l| !l.starts_with("#!ifdef ACCDB_COMMENT"))
        .skip(1)
        .take_while(|l| !l.starts_with("#!endif"))
        .map(str::trim)
        .filter(|l| l.starts_with("ALTER TABLE"))
        .map(str::to_string)
        .collect()
}

/// Every issue-21 feature on MariaDB, with release `k`'s config and SQL scripts.
fn stock_config_with_every_database_feature(k: &Kamailio, media: MediaRelay) {
    if !have_sipp() {
        return;
    }
    let _port = lock_5060();
    let dir = test_dir(&format!("full-{}", k.version));
    // rtpengine serves both control protocols, on the ports the stock config names.
    let Some(relay) = Rtpengine::start(&dir, RELAY_IP, 7722, 2223, (35000, 35099)) else {
        return;
    };
    let backend = Backend::Mariadb;
    let db = TestDb::empty(backend, &dir);
    let name = db_name(&db.url).to_string();
    let run = |statement: &str| sql(backend, &name, SqlInput::Statement(statement));
    // As an operator following Kamailio's install docs: the release's own scripts for the
    // modules these features load, then the acc columns the config's comment lists.
    for module in [
        "standard",
        "auth_db",
        "usrloc",
        "acc",
        "alias_db",
        "speeddial",
        "permissions",
        "domain",
    ] {
        let file = k.sql_dir().join(format!("mysql/{module}-create.sql"));
        sql(backend, &name, SqlInput::File(&file));
    }
    let cfg_text = std::fs::read_to_string(k.stock_cfg()).expect("stock config");
    let alters = acc_columns(&cfg_text);
    assert_eq!(
        alters.len(),
        12,
        "the config's acc and missed_calls columns: {alters:?}"
    );
    for alter in &alters {
        run(alter);
    }
    kamctl_add(backend, &db, "alice", "127.0.0.1", "secret");
    kamctl_add(backend, &db, "bob", "127.0.0.1", "bobpw");
    // What `kamctl domain add`, `kamctl address add 1 127.0.0.2 32 0`, `kamctl alias_db
    // add` and a speed-dial entry write.
    run("INSERT INTO domain (domain) VALUES ('127.0.0.1')");
    run(
        "INSERT INTO address (grp, ip_addr, mask, port, tag) VALUES (1, '127.0.0.2', 32, 0, 'pbx')",
    );
    run("INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('alicealias', '127.0.0.1', 'alice', '127.0.0.1')");
    run("INSERT INTO speed_dial (username, domain, sd_username, sd_domain, new_uri, fname, lname, description) VALUES ('bob', '127.0.0.1', '11', '127.0.0.1', 'sip:alice@127.0.0.1', 'Alice', 'A', 'alice')");

    let mut defines: Vec<String> = FULL_FEATURES.iter().map(|f| f.to_string()).collect();
    if media == MediaRelay::Rtpengine {
        defines.push("WITH_RTPENGINE".to_string());
    }
    defines.push(format!("DBURL=\"{}\"", db.url));
    let defines: Vec<String> = defines
        .iter()
        .flat_map(|d| ["-A".to_string(), d.clone()])
        .collect();
    let server = start_server(&dir, &k.stock_cfg(), &defines);
    let call_id = format!("stock-full-{}-%u", k.version);
    // alice's phone is at 127.0.0.3: with WITH_MULTIDOMAIN, `myself` matches the domain
    // 127.0.0.1 on any port (domain's register_myself, as in Kamailio), so a phone at
    // 127.0.0.1 would have its in-dialog requests taken for the proxy's own.
    let phone = sipp(
        &dir,
        "alice",
        "stock/uas_phone_four_calls.xml",
        &[
            "-i",
            "127.0.0.3",
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "secret",
            "-cid_str",
            &call_id,
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let bob = |tag: &str, file: &str, callee: &str| {
        let c = sipp(
            &dir,
            tag,
            file,
            &[
                "-s", callee, "-au", "bob", "-ap", "bobpw", "-cid_str", &call_id,
            ],
        );
        wait_exit(c, Duration::from_secs(40))
    };
    let direct = bob("bob", "stock/uac_register_call_auth.xml", "alice");
    let alias = bob("bob-alias", "phones/uac_call_auth.xml", "alicealias");
    let speeddial = bob("bob-speeddial", "phones/uac_call_auth.xml", "11");
    let carol = sipp(
        &dir,
        "carol",
        "stock/uac_call_by_address.xml",
        &[
            "-i",
            "127.0.0.2",
            "-key",
            "caller",
            "carol",
            "-s",
            "alice",
            "-cid_str",
            &call_id,
        ],
    );
    let by_address = wait_exit(carol, Duration::from_secs(40));
    let phone_rc = wait_exit(phone, Duration::from_secs(40));
    // Kamailio 6's config tracks each call with dlgs; the four calls share one Call-ID
    // (see the phone's scenario), so each new INVITE replaced the ended record of the
    // previous call: three removed as terminated, the last one terminated by its BYE.
    let loads_dlgs = cfg_text
        .lines()
        .any(|l| l.trim_start().starts_with("loadmodule") && l.contains("dlgs.so"));
    let dlgs = loads_dlgs.then(|| {
        let out = Command::new(ferrosip_tests::packaged_path("/usr/sbin/kamcmd"))
            .args(["-s", "unix:/run/ferrosip/ferrosip_ctl", "dlgs.stats"])
            .output()
            .expect("kamcmd runs");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    });
    let log = server.stop();
    if let Some(stats) = dlgs {
        assert_eq!(
            stats,
            "{ final: { init: 0 progress: 0 answered: 0 confirmed: 0 terminated: 3 notanswered: 0 } \
             active: { init: 0 progress: 0 answered: 0 confirmed: 0 terminated: 1 notanswered: 0 } }",
            "Kamailio {}: dlgs.stats\n{log}",
            k.version
        );
    }
    assert_eq!(
        (direct, alias, speeddial, by_address, phone_rc),
        (Some(0), Some(0), Some(0), Some(0), Some(0)),
        "Kamailio {}: calls (direct, alias, speed dial, by address) or the phone failed\n{}",
        k.version,
        log_tails(&dir)
    );
    // One accounting record per answered INVITE, with the config's extra columns: the
    // number dialled (dst_ouser), where it led (dst_user) and the caller's address.
    let acc = run("SELECT method, sip_code, src_user, src_ip, dst_ouser, dst_user FROM acc WHERE method = 'INVITE' ORDER BY id");
    let rows: Vec<&str> = acc.lines().collect();
    assert_eq!(
        rows,
        [
            "INVITE|200|bob|127.0.0.1|alice|alice",
            "INVITE|200|bob|127.0.0.1|alicealias|alice",
            "INVITE|200|bob|127.0.0.1|11|alice",
            "INVITE|200|carol|127.0.0.2|alice|alice",
        ],
        "Kamailio {}: acc holds {acc}\n{log}",
        k.version
    );
    let byes = run("SELECT COUNT(*) FROM acc WHERE method = 'BYE' AND sip_code = '200'");
    assert_eq!(
        byes.trim(),
        "4",
        "Kamailio {}: BYE records\n{log}",
        k.version
    );
    let users = run("SELECT username FROM location ORDER BY username");
    assert_eq!(users.lines().collect::<Vec<_>>(), ["alice", "bob"], "{log}");
    // fix_nated_register kept where alice's REGISTER came from beside her private Contact.
    let alice = run("SELECT contact, received FROM location WHERE username = 'alice'");
    assert!(
        alice.starts_with("sip:alice@192.168.77.3:") && alice.contains("|sip:127.0.0.3:"),
        "Kamailio {}: alice's binding {alice}\n{log}",
        k.version
    );
    // The relay was asked for every call: an offer when the INVITE left, a delete when
    // its BYE did (NATMANAGE in the branch route knows the call is NATed from the
    // Record-Route's nat=yes, check_route_param()).
    let relay_log = relay.log_text();
    let commands = |ng: &str, rtpproxy: &str| {
        relay_log
            .lines()
            .filter(|l| {
                l.contains(&format!("Received command '{ng}'"))
                    || (l.contains("Got valid command") && l.contains(&format!(" {rtpproxy} ")))
            })
            .count()
    };
    assert_eq!(
        (commands("offer", "U"), commands("delete", "D")),
        (4, 4),
        "Kamailio {}: offers and deletes the relay got\n{relay_log}",
        k.version
    );
    drop(relay);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kamailio_5_6_stock_config_with_every_database_feature_on_mariadb() {
    if let Some(k) = kamailio_release("5.6") {
        stock_config_with_every_database_feature(&k, MediaRelay::Rtpproxy);
    }
}

#[test]
fn kamailio_5_8_stock_config_with_every_database_feature_on_mariadb() {
    if let Some(k) = kamailio_release("5.8") {
        stock_config_with_every_database_feature(&k, MediaRelay::Rtpproxy);
    }
}

#[test]
fn kamailio_6_0_stock_config_with_every_database_feature_on_mariadb() {
    if let Some(k) = kamailio_release("6.0") {
        stock_config_with_every_database_feature(&k, MediaRelay::Rtpproxy);
    }
}

#[test]
fn kamailio_6_1_stock_config_with_every_database_feature_and_rtpengine_on_mariadb() {
    if let Some(k) = kamailio_release("6.1") {
        stock_config_with_every_database_feature(&k, MediaRelay::Rtpengine);
    }
}

#[test]
fn kamailio_dev_stock_config_with_every_database_feature_on_mariadb() {
    if let Some(k) = kamailio_release("dev") {
        stock_config_with_every_database_feature(&k, MediaRelay::Rtpproxy);
    }
}

/// A request to the server whose reply says what the script found `myself`; the reply
/// comes from the address the request was sent to.
fn ask(to: SocketAddr, ruri: &str, from_uri: &str) -> (String, SocketAddr) {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(bind).expect("client socket");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = sock.local_addr().expect("local");
    let request = format!(
        "MESSAGE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP client.invalid:{};branch=z9hG4bK-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <{from_uri}>;tag=1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: myself-{}@test\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n",
        local.port(),
        free_port(),
        free_port()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        sock.send_to(request.as_bytes(), to).expect("send");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            return (String::from_utf8_lossy(&buf[..n]).into_owned(), from);
        }
    }
    panic!("no reply from {to} to {ruri}");
}

fn header<'a>(reply: &'a str, name: &str) -> &'a str {
    reply
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map_or("", str::trim)
}

/// Sends a request for `sip:fwd@ADDRESS:PORT` to the server at `to`, where ADDRESS:PORT is a
/// socket of this test on `to`'s address; returns the forwarded request's top Via (up to
/// the branch) and its Record-Route.
fn forwarded_through(to: SocketAddr) -> (String, String) {
    let sink = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).expect("sink socket");
    sink.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let target = sink.local_addr().expect("sink address");
    let client = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).expect("client socket");
    let ruri = format!("sip:fwd@{target}");
    let request = format!(
        "MESSAGE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {}:{};branch=z9hG4bK-fwd{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:carol@example.com>;tag=1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: fwd-{}@test\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n",
        to.ip(),
        client.local_addr().expect("client address").port(),
        target.port(),
        target.port()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..5 {
        client.send_to(request.as_bytes(), to).expect("send");
        if let Ok(n) = sink.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let via = header(&text, "Via");
            let via = via.split(';').next().unwrap_or_default().to_string();
            return (via, header(&text, "Record-Route").to_string());
        }
    }
    panic!("nothing forwarded to {target} through {to}");
}

/// A non-loopback address of this machine, if it has one (the one it routes out from).
/// The machine's IPv6 address towards the outside, when it has one.
fn outward_address_v6() -> Option<IpAddr> {
    let probe = UdpSocket::bind("[::]:0").ok()?;
    probe.connect("[2001:db8::200]:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn outward_address() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.200:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Listening on every interface at 5060 (no `listen=`), `myself` covers 127.0.0.1 with
/// and without the port, `localhost` (auto_aliases) and the `alias=`, not other hosts or
/// ports; a request sent to the machine's other address is answered from that address.
#[test]
fn myself_when_listening_on_every_interface() {
    let _port = lock_5060();
    let dir = test_dir("myself");
    let cfg = dir.join("myself.cfg");
    std::fs::write(
        &cfg,
        "alias=\"sip.example.org\"\n\
         loadmodule \"sl.so\"\nloadmodule \"textops.so\"\nloadmodule \"rr.so\"\n\
         request_route {\n\
             if ($rU == \"fwd\") { record_route(); forward(); exit; }\n\
             if (uri == myself) { append_to_reply(\"X-Uri: myself\\r\\n\"); }\n\
             else { append_to_reply(\"X-Uri: foreign\\r\\n\"); }\n\
             if (from_uri == myself) { append_to_reply(\"X-From: myself\\r\\n\"); }\n\
             else { append_to_reply(\"X-From: foreign\\r\\n\"); }\n\
             if (src_ip == myself) { append_to_reply(\"X-Src: myself\\r\\n\"); }\n\
             sl_send_reply(\"200\", \"OK\");\n\
         }\n",
    )
    .expect("cfg");
    let server = start_server(&dir, &cfg, &[]);
    let loopback: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
    let cases = [
        ("sip:127.0.0.1", "myself"),
        ("sip:127.0.0.1:5060", "myself"),
        ("sip:alice@127.0.0.1", "myself"),
        ("sip:alice@127.0.0.1:5060", "myself"),
        ("sip:alice@localhost", "myself"),
        ("sip:alice@LOCALHOST:5060", "myself"),
        ("sip:alice@sip.example.org:5099", "myself"),
        ("sip:alice@[::1]", "myself"),
        ("sip:alice@127.0.0.1:5070", "foreign"),
        ("sips:alice@127.0.0.1", "foreign"),
        ("sip:alice@example.com", "foreign"),
        ("sip:alice@192.0.2.250", "foreign"),
    ];
    let mut wrong = Vec::new();
    for (uri, want) in cases {
        let (reply, from) = ask(loopback, uri, uri);
        let got = (header(&reply, "X-Uri"), header(&reply, "X-From"));
        if got != (want, want) || from != loopback {
            wrong.push(format!("{uri}: {got:?} from {from}, want {want}\n{reply}"));
        }
        if header(&reply, "X-Src") != "myself" {
            wrong.push(format!("{uri}: src_ip 127.0.0.1 is not myself\n{reply}"));
        }
    }
    if let Some(ip) = outward_address() {
        let to = SocketAddr::new(ip, 5060);
        let uri = format!("sip:bob@{ip}");
        let (reply, from) = ask(to, &uri, "sip:carol@example.com");
        if header(&reply, "X-Uri") != "myself" || header(&reply, "X-From") != "foreign" {
            wrong.push(format!("{uri} sent to {to}:\n{reply}"));
        }
        if from != to {
            wrong.push(format!("the reply to {to} came from {from}"));
        }
    }
    // Forwarded requests carry, in Via and Record-Route, the address they came in on.
    let mut arrivals = vec![loopback.ip()];
    arrivals.extend(outward_address());
    for ip in arrivals {
        let (via, record_route) = forwarded_through(SocketAddr::new(ip, 5060));
        let host = ip.to_string();
        if via != format!("SIP/2.0/UDP {host}:5060")
            || !record_route.contains(&format!("sip:{host}"))
        {
            wrong.push(format!(
                "forwarded through {host}: Via {via:?}, Record-Route {record_route:?}"
            ));
        }
    }
    let log = server.stop();
    assert!(wrong.is_empty(), "{}\n{log}", wrong.join("\n"));
    assert!(
        log.contains("listening on udp:127.0.0.1:5060")
            && log.contains("listening on tcp:127.0.0.1:5060")
            && log.contains("alias localhost:5060"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
