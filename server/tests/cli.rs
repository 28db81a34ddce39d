//! The `atiende` binary as an admin runs it: the commands print what they did, refuse bad input
//! with a clear message, and `serve` starts, answers and stops cleanly.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::database_url;
use sqlx::PgPool;

fn atiende(pool: &PgPool, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atiende"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env("ATIENDE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run atiende");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("atiende finished")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn calendar_due_prints_the_due_date(pool: PgPool) {
    let out = atiende(
        &pool,
        &["calendar", "due", "--from", "2026-11-13", "--days", "15"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Day 1 is Tuesday 17 (Monday 16 is Todos los Santos, moved); 15 business days end on 7 December.
    assert_eq!(stdout(&out), "2026-12-07\n");

    let out = atiende(
        &pool,
        &[
            "calendar",
            "add-holiday",
            "--date",
            "2026-12-01",
            "--name",
            "Día cívico",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = atiende(
        &pool,
        &["calendar", "due", "--from", "2026-11-13", "--days", "15"],
        None,
    );
    assert_eq!(
        stdout(&out),
        "2026-12-09\n",
        "the added holiday (and 8 December) push the date"
    );

    let out = atiende(
        &pool,
        &["calendar", "due", "--from", "2026-13-01", "--days", "15"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn user_and_process_commands(pool: PgPool) {
    let out = atiende(
        &pool,
        &[
            "process",
            "add",
            "--code",
            "operativo",
            "--name",
            "Operativo",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("OPERATIVO"));

    let args = [
        "user",
        "add",
        "--email",
        "Lider@Empresa.co",
        "--name",
        "Laura",
        "--role",
        "process_leader",
        "--process",
        "OPERATIVO",
    ];
    let out = atiende(&pool, &args, Some("una clave bastante larga\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("una clave"),
        "the password is not echoed"
    );
    let leader: Option<String> = sqlx::query_scalar("select u.email from processes p join users u on u.id = p.leader_id where p.code = 'OPERATIVO'")
        .fetch_optional(&pool)
        .await
        .expect("query");
    assert_eq!(leader.as_deref(), Some("lider@empresa.co"));

    let out = atiende(&pool, &args, Some("una clave bastante larga\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = atiende(
        &pool,
        &[
            "user",
            "add",
            "--email",
            "x@empresa.co",
            "--name",
            "X",
            "--role",
            "jefe",
        ],
        Some("una clave bastante larga\n"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("quality_director"),
        "lists the roles: {}",
        stderr(&out)
    );
    let out = atiende(
        &pool,
        &[
            "user",
            "add",
            "--email",
            "y@empresa.co",
            "--name",
            "Y",
            "--role",
            "admin",
        ],
        Some("corta\n"),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("8 characters"), "{}", stderr(&out));
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(users, 1);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn customer_add_registers_a_customer_with_their_consent(pool: PgPool) {
    let args = [
        "customer",
        "add",
        "--document-type",
        "cc",
        "--document-number",
        "79123456",
        "--name",
        "Jorge Pérez",
        "--phone",
        "310 555 0000",
        "--consent",
        "phone",
    ];
    let out = atiende(&pool, &args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("created customer CC 79123456 Jorge Pérez"),
        "{}",
        stdout(&out)
    );
    let consent: Option<String> = sqlx::query_scalar(
        "select k.channel from consents k join customers c on c.id = k.customer_id
         where c.document_number = '79123456' and c.verified and k.granted",
    )
    .fetch_optional(&pool)
    .await
    .expect("query");
    assert_eq!(consent.as_deref(), Some("phone"));

    let out = atiende(&pool, &args, None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    let mut bad = args;
    bad[3] = "XX";
    let out = atiende(&pool, &bad, None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("NIT"),
        "lists the types: {}",
        stderr(&out)
    );
    let customers: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(customers, 1);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn customer_add_with_an_app_user_queues_the_link_and_prints_no_secret(pool: PgPool) {
    let mut args = vec![
        "customer",
        "add",
        "--document-type",
        "CC",
        "--document-number",
        "79555666",
        "--name",
        "Jorge Pérez",
        "--consent",
        "in_person",
        "--app-user",
    ];
    let out = atiende(&pool, &args, None);
    assert!(!out.status.success(), "an app user needs an e-mail");
    assert!(stderr(&out).contains("e-mail"), "{}", stderr(&out));
    let customers: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(customers, 0, "nothing was written");

    args.extend(["--email", "Jorge@Example.co", "--language", "en"]);
    let out = atiende(&pool, &args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("the link to set the password goes to j***@example.co"),
        "{printed}"
    );
    let (hash, language): (Option<String>, String) = sqlx::query_as(
        "select password_hash, language from users where email = 'jorge@example.co' and role = 'customer'",
    )
    .fetch_one(&pool)
    .await
    .expect("the app user");
    assert_eq!((hash, language.as_str()), (None, "en"));
    let queued: i64 = sqlx::query_scalar(
        "select count(*) from notifications n join deliveries d on d.notification_id = n.id
         where n.kind = 'account_setup' and d.channel = 'email' and d.target = 'jorge@example.co'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(queued, 1, "the server's e-mail channel sends the link");
    assert!(!printed.contains("acct_"), "{printed}");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn user_deactivate_ends_sessions_and_logins(pool: PgPool) {
    let args = [
        "user",
        "add",
        "--email",
        "tecnico@empresa.co",
        "--name",
        "Carlos",
        "--role",
        "technician",
    ];
    let out = atiende(&pool, &args, Some("una clave bastante larga\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let user: uuid::Uuid = sqlx::query_scalar("select id from users")
        .fetch_one(&pool)
        .await
        .expect("user");
    let token = atiende_core::auth::start_session(&pool, user, Duration::from_secs(3600))
        .await
        .expect("session")
        .token;

    let out = atiende(
        &pool,
        &["user", "deactivate", "--email", "Tecnico@Empresa.co"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deactivated technician tecnico@empresa.co"),
        "{}",
        stdout(&out)
    );
    assert!(
        atiende_core::auth::authenticate(&pool, &token)
            .await
            .is_err(),
        "the session ended"
    );
    let active: bool = sqlx::query_scalar("select active from users")
        .fetch_one(&pool)
        .await
        .expect("user");
    assert!(!active);

    let out = atiende(
        &pool,
        &["user", "deactivate", "--email", "nadie@empresa.co"],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn vapid_keys_prints_a_usable_pair() {
    let out = Command::new(env!("CARGO_BIN_EXE_atiende"))
        .arg("vapid-keys")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let private = text
        .lines()
        .find_map(|l| l.strip_prefix("ATIENDE_VAPID_PRIVATE_KEY="))
        .expect("a private key line");
    let sender = atiende_server::push::PushSender::new(
        private,
        "mailto:ops@example.com",
        atiende_core::push_endpoint::Reach::Public,
    )
    .expect("the key works");
    assert!(
        text.contains(sender.public_key()),
        "the public key printed matches: {text}"
    );
}

/// Waits for the "listening" log line and returns the address in it.
fn listening_addr(log: &PathBuf, deadline: Instant) -> String {
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find(|l| l.contains("listening"))
            .and_then(|l| l.split("addr=").nth(1))
        {
            return addr.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `atiende serve`; what it prints goes to `out`.
fn serve_once(data_dir: &PathBuf, log: &PathBuf, out: &PathBuf, demo: bool) -> (Server, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atiende"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir);
    if demo {
        cmd.arg("--demo");
    }
    let child = cmd
        .env_remove("DATABASE_URL")
        .env("ATIENDE_LOG", "info")
        .stdout(std::fs::File::create(out).expect("output file"))
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .map(Server)
        .expect("start atiende serve");
    let addr = listening_addr(log, Instant::now() + Duration::from_secs(60));
    (child, addr)
}

/// Stops the server with SIGTERM even when an assertion fails, so no cluster is left running.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

fn terminate(child: &mut std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "atiende exited with {status}");
}

/// README command 1: no configuration, its own PostgreSQL under the data directory, the demo
/// organisation, a clean stop on SIGTERM, and everything still there after a restart.
#[tokio::test]
async fn serve_runs_on_its_own_postgres_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("atiende-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (data, log, out) = (
        dir.join("data"),
        dir.join("atiende.log"),
        dir.join("stdout.txt"),
    );
    let client = reqwest::Client::new();

    let (mut child, addr) = serve_once(&data, &log, &out, true);
    // Each demo user gets a password of their own, printed once.
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    let password_of = |email: &str| {
        printed
            .lines()
            .find(|l| l.trim_start().starts_with(email))
            .and_then(|l| l.split_whitespace().nth(2))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no password printed for {email}:\n{printed}"))
    };
    let customer_password = password_of("cliente@demo.atiende.co");
    assert_ne!(
        customer_password,
        password_of("admin@demo.atiende.co"),
        "demo users do not share a password"
    );
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let login = client
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(
            &serde_json::json!({"email": "cliente@demo.atiende.co", "password": customer_password}),
        )
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cases = client
        .get(format!("http://{addr}/api/v1/cases"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cases");
    let cases: serde_json::Value = cases.json().await.expect("json");
    assert_eq!(
        cases["items"].as_array().map(Vec::len),
        Some(4),
        "the demo cases: {cases}"
    );
    terminate(&mut child.0);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !data
            .join("postgres")
            .join("data")
            .join("postmaster.pid")
            .exists(),
        "PostgreSQL was left running:\n{text}"
    );

    let (mut child, addr) = serve_once(&data, &log, &out, true);
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        !printed.contains(&customer_password),
        "a password is printed only when it is made:\n{printed}"
    );
    let cases = client
        .get(format!("http://{addr}/api/v1/cases"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cases");
    let cases: serde_json::Value = cases.json().await.expect("json");
    assert_eq!(
        cases["items"].as_array().map(Vec::len),
        Some(4),
        "kept between runs, demo loaded once: {cases}"
    );
    terminate(&mut child.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `atiende test-database` with `args`, with DATABASE_URL as given (or unset).
fn test_database(args: &[&str], database_url: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atiende"));
    cmd.arg("test-database")
        .args(args)
        .env("ATIENDE_LOG", "warn")
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run atiende test-database")
}

/// What `DATABASE_URL` a shell has after `eval` of the printed line.
fn eval_in_shell(printed: &str) -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            r#"eval "$1" && printf '%s' "$DATABASE_URL""#,
            "sh",
            printed,
        ])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("atiende-cli-pg-{}", uuid::Uuid::new_v4().simple()))
}

/// scripts/test runs `eval "$(atiende test-database)"`: DATABASE_URL, when set, comes back as is,
/// quoted so that the shell reads it back unchanged.
#[test]
fn test_database_prints_the_database_url_it_is_given() {
    let url = "postgres://tester:it's$HOME@db.example:6543/atiende_it";
    let data_dir = scratch_dir();
    let out = test_database(&["--data-dir", &data_dir.to_string_lossy()], Some(url));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "export DATABASE_URL='postgres://tester:it'\\''s$HOME@db.example:6543/atiende_it'\n"
    );
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));
    assert_eq!(eval_in_shell(&stdout(&out)), url);
    assert!(!data_dir.exists(), "no cluster is made when one is given");
}

/// Without DATABASE_URL, a server on 127.0.0.1 that lets role `postgres` create databases is used.
/// The suite's own PostgreSQL is such a server when scripts/test found it on 127.0.0.1.
#[test]
fn test_database_uses_a_local_server_that_lets_postgres_in() {
    let suite: sqlx::postgres::PgConnectOptions = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL for the suite")
        .parse()
        .expect("the suite's DATABASE_URL");
    if suite.get_socket().is_some()
        || suite.get_host() != "127.0.0.1"
        || suite.get_username() != "postgres"
    {
        eprintln!("skipped: the suite's PostgreSQL is not role postgres on 127.0.0.1");
        return;
    }
    let port = suite.get_port().to_string();
    let data_dir = scratch_dir();
    let out = test_database(
        &["--port", &port, "--data-dir", &data_dir.to_string_lossy()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("export DATABASE_URL='postgres://postgres@127.0.0.1:{port}/postgres'\n")
    );
    assert!(
        stderr(&out).contains(&format!("using the PostgreSQL server on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
    assert!(
        !data_dir.exists(),
        "no cluster is made when a server is there"
    );
}

/// Runs the "stop it with: …" command `test-database` printed, even when an assertion fails.
struct StopCluster(Option<String>);

impl Drop for StopCluster {
    fn drop(&mut self) {
        if let Some(command) = self.0.take() {
            let _ = Command::new("sh").args(["-c", &command]).status();
        }
    }
}

/// A server on the port that is no PostgreSQL is passed over for a private cluster, which keeps
/// running after the command exits, is found again by the next run, and stops as it says.
#[tokio::test]
async fn test_database_starts_a_private_cluster_that_outlives_it() {
    use sqlx::Connection as _;

    let impostor = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = impostor.local_addr().expect("address").port().to_string();
    std::thread::spawn(move || {
        for stream in impostor.incoming() {
            drop(stream);
        }
    });
    let dir = scratch_dir();
    let data_dir = dir.join("data").to_string_lossy().into_owned();

    let out = test_database(&["--port", &port, "--data-dir", &data_dir], None);
    let err = stderr(&out);
    let stop = err
        .split("(stop it with: ")
        .nth(1)
        .and_then(|rest| rest.split(")\n").next())
        .map(str::to_owned);
    let mut cluster = StopCluster(stop);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("a server answers on 127.0.0.1:{port}"))
            && err.contains("not using it"),
        "{err}"
    );
    assert!(
        err.contains("started a test PostgreSQL") && err.contains("left it running"),
        "{err}"
    );
    let printed = stdout(&out);
    assert!(
        printed.starts_with("export DATABASE_URL='postgres:///atiende?host="),
        "{printed}"
    );

    // The command has exited; its cluster still takes connections, and lets the tests create
    // databases.
    let url = eval_in_shell(&printed);
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let can_create: bool = sqlx::query_scalar(
        "select rolcreatedb or rolsuper from pg_roles where rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .expect("query");
    assert!(can_create);
    conn.close().await.expect("close");

    // --private ignores DATABASE_URL and finds the same cluster running.
    let again = test_database(
        &["--private", "--data-dir", &data_dir],
        Some("postgres://nobody@db.example/none"),
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("using the test PostgreSQL already running"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&again), printed);

    let stop = cluster.0.take().expect("a command to stop the cluster");
    let stopped = Command::new("sh")
        .args(["-c", &stop])
        .output()
        .expect("run the stop command");
    assert!(stopped.status.success(), "{stop}: {}", stderr(&stopped));
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "the cluster stopped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
