use std::time::Duration;

use atiende_core::push_endpoint::Reach;
use atiende_server::Settings;
use atiende_server::push::{PushSender, generate_keys};
use atiende_server::settings::Secret;
use atiende_tests::{TestApp, spawn_app, spawn_app_with};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{ECDSAP256PublicKeyLike, ES256PublicKey, NoCustomClaims};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A browser's push subscription: its keys stay here so the test can decrypt what it receives.
pub(crate) struct Browser {
    endpoint: String,
    keys: ece::EcKeyComponents,
    auth: [u8; 16],
}

impl Browser {
    pub(crate) fn new(endpoint: String) -> Browser {
        let (pair, auth) = ece::generate_keypair_and_auth_secret().expect("browser keys");
        Browser {
            endpoint,
            keys: pair.raw_components().expect("components"),
            auth,
        }
    }

    pub(crate) fn subscription(&self) -> Value {
        json!({"endpoint": self.endpoint, "keys": {"p256dh": URL_SAFE_NO_PAD.encode(self.keys.public_key()), "auth": URL_SAFE_NO_PAD.encode(self.auth)}})
    }

    pub(crate) fn decrypt(&self, body: &[u8]) -> Value {
        let plain = ece::decrypt(&self.keys, &self.auth, body)
            .expect("the payload decrypts with the subscriber's key");
        serde_json::from_slice(&plain).expect("a JSON payload")
    }
}

/// wiremock listens on 127.0.0.1: these tests open loopback to push endpoints, as development does.
pub(crate) async fn push_app(pool: PgPool) -> TestApp {
    let settings = Settings {
        push_allow_loopback: true,
        ..atiende_tests::test_settings()
    };
    spawn_app_with(pool, settings).await
}

pub(crate) fn sender() -> PushSender {
    sender_reaching(Reach::PublicAndLoopback)
}

fn sender_reaching(reach: Reach) -> PushSender {
    let (private, _) = generate_keys().expect("keys");
    PushSender::new(&private, "mailto:pqrs@atiende.test", reach).expect("sender")
}

pub(crate) async fn customer_with_device(
    app: &TestApp,
    push: &MockServer,
    device: &str,
) -> (String, Browser) {
    let token = app.customer("cliente@test.co", "1020304050").await;
    let browser = Browser::new(format!("{}/push/{device}", push.uri()));
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&token),
            browser.subscription(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (token, browser)
}

async fn delivery_state(app: &TestApp) -> (String, i32) {
    sqlx::query_as("select state, attempts from deliveries")
        .fetch_one(&app.pool)
        .await
        .expect("one delivery")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_acknowledgement_reaches_the_phone_encrypted_and_signed(pool: PgPool) {
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/push/phone"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&push)
        .await;
    let (token, browser) = customer_with_device(&app, &push, "phone").await;
    let case = app.file(&token, "queja").await;
    let sender = sender();

    assert_eq!(sender.deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(
        sender.deliver_due(&app.pool).await.expect("deliver"),
        0,
        "sent once"
    );

    let requests = push.received_requests().await.expect("recorded");
    let request = &requests[0];
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-encoding"), "aes128gcm");
    assert_eq!(header("ttl"), "604800");
    assert_eq!(header("urgency"), "normal");

    // As the browser would: decrypt with the subscription's private key and auth secret.
    let payload = browser.decrypt(&request.body);
    assert_eq!(payload["case_id"], case["id"]);
    assert_eq!(payload["radicado"], case["radicado"]);
    assert_eq!(payload["kind"], "acknowledgement");
    assert_eq!(
        payload["body"], case["acknowledgement"],
        "the text the customer reads, in Spanish"
    );
    assert_eq!(payload["deadline"], case["legal_due_date"]);

    // VAPID (RFC 8292): a JWT for the push service's origin, signed by the key the apps know.
    let auth = header("authorization");
    let (t, k) = auth
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .unwrap_or_else(|| panic!("not a VAPID header: {auth}"));
    assert_eq!(k, sender.public_key());
    let key = ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(k).expect("k is base64url"))
        .expect("a P-256 key");
    let claims = key
        .verify_token::<NoCustomClaims>(t, None)
        .expect("the signature verifies");
    let audience = claims
        .audiences
        .expect("aud")
        .into_string()
        .expect("one audience");
    assert_eq!(audience, push.uri());
    let expires = claims.expires_at.expect("exp").as_secs();
    let now = chrono::Utc::now().timestamp() as u64;
    assert!(
        expires > now && expires <= now + 24 * 3600,
        "exp {expires} vs now {now}"
    );
    let forged =
        ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(sender_key_other()).expect("b64"))
            .expect("key");
    assert!(
        forged.verify_token::<NoCustomClaims>(t, None).is_err(),
        "another key does not verify it"
    );

    let org_director = app
        .staff(
            "director@test.co",
            atiende_core::types::Role::QualityDirector,
            None,
        )
        .await
        .1;
    let r = app
        .get(
            &format!(
                "/api/v1/staff/cases/{}/notifications",
                case["id"].as_str().expect("id")
            ),
            Some(&org_director),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["kind"], "acknowledgement");
    assert_eq!(r.body["items"][0]["deliveries"][0]["state"], "sent");
    assert_eq!(r.body["items"][0]["deliveries"][0]["last_status"], 201);
}

