use atiende_tests::{PASSWORD, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

fn registration(email: &str, document: &str) -> serde_json::Value {
    json!({"email": email, "password": PASSWORD, "name": "Ana Ríos", "phone": "3001234567",
           "document_type": "CC", "document_number": document, "accept_data_policy": true})
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn register_login_me_logout(pool: PgPool) {
    let app = spawn_app(pool).await;
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("Ana@Test.co", "52123456"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["user"]["role"], "customer");
    assert_eq!(r.body["user"]["email"], "ana@test.co");

    let token = app.login("ana@test.co").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["name"], "Ana Ríos");
    assert!(me.body["customer_id"].is_string());
    assert!(!me.body.to_string().contains("password"), "{}", me.body);

    let consent: (bool, String, String) =
        sqlx::query_as("select granted, channel, policy_version from consents")
            .fetch_one(&app.pool)
            .await
            .expect("a consent record");
    assert_eq!(
        consent,
        (
            true,
            "app".to_owned(),
            atiende_core::auth::DATA_POLICY_VERSION.to_owned()
        )
    );
    let stored: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.pool)
        .await
        .expect("hash");
    assert!(stored.starts_with("$argon2") && !stored.contains(PASSWORD));
    let tokens: i64 = sqlx::query_scalar(
        "select count(*) from sessions where token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&token)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(tokens, 1, "tokens are stored only as their digest");

    let r = app
        .post("/api/v1/auth/logout", Some(&token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated"),
        "a revoked token is refused"
    );
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn registration_rules(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut no_consent = registration("a@test.co", "100200");
    no_consent["accept_data_policy"] = json!(false);
    let r = app.post("/api/v1/auth/register", None, no_consent).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "consent_required")
    );
    let mut weak = registration("a@test.co", "100200");
    weak["password"] = json!("1234");
    let r = app.post("/api/v1/auth/register", None, weak).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
    );
    let mut bad_doc = registration("a@test.co", "100200");
    bad_doc["document_type"] = json!("DNI");
    let r = app.post("/api/v1/auth/register", None, bad_doc).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("not-an-email", "100200"),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email")
    );
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(users, 0);

    assert_eq!(
        app.post(
            "/api/v1/auth/register",
            None,
            registration("a@test.co", "100200")
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("A@TEST.CO", "300400"),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "email_taken"));
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("b@test.co", "100200"),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "customer_already_registered")
    );
    let customers: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(customers, 1);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn repeated_failed_logins_are_throttled(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.customer("ana@test.co", "52123456").await;
    let wrong = json!({"email": "ana@test.co", "password": "not the password"});
    for _ in 0..5 {
        let r = app.post("/api/v1/auth/login", None, wrong.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials")
        );
    }
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ana@test.co", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        "even the right password waits"
    );
    let retry: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=900).contains(&retry), "{retry}");

    // Unknown e-mails fail the same way, so they cannot be told apart.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nadie@test.co", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn expired_tokens_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer("ana@test.co", "52123456").await;
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status,
        StatusCode::OK
    );
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    let r = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn registering_a_known_document_is_refused_without_saying_why(pool: PgPool) {
    let app = spawn_app(pool).await;
    // A customer staff (or a phone call, or a bot) created, with no app user.
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, email)
         values (gen_random_uuid(), 'person', 'CC', '7001', 'Rosa Díaz', 'rosa@empresa.co')",
    )
    .execute(&app.pool)
    .await
    .expect("a customer record");
    app.customer("ana@test.co", "7002").await;

    let known = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("intruso@test.co", "7001"),
        )
        .await;
    let taken = app
        .post(
            "/api/v1/auth/register",
            None,
            registration("otro@test.co", "7002"),
        )
        .await;
    assert_eq!(
        (known.status, known.code()),
        (StatusCode::CONFLICT, "customer_already_registered")
    );
    assert_eq!(
        known.body, taken.body,
        "a record without a user and one with a user get the same answer"
    );
    assert!(
        known.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("contact the company")),
        "{}",
        known.body
    );
    let (users, email): (i64, String) = sqlx::query_as(
        "select (select count(*) from users where customer_id = c.id), c.email
         from customers c where document_number = '7001'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the record");
    assert_eq!(
        (users, email.as_str()),
        (0, "rosa@empresa.co"),
        "the record is neither linked nor changed"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn ended_sessions_and_old_login_counters_are_purged(pool: PgPool) {
    let app = atiende_tests::spawn_app(pool.clone()).await;
    let live = app.customer("ana@test.co", "52123456").await;
    app.stop().await;
    let user = sqlx::query_scalar::<_, uuid::Uuid>("select id from users")
        .fetch_one(&pool)
        .await
        .expect("user");
    for (digest, expires, revoked) in [
        ("expired", "now() - interval '1 day'", "null"),
        ("revoked", "now() + interval '1 day'", "now()"),
    ] {
        sqlx::query(&format!(
            "insert into sessions (token_hash, user_id, expires_at, revoked_at)
             values (convert_to($1, 'UTF8'), $2, {expires}, {revoked})"
        ))
        .bind(digest)
        .bind(user)
        .execute(&pool)
        .await
        .expect("an ended session");
    }
    sqlx::query(
        "insert into login_throttle (key, window_started_at, attempts)
         values ('a:192.0.2.1', now() - interval '1 hour', 5), ('a:192.0.2.2', now(), 1)",
    )
    .execute(&pool)
    .await
    .expect("login counters");

    // The purge job runs when the server starts, then every interval.
    let app = atiende_tests::spawn_app(pool.clone()).await;
    crate::sync_support::eventually(|| async {
        let left: (i64, i64) = sqlx::query_as(
            "select (select count(*) from sessions), (select count(*) from login_throttle)",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        (left == (1, 1)).then_some(())
    })
    .await;
    assert_eq!(
        app.get("/api/v1/me", Some(&live)).await.status,
        StatusCode::OK,
        "the live session stays"
    );
    app.stop().await;
}
