//! Unmodified `@automerge/automerge-repo` 2.x clients (sync/js, pinned by its package-lock.json)
//! against this server: runs `node --test` on sync/js/interop.test.mjs with the server's address,
//! the users' tokens and a document created here, then checks what the database holds.
//!
//! Needs Node 20+ and npm; `npm ci` runs first when sync/js/node_modules is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atiende_sync::storage;
use atiende_sync::{DocumentKind, Mode};
use automerge::transaction::Transactable;
use common::*;
use sqlx::PgPool;
use tokio::process::Command;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

async fn require_node() {
    let found = Command::new("node").arg("--version").output().await;
    match found {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            assert!(
                major >= 20,
                "the interop test needs Node 20 or later, found {version}"
            );
        }
        _ => panic!(
            "the interop test needs Node.js 20+ and npm on PATH (`node --version` failed); \
             install them, then run `npm ci --prefix sync/js`"
        ),
    }
}

async fn install_js_packages() {
    if js_dir().join("node_modules").is_dir() {
        return;
    }
    let out = Command::new("npm")
        .arg("ci")
        .arg("--prefix")
        .arg(js_dir())
        .output()
        .await
        .expect("npm is needed to install the interop test's packages (`npm ci --prefix sync/js`)");
    assert!(
        out.status.success(),
        "npm ci failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn unmodified_automerge_repo_clients_sync_with_the_server(pool: PgPool) {
    require_node().await;
    install_js_packages().await;

    let server = Server::start(pool.clone()).await;
    let (ana, token_a) = technician(&pool, "ana@example.com").await;
    let (beto, token_b) = technician(&pool, "beto@example.com").await;
    let (reader, token_reader) = customer(&pool, "cliente@example.com", "1234567").await;
    let (_, token_outsider) = technician(&pool, "otro@example.com").await;
    let id = server
        .state
        .create_document(
            DocumentKind::FieldReport,
            &[
                (ana.id, Mode::Write),
                (beto.id, Mode::Write),
                (reader.id, Mode::Read),
            ],
            |doc| {
                doc.put(automerge::ROOT, "status", "scheduled")?;
                Ok(())
            },
        )
        .await
        .expect("create document");

    let run = Command::new("node")
        .arg("--test")
        .arg("interop.test.mjs")
        .current_dir(js_dir())
        .env(
            "ATIENDE_SYNC_URL",
            format!("ws://{}/api/v1/sync", server.addr),
        )
        .env("ATIENDE_DOC_URL", id.url())
        .env("ATIENDE_TOKEN_A", &token_a)
        .env("ATIENDE_TOKEN_B", &token_b)
        .env("ATIENDE_TOKEN_READER", &token_reader)
        .env("ATIENDE_TOKEN_OUTSIDER", &token_outsider)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("node --test finished within two minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("# pass 4"),
        "not every JS test ran:\n{stdout}"
    );

    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("document exists");
    assert_eq!(
        get_str(&stored.doc, "observations").as_deref(),
        Some("no activity in the basement (B, offline)")
    );
    assert_eq!(
        get_str(&stored.doc, "recommendations").as_deref(),
        Some("seal the cracks (B)")
    );
    assert_eq!(get_str(&stored.doc, "arrival").as_deref(), Some("08:10"));
    assert_eq!(get_str(&stored.doc, "departure").as_deref(), Some("09:40"));
    for key in ["areas", "productsUsed", "targetPest"] {
        assert!(
            automerge::ReadDoc::get(&stored.doc, automerge::ROOT, key)
                .expect("read")
                .is_some(),
            "{key} was not stored"
        );
    }
    assert_eq!(
        get_str(&stored.doc, "status").as_deref(),
        Some("scheduled"),
        "the reader's change was stored"
    );
    // Automerge 3.5 (what automerge-repo 2.5.6 runs) honours the read-only flag of our sync
    // messages and does not even send the reader's change; older clients get an `error`
    // (tests/server.rs covers that path).
    assert_eq!(server.state.stats().refused_connections, 0);
    server.stop().await;
}