fn sender_key_other() -> String {
    generate_keys().expect("keys").1
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_gone_subscription_is_removed(pool: PgPool) {
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .expect(1)
        .mount(&push)
        .await;
    let (token, _) = customer_with_device(&app, &push, "old-phone").await;
    app.file(&token, "peticion").await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await, ("gone".to_owned(), 1));
    let subs: i64 = sqlx::query_scalar("select count(*) from push_subscriptions")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(subs, 0, "the subscription was deleted");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_busy_push_service_is_retried_after_retry_after(pool: PgPool) {
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&push)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&push)
        .await;
    let (token, _) = customer_with_device(&app, &push, "phone").await;
    app.file(&token, "reclamo").await;
    let sender = sender();

    assert_eq!(sender.deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await, ("pending".to_owned(), 1));
    let wait: f64 = sqlx::query_scalar(
        "select extract(epoch from next_attempt_at - now())::float8 from deliveries",
    )
    .fetch_one(&app.pool)
    .await
    .expect("wait");
    assert!(
        (100.0..=121.0).contains(&wait),
        "honours Retry-After: {wait}"
    );
    assert_eq!(
        sender.deliver_due(&app.pool).await.expect("deliver"),
        0,
        "not before its time"
    );

    sqlx::query("update deliveries set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .expect("time passes");
    assert_eq!(sender.deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await, ("sent".to_owned(), 2));
    assert_eq!(push.received_requests().await.map(|r| r.len()), Some(2));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_crash_between_claim_and_send_loses_nothing(pool: PgPool) {
    let app = push_app(pool).await;
    let push = accepting_push_service().await;
    let (token, _) = customer_with_device(&app, &push, "phone").await;
    app.file(&token, "queja").await;

    // A worker claims the delivery and dies before sending it.
    let claimed = atiende_core::outbox::claim_due(
        &app.pool,
        atiende_core::outbox::Channel::Push,
        10,
        Duration::from_secs(60),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 1);
    let sender = sender();
    assert_eq!(
        sender.deliver_due(&app.pool).await.expect("deliver"),
        0,
        "the claim holds while it lasts"
    );
    sqlx::query("update deliveries set locked_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("lease lapses");
    assert_eq!(sender.deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await.0, "sent");
    assert_eq!(
        push.received_requests().await.map(|r| r.len()),
        Some(1),
        "sent exactly once"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn subscriptions_and_the_public_key(pool: PgPool) {
    let (private, public) = generate_keys().expect("keys");
    let settings = Settings {
        vapid_private_key: Some(Secret::new(private)),
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool.clone(), settings).await;
    let r = app.get("/api/v1/push/vapid-public-key", None).await;
    assert_eq!(
        (r.status, &r.body["public_key"]),
        (StatusCode::OK, &json!(public))
    );
    let unconfigured = spawn_app(pool).await;
    let r = unconfigured
        .get("/api/v1/push/vapid-public-key", None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "push_not_configured")
    );

    let ana = app.customer("ana@test.co", "111111").await;
    let beto = app.customer("beto@test.co", "222222").await;
    let browser = Browser::new("https://push.example.com/send/abc".into());
    let mut bad = browser.subscription();
    bad["keys"]["p256dh"] = json!("AAAA");
    let r = app
        .post("/api/v1/push/subscriptions", Some(&ana), bad)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_p256dh")
    );
    let mut bad = browser.subscription();
    bad["endpoint"] = json!("ftp://push.example.com/x");
    let r = app
        .post("/api/v1/push/subscriptions", Some(&ana), bad)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_endpoint")
    );
    let r = app
        .post("/api/v1/push/subscriptions", None, browser.subscription())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&ana),
            browser.subscription(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&ana),
            browser.subscription(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "the same endpoint is updated, not duplicated"
    );
    let r = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/push/subscriptions/{id}")))
                .bearer_auth(&beto),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "subscription_not_found"),
        "not beto's"
    );
    let r = app
        .send(
            app.client
                .delete(app.url(&format!("/api/v1/push/subscriptions/{id}")))
                .bearer_auth(&ana),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_customer_is_told_of_the_extension_and_the_answer(pool: PgPool) {
    let app = push_app(pool).await;
    let org = app.org().await;
    let push = accepting_push_service().await;
    let (token, browser) = customer_with_device(&app, &push, "phone").await;
    let case = app.file(&token, "peticion").await;
    let id = case["id"].as_str().expect("id");
    let due: chrono::NaiveDate = case["legal_due_date"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("due");
    let new_due = atiende_core::calendar::BusinessCalendar::default().add_business_days(due, 3);
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/extend"),
            Some(&org.director),
            json!({"new_due_date": new_due, "reason": "Esperamos el laboratorio."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.answer(&org, id, "Adjuntamos el certificado.").await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 3);
    let mut payloads: Vec<Value> = push
        .received_requests()
        .await
        .expect("requests")
        .iter()
        .map(|r| browser.decrypt(&r.body))
        .collect();
    payloads.sort_by_key(|p| p["kind"].as_str().unwrap_or_default().to_owned());
    let kinds: Vec<_> = payloads.iter().map(|p| p["kind"].clone()).collect();
    assert_eq!(
        kinds,
        [
            json!("acknowledgement"),
            json!("answer"),
            json!("extension")
        ]
    );
    let extension = &payloads[2];
    assert!(
        extension["body"]
            .as_str()
            .is_some_and(|b| b.contains("Esperamos el laboratorio.")
                && b.contains(&atiende_core::texts::long_date("es", new_due))),
        "{extension}"
    );
}

/// A push service that accepts every message.
pub(crate) async fn accepting_push_service() -> MockServer {
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&push)
        .await;
    push
}

async fn register(app: &TestApp, token: &str, endpoint: &str) -> atiende_tests::Reply {
    let browser = Browser::new(endpoint.to_owned());
    app.post(
        "/api/v1/push/subscriptions",
        Some(token),
        browser.subscription(),
    )
    .await
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn endpoints_must_be_https_to_public_hosts(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let ana = app.customer("ana@test.co", "111111").await;
    let push = MockServer::start().await;
    let wiremock = format!("{}/push/phone", push.uri());
    for (endpoint, code) in [
        ("http://127.evil.tld/push/x", "endpoint_not_https"),
        ("http://push.example.com/push/x", "endpoint_not_https"),
        (
            "http://localhost:@evil.tld/push/x",
            "endpoint_has_credentials",
        ),
        (
            "https://localhost:@evil.tld/push/x",
            "endpoint_has_credentials",
        ),
        (
            "https://user:secret@push.example.com/x",
            "endpoint_has_credentials",
        ),
        (wiremock.as_str(), "endpoint_not_public"),
        ("https://127.0.0.1/push/x", "endpoint_not_public"),
        ("https://2130706433/push/x", "endpoint_not_public"),
        ("https://0x7f.0.0.1/push/x", "endpoint_not_public"),
        ("https://0.0.0.0/push/x", "endpoint_not_public"),
        ("https://10.1.2.3/push/x", "endpoint_not_public"),
        ("https://172.16.0.9/push/x", "endpoint_not_public"),
        ("https://192.168.1.1/push/x", "endpoint_not_public"),
        (
            "https://169.254.169.254/latest/meta-data",
            "endpoint_not_public",
        ),
        ("https://100.64.1.1/push/x", "endpoint_not_public"),
        ("https://192.0.2.10/push/x", "endpoint_not_public"),
        ("https://198.51.100.10/push/x", "endpoint_not_public"),
        ("https://203.0.113.10/push/x", "endpoint_not_public"),
        ("https://224.0.0.1/push/x", "endpoint_not_public"),
        ("https://[::]/push/x", "endpoint_not_public"),
        ("https://[::1]/push/x", "endpoint_not_public"),
        ("https://[fe80::1]/push/x", "endpoint_not_public"),
        ("https://[fd00::1]/push/x", "endpoint_not_public"),
        ("https://[ff02::1]/push/x", "endpoint_not_public"),
        ("https://[2001:db8::1]/push/x", "endpoint_not_public"),
        ("https://[::ffff:127.0.0.1]/push/x", "endpoint_not_public"),
        ("https://[::ffff:10.0.0.1]/push/x", "endpoint_not_public"),
        (
            "https://[::ffff:169.254.169.254]/push/x",
            "endpoint_not_public",
        ),
        ("https://localhost/push/x", "endpoint_not_public"),
        ("https://LocalHost./push/x", "endpoint_not_public"),
        ("https://push.localhost/push/x", "endpoint_not_public"),
        ("https://pushserver/push/x", "endpoint_not_public"),
        ("ftp://push.example.com/x", "invalid_endpoint"),
        ("push.example.com/x", "invalid_endpoint"),
    ] {
        let r = register(&app, &ana, endpoint).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{endpoint}: {}",
            r.body
        );
    }
    for endpoint in [
        "https://fcm.googleapis.com/fcm/send/abc",
        "https://updates.push.services.mozilla.com/wpush/v2/abc",
        "https://8.8.8.8/push/x",
        "https://[2a00:1450:4001:82b::200a]/push/x",
    ] {
        let r = register(&app, &ana, endpoint).await;
        assert_eq!(r.status, StatusCode::CREATED, "{endpoint}: {}", r.body);
    }
    let subs: i64 = sqlx::query_scalar("select count(*) from push_subscriptions")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(subs, 4, "nothing refused was stored");

    // Development opens this machine, and only this machine, over http.
    let dev = push_app(pool).await;
    let r = register(&dev, &ana, &wiremock).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for (endpoint, code) in [
        ("http://10.1.2.3/push/x", "endpoint_not_public"),
        ("http://push.example.com/push/x", "endpoint_not_https"),
    ] {
        let r = register(&dev, &ana, endpoint).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{endpoint}"
        );
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn without_loopback_the_sender_does_not_reach_this_machine(pool: PgPool) {
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&push)
        .await;
    let (token, _) = customer_with_device(&app, &push, "phone").await;
    app.file(&token, "queja").await;
    let sender = sender_reaching(Reach::Public);
    assert_eq!(sender.deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await, ("failed".to_owned(), 1));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_redirect_from_the_push_service_is_not_followed(pool: PgPool) {
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/push/phone"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("Location", format!("{}/collect", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&push)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let (token, _) = customer_with_device(&app, &push, "phone").await;
    app.file(&token, "queja").await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    assert_eq!(delivery_state(&app).await, ("failed".to_owned(), 1));
    let status: Option<i32> = sqlx::query_scalar("select last_status from deliveries")
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, Some(307));
    assert_eq!(
        elsewhere.received_requests().await.map(|r| r.len()),
        Some(0)
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn another_accounts_endpoint_stays_theirs(pool: PgPool) {
    let app = push_app(pool).await;
    let push = accepting_push_service().await;
    let (ana, browser) = customer_with_device(&app, &push, "phone").await;
    let first: Value = sqlx::query_scalar("select to_jsonb(id) from push_subscriptions")
        .fetch_one(&app.pool)
        .await
        .expect("id");

    // Beto presents ana's endpoint with keys of his own.
    let beto = app.customer("beto@test.co", "222222").await;
    let r = register(&app, &beto, &browser.endpoint).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "push_endpoint_taken"),
        "{}",
        r.body
    );

    // Ana again, from a new session: the same subscription, updated.
    let ana_again = app.login("cliente@test.co").await;
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&ana_again),
            browser.subscription(),
        )
        .await;
    assert_eq!((r.status, &r.body["id"]), (StatusCode::OK, &first));

    let case = app.file(&ana, "queja").await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    let requests = push.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 1);
    let payload = browser.decrypt(&requests[0].body);
    assert_eq!(
        payload["case_id"], case["id"],
        "ana's keys still decrypt it"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_endpoint_whose_session_expired_goes_to_the_next_user_of_the_browser(pool: PgPool) {
    let app = push_app(pool).await;
    let push = accepting_push_service().await;
    let (ana, browser) = customer_with_device(&app, &push, "shared").await;
    // Ana's notice waits for the shared browser when her session runs out without a logout.
    app.file(&ana, "queja").await;
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");

    // The browser makes new keys for the new subscription.
    let beto = app.customer("beto@test.co", "222222").await;
    let browser = Browser::new(browser.endpoint.clone());
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&beto),
            browser.subscription(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let beto_case = app.file(&beto, "reclamo").await;
    // Two deliveries are due: beto's is sent, ana's has lost its subscription and is not.
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 2);
    let requests = push.received_requests().await.expect("requests");
    assert_eq!(
        requests.len(),
        1,
        "ana's waiting notice is not sent to beto"
    );
    let payload = browser.decrypt(&requests[0].body);
    assert_eq!(payload["case_id"], beto_case["id"]);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn logging_out_ends_that_sessions_subscriptions(pool: PgPool) {
    let app = push_app(pool).await;
    let push = accepting_push_service().await;
    // The phone registered with the registration's session, the tablet with a login of its own.
    let (phone_session, _) = customer_with_device(&app, &push, "phone").await;
    let tablet_session = app.login("cliente@test.co").await;
    let tablet = Browser::new(format!("{}/push/tablet", push.uri()));
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&tablet_session),
            tablet.subscription(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // A notification is waiting for both when the phone logs out.
    app.file(&tablet_session, "queja").await;
    let r = app
        .post("/api/v1/auth/logout", Some(&phone_session), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 2);
    app.file(&tablet_session, "peticion").await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    let paths: Vec<String> = push
        .received_requests()
        .await
        .expect("requests")
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/push/tablet", "/push/tablet"],
        "nothing for the phone"
    );
    let phone = register(&app, &phone_session, &format!("{}/push/phone", push.uri())).await;
    assert_eq!(phone.status, StatusCode::UNAUTHORIZED);
}

