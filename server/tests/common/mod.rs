//! What the tests that run the `atiende` binary share. Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atiende_core::auth::{self, NewUser, Password, User};
use atiende_core::types::Role;
use atiende_sync::DocumentId;
use atiende_sync::client::Client;
use automerge::ReadDoc;
use sqlx::PgPool;

/// The URL of the test's database, for the binary's `DATABASE_URL`.
pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let user = o.get_username();
    let db = o.get_database().unwrap_or("postgres");
    // A Unix socket (the private cluster of `atiende test-database`) is not the host: sqlx
    // keeps it apart and leaves the host at its default.
    match o.get_socket() {
        Some(dir) => format!(
            "postgres:///{db}?host={}&user={user}&port={}",
            dir.display(),
            o.get_port()
        ),
        None => format!("postgres://{user}@{}:{}/{db}", o.get_host(), o.get_port()),
    }
}

/// `atiende serve` on the test's database, logging to `log`; killed with SIGKILL when dropped.
pub struct Atiende {
    pub child: Child,
    pub addr: String,
}

impl Atiende {
    pub fn start(pool: &PgPool, log: &Path) -> Atiende {
        Self::start_with(pool, log, &[])
    }

    /// [`Self::start`] with more settings in its environment.
    pub fn start_with(pool: &PgPool, log: &Path, settings: &[(&str, &str)]) -> Atiende {
        let child = Command::new(env!("CARGO_BIN_EXE_atiende"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url(pool))
            .env("ATIENDE_DB_MAX_CONNECTIONS", "4")
            .env("ATIENDE_LOG", "info")
            .envs(settings.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start atiende serve");
        let mut server = Atiende {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find(|l| l.contains("listening"))
                .and_then(|l| l.split("addr=").nth(1))
            {
                server.addr = addr.trim().to_owned();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("atiende exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -9`: no shutdown, no flush, connections cut mid-transaction.
    pub fn kill_9(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, as an operator stops it: drains and exits cleanly.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(signalled.expect("kill").success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "atiende exited with {status}");
    }

    pub fn sync_url(&self, ticket: &str) -> String {
        atiende_sync::client::sync_url(&self.addr, ticket)
    }

    /// Peak resident memory so far, in bytes (VmHWM, which no allocator can hide).
    pub fn peak_memory(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }
}

impl Drop for Atiende {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A technician with a session and a sync ticket for it, valid for an hour.
pub async fn technician_with_ticket(pool: &PgPool, email: &str) -> (User, String) {
    let user = auth::create_user(
        pool,
        &auth::Hashing::default(),
        NewUser {
            email: email.to_owned(),
            name: "Técnico".to_owned(),
            role: Role::Technician,
            password: Password::parse("correct horse battery".to_owned()).expect("password"),
            customer_id: None,
            language: "es".to_owned(),
        },
    )
    .await
    .expect("user");
    let token = auth::start_session(pool, user.id, Duration::from_secs(3600))
        .await
        .expect("session")
        .token;
    let ticket = atiende_core::sync_tickets::issue(pool, &token, Duration::from_secs(3600))
        .await
        .expect("sync ticket")
        .ticket;
    (user, ticket)
}

/// A device joined at `url` (the sync URL with its ticket) with the document as the server has it.
pub async fn device(url: &str, id: DocumentId) -> Client {
    let mut device = Client::connect(url).await;
    device.request(id).await;
    device
        .wait_until(id, |doc| doc.length(automerge::ROOT) > 0)
        .await;
    device
}
