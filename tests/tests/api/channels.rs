//! One outbox for every channel: what staff do reaches the customer's phone, notices go to the
//! chats they should, the same claim/retry/give-up loop drives a chat channel as it drives Web
//! Push, and a customer without an app user is a recipient and an author like any other.

use std::sync::Arc;
use std::time::Duration;

use atiende_core::cases::{self, Actor, NewCase};
use atiende_core::outbox::{self, Channel, Claimed, Outcome};
use atiende_core::types::{CaseType, Channel as Door};
use atiende_tests::{TestApp, message_bodies, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::push::{accepting_push_service, customer_with_device, push_app, sender};

/// A customer who never installed the app: a `customers` row and nothing else.
async fn customer_without_user(app: &TestApp, document: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, phone)
         values ($1, 'person', 'CC', $2, 'Cliente de chat', '+573001234567')",
    )
    .bind(id)
    .bind(document)
    .execute(&app.pool)
    .await
    .expect("customer");
    id
}

/// A chat of `customer` on `channel`; `follows` when they asked there for news of every case.
async fn chat(
    app: &TestApp,
    customer: Uuid,
    channel: &str,
    external_id: &str,
    follows: bool,
    opted_out: bool,
) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into customer_chats (id, customer_id, channel, external_id, follows_all_cases, opted_out_at, language)
         values ($1, $2, $3, $4, $5, case when $6 then now() end, 'en')",
    )
    .bind(id)
    .bind(customer)
    .bind(channel)
    .bind(external_id)
    .bind(follows)
    .bind(opted_out)
    .execute(&app.pool)
    .await
    .expect("chat");
    id
}

/// Files a case for `customer` through the domain, as a chat or the web form will.
async fn file_from(app: &TestApp, customer: Uuid, door: Door, chat_id: Option<Uuid>) -> Uuid {
    let new = NewCase {
        id: Uuid::new_v4(),
        case_type: CaseType::Reclamo,
        subject: "Cobro doble".into(),
        description: "Me cobraron dos veces la visita.".into(),
        channel: door,
        chat_id,
        work_order_id: None,
    };
    match cases::file(&app.pool, customer, None, new)
        .await
        .expect("file")
    {
        cases::Filed::Created(c) => c.id,
        cases::Filed::Existing(_) => panic!("a new case"),
    }
}

async fn customer_of(app: &TestApp, email: &str) -> Uuid {
    sqlx::query_scalar("select customer_id from users where email = $1")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .expect("customer id")
}

/// The deliveries of a notification kind: (channel, target, state), in order.
async fn deliveries(app: &TestApp, kind: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select d.channel, d.target, d.state from deliveries d join notifications n on n.id = d.notification_id
         where n.kind = $1 order by d.channel, d.target",
    )
    .bind(kind)
    .fetch_all(&app.pool)
    .await
    .expect("deliveries")
}

/// Lets every pending delivery's wait pass.
async fn time_passes(app: &TestApp) {
    sqlx::query("update deliveries set next_attempt_at = now() where state = 'pending'")
        .execute(&app.pool)
        .await
        .expect("time passes");
}

