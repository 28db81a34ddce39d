//! The API contract: Schemathesis, an independent property-based API tester, runs against the real
//! server and its served `GET /api/v1/openapi.json` as a customer, a technician, a collaborator
//! and the quality director, with every check on, and any finding fails the test with its report.
//!
//! Schemathesis (pinned below) is installed from PyPI into a virtual environment under
//! `target/tmp` the first time; it needs Python 3.9+ with `venv`. The settings shared by every
//! run are in `tests/contract/schemathesis.toml`, the login hook in `tests/contract/hooks.py`.
//! `ATIENDE_CONTRACT_EXAMPLES` raises the examples per operation (see the README).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atiende_core::types::Role;
use atiende_server::Settings;
use atiende_server::push::generate_keys;
use atiende_server::settings::Secret;
use atiende_tests::{PASSWORD, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio::process::Command;
use tokio::sync::OnceCell;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The same seed every run, so a run that passed passes again and a finding can be replayed.
const SEED: &str = "20261202";

/// Examples per operation and phase: enough to reach every documented answer, few enough that
/// the four runs stay within CI's budget on a two-core machine.
const EXAMPLES: &str = "12";

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contract")
}

fn venv() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(SCHEMATHESIS.replace("==", "-"))
}

/// Creates the virtual environment with the pinned Schemathesis, once per test process.
async fn prepare_schemathesis() -> PathBuf {
    static READY: OnceCell<PathBuf> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let venv = venv();
            std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("create target/tmp");
            // nextest runs each test in a process of its own: a file lock keeps two of them from
            // installing into the same folder at once, and a marker written after a complete
            // install (not the folder, which a failed install leaves behind) says it is done.
            let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis.lock");
            let lock = std::fs::File::create(&lock_path).expect("create the install lock");
            let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                .await
                .expect("lock task")
                .expect("lock the install lock");
            let installed = venv.join("installed");
            if !installed.is_file() {
                let _ = std::fs::remove_dir_all(&venv);
                run_setup(Command::new("python3").arg("-m").arg("venv").arg(&venv)).await;
                run_setup(
                    Command::new(venv.join("bin/pip"))
                        .args(["install", "--quiet", "--disable-pip-version-check"])
                        .arg(SCHEMATHESIS),
                )
                .await;
                std::fs::write(&installed, SCHEMATHESIS).expect("mark the install done");
            }
            drop(lock);
            venv.join("bin/schemathesis")
        })
        .await
        .clone()
}

