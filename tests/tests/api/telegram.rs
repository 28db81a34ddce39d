//! The Telegram channel end to end: wiremock plays the Bot API, the tests post webhook updates
//! shaped like Telegram's to the running server and read what the bot sent back, as the customer
//! would see it in the chat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "123456:TEST-bot-token";
pub(crate) const SECRET: &str = "webhook-secret_123";
const WEBHOOK: &str = "/api/v1/bots/telegram/webhook";
/// How long a test waits for the bot to answer: generous, for a busy machine.
const PATIENCE: Duration = atiende_tests::CHAT_PATIENCE;

/// A JPEG's first bytes: enough for the server to recognise a photo.
fn jpeg() -> Vec<u8> {
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    bytes.extend(std::iter::repeat_n(0x42, 2000));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// Answers sendMessage like Telegram: the message it sent, in the chat it was sent to.
struct Sent;

impl Respond for Sent {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let chat = body["chat_id"].as_i64().unwrap_or(0);
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "result": {
                "message_id": 1000,
                "date": 1_764_000_000,
                "chat": {"id": chat, "type": "private", "first_name": "Cliente"},
                "text": body["text"],
            }
        }))
    }
}

pub(crate) struct Chat {
    pub app: TestApp,
    pub telegram: MockServer,
    next_update: AtomicU64,
}

pub(crate) fn settings(telegram: &MockServer) -> Settings {
    Settings {
        telegram_bot_token: Some(atiende_server::settings::Secret::new(TOKEN)),
        telegram_webhook_secret: Some(atiende_server::settings::Secret::new(SECRET)),
        telegram_api_url: telegram.uri(),
        bots_interval_ms: 50,
        ..atiende_tests::test_settings()
    }
}

/// A Bot API that accepts every message, answers callback queries and serves one photo.
async fn telegram_api() -> MockServer {
    let telegram = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/SendMessage")))
        .respond_with(Sent)
        .mount(&telegram)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/AnswerCallbackQuery")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .mount(&telegram)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/GetFile")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {
            "file_id": "photo-1", "file_unique_id": "u-photo-1", "file_size": jpeg().len(), "file_path": "photos/file_1.jpg"
        }})))
        .mount(&telegram)
        .await;
    // teloxide writes the file path as one URL segment (its slash escaped).
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/file/bot{TOKEN}/photos(/|%2F)file_1\\.jpg$"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg()))
        .mount(&telegram)
        .await;
    telegram
}

impl Chat {
    pub async fn start(pool: PgPool) -> Chat {
        let telegram = telegram_api().await;
        let app = spawn_app_with(pool, settings(&telegram)).await;
        Chat {
            app,
            telegram,
            next_update: AtomicU64::new(1),
        }
    }

    /// The same database and Bot API, with a new server process (a restart).
    async fn restart(self) -> Chat {
        let pool = self.app.pool.clone();
        self.app.stop().await;
        let app = spawn_app_with(pool, settings(&self.telegram)).await;
        Chat { app, ..self }
    }

    pub async fn post_update(&self, update: &Value, secret: Option<&str>) -> StatusCode {
        let mut req = self.app.client.post(self.app.url(WEBHOOK)).json(update);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send().await.expect("webhook").status()
    }

    pub(crate) fn update(&self, kind: &str, body: Value) -> Value {
        let id = self.next_update.fetch_add(1, Ordering::SeqCst);
        let mut update = json!({"update_id": id});
        update[kind] = body;
        update
    }

    fn message(chat: i64, lang: &str, content: Value) -> Value {
        let mut m = json!({
            "message_id": 1, "date": 1_764_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Ana"},
            "from": {"id": chat, "is_bot": false, "first_name": "Ana", "language_code": lang},
        });
        if let (Some(m), Some(c)) = (m.as_object_mut(), content.as_object()) {
            m.extend(c.clone());
        }
        m
    }

    /// Sends `update` and waits until the bot has sent `expect` more messages to the chat.
    async fn exchange(&self, chat: i64, update: Value, expect: usize) -> Vec<Value> {
        let before = self.sent(chat).await.len();
        assert_eq!(
            self.post_update(&update, Some(SECRET)).await,
            StatusCode::OK
        );
        self.wait_for(chat, before + expect).await[before..].to_vec()
    }

