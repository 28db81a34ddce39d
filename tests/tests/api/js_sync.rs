//! Unmodified `@automerge/automerge-repo` 2.x clients (sync/js, pinned by its package-lock.json)
//! against the whole server: `node --test` runs sync/js/*.test.mjs with the server's address and
//! the users' tokens, then the database is checked.
//!
//! Needs Node 20+ and npm; `npm ci` runs first when sync/js/node_modules is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atiende_core::types::Role;
use atiende_sync::{DocumentKind, Mode, storage};
use atiende_tests::{TestApp, spawn_app};
use automerge::transaction::Transactable;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::sync_support::read;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync/js")
}

/// Checks Node and installs the pinned packages, once per test process.
async fn prepare_node() {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let found = Command::new("node").arg("--version").output().await;
            let version = match found {
                Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
                _ => panic!(
                    "the sync interop tests need Node.js 20+ and npm on PATH (`node --version` failed); \
                     install them, then run `npm ci --prefix sync/js`"
                ),
            };
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            assert!(major >= 20, "the interop tests need Node 20 or later, found {version}");
            // nextest runs each test in a process of its own: a file lock keeps two of them from
            // running `npm ci` into the same folder at once, and npm's own record of a finished
            // install (not the folder, which a failed install leaves behind) says it is done.
            let lock = std::fs::File::create(js_dir().join(".npm-ci.lock"))
                .expect("create sync/js/.npm-ci.lock");
            let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                .await
                .expect("lock task")
                .expect("lock sync/js/.npm-ci.lock");
            if js_dir().join("node_modules/.package-lock.json").is_file() {
                return;
            }
            let out = Command::new("npm")
                .arg("ci")
                .arg("--prefix")
                .arg(js_dir())
                .output()
                .await
                .expect("npm is needed to install the interop tests' packages (`npm ci --prefix sync/js`)");
            assert!(
                out.status.success(),
                "npm ci failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            drop(lock);
        })
        .await;
}

/// Runs one JS test file against the app and checks that `tests` tests passed.
async fn node_test(app: &TestApp, file: &str, tests: usize, env: &[(&str, String)]) {
    prepare_node().await;
    let run = Command::new("node")
        .arg("--test")
        .arg(file)
        .current_dir(js_dir())
        .env("ATIENDE_BASE_URL", format!("http://{}", app.addr))
        .env("ATIENDE_SYNC_URL", format!("ws://{}/api/v1/sync", app.addr))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
        "node --test {file} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("# pass {tests}")),
        "not every JS test of {file} ran:\n{stdout}"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn unmodified_automerge_repo_clients_sync_a_shared_document(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (ana, token_a) = app.staff("ana@test.co", Role::Technician, None).await;
    let (beto, token_b) = app.staff("beto@test.co", Role::Technician, None).await;
    let (_, token_outsider) = app.staff("otro@test.co", Role::Technician, None).await;
    let token_reader = app.customer("cliente@test.co", "1234567").await;
    let reader = app.user_id("cliente@test.co").await;
    let id = storage::create_document(
        &pool,
        DocumentKind::FieldReport,
        &[
            (ana, Mode::Write),
            (beto, Mode::Write),
            (reader, Mode::Read),
        ],
        |doc| {
            doc.put(automerge::ROOT, "status", "scheduled")?;
            Ok(())
        },
    )
    .await
    .expect("create document");

    node_test(
        &app,
        "interop.test.mjs",
        5,
        &[
            ("ATIENDE_DOC_URL", id.url()),
            ("ATIENDE_TOKEN_A", token_a),
            ("ATIENDE_TOKEN_B", token_b),
            ("ATIENDE_TOKEN_READER", token_reader),
            ("ATIENDE_TOKEN_OUTSIDER", token_outsider),
        ],
    )
    .await;

    let stored = read(&pool, &id.url()).await;
    assert_eq!(
        stored["observations"],
        "no activity in the basement (B, offline)"
    );
    assert_eq!(stored["recommendations"], "seal the cracks (B)");
    assert_eq!(stored["arrival"], "08:10");
    assert_eq!(stored["departure"], "09:40");
    assert_eq!(stored["productsUsed"].as_array().map(Vec::len), Some(2));
    assert_eq!(stored["visitLog"].as_array().map(Vec::len), Some(120));
    // The offline day reached the server compressed, and was measured before it was inflated.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let compressed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atiende_sync_compressed_chunks_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the compressed chunk counter");
    assert!(
        compressed > 0,
        "no compressed chunk was measured:\n{metrics}"
    );
    assert!(
        stored["areas"].is_array() && stored["targetPest"].is_string(),
        "{stored}"
    );
    // Automerge 3.5 (what automerge-repo 2.5.6 runs) honours the read-only flag of our sync
    // messages and does not even send the reader's change; older clients get an `error`
    // (sync/tests/server.rs covers that path).
    assert_eq!(
        stored["status"], "scheduled",
        "the reader's change was stored"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn offline_field_reports_and_pqrs_drafts_with_unmodified_clients(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let org = app.org().await;
    let (tech_a, token_a) = app.staff("ana@test.co", Role::Technician, None).await;
    let (tech_b, token_b) = app.staff("beto@test.co", Role::Technician, None).await;
    let customer = app.customer("cliente@test.co", "1234567").await;
    let other = app.customer("otra@test.co", "7654321").await;
    let me = app.get("/api/v1/me", Some(&customer)).await;
    let customer_id = me.body["customer_id"]
        .as_str()
        .expect("customer id")
        .to_owned();

    node_test(
        &app,
        "workflow.test.mjs",
        4,
        &[
            ("ATIENDE_TOKEN_DIRECTOR", org.director),
            ("ATIENDE_TECH_A", tech_a.to_string()),
            ("ATIENDE_TECH_B", tech_b.to_string()),
            ("ATIENDE_TOKEN_TECH_A", token_a),
            ("ATIENDE_TOKEN_TECH_B", token_b),
            ("ATIENDE_CUSTOMER_ID", customer_id),
            ("ATIENDE_TOKEN_CUSTOMER", customer.clone()),
            ("ATIENDE_TOKEN_OTHER_CUSTOMER", other),
        ],
    )
    .await;

    // What the database holds: one case from the draft, the merged report's rows, and an inbox
    // without the customer's forged field.
    let cases: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(cases, 1);
    let products: Vec<String> =
        sqlx::query_scalar("select name from field_report_products order by name")
            .fetch_all(&pool)
            .await
            .expect("products");
    assert_eq!(products, vec!["Cipermetrina 20 EC", "Maxforce gel"]);
    let status: String = sqlx::query_scalar("select status from work_orders")
        .fetch_one(&pool)
        .await
        .expect("work order");
    assert_eq!(status, "completed");
    let inbox = me.body["inbox_url"].as_str().expect("inbox url");
    let stored: Value = read(&pool, inbox).await;
    assert_eq!(stored.get("forged"), None, "a read-only edit was stored");
    assert_ne!(stored["cases"], json!({}));
    app.stop().await;
}