/// Collects what the subscriber writes, to read the logs back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn failed_pushes_are_logged_without_the_endpoint(pool: PgPool) {
    use tracing_subscriber::util::SubscriberInitExt;
    let logs = Captured::default();
    // The test runs on one thread: the server and the sender log through this subscriber.
    let _guard = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,atiende_server=trace,atiende_core=trace",
        ))
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish()
        .set_default();
    let app = push_app(pool).await;
    let push = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&push)
        .await;
    let secret = "s3cr3t-device-capability";
    let (token, _) = customer_with_device(&app, &push, secret).await;
    // A second device whose push service does not answer at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = format!(
        "http://{}/push/{secret}-2",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let r = register(&app, &token, &gone).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app.file(&token, "queja").await;

    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 2);
    let errors: Vec<String> =
        sqlx::query_scalar("select coalesce(last_error, '') from deliveries order by id")
            .fetch_all(&app.pool)
            .await
            .expect("errors");
    assert!(
        errors.iter().any(|e| e.starts_with("network:")) && !errors.concat().contains(secret),
        "{errors:?}"
    );
    sqlx::query("update deliveries set next_attempt_at = now() where state = 'pending'")
        .execute(&app.pool)
        .await
        .expect("time passes");
    // And once more by a sender that may not reach this machine.
    let again = sender_reaching(Reach::Public)
        .deliver_due(&app.pool)
        .await
        .expect("deliver");
    assert_eq!(again, 1);

    let text = logs.text();
    assert!(
        text.contains("push delivery will be retried") && text.contains("push delivery failed"),
        "the failures were logged: {text}"
    );
    assert!(!text.contains(secret), "{text}");
}