/// The pushes the phone received, decrypted, of the given kind.
async fn pushes(push: &MockServer, browser: &crate::push::Browser, kind: &str) -> Vec<Value> {
    push.received_requests()
        .await
        .expect("requests")
        .iter()
        .map(|r| browser.decrypt(&r.body))
        .filter(|p| p["kind"] == kind)
        .collect()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_questions_and_messages_reach_the_customers_phone(pool: PgPool) {
    let app = push_app(pool).await;
    let org = app.org().await;
    let push = accepting_push_service().await;
    let (token, browser) = customer_with_device(&app, &push, "phone").await;
    let case = app.file(&token, "reclamo").await;
    let id = case["id"].as_str().expect("id");
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿Cuál es el número de la factura?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    let asked = pushes(&push, &browser, "information_request").await;
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["case_id"], case["id"]);
    assert_eq!(
        asked[0]["title"],
        format!(
            "Necesitamos información sobre {}",
            case["radicado"].as_str().expect("radicado")
        )
    );
    assert!(
        asked[0]["body"]
            .as_str()
            .is_some_and(|b| b.ends_with("necesitamos: ¿Cuál es el número de la factura?")),
        "{}",
        asked[0]
    );

    // The customer answers in the app; staff write back, and the phone shows it.
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&token),
            json!({"body": "Factura 123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        sender().deliver_due(&app.pool).await.expect("deliver"),
        0,
        "the customer is not told of their own message"
    );
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/messages"),
            Some(&org.director),
            json!({"body": "Gracias, ya la revisamos."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    let told = pushes(&push, &browser, "staff_message").await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["body"], "Gracias, ya la revisamos.");
    assert_eq!(
        told[0]["title"],
        format!(
            "Mensaje sobre su radicado {}",
            case["radicado"].as_str().expect("radicado")
        )
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn closing_the_case_prompts_the_customer_for_a_rating(pool: PgPool) {
    let app = push_app(pool).await;
    let org = app.org().await;
    let push = accepting_push_service().await;
    let (token, browser) = customer_with_device(&app, &push, "phone").await;
    let case = app.file(&token, "queja").await;
    let id = case["id"].as_str().expect("id");
    app.answer(&org, id, "Le devolvemos el cobro.").await;

    // The answer leaves at once; the prompt follows once the customer had time to read it.
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 2);
    assert!(pushes(&push, &browser, "rating_prompt").await.is_empty());
    assert_eq!(pushes(&push, &browser, "answer").await.len(), 1);
    time_passes(&app).await;
    assert_eq!(sender().deliver_due(&app.pool).await.expect("deliver"), 1);
    let prompt = pushes(&push, &browser, "rating_prompt").await;
    assert_eq!(prompt.len(), 1);
    let radicado = case["radicado"].as_str().expect("radicado");
    assert_eq!(prompt[0]["case_id"], case["id"]);
    assert_eq!(
        prompt[0]["body"],
        format!(
            "¿Qué tan satisfecho quedó con la respuesta al radicado {radicado}? Califíquela de 1 a 5."
        )
    );
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&token),
            json!({"score": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn notices_go_to_the_chat_the_case_came_from_and_to_followed_chats(pool: PgPool) {
    let app = push_app(pool).await;
    let push = accepting_push_service().await;
    let (token, _browser) = customer_with_device(&app, &push, "phone").await;
    let customer = customer_of(&app, "cliente@test.co").await;
    let origin = chat(&app, customer, "telegram", "1001", false, false).await;
    chat(&app, customer, "whatsapp", "+573001110000", false, false).await;
    chat(&app, customer, "whatsapp", "+573002220000", true, false).await;
    chat(&app, customer, "telegram", "1004", true, true).await;
    // Someone else's chat never hears of this customer's cases.
    let other = customer_without_user(&app, "99887766").await;
    chat(&app, other, "telegram", "2001", true, false).await;

    file_from(&app, customer, Door::Telegram, Some(origin)).await;
    let endpoint = format!("{}/push/phone", push.uri());
    let row =
        |channel: &str, target: &str| (channel.to_owned(), target.to_owned(), "pending".to_owned());
    assert_eq!(
        deliveries(&app, "acknowledgement").await,
        [
            row("push", &endpoint),
            row("telegram", "1001"),
            row("whatsapp", "+573002220000"),
        ],
        "the app, the chat it came from, and the chat that follows every case"
    );

    sqlx::query("delete from deliveries")
        .execute(&app.pool)
        .await
        .expect("clear");
    app.file(&token, "peticion").await;
    assert_eq!(
        deliveries(&app, "acknowledgement").await,
        [row("push", &endpoint), row("whatsapp", "+573002220000")],
        "a case filed in the app reaches only the chat that asked for every case"
    );

    // A case of another customer's may not name this customer's chat.
    let new = NewCase {
        id: Uuid::new_v4(),
        case_type: CaseType::Queja,
        subject: "x".into(),
        description: "y".into(),
        channel: Door::Telegram,
        chat_id: Some(origin),
        work_order_id: None,
    };
    assert!(cases::file(&app.pool, other, None, new).await.is_err());
}

/// A chat platform for the test: posts each delivery to wiremock and reads its answer as a
/// chat platform's (200 sent, 403 blocked, 429 with `retry_after`, anything else retried).
struct TestChat {
    client: reqwest::Client,
    base: String,
}

impl outbox::Sender for TestChat {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn send(&self, d: &Claimed) -> Outcome {
        let sent = self
            .client
            .post(format!("{}/sendMessage", self.base))
            .json(&json!({"chat_id": d.target, "kind": d.kind, "language": d.language}))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(_) => {
                return Outcome::Retry {
                    status: None,
                    error: "network".into(),
                    after: outbox::backoff(d.attempts),
                    progress: None,
                };
            }
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reason = body["description"].as_str().unwrap_or_default().to_owned();
        match status {
            200 => Outcome::Sent {
                status,
                external_id: None,
            },
            403 => Outcome::Gone {
                status,
                error: reason,
            },
            429 => Outcome::Retry {
                status: Some(status),
                error: reason,
                after: Duration::from_secs(body["parameters"]["retry_after"].as_u64().unwrap_or(1)),
                progress: None,
            },
            _ => Outcome::Retry {
                status: Some(status),
                error: reason,
                after: outbox::backoff(d.attempts),
                progress: None,
            },
        }
    }
}

fn test_chat(platform: &MockServer) -> TestChat {
    TestChat {
        client: reqwest::Client::new(),
        base: platform.uri(),
    }
}

async fn delivery(app: &TestApp) -> (String, i32, Option<String>) {
    sqlx::query_as("select state, attempts, last_error from deliveries where channel = 'telegram'")
        .fetch_one(&app.pool)
        .await
        .expect("one telegram delivery")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_loop_retries_and_gives_up_on_a_chat_channel_too(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sendMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"ok": false, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .and(path("/sendMessage"))
        .respond_with(
            ResponseTemplate::new(502)
                .set_body_json(json!({"ok": false, "description": "Bad Gateway"})),
        )
        .mount(&platform)
        .await;
    let customer = customer_without_user(&app, "55443322").await;
    let origin = chat(&app, customer, "telegram", "777", false, false).await;
    let case_id = file_from(&app, customer, Door::Telegram, Some(origin)).await;
    let sender = test_chat(&platform);

    assert_eq!(
        outbox::deliver_due(&app.pool, &sender)
            .await
            .expect("deliver"),
        1
    );
    assert_eq!(
        delivery(&app).await,
        (
            "pending".to_owned(),
            1,
            Some("Too Many Requests: retry after 7".to_owned())
        )
    );
    let wait: f64 = sqlx::query_scalar(
        "select extract(epoch from next_attempt_at - now())::float8 from deliveries",
    )
    .fetch_one(&app.pool)
    .await
    .expect("wait");
    assert!((5.0..=7.5).contains(&wait), "honours retry_after: {wait}");
    assert_eq!(
        outbox::deliver_due(&app.pool, &sender)
            .await
            .expect("deliver"),
        0,
        "not before its time"
    );
    for attempt in 2..=outbox::MAX_ATTEMPTS {
        time_passes(&app).await;
        assert_eq!(
            outbox::deliver_due(&app.pool, &sender)
                .await
                .expect("deliver"),
            1
        );
        let expected = if attempt < outbox::MAX_ATTEMPTS {
            "pending"
        } else {
            "failed"
        };
        assert_eq!(delivery(&app).await.0, expected, "after attempt {attempt}");
    }
    time_passes(&app).await;
    assert_eq!(
        outbox::deliver_due(&app.pool, &sender)
            .await
            .expect("deliver"),
        0,
        "given up"
    );
    let requests = platform.received_requests().await.expect("requests");
    assert_eq!(requests.len(), outbox::MAX_ATTEMPTS as usize);
    let sent: Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(
        sent,
        json!({"chat_id": "777", "kind": "acknowledgement", "language": "en"})
    );

    // Staff see, on the case, where the notice went and why it never arrived.
    let r = app
        .get(
            &format!("/api/v1/staff/cases/{case_id}/notifications"),
            Some(&org.director),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let notice = &r.body["items"][0];
    assert_eq!(notice["kind"], "acknowledgement");
    assert_eq!(notice["customer_id"], json!(customer));
    assert_eq!(notice["user_id"], Value::Null);
    let d = &notice["deliveries"][0];
    assert_eq!(
        (
            &d["channel"],
            &d["state"],
            &d["attempts"],
            &d["last_status"],
            &d["last_error"]
        ),
        (
            &json!("telegram"),
            &json!("failed"),
            &json!(outbox::MAX_ATTEMPTS),
            &json!(502),
            &json!("Bad Gateway")
        )
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_running_worker_delivers_a_chat_channel_and_a_blocked_chat_is_gone(pool: PgPool) {
    let app = spawn_app(pool).await;
    let platform = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sendMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&platform)
        .await;
    Mock::given(method("POST"))
        .and(path("/sendMessage"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"ok": false, "description": "Forbidden: bot was blocked by the user"}),
        ))
        .mount(&platform)
        .await;
    let customer = customer_without_user(&app, "11223344").await;
    let origin = chat(&app, customer, "telegram", "888", false, false).await;
    file_from(&app, customer, Door::Telegram, Some(origin)).await;

    // The production worker, as the server runs it for every channel.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = Arc::new(test_chat(&platform));
    let worker = tokio::spawn({
        let (pool, sender) = (app.pool.clone(), sender.clone());
        async move {
            outbox::run(
                pool,
                sender.as_ref(),
                Duration::from_millis(50),
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await;
        }
    });
    let until = |state: &'static str| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let states: Vec<String> = sqlx::query_scalar(
                    "select state from deliveries where channel = 'telegram' order by id",
                )
                .fetch_all(&app.pool)
                .await
                .expect("states");
                if states.last().is_some_and(|s| s == state) {
                    return states;
                }
                assert!(tokio::time::Instant::now() < deadline, "still {states:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(until("sent").await, ["sent"]);
    file_from(&app, customer, Door::Telegram, Some(origin)).await;
    assert_eq!(until("gone").await, ["sent", "gone"]);
    let _ = stop_tx.send(());
    worker.await.expect("the worker stops when told");
    let (_, attempts, error) = sqlx::query_as::<_, (String, i32, Option<String>)>(
        "select state, attempts, last_error from deliveries order by id desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("delivery");
    assert_eq!(
        (attempts, error.as_deref()),
        (1, Some("Forbidden: bot was blocked by the user")),
        "a blocked chat is not retried"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_without_an_app_user_is_told_writes_and_rates(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = customer_without_user(&app, "10203040").await;
    let origin = chat(&app, customer, "whatsapp", "+573005556677", false, false).await;
    let id = file_from(&app, customer, Door::Whatsapp, Some(origin)).await;
    let recipients: Vec<(Option<Uuid>, Option<Uuid>)> =
        sqlx::query_as("select user_id, customer_id from notifications where case_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .expect("notifications");
    assert_eq!(recipients, [(None, Some(customer))]);

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿En qué dirección?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        deliveries(&app, "information_request").await,
        [(
            "whatsapp".to_owned(),
            "+573005556677".to_owned(),
            "pending".to_owned()
        )]
    );

    // Someone else cannot write on it; a blob nobody uploaded cannot be attached.
    let terms = atiende_core::terms::load(&app.pool).await.expect("terms");
    let stranger = customer_without_user(&app, "50403020").await;
    let refused = cases::add_message(
        &app.pool,
        &terms,
        Actor::Customer(stranger),
        id,
        "Hola",
        &[],
    )
    .await
    .expect_err("not theirs");
    assert_eq!(refused.to_string(), "case not found");
    let hash = "a".repeat(64);
    let refused = cases::add_message(
        &app.pool,
        &terms,
        Actor::Customer(customer),
        id,
        "Foto",
        &[hash],
    )
    .await
    .expect_err("no blob");
    assert!(matches!(
        refused,
        atiende_core::Error::Invalid {
            code: "unknown_attachment",
            ..
        }
    ));

    // The customer's reply, from the chat, resumes the case as the app's reply does.
    let (message, _) = cases::add_message(
        &app.pool,
        &terms,
        Actor::Customer(customer),
        id,
        "Calle 10 # 20-30",
        &[],
    )
    .await
    .expect("reply");
    assert_eq!(
        (message.author_id, message.author_customer_id),
        (None, Some(customer))
    );
    let r = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    assert_eq!(r.body["status"], "received", "{}", r.body);
    assert_eq!(
        message_bodies(&r.body),
        [
            (json!(true), json!("¿En qué dirección?")),
            (json!(false), json!("Calle 10 # 20-30"))
        ]
    );

    app.answer(&org, &id.to_string(), "Ya corregimos la factura.")
        .await;
    let refused = cases::rate(&app.pool, Actor::Customer(stranger), id, 5, None)
        .await
        .expect_err("not theirs");
    assert_eq!(refused.to_string(), "case not found");
    let rated = cases::rate(&app.pool, Actor::Customer(customer), id, 4, Some("Bien"))
        .await
        .expect("rate");
    assert_eq!(rated.rating_score, Some(4));
    assert_eq!(
        deliveries(&app, "rating_prompt").await,
        [(
            "whatsapp".to_owned(),
            "+573005556677".to_owned(),
            "cancelled".to_owned()
        )],
        "rated before the prompt left: it does not"
    );
    let r = app
        .get(
            &format!("/api/v1/staff/cases/{id}/events"),
            Some(&org.director),
        )
        .await;
    let last = r.body["items"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&last["kind"], &last["actor_role"]),
        (&json!("rated"), &json!("customer")),
        "{last}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_outbox_migration_keeps_existing_rows(pool: PgPool) {
    const OUTBOX: i64 = 20261202102000;
    let migrations: Vec<_> = atiende_core::MIGRATOR.iter().collect();
    for m in migrations.iter().filter(|m| m.version < OUTBOX) {
        sqlx::raw_sql(&m.sql)
            .execute(&pool)
            .await
            .expect("earlier migration");
    }
    // A customer's app user with a device, a staff user, a case with a message and a notice
    // waiting for the device, as the schema before held them.
    sqlx::raw_sql(
        "insert into customers (id, kind, document_type, document_number, name)
             values ('00000000-0000-0000-0000-0000000000c1', 'person', 'CC', '123456', 'Ana');
         insert into users (id, email, name, role, customer_id, password_hash)
             values ('00000000-0000-0000-0000-0000000000a1', 'ana@test.co', 'Ana', 'customer', '00000000-0000-0000-0000-0000000000c1', 'x');
         insert into push_subscriptions (id, user_id, endpoint, p256dh, auth)
             values ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', 'https://push.example.com/1', 'k', 'a');
         insert into cases (id, radicado, type, subject, description, channel, customer_id, filed_by, request_hash,
                            status, impact, urgency, priority, legal_term_days, legal_due_date)
             values ('00000000-0000-0000-0000-0000000000e1', 'PQRS-2026-000001', 'queja', 's', 'd', 'app',
                     '00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', '\\x00',
                     'received', 'medium', 'medium', 'medium', 15, '2026-12-31');
         insert into case_messages (id, case_id, author_id, from_staff, body)
             values ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000a1', false, 'hola');
         insert into notifications (dedupe_key, case_id, user_id, kind, urgency, ttl_secs, data)
             values ('acknowledgement:e1', '00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000a1', 'acknowledgement', 'normal', 60, '{}');
         insert into push_deliveries (notification_id, subscription_id, endpoint, attempts, last_error)
             select id, '00000000-0000-0000-0000-0000000000b1', 'https://push.example.com/1', 2, 'push service answered 503' from notifications;",
    )
    .execute(&pool)
    .await
    .expect("rows of the old schema");
    for m in migrations.iter().filter(|m| m.version >= OUTBOX) {
        sqlx::raw_sql(&m.sql)
            .execute(&pool)
            .await
            .expect("the outbox migration");
    }

    let delivery: (String, String, String, i32, Option<String>, Option<Uuid>) = sqlx::query_as(
        "select channel, target, state, attempts, last_error, subscription_id from deliveries",
    )
    .fetch_one(&pool)
    .await
    .expect("the delivery is still there");
    assert_eq!(
        delivery,
        (
            "push".to_owned(),
            "https://push.example.com/1".to_owned(),
            "pending".to_owned(),
            2,
            Some("push service answered 503".to_owned()),
            Some(Uuid::from_u128(0xb1))
        )
    );
    let recipient: (Option<Uuid>, Option<Uuid>) =
        sqlx::query_as("select user_id, customer_id from notifications")
            .fetch_one(&pool)
            .await
            .expect("notification");
    assert_eq!(recipient, (Some(Uuid::from_u128(0xa1)), None));
    let author: (Option<Uuid>, Option<Uuid>) =
        sqlx::query_as("select author_id, author_customer_id from case_messages")
            .fetch_one(&pool)
            .await
            .expect("message");
    assert_eq!(author, (Some(Uuid::from_u128(0xa1)), None));
    // And the claim reads the old delivery like a new one.
    let claimed = outbox::claim_due(&pool, Channel::Push, 10, Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(
        claimed
            .iter()
            .map(|c| (c.target.as_str(), c.attempts))
            .collect::<Vec<_>>(),
        [("https://push.example.com/1", 3)]
    );
}
