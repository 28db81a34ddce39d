//! The WhatsApp channel end to end: wiremock plays the Graph API (messages and the two-step media
//! download), the tests post signed events shaped like the WhatsApp Cloud API's webhooks to the
//! running server and read the messages the bot sent, as the customer would see them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atiende_server::Settings;
use atiende_server::settings::Secret;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PHONE_NUMBER_ID: &str = "106540352242922";
const ACCESS_TOKEN: &str = "EAAG-test-access-token";
const APP_SECRET: &str = "test-app-secret";
const VERIFY_TOKEN: &str = "test-verify-token";
const WEBHOOK: &str = "/api/v1/bots/whatsapp/webhook";
const MESSAGES: &str = "/v21.0/106540352242922/messages";
const PATIENCE: Duration = atiende_tests::CHAT_PATIENCE;

fn jpeg() -> Vec<u8> {
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    bytes.extend(std::iter::repeat_n(0x37, 3000));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

/// Answers a message send like the Graph API, each with its own message id.
struct Accepted(AtomicU64);

impl Respond for Accepted {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": format!("wamid.out-{n}")}],
        }))
    }
}

/// A Graph API that accepts every message and serves one photo, both only with our token.
async fn graph_api() -> MockServer {
    let graph = MockServer::start().await;
    let bearer = format!("Bearer {ACCESS_TOKEN}");
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", bearer.as_str()))
        .respond_with(Accepted(AtomicU64::new(1)))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v21.0/media-photo-1"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "url": format!("{}/lookaside/media-photo-1", graph.uri()),
            "mime_type": "image/jpeg", "file_size": jpeg().len(), "id": "media-photo-1",
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/lookaside/media-photo-1"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg()))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v21.0/media-huge"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": format!("{}/lookaside/media-huge", graph.uri()),
            "mime_type": "application/pdf", "file_size": 500_000_000u64, "id": "media-huge",
        })))
        .mount(&graph)
        .await;
    graph
}

pub(crate) fn settings(graph: &MockServer) -> Settings {
    Settings {
        whatsapp_access_token: Some(Secret::new(ACCESS_TOKEN)),
        whatsapp_phone_number_id: Some(PHONE_NUMBER_ID.into()),
        whatsapp_app_secret: Some(Secret::new(APP_SECRET)),
        whatsapp_verify_token: Some(Secret::new(VERIFY_TOKEN)),
        whatsapp_api_url: graph.uri(),
        whatsapp_templates: [("answer".to_owned(), "respuesta_pqrs:es_CO".to_owned())].into(),
        bots_interval_ms: 50,
        ..atiende_tests::test_settings()
    }
}

fn sign(body: &[u8]) -> String {
    atiende_tests::whatsapp_signature(APP_SECRET, body)
}

/// A webhook event with these messages and statuses, for our number.
pub(crate) fn event(messages: Vec<Value>, statuses: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA-1", "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "576015550000", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": messages.iter().map(|m| json!({"profile": {"name": "Cliente"}, "wa_id": m["from"]})).collect::<Vec<_>>(),
            "messages": messages,
            "statuses": statuses,
        }
    }]}]})
}

pub(crate) struct Wa {
    pub app: TestApp,
    graph: MockServer,
    next: AtomicU64,
}

impl Wa {
    pub(crate) async fn start(pool: PgPool) -> Wa {
        let graph = graph_api().await;
        let app = spawn_app_with(pool, settings(&graph)).await;
        Wa {
            app,
            graph,
            next: AtomicU64::new(1),
        }
    }

