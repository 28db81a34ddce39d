//! The servers under test as child processes: the release `atiende` binary here, the reference
//! in `reference.rs`; each started fresh for a scenario and stopped after it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::{Args, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Atiende,
    Reference,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Atiende => "atiende",
            Side::Reference => "reference",
        }
    }
}

/// A server under test, started by us.
pub struct Running {
    pub side: Side,
    pub child: Child,
    pub pid: u32,
    /// `ws://…` without the token.
    pub base: String,
    pub log: PathBuf,
}

impl Running {
    pub fn url(&self, token: &str) -> String {
        match self.side {
            Side::Atiende => format!("{}?ticket={token}", self.base),
            Side::Reference => self.base.clone(),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn start_atiende(args: &Args, db_url: &str, dir: &Path, label: &str) -> Result<Running> {
    let port = free_port()?;
    let log = dir.join(format!("atiende-{label}.log"));
    let out = File::create(&log)?;
    let child = Command::new(&args.atiende)
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("ATIENDE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATIENDE_DATA_DIR", dir.join("atiende-data"))
        .env("ATIENDE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", args.atiende.display()))?;
    let pid = child.id().ok_or("atiende exited at once")?;
    let mut running = Running {
        side: Side::Atiende,
        child,
        pid,
        base: format!("ws://127.0.0.1:{port}/api/v1/sync"),
        log,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(running);
        }
        if running.child.try_wait()?.is_some() || Instant::now() > deadline {
            return Err(format!(
                "atiende did not become ready; see {}",
                running.log.display()
            )
            .into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL if it does not stop in time.
pub async fn stop(mut running: Running) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.pid.to_string())
        .status()
        .await;
    if timeout(Duration::from_secs(15), running.child.wait())
        .await
        .is_err()
    {
        let _ = running.child.kill().await;
    }
}
