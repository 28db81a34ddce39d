//! Login limits (README, "Login limits"): counted atomically, per e-mail at an address, per address
//! and per e-mail; an attacker's throttled address does not lock the owner out; `X-Forwarded-For`
//! counts only from a trusted proxy; password hashing is bounded.

use atiende_server::Settings;
use atiende_tests::{PASSWORD, Reply, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

/// Hashing never makes these tests wait long enough to answer 503.
fn patient() -> Settings {
    Settings {
        hash_concurrency: 64,
        hash_wait_ms: 60_000,
        ..atiende_tests::test_settings()
    }
}

async fn login_from(app: &TestApp, email: &str, password: &str, from: Option<&str>) -> Reply {
    let mut req = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(ip) = from {
        req = req.header("x-forwarded-for", ip);
    }
    app.send(req).await
}

fn retry_after(r: &Reply) -> u64 {
    r.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn parallel_wrong_passwords_reach_the_check_at_most_the_limit(pool: PgPool) {
    let app = spawn_app_with(pool, patient()).await;
    app.customer("ana@test.co", "52123456").await;
    let attempts = (0..20).map(|_| login_from(&app, "ana@test.co", "not the password", None));
    let replies = futures_util::future::join_all(attempts).await;
    let checked = replies
        .iter()
        .filter(|r| (r.status, r.code()) == (StatusCode::UNAUTHORIZED, "invalid_credentials"))
        .count();
    let throttled = replies
        .iter()
        .filter(|r| (r.status, r.code()) == (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"))
        .count();
    assert_eq!(
        checked, 5,
        "the limit, and no more, reached the password check"
    );
    assert_eq!(throttled, 15, "every other attempt was throttled");
    assert!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
            .all(|r| (1..=900).contains(&retry_after(r)))
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn spraying_many_emails_from_one_address_is_throttled(pool: PgPool) {
    let settings = Settings {
        login_limit_per_address: 3,
        ..patient()
    };
    let app = spawn_app_with(pool, settings).await;
    for i in 0..3 {
        let r = login_from(&app, &format!("user{i}@test.co"), "Verano2026!", None).await;
        assert_eq!(r.code(), "invalid_credentials", "{}", r.body);
    }
    let r = login_from(&app, "user3@test.co", "Verano2026!", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        "a fourth e-mail from the same address"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_owner_logs_in_from_elsewhere_while_an_attacker_is_throttled(pool: PgPool) {
    // The test's requests come through a "proxy" on loopback that names the client.
    let settings = Settings {
        trusted_proxies: vec!["127.0.0.1".parse().expect("cidr")],
        ..patient()
    };
    let app = spawn_app_with(pool, settings).await;
    app.customer("ana@test.co", "52123456").await;
    let attacker = Some("198.51.100.23");
    for _ in 0..5 {
        let r = login_from(&app, "ana@test.co", "not the password", attacker).await;
        assert_eq!(r.code(), "invalid_credentials");
    }
    let r = login_from(&app, "ana@test.co", PASSWORD, attacker).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        "the attacker's address waits, even with the right password"
    );
    let r = login_from(&app, "ana@test.co", PASSWORD, Some("203.0.113.5")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the owner from her phone: {}",
        r.body
    );
    // A proxy chain: the right-most address that is not a trusted proxy is the client.
    let r = login_from(
        &app,
        "ana@test.co",
        PASSWORD,
        Some("203.0.113.5, 198.51.100.23, 127.0.0.1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn forwarded_for_from_an_untrusted_peer_is_ignored(pool: PgPool) {
    let app = spawn_app_with(pool, patient()).await;
    app.customer("ana@test.co", "52123456").await;
    for i in 0..5 {
        // Each attempt claims another address; the limit counts the real peer.
        let from = format!("198.51.100.{i}");
        let r = login_from(&app, "ana@test.co", "not the password", Some(&from)).await;
        assert_eq!(r.code(), "invalid_credentials");
    }
    let r = login_from(&app, "ana@test.co", PASSWORD, Some("203.0.113.5")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn hashing_beyond_its_bound_gets_503_with_retry_after(pool: PgPool) {
    let settings = Settings {
        hash_concurrency: 1,
        hash_wait_ms: 1,
        login_limit_per_address: 1000,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let emails: Vec<String> = (0..20).map(|i| format!("user{i}@test.co")).collect();
    let attempts = emails
        .iter()
        .map(|email| login_from(&app, email, "not the password", None));
    let replies = futures_util::future::join_all(attempts).await;
    let busy: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "twenty hashes at once with room for one");
    for r in &busy {
        assert_eq!(r.code(), "server_busy");
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        assert!(retry_after(r) >= 1);
    }
    assert!(
        replies.iter().all(|r| matches!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::UNAUTHORIZED
        )),
        "nothing else happened"
    );
    // A busy answer is not a failed attempt: the address is not throttled by it.
    let r = login_from(&app, "user0@test.co", "not the password", None).await;
    assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS);
}
