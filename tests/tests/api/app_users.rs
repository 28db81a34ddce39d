//! App users the company creates for its customers (PRO-SIG-10): staff create the user, the
//! customer gets a single-use link by e-mail (through the real server's SMTP channel to a real
//! SMTP receiver), sets the first password on the web page (or through the API) and signs in; the
//! link dies when used, replaced or expired, and is never shown to staff.

use atiende_core::types::Role;
use atiende_tests::TestApp;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::email::mail_app;
use crate::smtp_receiver::SmtpReceiver;

const BASE: &str = "https://pqrs.empresa.test";
const NEW_PASSWORD: &str = "mi clave nueva 2026";

fn customer_with_app_user(document: &str, email: &str) -> Value {
    json!({"document_type": "CC", "document_number": document, "name": "Ana Pérez",
           "email": email, "phone": "310 555 1234", "consent_channel": "phone", "app_user": true})
}

/// The `n`-th (from 1) setup link e-mailed to `to`, as a path on this server.
async fn setup_link(receiver: &SmtpReceiver, to: &str, n: usize) -> String {
    let mails = receiver.wait_for(to, |m| m.len() >= n).await;
    let mail = mails[n - 1].parsed();
    let body = mail.body_text(0).expect("a text body").into_owned();
    let start = body
        .find(&format!("{BASE}/cuenta/clave/"))
        .unwrap_or_else(|| panic!("a link in {body}"));
    let link = body[start..].split_whitespace().next().expect("the link");
    link.strip_prefix(BASE)
        .expect("under the base URL")
        .to_owned()
}

/// The token of a link path.
fn token_of(path: &str) -> String {
    path.trim_start_matches("/cuenta/clave/")
        .split('?')
        .next()
        .expect("token")
        .to_owned()
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, String) {
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    (r.status, r.code().to_owned())
}

/// The page of a link as a browser opens it: status, the CSRF cookie and token, the HTML.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
    pub(crate) html: String,
}