    pub async fn say(&self, chat: i64, text: &str, expect: usize) -> Vec<Value> {
        self.say_in(chat, "es", text, expect).await
    }

    async fn say_in(&self, chat: i64, lang: &str, text: &str, expect: usize) -> Vec<Value> {
        let u = self.update("message", Self::message(chat, lang, json!({"text": text})));
        self.exchange(chat, u, expect).await
    }

    pub async fn tap(&self, chat: i64, data: &str, expect: usize) -> Vec<Value> {
        let u = self.update(
            "callback_query",
            json!({
                "id": format!("cb-{}", Uuid::new_v4()),
                "from": {"id": chat, "is_bot": false, "first_name": "Ana", "language_code": "es"},
                "message": Self::message(chat, "es", json!({"text": "menu"})),
                "chat_instance": "ci",
                "data": data,
            }),
        );
        self.exchange(chat, u, expect).await
    }

    async fn share_contact(&self, chat: i64, phone: &str, own: bool, expect: usize) -> Vec<Value> {
        let user_id = if own { chat } else { chat + 1 };
        let u = self.update(
            "message",
            Self::message(
                chat,
                "es",
                json!({"contact": {"phone_number": phone, "first_name": "Ana", "user_id": user_id}}),
            ),
        );
        self.exchange(chat, u, expect).await
    }

    /// The bodies of every sendMessage to `chat`, in order.
    pub async fn sent(&self, chat: i64) -> Vec<Value> {
        self.telegram
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/SendMessage"))
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["chat_id"].as_i64() == Some(chat))
            .collect()
    }

    pub async fn wait_for(&self, chat: i64, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let sent = self.sent(chat).await;
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::Instant::now() >= deadline {
                let calls: Vec<String> = self
                    .telegram
                    .received_requests()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(|r| r.url.path().to_owned())
                    .collect();
                let updates: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                    "select update_key, last_error, attempts from bot_updates order by id",
                )
                .fetch_all(&self.app.pool)
                .await
                .unwrap_or_default();
                let deliveries: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                    "select state, last_error, attempts from deliveries order by id",
                )
                .fetch_all(&self.app.pool)
                .await
                .unwrap_or_default();
                panic!(
                    "the bot sent {} messages to {chat}, expected {n}: {sent:#?}\nBot API calls: {calls:?}\nupdates: {updates:?}\ndeliveries: {deliveries:?}",
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn settled(&self) {
        atiende_tests::chats_settled(&self.app.pool).await;
    }

    /// Consent, registration with a document, and the menu: a new customer in the chat.
    pub async fn register(&self, chat: i64, document: &str) {
        self.say(chat, "/start", 2).await;
        self.tap(chat, "consent:yes", 1).await;
        self.tap(chat, "register", 1).await;
        self.say(chat, "Ana Pérez", 1).await;
        self.tap(chat, "doc:CC", 1).await;
        let done = self.say(chat, document, 2).await;
        assert!(text(&done[0]).starts_with("Listo, Ana Pérez."), "{done:#?}");
    }

    /// Files a queja without files from the menu and returns its acknowledgement.
    pub async fn file(&self, chat: i64, subject: &str) -> String {
        self.tap(chat, "menu:file", 1).await;
        self.tap(chat, "type:queja", 1).await;
        self.say(chat, subject, 1).await;
        self.say(chat, "El técnico no llegó a la visita.", 1).await;
        self.tap(chat, "done", 1).await;
        let ack = self.tap(chat, "send", 1).await;
        text(&ack[0]).to_owned()
    }
}

pub(crate) fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or_default()
}