async fn run_setup(command: &mut Command) {
    let out = command.output().await.unwrap_or_else(|e| {
        panic!(
            "the contract test installs Schemathesis with python3 -m venv and pip ({e}); \
             install Python 3.9+ with venv"
        )
    });
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server as the run sees it: limits that would throttle a tester into seeing nothing are
/// raised, and push is configured so `GET /api/v1/push/vapid-public-key` answers.
async fn contract_app(pool: PgPool) -> TestApp {
    let (private, _) = generate_keys().expect("VAPID keys");
    let settings = Settings {
        vapid_private_key: Some(Secret::new(private)),
        // The run registers push endpoints on made-up public hosts: the worker must not post to
        // them during the run.
        push_interval_ms: 24 * 3600 * 1000,
        login_limit_per_email_and_address: 1_000_000,
        login_limit_per_address: 1_000_000,
        login_limit_per_email: 1_000_000,
        hash_wait_ms: 60_000,
        ..atiende_tests::test_settings()
    };
    spawn_app_with(pool, settings).await
}

/// Someone of each role, and something for each of them to find: a case filed by the customer
/// and assigned to the collaborator's process, a blob attached to it, and a work order of the
/// technician.
async fn seed(app: &TestApp) {
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "52123456").await;
    let case = app.file(&customer, "queja").await;
    let id = case["id"].as_str().expect("case id");
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "assignee": org.collaborator_id, "impact": "high", "urgency": "low"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "assign: {}", r.body);

    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR contract";
    let sha = atiende_core::blobs::BlobId::of(png).to_string();
    let r = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/blobs/{sha}")))
                .bearer_auth(&customer)
                .header("content-type", "image/png")
                .body(png.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "upload: {}", r.body);
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "Adjunto la foto.", "attachments": [sha]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "message: {}", r.body);

    let customer_id: uuid::Uuid =
        sqlx::query_scalar("select customer_id from users where email = 'cliente@test.co'")
            .fetch_one(&app.pool)
            .await
            .expect("customer id");
    let technician = app.user_id("tecnico@test.co").await;
    let r = app
        .post(
            "/api/v1/staff/work-orders",
            Some(&org.director),
            json!({"customer_id": customer_id, "process": "OPERATIVO", "address": "Calle 1 # 2-3",
                   "scheduled_at": "2026-12-03T14:00:00Z", "service_type": "fumigación",
                   "technicians": [technician]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "work order: {}", r.body);
}

/// Runs Schemathesis as `email` and fails with its report on any finding.
async fn run_as(app: &TestApp, email: &str) {
    let schemathesis = prepare_schemathesis().await;
    let examples = std::env::var("ATIENDE_CONTRACT_EXAMPLES").unwrap_or_else(|_| EXAMPLES.into());
    let operations = atiende_mobile_api::served_routes().len();
    // Hypothesis keeps files where it runs: a folder of this run's own.
    let workdir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("contract-runs")
        .join(email);
    std::fs::create_dir_all(&workdir).expect("create the run's folder");
    let base = format!("http://{}", app.addr);
    let run = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(contract_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args([
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            &examples,
        ])
        // One worker: the order of requests, and so the run, is the same every time.
        .args(["--workers", "1", "--generation-database", "none"])
        // The server refuses NUL in texts (PostgreSQL cannot store it) with `invalid_body`; JSON
        // Schema cannot say so for every string. `nul_in_a_text_is_refused` checks that answer.
        .args(["--generation-allow-x00", "false"])
        .args(["--no-color", "--output-truncate", "false"])
        .current_dir(&workdir)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", contract_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ATIENDE_BASE_URL", &base)
        .env("ATIENDE_EMAIL", email)
        .env("ATIENDE_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("Schemathesis finished within 15 minutes")
        .expect("Schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "Schemathesis found contract failures as {email}:\n{report}"
    );
    // The run calls `POST /auth/logout` with its own token; the hook logs in again, so what came
    // after was tested signed in, not only as a stranger.
    let signed_in_again: bool = sqlx::query_scalar(
        "select exists(select 1 from sessions s join users u on u.id = s.user_id
                       where u.email = $1
                         and s.created_at > (select min(revoked_at) from sessions r where r.user_id = u.id))",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .expect("sessions");
    assert!(
        signed_in_again,
        "the run as {email} did not log out and log in again:\n{report}"
    );
    // Every operation but the one serving the document Schemathesis loaded, which it leaves out.
    let expected = operations - 1;
    assert!(
        report.contains(&format!("Selected: {expected}/{expected}\n"))
            && report.contains(&format!("Tested: {expected}\n")),
        "Schemathesis did not test all {expected} operations as {email}:\n{report}"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_api_keeps_its_contract_for_a_customer(pool: PgPool) {
    let app = contract_app(pool).await;
    seed(&app).await;
    run_as(&app, "cliente@test.co").await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_api_keeps_its_contract_for_a_technician(pool: PgPool) {
    let app = contract_app(pool).await;
    seed(&app).await;
    run_as(&app, "tecnico@test.co").await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_api_keeps_its_contract_for_a_collaborator(pool: PgPool) {
    let app = contract_app(pool).await;
    seed(&app).await;
    run_as(&app, "colab@test.co").await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_api_keeps_its_contract_for_the_quality_director(pool: PgPool) {
    let app = contract_app(pool).await;
    seed(&app).await;
    run_as(&app, "director@test.co").await;
}

/// What the runs do not generate: a NUL in a text is refused as bad input, never stored or
/// answered with a 500.
#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn nul_in_a_text_is_refused(pool: PgPool) {
    let app = contract_app(pool).await;
    let customer = app.customer("cliente@test.co", "52123456").await;
    let r = app
        .post(
            "/api/v1/cases",
            Some(&customer),
            json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "a\u{0}b", "description": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let (_, director) = app
        .staff("director@test.co", Role::QualityDirector, None)
        .await;
    let r = app
        .get("/api/v1/staff/cases?process=A%00", Some(&director))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let filed: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(filed, 0);
}