pub(crate) async fn open(app: &TestApp, path: &str) -> Page {
    let r = app
        .client
        .get(app.url(path))
        .send()
        .await
        .expect("GET the link");
    let status = r.status();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let html = r.text().await.expect("body");
    let csrf = html
        .find("name=\"csrf\" value=\"")
        .map(|i| {
            html[i + 19..]
                .split('"')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    Page {
        status,
        cookie,
        csrf,
        html,
    }
}

async fn submit(app: &TestApp, path: &str, page: &Page, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", page.csrf.as_str())];
    form.extend_from_slice(fields);
    let r = app
        .client
        .post(app.url(path))
        .header(COOKIE, &page.cookie)
        .form(&form)
        .send()
        .await
        .expect("POST the form");
    Page {
        status: r.status(),
        cookie: page.cookie.clone(),
        csrf: page.csrf.clone(),
        html: r.text().await.expect("body"),
    }
}

fn code(html: &str) -> &str {
    let start = html.find("data-code=\"").map_or(html.len(), |i| i + 11);
    html[start..].split('"').next().unwrap_or_default()
}

async fn password_hash(app: &TestApp, email: &str) -> Option<String> {
    sqlx::query_scalar("select password_hash from users where email = $1")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .expect("the user")
}

/// Rows that creating a customer with an app user writes.
async fn written(pool: &PgPool) -> [i64; 4] {
    let n = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect("count")
    };
    [
        n("select count(*) from customers").await,
        n("select count(*) from users where role = 'customer'").await,
        n("select count(*) from account_setups").await,
        n("select count(*) from notifications").await,
    ]
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_staff_create_sets_the_first_password_through_the_emailed_link(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let (_, staff) = app.staff("colab@test.co", Role::Collaborator, None).await;
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&staff),
            customer_with_app_user("52111222", "Ana@Example.test"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["has_app_user"], true);
    assert_eq!(r.body["document_number"], "52111222");
    assert_eq!(r.body["app_user"]["sent_to"], "a***@example.test");
    assert_eq!(r.body["app_user"]["created"], true);
    let created = r.body.to_string();

    let (status, code_before) = login(&app, "ana@example.test", "anything at all").await;
    assert_eq!(
        (status, code_before.as_str()),
        (StatusCode::FORBIDDEN, "password_not_set")
    );

    let link = setup_link(&receiver, "ana@example.test", 1).await;
    let token = token_of(&link);
    let mail = receiver.messages()[0].clone();
    let parsed = mail.parsed();
    let subject = parsed.subject().unwrap_or_default().to_owned();
    assert_eq!(subject, "Su usuario de la aplicación: elija su contraseña");
    assert!(!created.contains(&token) && !created.contains("/cuenta/clave"));
    // Only the token's digest is stored: no table holds it in clear.
    let clear: i64 = sqlx::query_scalar(
        "select (select count(*) from notifications where data::text like '%' || $1 || '%')
              + (select count(*) from deliveries where coalesce(payload::text, '') like '%' || $1 || '%'
                                                   or coalesce(last_error, '') like '%' || $1 || '%')",
    )
    .bind(&token)
    .fetch_one(&app.pool)
    .await
    .expect("search");
    assert_eq!(clear, 0);
    let digest: i64 = sqlx::query_scalar(
        "select count(*) from account_setups where token_hash = sha256($1::bytea)",
    )
    .bind(token.as_bytes())
    .fetch_one(&app.pool)
    .await
    .expect("digest");
    assert_eq!(digest, 1);

    let page = open(&app, &link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("ana@example.test"), "{}", page.html);
    let done = submit(
        &app,
        &link,
        &page,
        &[
            ("password", NEW_PASSWORD),
            ("password_confirm", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(code(&done.html), "password_set");

    let (status, _) = login(&app, "ana@example.test", NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);

    // The link is dead now, on the page and through the API.
    let again = open(&app, &link).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert_eq!(code(&again.html), "setup_link_used");
    let reuse = submit(
        &app,
        &link,
        &page,
        &[
            ("password", "otra clave larga"),
            ("password_confirm", "otra clave larga"),
        ],
    )
    .await;
    assert_eq!(reuse.status, StatusCode::GONE);
    let r = app
        .post(
            "/api/v1/account/password-setup",
            None,
            json!({"token": token, "password": "otra clave larga"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "setup_link_used")
    );
    let (status, _) = login(&app, "ana@example.test", NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the password stayed the first one");
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_fresh_link_kills_the_old_one_and_an_expired_link_sets_nothing(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let (_, staff) = app
        .staff("director@test.co", Role::QualityDirector, None)
        .await;
    // A customer created first without an app user gets one later.
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&staff),
            json!({"document_type": "CC", "document_number": "52333444", "name": "Luis Gómez",
                   "email": "luis@example.test", "consent_channel": "in_person", "language": "en"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.get("app_user").is_none(), "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/staff/customers/{id}/app-user");
    let first = app.post(&path, Some(&staff), json!({})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let old = setup_link(&receiver, "luis@example.test", 1).await;
    assert!(old.ends_with("?lang=en"), "{old}");
    let mail = receiver.messages()[0].clone();
    assert_eq!(
        mail.parsed().subject(),
        Some("Your app account: choose your password")
    );

    let second = app.post(&path, Some(&staff), json!({})).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["created"], false);
    assert_eq!(second.body["user_id"], first.body["user_id"]);
    let new = setup_link(&receiver, "luis@example.test", 2).await;
    assert_ne!(token_of(&old), token_of(&new));
    assert!(!second.body.to_string().contains(&token_of(&new)));

    let dead = open(&app, &old).await;
    assert_eq!(dead.status, StatusCode::GONE);
    assert_eq!(code(&dead.html), "setup_link_replaced");
    let r = app
        .post(
            "/api/v1/account/password-setup",
            None,
            json!({"token": token_of(&old), "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "setup_link_replaced")
    );
    assert_eq!(password_hash(&app, "luis@example.test").await, None);

    // The link outlives its time.
    sqlx::query(
        "update account_setups set created_at = now() - interval '4 days', expires_at = now() - interval '1 day'
         where used_at is null and replaced_at is null",
    )
    .execute(&app.pool)
    .await
    .expect("age the link");
    let expired = open(&app, &new).await;
    assert_eq!(expired.status, StatusCode::GONE);
    assert_eq!(code(&expired.html), "setup_link_expired");
    let r = app
        .post(
            "/api/v1/account/password-setup",
            None,
            json!({"token": token_of(&new), "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "setup_link_expired")
    );
    assert_eq!(password_hash(&app, "luis@example.test").await, None);
    let (status, code) = login(&app, "luis@example.test", NEW_PASSWORD).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "password_not_set")
    );

    // A third link works, through the API the app uses.
    let third = app.post(&path, Some(&staff), json!({})).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    let link = setup_link(&receiver, "luis@example.test", 3).await;
    let r = app
        .post(
            "/api/v1/account/password-setup",
            None,
            json!({"token": token_of(&link), "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let (status, _) = login(&app, "luis@example.test", NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let r = app.post(&path, Some(&staff), json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "app_user_exists")
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_requests_for_app_users_get_their_codes_and_write_nothing(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let (_, staff) = app.staff("colab@test.co", Role::Collaborator, None).await;
    let before = written(&app.pool).await;

    let mut no_email = customer_with_app_user("52555666", "x@example.test");
    no_email["email"] = Value::Null;
    let r = app
        .post("/api/v1/staff/customers", Some(&staff), no_email)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "email_required"),
        "{}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&staff),
            customer_with_app_user("52555666", "colab@test.co"),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "email_taken"),
        "a staff member's e-mail is nobody's login twice"
    );
    assert_eq!(written(&app.pool).await, before);

    // A customer is refused the staff routes.
    let customer = app.customer("marta@example.test", "52000111").await;
    let before = written(&app.pool).await;
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&customer),
            customer_with_app_user("52555777", "y@example.test"),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    let marta: String = sqlx::query_scalar(
        "select customer_id::text from users where email = 'marta@example.test'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("marta");
    let marta_path = format!("/api/v1/staff/customers/{marta}/app-user");
    let r = app.post(&marta_path, Some(&customer), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    // Marta registered in the app: she has a password.
    let r = app.post(&marta_path, Some(&staff), json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "app_user_exists")
    );
    let r = app
        .post(
            &format!("/api/v1/staff/customers/{}/app-user", uuid::Uuid::new_v4()),
            Some(&staff),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "customer_not_found")
    );
    assert_eq!(written(&app.pool).await, before);

    // A customer without an e-mail on file.
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&staff),
            json!({"document_type": "CC", "document_number": "52888999", "name": "Sin Correo",
                   "phone": "310 555 0000", "consent_channel": "phone"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let before = written(&app.pool).await;
    let path = format!(
        "/api/v1/staff/customers/{}/app-user",
        r.body["id"].as_str().expect("id")
    );
    let r = app.post(&path, Some(&staff), json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "email_required")
    );
    assert_eq!(written(&app.pool).await, before);

    // Bad passwords on the page and through the API write nothing; the link still works.
    let r = app
        .post(
            "/api/v1/staff/customers",
            Some(&staff),
            customer_with_app_user("52999000", "sofia@example.test"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let link = setup_link(&receiver, "sofia@example.test", 1).await;
    let page = open(&app, &link).await;
    for (password, confirm, expected) in [
        ("corta", "corta", "weak_password"),
        (NEW_PASSWORD, "otra cosa distinta", "password_mismatch"),
    ] {
        let refused = submit(
            &app,
            &link,
            &page,
            &[("password", password), ("password_confirm", confirm)],
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expected}"
        );
        assert!(
            refused.html.contains(&format!("data-code=\"{expected}\"")),
            "{}",
            refused.html
        );
    }
    let r = app
        .client
        .post(app.url(&link))
        .header(COOKIE, &page.cookie)
        .form(&[
            ("password", NEW_PASSWORD),
            ("password_confirm", NEW_PASSWORD),
        ])
        .send()
        .await
        .expect("POST without the CSRF token");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The longest password is 1024 bytes, on the page and through the API.
    let long = "ñ".repeat(513);
    let refused = submit(
        &app,
        &link,
        &page,
        &[("password", &long), ("password_confirm", &long)],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("data-code=\"invalid_password\""),
        "{}",
        refused.html
    );
    for (password, expected) in [
        ("corta", "weak_password"),
        (long.as_str(), "invalid_password"),
    ] {
        let r = app
            .post(
                "/api/v1/account/password-setup",
                None,
                json!({"token": token_of(&link), "password": password}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, expected)
        );
    }
    let r = app
        .post(
            "/api/v1/account/password-setup",
            None,
            json!({"token": "acct_0000", "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "setup_link_not_found")
    );
    let unknown = open(&app, "/cuenta/clave/acct_0000").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(code(&unknown.html), "setup_link_not_found");
    assert_eq!(password_hash(&app, "sofia@example.test").await, None);
    let fine = open(&app, &link).await;
    assert_eq!(fine.status, StatusCode::OK);
    app.stop().await;
}