/// The ids of the inline buttons under a message, row by row.
pub(crate) fn buttons(m: &Value) -> Vec<String> {
    m["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
        .collect()
}

fn radicado(ack: &str) -> String {
    ack.split_whitespace()
        .find(|w| w.starts_with("PQRS-"))
        .map(|w| w.trim_end_matches(['.', ',']).to_owned())
        .expect("a radicado in the acknowledgement")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_without_the_app_files_a_queja_with_a_photo_from_telegram(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let c = 4242;
    let hello = chat.say(c, "/start", 2).await;
    assert!(text(&hello[0]).starts_with("¡Hola! Soy el asistente"));
    assert!(text(&hello[1]).contains("Ley 1581 de 2012"));
    assert_eq!(buttons(&hello[1]), ["consent:yes", "consent:no"]);

    let ask = chat.tap(c, "consent:yes", 1).await;
    assert!(text(&ask[0]).contains("comparta su número"));
    assert_eq!(
        ask[0]["reply_markup"]["keyboard"][0][0]["request_contact"],
        true
    );
    // A contact card of someone else is not the customer's number.
    let refused = chat.share_contact(c, "+573009999999", false, 2).await;
    assert!(text(&refused[0]).starts_with("Solo podemos usar su propio número"));
    // Their own number belongs to no customer: they register.
    let name = chat.share_contact(c, "573005550000", true, 1).await;
    assert_eq!(
        text(&name[0]),
        "¿Cuál es su nombre completo (o el de su empresa)?"
    );
    chat.say(c, "Ana Pérez", 1).await;
    chat.tap(c, "doc:CC", 1).await;
    let menu = chat.say(c, "1020304050", 2).await;
    assert_eq!(
        text(&menu[0]),
        "Listo, Ana Pérez. Ya puede radicar y consultar sus PQRS por aquí."
    );
    assert_eq!(
        buttons(&menu[1]),
        [
            "menu:file",
            "menu:cases",
            "menu:status",
            "menu:follow",
            "menu:help",
            "menu:language"
        ]
    );

    chat.tap(c, "menu:file", 1).await;
    let subject = chat.tap(c, "type:queja", 1).await;
    assert_eq!(
        text(&subject[0]),
        "Escriba en una línea el asunto de su queja."
    );
    chat.say(c, "Medidor dañado", 1).await;
    let files = chat.say(c, "El medidor no marca desde el lunes.", 1).await;
    assert!(text(&files[0]).contains("hasta 5 fotos"));
    let photo = chat.update(
        "message",
        Chat::message(
            c,
            "es",
            json!({"photo": [
                {"file_id": "photo-small", "file_unique_id": "u-small", "width": 90, "height": 90, "file_size": 100},
                {"file_id": "photo-1", "file_unique_id": "u-photo-1", "width": 800, "height": 600, "file_size": jpeg().len()}
            ]}),
        ),
    );
    let got = chat.exchange(c, photo, 1).await;
    assert_eq!(text(&got[0]), "Recibido el archivo 1 de 5.");
    let confirm = chat.tap(c, "done", 1).await;
    assert!(text(&confirm[0]).contains("Asunto: Medidor dañado"));
    assert!(text(&confirm[0]).contains("Archivos: 1"));
    let ack = chat.tap(c, "send", 1).await;
    let ack = text(&ack[0]);
    assert!(
        ack.starts_with("Recibimos su queja con el radicado PQRS-"),
        "{ack}"
    );
    assert!(
        ack.contains("Le daremos respuesta a más tardar el"),
        "{ack}"
    );

    // The case is the customer's, filed from this chat, with the photo, and the consent was
    // recorded with its channel.
    let (channel, photos, consents): (String, i64, i64) = sqlx::query_as(
        "select c.channel,
                (select count(*) from case_attachments a join blobs b on b.sha256 = a.sha256
                 where a.case_id = c.id and b.content_type = 'image/jpeg'),
                (select count(*) from consents k where k.customer_id = c.customer_id and k.channel = 'telegram' and k.granted)
         from cases c where c.radicado = $1",
    )
    .bind(radicado(ack))
    .fetch_one(&chat.app.pool)
    .await
    .expect("the case");
    assert_eq!((channel.as_str(), photos, consents), ("telegram", 1, 1));
    // The tapped buttons stopped spinning.
    let answered = chat
        .telegram
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/AnswerCallbackQuery"))
        .count();
    assert!(answered >= 6, "{answered} callback queries answered");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_known_phone_links_the_chat_and_status_shows_only_the_customers_own_cases(pool: PgPool) {
    let chat = Chat::start(pool).await;
    // A customer the company knows (with a case filed in the app), and someone else.
    let token = chat.app.customer("cliente@test.co", "1020304050").await;
    sqlx::query("update customers set phone = '300 123 4567' where document_number = '1020304050'")
        .execute(&chat.app.pool)
        .await
        .expect("phone");
    let own = chat.app.file(&token, "peticion").await;
    let other_token = chat.app.customer("otro@test.co", "9080706050").await;
    sqlx::query(
        "update customers set phone = '+57 310 000 0000' where document_number = '9080706050'",
    )
    .execute(&chat.app.pool)
    .await
    .expect("phone");
    let other = chat.app.file(&other_token, "reclamo").await;

    let c = 777;
    let hello = chat.say_in(c, "en-US", "/start", 2).await;
    assert!(text(&hello[0]).starts_with("Hello! I am the customer-service assistant."));
    chat.tap(c, "consent:yes", 1).await;
    let linked = chat.share_contact(c, "+57 300 123 4567", true, 2).await;
    assert!(text(&linked[0]).starts_with("Hello, "), "{linked:#?}");
    assert!(text(&linked[0]).contains("We found you by your phone number"));

    let cases = chat.tap(c, "menu:cases", 2).await;
    let listed = text(&cases[0]);
    assert!(
        listed.contains(own["radicado"].as_str().unwrap_or("?")),
        "{listed}"
    );
    assert!(
        !listed.contains(other["radicado"].as_str().unwrap_or("?")),
        "{listed}"
    );

    chat.tap(c, "menu:status", 1).await;
    let status = chat
        .say(c, own["radicado"].as_str().unwrap_or_default(), 2)
        .await;
    assert!(
        text(&status[0]).contains("is filed. Answer due by"),
        "{status:#?}"
    );
    chat.tap(c, "menu:status", 1).await;
    let theirs = other["radicado"].as_str().unwrap_or_default();
    let status = chat.say(c, theirs, 2).await;
    assert_eq!(
        text(&status[0]),
        format!("We found no case of yours with the filing number {theirs}.")
    );
    chat.tap(c, "menu:status", 1).await;
    let missing = chat.say(c, "PQRS-2020-999999", 2).await;
    assert_eq!(
        text(&missing[0]),
        "We found no case of yours with the filing number PQRS-2020-999999."
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_question_is_answered_from_the_chat_and_the_answer_is_rated_there(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let org: Org = chat.app.org().await;
    let c = 31337;
    chat.register(c, "1122334455").await;
    let ack = chat.file(c, "Factura errada").await;
    let radicado = radicado(&ack);
    let id: Uuid = sqlx::query_scalar("select id from cases where radicado = $1")
        .bind(&radicado)
        .fetch_one(&chat.app.pool)
        .await
        .expect("case");

    let before = chat.sent(c).await.len();
    let r = chat
        .app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿Cuál es el número de la factura?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let asked = chat.wait_for(c, before + 1).await;
    assert_eq!(
        text(&asked[before]),
        format!(
            "Para seguir con su queja {radicado} necesitamos: ¿Cuál es el número de la factura?\n\nResponda en este chat."
        )
    );
    let replied = chat.say(c, "Es la factura 8812.", 1).await;
    assert_eq!(
        text(&replied[0]),
        format!("Agregamos su respuesta al radicado {radicado}. Seguimos con su caso.")
    );
    let case = chat
        .app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&org.director))
        .await;
    assert_eq!(case.body["status"], "received", "{}", case.body);
    let bodies: Vec<&str> = case.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert!(bodies.contains(&"Es la factura 8812."), "{bodies:?}");

    let before = chat.sent(c).await.len();
    chat.app
        .answer(&org, &id.to_string(), "Corregimos la factura 8812.")
        .await;
    let answer = chat.wait_for(c, before + 1).await;
    let answer = &answer[before];
    assert!(
        text(answer).contains("Corregimos la factura 8812."),
        "{answer}"
    );
    assert_eq!(
        buttons(answer),
        (1..=5)
            .map(|n| format!("rate:{id}:{n}"))
            .collect::<Vec<_>>()
    );
    let thanks = chat.tap(c, &format!("rate:{id}:5"), 1).await;
    assert!(text(&thanks[0]).starts_with("¡Gracias por calificar"));
    let saved = chat.say(c, "Muy rápido, gracias.", 1).await;
    assert_eq!(text(&saved[0]), "Gracias, guardamos su comentario.");
    let again = chat.tap(c, &format!("rate:{id}:1"), 1).await;
    assert_eq!(
        text(&again[0]),
        "Esa respuesta ya fue calificada. ¡Gracias!"
    );
    let (score, comment): (i16, String) =
        sqlx::query_as("select rating_score, rating_comment from cases where id = $1")
            .bind(id)
            .fetch_one(&chat.app.pool)
            .await
            .expect("rating");
    assert_eq!((score, comment.as_str()), (5, "Muy rápido, gracias."));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn forged_duplicate_and_odd_updates(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let c = 55;
    let start = chat.update("message", Chat::message(c, "es", json!({"text": "/start"})));
    // Without the secret, or with another, nothing is stored.
    assert_eq!(
        chat.post_update(&start, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        chat.post_update(&start, Some("not-the-secret")).await,
        StatusCode::UNAUTHORIZED
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from bot_updates")
        .fetch_one(&chat.app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    let r = chat
        .app
        .client
        .post(chat.app.url(WEBHOOK))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("problem");
    assert_eq!(body["code"], "malformed_update");
    // A body over the webhook's 256 KiB bound is refused, and not stored either.
    let huge = chat.update(
        "message",
        Chat::message(c, "es", json!({"text": "x".repeat(300 * 1024)})),
    );
    assert_eq!(
        chat.post_update(&huge, Some(SECRET)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from bot_updates")
        .fetch_one(&chat.app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    // The same update twice is answered once.
    assert_eq!(chat.post_update(&start, Some(SECRET)).await, StatusCode::OK);
    assert_eq!(chat.post_update(&start, Some(SECRET)).await, StatusCode::OK);
    chat.wait_for(c, 2).await;
    // A kind the bot does not handle is accepted and passed over; a sticker gets a polite word
    // and the question again; the conversation behind them goes on.
    let poll = json!({"update_id": 900, "poll": {"id": "p1", "question": "?", "options": [], "total_voter_count": 0, "is_closed": false, "is_anonymous": true, "type": "regular", "allows_multiple_answers": false}});
    assert_eq!(chat.post_update(&poll, Some(SECRET)).await, StatusCode::OK);
    let sticker = chat.update(
        "message",
        Chat::message(
            c,
            "es",
            json!({"sticker": {"file_id": "s", "file_unique_id": "su", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false}}),
        ),
    );
    let polite = chat.exchange(c, sticker, 2).await;
    assert_eq!(
        text(&polite[0]),
        "Por aquí solo puedo leer texto, fotos y archivos PDF."
    );
    assert_eq!(buttons(&polite[1]), ["consent:yes", "consent:no"]);
    let written = chat.tap(c, "consent:no", 1).await;
    assert!(text(&written[0]).starts_with("Entendido. No guardamos ningún dato suyo"));
    // Once everything stored is handled and sent, the duplicate was answered once.
    chat.settled().await;
    assert_eq!(
        chat.sent(c).await.len(),
        5,
        "the duplicate was answered once"
    );
    // Declining kept no customer.
    let customers: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&chat.app.pool)
        .await
        .expect("count");
    assert_eq!(customers, 0);
}

/// Updates that arrive at the same moment are stored together; each, and each copy Telegram
/// sends again, is still stored once and answered once, and one that cannot be stored fails
/// alone.
#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_burst_of_updates_at_once_is_stored_and_answered_once_each(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let chats: Vec<i64> = (300..340).collect();
    let updates: Vec<Value> = chats
        .iter()
        .map(|&c| chat.update("message", Chat::message(c, "es", json!({"text": "/start"}))))
        .collect();
    // One update PostgreSQL cannot store (a NUL character has no place in `jsonb`) arrives
    // among them: it fails alone, whichever group it lands in.
    let refused = chat.update(
        "message",
        Chat::message(399, "es", json!({"text": "hola\u{0}"})),
    );
    // Every update posted twice, all at once.
    let posts = updates
        .iter()
        .chain(std::iter::once(&refused))
        .chain(&updates)
        .map(|u| chat.post_update(u, Some(SECRET)));
    let statuses = futures_util::future::join_all(posts).await;
    let (refused_status, others): (Vec<_>, Vec<_>) = statuses
        .iter()
        .enumerate()
        .partition(|(i, _)| *i == updates.len());
    assert_eq!(*refused_status[0].1, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        others.iter().all(|(_, s)| **s == StatusCode::OK),
        "{statuses:?}"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from bot_updates")
        .fetch_one(&chat.app.pool)
        .await
        .expect("count");
    assert_eq!(stored, chats.len() as i64);
    for &c in &chats {
        chat.wait_for(c, 2).await;
    }
    chat.settled().await;
    for &c in &chats {
        let sent = chat.sent(c).await;
        assert_eq!(sent.len(), 2, "chat {c} got {sent:#?}");
        assert!(
            text(&sent[0]).starts_with("¡Hola! Soy el asistente"),
            "{sent:#?}"
        );
        assert!(text(&sent[1]).contains("Ley 1581 de 2012"), "{sent:#?}");
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_restart_mid_conversation_goes_on_where_the_customer_was(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let c = 9001;
    chat.register(c, "5566778899").await;
    chat.tap(c, "menu:file", 1).await;
    chat.tap(c, "type:reclamo", 1).await;
    let chat = chat.restart().await;
    let next = chat.say(c, "Cobro doble", 1).await;
    assert_eq!(
        text(&next[0]),
        "Cuéntenos con detalle qué pasó o qué solicita."
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn stop_and_start_are_confirmed(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let c = 4711;
    chat.register(c, "2233445566").await;
    let stopped = chat.say(c, "STOP", 1).await;
    assert!(text(&stopped[0]).starts_with("Listo: ya no le enviaremos mensajes"));
    let out: bool = sqlx::query_scalar(
        "select opted_out_at is not null from customer_chats where external_id = $1",
    )
    .bind(c.to_string())
    .fetch_one(&chat.app.pool)
    .await
    .expect("chat");
    assert!(out);
    let started = chat.say(c, "START", 2).await;
    assert_eq!(
        text(&started[0]),
        "Listo: volverá a recibir nuestros mensajes."
    );
    let out: bool = sqlx::query_scalar(
        "select opted_out_at is not null from customer_chats where external_id = $1",
    )
    .bind(c.to_string())
    .fetch_one(&chat.app.pool)
    .await
    .expect("chat");
    assert!(!out);
}

/// A Bot API that says 429 with a retry_after to the first message, or that the user blocked the
/// bot to every message, from the given count on.
async fn unwilling_api(first: u64, answer: ResponseTemplate) -> MockServer {
    let telegram = telegram_api().await;
    telegram.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/SendMessage")))
        .respond_with(answer)
        .up_to_n_times(first)
        .with_priority(1)
        .mount(&telegram)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/SendMessage")))
        .respond_with(Sent)
        .with_priority(2)
        .mount(&telegram)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(format!("/bot{TOKEN}/.*")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .with_priority(3)
        .mount(&telegram)
        .await;
    telegram
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn telegram_asking_to_wait_is_obeyed_and_order_kept(pool: PgPool) {
    let slow = ResponseTemplate::new(429).set_body_json(json!({
        "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2",
        "parameters": {"retry_after": 2}
    }));
    let telegram = unwilling_api(1, slow).await;
    let app = spawn_app_with(pool, settings(&telegram)).await;
    let chat = Chat {
        app,
        telegram,
        next_update: AtomicU64::new(1),
    };
    let c = 8080;
    let started = tokio::time::Instant::now();
    // Telegram refuses the first message once; the bot sends it again after the two seconds
    // Telegram named, and the second message does not overtake it.
    let hello = chat.say(c, "/start", 3).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(text(&hello[0]).starts_with("¡Hola!"));
    assert_eq!(text(&hello[1]), text(&hello[0]));
    assert!(text(&hello[2]).contains("Ley 1581"));
    let attempts: Vec<i32> = sqlx::query_scalar("select attempts from deliveries order by id")
        .fetch_all(&chat.app.pool)
        .await
        .expect("deliveries");
    assert_eq!(attempts, [2, 1]);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_blocked_bot_is_visible_to_staff_with_telegrams_reason(pool: PgPool) {
    let chat = Chat::start(pool).await;
    let org = chat.app.org().await;
    let c = 6060;
    chat.register(c, "3344556677").await;
    let ack = chat.file(c, "Sin servicio").await;
    let id: Uuid = sqlx::query_scalar("select id from cases where radicado = $1")
        .bind(radicado(&ack))
        .fetch_one(&chat.app.pool)
        .await
        .expect("case");
    // The customer blocks the bot; staff ask something.
    chat.telegram.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/SendMessage")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"
        })))
        .mount(&chat.telegram)
        .await;
    let r = chat
        .app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "¿Sigue sin servicio?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gone = chat
        .app
        .staff_sees_delivery(&org.director, id, "information_request", "telegram", |d| {
            d["state"] == "gone"
        })
        .await;
    assert_eq!(gone["last_error"], "Forbidden: bot was blocked by the user");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn without_a_public_url_the_bot_polls_for_updates(pool: PgPool) {
    let telegram = telegram_api().await;
    let c = 1234;
    let first =
        json!([{"update_id": 70, "message": Chat::message(c, "en", json!({"text": "/start"}))}]);
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/GetUpdates")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": first})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&telegram)
        .await;
    // Telegram holds an empty long poll open; the mock answers slowly instead.
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/GetUpdates")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": []}))
                .set_delay(Duration::from_millis(200)),
        )
        .with_priority(2)
        .mount(&telegram)
        .await;
    let settings = Settings {
        telegram_mode: atiende_server::settings::TelegramMode::Polling,
        ..settings(&telegram)
    };
    let app = spawn_app_with(pool, settings).await;
    let chat = Chat {
        app,
        telegram,
        next_update: AtomicU64::new(1),
    };
    let hello = chat.wait_for(c, 2).await;
    assert!(text(&hello[0]).starts_with("Hello! I am the customer-service assistant."));
    // The next poll confirms the update by asking from the one after it.
    let offsets: Vec<Value> = chat
        .telegram
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/GetUpdates"))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|b| b["offset"].clone())
        .collect();
    assert!(offsets.contains(&json!(71)), "{offsets:?}");
}

#[tokio::test]
async fn set_webhook_registers_the_url_with_the_secret() {
    let telegram = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/SetWebhook")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .expect(1)
        .mount(&telegram)
        .await;
    let bots = settings(&telegram).bots();
    let client = atiende_bots::telegram::Telegram::new(bots.telegram.expect("telegram settings"))
        .expect("client");
    client
        .set_webhook("https://pqrs.empresa.co/api/v1/bots/telegram/webhook")
        .await
        .expect("registered");
    // teloxide sends setWebhook as a multipart form (it may carry a certificate).
    let form =
        String::from_utf8_lossy(&telegram.received_requests().await.unwrap_or_default()[0].body)
            .into_owned();
    let field = |name: &str| {
        let at = form
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("no {name} in {form}"));
        form[at..]
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|v| v.split("\r\n").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        field("url"),
        "https://pqrs.empresa.co/api/v1/bots/telegram/webhook"
    );
    assert_eq!(field("secret_token"), SECRET);
    assert_eq!(
        field("allowed_updates"),
        r#"["message","edited_message","callback_query"]"#
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn in_english_a_long_answer_arrives_in_numbered_parts_and_unasked_messages_are_offered_to_the_open_case(
    pool: PgPool,
) {
    let chat = Chat::start(pool).await;
    let org = chat.app.org().await;
    let c = 2024;
    chat.say_in(c, "en", "/start", 2).await;
    chat.tap(c, "consent:yes", 1).await;
    chat.tap(c, "register", 1).await;
    chat.say(c, "John Smith", 1).await;
    chat.tap(c, "doc:PA", 1).await;
    let done = chat.say(c, "X1234567", 2).await;
    assert_eq!(
        text(&done[0]),
        "Done, John Smith. You can now file and follow your PQRS here."
    );
    chat.tap(c, "menu:file", 1).await;
    let subject = chat.tap(c, "type:peticion", 1).await;
    assert_eq!(
        text(&subject[0]),
        "In one line, what is your petition about?"
    );
    // A subject over its 200 characters is refused and asked for again.
    let long = chat.say(c, &"m".repeat(201), 2).await;
    assert_eq!(
        text(&long[0]),
        "That text is too long: at most 200 characters."
    );
    assert_eq!(text(&long[1]), "In one line, what is your petition about?");
    chat.say(c, "Meter reading", 1).await;
    chat.say(c, "Please read my meter again.", 1).await;
    // A file over the limit is refused before it is fetched, and the question is asked again.
    let big = chat.update(
        "message",
        Chat::message(
            c,
            "en",
            json!({"document": {"file_id": "huge", "file_unique_id": "u-huge", "file_name": "scan.pdf", "mime_type": "application/pdf", "file_size": 50_000_000}}),
        ),
    );
    let refused = chat.exchange(c, big, 2).await;
    assert_eq!(
        text(&refused[0]),
        "That file is too large: the limit is 10 MB."
    );
    assert!(text(&refused[1]).starts_with("If you like, send up to 5 photos"));
    chat.say(c, "done", 1).await;
    let ack = chat.tap(c, "send", 1).await;
    let ack = text(&ack[0]).to_owned();
    assert!(
        ack.starts_with("We received your petition with filing number PQRS-"),
        "{ack}"
    );

    // Written unasked while the case is open: offered to the case, and added there.
    let offer = chat
        .say(c, "I forgot: the meter is behind the gate.", 1)
        .await;
    assert!(text(&offer[0]).starts_with("You have PQRS-"), "{offer:#?}");
    assert_eq!(buttons(&offer[0]), ["add", "new", "menu"]);
    let added = chat.tap(c, "add", 1).await;
    assert!(text(&added[0]).starts_with("We added your message to PQRS-"));
    let id: Uuid = sqlx::query_scalar("select id from cases where radicado = $1")
        .bind(radicado(&ack))
        .fetch_one(&chat.app.pool)
        .await
        .expect("case");
    let from_customer: Vec<String> = sqlx::query_scalar(
        "select body from case_messages where case_id = $1 and not from_staff and author_customer_id is not null",
    )
    .bind(id)
    .fetch_all(&chat.app.pool)
    .await
    .expect("messages");
    assert_eq!(from_customer, ["I forgot: the meter is behind the gate."]);

    // An answer longer than one Telegram message arrives in order, in numbered parts, the
    // rating buttons under the last.
    let paragraph = "We read the meter again and found the reading was right. ".repeat(30);
    let answer = [paragraph.trim(); 8].join("\n\n");
    let before = chat.sent(c).await.len();
    chat.app.answer(&org, &id.to_string(), &answer).await;
    let first = chat.wait_for(c, before + 1).await;
    let total: usize = text(&first[before])
        .rsplit_once("(1/")
        .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
        .expect("a numbered first part");
    assert!(total >= 2, "{total} parts");
    let sent = chat.wait_for(c, before + total).await;
    let parts = &sent[before..before + total];
    for (i, part) in parts.iter().enumerate() {
        assert!(text(part).chars().count() <= 4096);
        assert!(
            text(part).ends_with(&format!("({}/{total})", i + 1)),
            "{}",
            text(part)
        );
        let last = i + 1 == total;
        assert_eq!(buttons(part).len(), if last { 5 } else { 0 });
    }
    assert!(text(&parts[0]).starts_with("Answer to your petition PQRS-"));
    // Nothing of the answer is lost between the parts.
    let sentences: usize = parts
        .iter()
        .map(|p| text(p).matches("found the reading was right.").count())
        .sum();
    assert_eq!(sentences, 8 * 30);
}