    async fn post_raw(&self, body: Vec<u8>, signature: Option<String>) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .post(self.app.url(WEBHOOK))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            req = req.header("X-Hub-Signature-256", s);
        }
        req.send().await.expect("webhook")
    }

    async fn post(&self, event: &Value) -> StatusCode {
        let body = serde_json::to_vec(event).expect("json");
        let signature = sign(&body);
        self.post_raw(body, Some(signature)).await.status()
    }

    fn message(&self, from: &str, content: Value) -> Value {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let mut m = json!({"from": from, "id": format!("wamid.in-{n}"), "timestamp": "1764680000"});
        if let (Some(m), Some(c)) = (m.as_object_mut(), content.as_object()) {
            m.extend(c.clone());
        }
        m
    }

    /// Sends one message and waits until the bot has sent `expect` more to the number.
    async fn exchange(&self, from: &str, message: Value, expect: usize) -> Vec<Value> {
        let before = self.sent(from).await.len();
        assert_eq!(
            self.post(&event(vec![message], vec![])).await,
            StatusCode::OK
        );
        self.wait_for(from, before + expect).await[before..].to_vec()
    }

    pub(crate) async fn say(&self, from: &str, text: &str, expect: usize) -> Vec<Value> {
        let m = self.message(from, json!({"type": "text", "text": {"body": text}}));
        self.exchange(from, m, expect).await
    }

    /// Taps a reply button or picks a list row.
    pub(crate) async fn tap(&self, from: &str, id: &str, expect: usize) -> Vec<Value> {
        let m = self.message(
            from,
            json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": id, "title": "x"}}}),
        );
        self.exchange(from, m, expect).await
    }

    pub(crate) async fn pick(&self, from: &str, id: &str, expect: usize) -> Vec<Value> {
        let m = self.message(
            from,
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": id, "title": "x"}}}),
        );
        self.exchange(from, m, expect).await
    }

    /// Every message sent to the number, in order.
    pub(crate) async fn sent(&self, from: &str) -> Vec<Value> {
        self.graph
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == MESSAGES)
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["to"] == from)
            .collect()
    }

    pub(crate) async fn wait_for(&self, from: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let sent = self.sent(from).await;
            if sent.len() >= n {
                return sent;
            }
            if tokio::time::Instant::now() >= deadline {
                let deliveries: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                    "select state, last_error, attempts from deliveries order by id",
                )
                .fetch_all(&self.app.pool)
                .await
                .unwrap_or_default();
                panic!(
                    "the bot sent {} messages to {from}, expected {n}: {sent:#?}\ndeliveries: {deliveries:?}",
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn settled(&self) {
        atiende_tests::chats_settled(&self.app.pool).await;
    }

    /// A new number: consent, registration with a document, and the menu.
    pub(crate) async fn register(&self, from: &str, document: &str) {
        self.say(from, "hola", 2).await;
        let name = self.tap(from, "consent:yes", 1).await;
        assert_eq!(
            text(&name[0]),
            "¿Cuál es su nombre completo (o el de su empresa)?"
        );
        self.say(from, "Ana Pérez", 1).await;
        self.pick(from, "doc:CC", 1).await;
        let done = self.say(from, document, 2).await;
        assert!(text(&done[0]).starts_with("Listo, Ana Pérez."), "{done:#?}");
    }

    /// Files a queja without files and returns its acknowledgement.
    async fn file(&self, from: &str, subject: &str) -> String {
        self.pick(from, "menu:file", 1).await;
        self.pick(from, "type:queja", 1).await;
        self.say(from, subject, 1).await;
        self.say(from, "El técnico no llegó a la visita.", 1).await;
        self.tap(from, "done", 1).await;
        let ack = self.tap(from, "send", 1).await;
        text(&ack[0]).to_owned()
    }

    async fn case_id(&self, ack: &str) -> Uuid {
        sqlx::query_scalar("select id from cases where radicado = $1")
            .bind(radicado(ack))
            .fetch_one(&self.app.pool)
            .await
            .expect("case")
    }

    /// The case's deliveries of `kind` on WhatsApp, as staff see them, once `done` holds.
    async fn staff_sees(
        &self,
        org: &Org,
        id: Uuid,
        kind: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.app
            .staff_sees_delivery(&org.director, id, kind, "whatsapp", done)
            .await
    }
}

/// What a sent message says: its text, its interactive body, or its template's name.
pub(crate) fn text(m: &Value) -> &str {
    m["text"]["body"]
        .as_str()
        .or_else(|| m["interactive"]["body"]["text"].as_str())
        .or_else(|| m["template"]["name"].as_str())
        .unwrap_or_default()
}

/// The ids of a message's reply buttons or list rows.
pub(crate) fn choices(m: &Value) -> Vec<String> {
    let buttons = m["interactive"]["action"]["buttons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["reply"]["id"].as_str());
    let rows = m["interactive"]["action"]["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["rows"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["id"].as_str().map(str::to_owned));
    buttons.map(str::to_owned).chain(rows).collect()
}

fn radicado(ack: &str) -> String {
    ack.split_whitespace()
        .find(|w| w.starts_with("PQRS-"))
        .map(|w| w.trim_end_matches(['.', ',']).to_owned())
        .expect("a radicado in the acknowledgement")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_known_number_files_a_queja_with_a_photo_and_sees_only_its_own_cases(pool: PgPool) {
    let wa = Wa::start(pool).await;
    // A customer the company knows, with the number the app registered (+57 300 123 4567) and a
    // case filed in the app; someone else with another number and their own case.
    let token = wa.app.customer("cliente@test.co", "1020304050").await;
    let own = wa.app.file(&token, "peticion").await;
    let other_token = wa.app.customer("otro@test.co", "9080706050").await;
    sqlx::query(
        "update customers set phone = '+57 310 000 0000' where document_number = '9080706050'",
    )
    .execute(&wa.app.pool)
    .await
    .expect("phone");
    let other = wa.app.file(&other_token, "reclamo").await;

    let from = "573001234567";
    let hello = wa.say(from, "Buenas", 2).await;
    assert!(text(&hello[0]).starts_with("¡Hola! Soy el asistente"));
    assert!(text(&hello[1]).contains("Ley 1581 de 2012"));
    assert_eq!(hello[1]["interactive"]["type"], "button");
    assert_eq!(choices(&hello[1]), ["consent:yes", "consent:no"]);
    // WhatsApp vouches for the number: no contact to share, the customer is found at once.
    let linked = wa.tap(from, "consent:yes", 2).await;
    assert!(
        text(&linked[0]).contains("Encontramos su registro por su número"),
        "{linked:#?}"
    );
    assert_eq!(
        linked[1]["interactive"]["type"], "list",
        "five choices need a list"
    );
    assert_eq!(
        choices(&linked[1]),
        [
            "menu:file",
            "menu:cases",
            "menu:status",
            "menu:follow",
            "menu:help",
            "menu:language"
        ]
    );

    let cases = wa.pick(from, "menu:cases", 2).await;
    let listed = text(&cases[0]);
    assert!(
        listed.contains(own["radicado"].as_str().unwrap_or("?")),
        "{listed}"
    );
    assert!(
        !listed.contains(other["radicado"].as_str().unwrap_or("?")),
        "{listed}"
    );
    // News of the case filed in the app come here only once the customer asks for them.
    let org = wa.app.org().await;
    let app_case = own["id"].as_str().unwrap_or_default().to_owned();
    let staff_says = |body: &'static str| {
        let (app, org, app_case) = (&wa.app, &org, app_case.clone());
        async move {
            let r = app
                .post(
                    &format!("/api/v1/staff/cases/{app_case}/messages"),
                    Some(&org.director),
                    json!({"body": body}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
    };
    staff_says("Primer mensaje sobre su petición.").await;
    wa.settled().await;
    let before = wa.sent(from).await.len();
    let follow = wa.pick(from, "menu:follow", 2).await;
    assert!(
        text(&follow[0]).contains("casos que radicó por otros medios"),
        "{follow:#?}"
    );
    staff_says("Segundo mensaje sobre su petición.").await;
    let news = wa.wait_for(from, before + 3).await;
    assert!(
        text(&news[before + 2]).contains("Segundo mensaje sobre su petición."),
        "{news:#?}"
    );
    assert!(
        !wa.sent(from)
            .await
            .iter()
            .any(|m| text(m).contains("Primer mensaje")),
        "the message before following did not come here"
    );

    wa.pick(from, "menu:status", 1).await;
    let theirs = other["radicado"].as_str().unwrap_or_default();
    let status = wa.say(from, theirs, 2).await;
    assert_eq!(
        text(&status[0]),
        format!("No encontramos un caso suyo con el radicado {theirs}.")
    );

    wa.pick(from, "menu:file", 1).await;
    wa.pick(from, "type:queja", 1).await;
    wa.say(from, "Medidor dañado", 1).await;
    wa.say(from, "El medidor no marca desde el lunes.", 1).await;
    // A photo, fetched in two steps with the access token; then a file over the limit, refused.
    let photo = wa.message(
        from,
        json!({"type": "image", "image": {"id": "media-photo-1", "mime_type": "image/jpeg", "sha256": "x"}}),
    );
    let got = wa.exchange(from, photo, 1).await;
    assert_eq!(text(&got[0]), "Recibido el archivo 1 de 5.");
    let huge = wa.message(
        from,
        json!({"type": "document", "document": {"id": "media-huge", "mime_type": "application/pdf", "filename": "x.pdf"}}),
    );
    let refused = wa.exchange(from, huge, 2).await;
    assert!(
        text(&refused[0]).starts_with("Ese archivo es demasiado grande"),
        "{refused:#?}"
    );
    // A voice note gets a polite word and the question again.
    let voice = wa.message(
        from,
        json!({"type": "audio", "audio": {"id": "a1", "mime_type": "audio/ogg", "voice": true}}),
    );
    let polite = wa.exchange(from, voice, 2).await;
    assert_eq!(
        text(&polite[0]),
        "Por aquí solo puedo leer texto, fotos y archivos PDF."
    );
    let confirm = wa.tap(from, "done", 1).await;
    assert!(text(&confirm[0]).contains("Archivos: 1"), "{confirm:#?}");
    let ack = wa.tap(from, "send", 1).await;
    let ack = text(&ack[0]);
    assert!(
        ack.starts_with("Recibimos su queja con el radicado PQRS-"),
        "{ack}"
    );

    let (channel, photos, consents, customer): (String, i64, i64, String) = sqlx::query_as(
        "select c.channel,
                (select count(*) from case_attachments a join blobs b on b.sha256 = a.sha256
                 where a.case_id = c.id and b.content_type = 'image/jpeg'),
                (select count(*) from consents k where k.customer_id = c.customer_id and k.channel = 'whatsapp' and k.granted),
                (select document_number from customers where id = c.customer_id)
         from cases c where c.radicado = $1",
    )
    .bind(radicado(ack))
    .fetch_one(&wa.app.pool)
    .await
    .expect("the case");
    assert_eq!(
        (channel.as_str(), photos, consents, customer.as_str()),
        ("whatsapp", 1, 1, "1020304050")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn in_english_a_question_is_answered_and_the_answer_rated_with_receipts_for_staff(
    pool: PgPool,
) {
    let wa = Wa::start(pool).await;
    let org = wa.app.org().await;
    let from = "573105550101";
    wa.register(from, "1122334455").await;
    let english = wa.pick(from, "menu:language", 2).await;
    assert_eq!(text(&english[0]), "Done, I will write to you in English.");
    let ack = wa.file(from, "Wrong bill").await;
    assert!(
        ack.starts_with("We received your complaint with filing number PQRS-"),
        "{ack}"
    );
    let id = wa.case_id(&ack).await;
    let radicado = radicado(&ack);

    let before = wa.sent(from).await.len();
    let r = wa
        .app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "What is the bill number?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let asked = wa.wait_for(from, before + 1).await;
    assert_eq!(
        text(&asked[before]),
        format!(
            "To go on with your complaint {radicado} we need: What is the bill number?\n\nReply in this chat."
        )
    );
    let replied = wa.say(from, "It is bill 8812.", 1).await;
    assert!(
        text(&replied[0]).contains("We added your reply"),
        "{replied:#?}"
    );

    let before = wa.sent(from).await.len();
    wa.app
        .answer(&org, &id.to_string(), "We corrected bill 8812.")
        .await;
    let answer = wa.wait_for(from, before + 1).await;
    let answer = &answer[before];
    assert!(text(answer).contains("We corrected bill 8812."), "{answer}");
    assert_eq!(answer["interactive"]["type"], "list");
    assert_eq!(
        choices(answer),
        (1..=5)
            .map(|n| format!("rate:{id}:{n}"))
            .collect::<Vec<_>>()
    );
    let thanks = wa.pick(from, &format!("rate:{id}:4"), 1).await;
    assert!(
        text(&thanks[0]).starts_with("Thank you for rating"),
        "{thanks:#?}"
    );
    let score: Option<i16> = sqlx::query_scalar("select rating_score from cases where id = $1")
        .bind(id)
        .fetch_one(&wa.app.pool)
        .await
        .expect("rating");
    assert_eq!(score, Some(4));

    // WhatsApp reports the answer delivered, then read (out of order, and twice): staff see it
    // read. The question's message is reported failed: staff see it failed with Meta's reason.
    let message_of = |kind: &str| {
        let pool = wa.app.pool.clone();
        let kind = kind.to_owned();
        async move {
            sqlx::query_scalar::<_, String>(
                "select d.external_message_id from deliveries d join notifications n on n.id = d.notification_id
                 where n.case_id = $1 and n.kind = $2 and d.channel = 'whatsapp'",
            )
            .bind(id)
            .bind(kind)
            .fetch_one(&pool)
            .await
            .expect("a sent message")
        }
    };
    let answered = message_of("answer").await;
    let asked = message_of("information_request").await;
    let status = |id: &str, status: &str, at: &str| json!({"id": id, "status": status, "timestamp": at, "recipient_id": from});
    let receipts = event(
        vec![],
        vec![
            status(&answered, "read", "1764680300"),
            status(&answered, "delivered", "1764680200"),
            status(&answered, "read", "1764680300"),
            json!({"id": asked, "status": "failed", "timestamp": "1764680100", "recipient_id": from,
                   "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "The recipient is not on WhatsApp"}}]}),
        ],
    );
    assert_eq!(wa.post(&receipts).await, StatusCode::OK);
    let read = wa
        .staff_sees(&org, id, "answer", |d| d["receipt"] == "read")
        .await;
    assert_eq!(read["state"], "sent");
    let failed = wa
        .staff_sees(&org, id, "information_request", |d| d["state"] == "failed")
        .await;
    assert_eq!(
        failed["last_error"],
        "WhatsApp error 131026: Message undeliverable (The recipient is not on WhatsApp)"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn outside_the_24_hour_window_a_template_invites_a_reply_and_the_answer_follows_it(
    pool: PgPool,
) {
    let wa = Wa::start(pool).await;
    let org = wa.app.org().await;
    let from = "573205550202";
    wa.register(from, "2233445566").await;
    let ack = wa.file(from, "Sin servicio").await;
    let id = wa.case_id(&ack).await;
    let radicado = radicado(&ack);
    wa.settled().await;
    // A day and more passes without a word from the customer.
    sqlx::query("update bot_conversations set last_inbound_at = now() - interval '25 hours'")
        .execute(&wa.app.pool)
        .await
        .expect("time passes");

    // A staff message has no template: it is marked undeliverable with the reason, not retried.
    let r = wa
        .app
        .post(
            &format!("/api/v1/staff/cases/{id}/messages"),
            Some(&org.director),
            json!({"body": "Estamos revisando su caso."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let undeliverable = wa
        .staff_sees(&org, id, "staff_message", |d| d["state"] == "failed")
        .await;
    assert_eq!(
        undeliverable["last_error"],
        "outside WhatsApp's 24-hour customer-service window, and no template is configured for staff_message messages"
    );
    assert_eq!(undeliverable["attempts"], 1);

    // The answer goes as its template, with the radicado; the answer itself waits.
    let before = wa.sent(from).await.len();
    wa.app
        .answer(&org, &id.to_string(), "Restablecimos el servicio.")
        .await;
    let template = wa.wait_for(from, before + 1).await;
    let template = &template[before];
    assert_eq!(template["type"], "template");
    assert_eq!(template["template"]["name"], "respuesta_pqrs");
    assert_eq!(template["template"]["language"]["code"], "es_CO");
    assert_eq!(
        template["template"]["components"][0]["parameters"][0]["text"],
        radicado.as_str()
    );
    let waiting = wa
        .staff_sees(&org, id, "answer", |d| d["state"] == "waiting")
        .await;
    assert!(
        waiting["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("template respuesta_pqrs sent")),
        "{waiting}"
    );
    wa.settled().await;
    assert_eq!(
        wa.sent(from).await.len(),
        before + 1,
        "nothing else left meanwhile"
    );

    // The customer writes: the answer leaves first, then the reply to what they wrote.
    let after = wa.say(from, "Hola, ¿cuál es la respuesta?", 2).await;
    assert!(
        text(&after[0]).contains("Restablecimos el servicio."),
        "{after:#?}"
    );
    assert_eq!(choices(&after[0]).len(), 5);
    wa.staff_sees(&org, id, "answer", |d| d["state"] == "sent")
        .await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn forged_unsigned_duplicate_and_foreign_events(pool: PgPool) {
    let wa = Wa::start(pool).await;
    let from = "573015550303";
    // Meta's verification handshake: the challenge echoed for our token only.
    let handshake = |token: &str| {
        format!(
            "{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            wa.app.url(WEBHOOK)
        )
    };
    let ok = wa
        .app
        .client
        .get(handshake(VERIFY_TOKEN))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.expect("body"), "1158201444");
    let bad = wa
        .app
        .client
        .get(handshake("guess"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    // A challenge longer than 128 characters is not echoed.
    let long = format!(
        "{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge={}",
        wa.app.url(WEBHOOK),
        "7".repeat(129)
    );
    let long = wa.app.client.get(long).send().await.expect("get");
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);

    let hello = event(
        vec![wa.message(from, json!({"type": "text", "text": {"body": "hola"}}))],
        vec![],
    );
    let body = serde_json::to_vec(&hello).expect("json");
    // Unsigned, signed with another secret, or signed over another body: refused, nothing kept.
    for signature in [
        None,
        Some("sha256=00ff".to_owned()),
        Some(sign(b"{}")),
        Some(sign(&body).replace("sha256=", "")),
    ] {
        let r = wa.post_raw(body.clone(), signature).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let problem: Value = r.json().await.expect("problem");
        assert_eq!(problem["code"], "webhook_unauthorized");
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from bot_updates")
        .fetch_one(&wa.app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    // Signed but not an event: 400.
    let junk = b"{not json".to_vec();
    let r = wa.post_raw(junk.clone(), Some(sign(&junk))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A signed body over the webhook's 1 MiB bound is refused, and not stored either.
    let huge = event(
        vec![wa.message(
            from,
            json!({"type": "text", "text": {"body": "x".repeat(1024 * 1024)}}),
        )],
        vec![],
    );
    let huge = serde_json::to_vec(&huge).expect("json");
    let signature = sign(&huge);
    assert_eq!(
        wa.post_raw(huge, Some(signature)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from bot_updates")
        .fetch_one(&wa.app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    // The same event twice is answered once; an event for another number of the app is passed
    // over; a reaction gets a polite word.
    assert_eq!(wa.post(&hello).await, StatusCode::OK);
    assert_eq!(wa.post(&hello).await, StatusCode::OK);
    wa.wait_for(from, 2).await;
    let mut foreign = event(
        vec![wa.message(
            "573019999999",
            json!({"type": "text", "text": {"body": "hola"}}),
        )],
        vec![],
    );
    foreign["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!("999");
    assert_eq!(wa.post(&foreign).await, StatusCode::OK);
    let reaction = wa.message(
        from,
        json!({"type": "reaction", "reaction": {"message_id": "wamid.out-1", "emoji": "👍"}}),
    );
    let polite = wa.exchange(from, reaction, 2).await;
    assert_eq!(
        text(&polite[0]),
        "Por aquí solo puedo leer texto, fotos y archivos PDF."
    );
    wa.settled().await;
    assert_eq!(
        wa.sent(from).await.len(),
        4,
        "the duplicate was answered once"
    );
    assert!(wa.sent("573019999999").await.is_empty());
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_number_not_on_whatsapp_is_gone_and_a_rate_limit_is_waited_out_in_order(pool: PgPool) {
    let wa = Wa::start(pool).await;
    let from = "573115550404";
    // Meta is busy for the first message: it is tried again, and the chat keeps its order.
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
            "error_data": {"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."}}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&wa.graph)
        .await;
    // The refused request, the same message again, then the next one.
    let hello = wa.say(from, "hola", 3).await;
    assert!(text(&hello[0]).starts_with("¡Hola!"), "{hello:#?}");
    assert_eq!(hello[1], hello[0]);
    assert!(text(&hello[2]).contains("Ley 1581"), "{hello:#?}");
    let attempts: Vec<i32> = sqlx::query_scalar("select attempts from deliveries order by id")
        .fetch_all(&wa.app.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, [2, 1]);

    // Then Meta says the number cannot receive messages: the reply is gone with the reason.
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Message Undeliverable.", "type": "OAuthException", "code": 131026,
            "error_data": {"messaging_product": "whatsapp", "details": "Message Undeliverable."}}})))
        .with_priority(1)
        .mount(&wa.graph)
        .await;
    let m = wa.message(from, json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "consent:no", "title": "No"}}}));
    assert_eq!(wa.post(&event(vec![m], vec![])).await, StatusCode::OK);
    wa.settled().await;
    let (state, error): (String, String) =
        sqlx::query_as("select state, last_error from deliveries order by id desc limit 1")
            .fetch_one(&wa.app.pool)
            .await
            .expect("delivery");
    assert_eq!(
        (state.as_str(), error.as_str()),
        ("gone", "WhatsApp error 131026: Message Undeliverable.")
    );
}
