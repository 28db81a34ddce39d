//! The reference JavaScript sync server, `bench/js/reference-server.mjs` (automerge-repo 2.5.6
//! with its WebSocket server adapter and file storage; see `bench/js/README.md`).

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use crate::servers::{Running, Side};
use crate::{Args, Result};

/// Installs the reference's pinned packages when `node_modules` is missing.
pub async fn install(args: &Args) -> Result<()> {
    if !args.reference_dir.join("node_modules").exists() {
        eprintln!("installing the reference server (npm ci)…");
        let ok = Command::new("npm")
            .arg("ci")
            .arg("--prefix")
            .arg(&args.reference_dir)
            .status()
            .await?
            .success();
        if !ok {
            return Err("npm ci failed in the reference folder".into());
        }
    }
    Ok(())
}

pub async fn start_reference(args: &Args, dir: &Path, label: &str) -> Result<Running> {
    let log = dir.join(format!("reference-{label}.log"));
    let err = File::create(&log)?;
    let mut child = Command::new(&args.node)
        .arg("reference-server.mjs")
        .current_dir(&args.reference_dir)
        .env("BENCH_PORT", "0")
        .env(
            "BENCH_DATA_DIR",
            dir.join(format!("reference-data-{label}")),
        )
        .env(
            "BENCH_SAVE_DEBOUNCE_MS",
            args.reference_save_debounce_ms.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", args.node))?;
    let pid = child.id().ok_or("node exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| format!("the reference did not start; see {}", log.display()))??
        .ok_or_else(|| format!("the reference exited; see {}", log.display()))?;
    let port: u16 = first
        .strip_prefix("listening on ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("unexpected first line from the reference: {first}"))?;
    // Whatever else it prints goes to the log; a closed pipe would fail its writes.
    let mut copy = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .await?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = copy.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok(Running {
        side: Side::Reference,
        child,
        pid,
        base: format!("ws://127.0.0.1:{port}/"),
        log,
    })
}
