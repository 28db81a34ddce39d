//! E-mail, the outbox's `email` channel, end to end: the real server sends over SMTP to a real
//! SMTP server on a local port ([`crate::smtp_receiver`]), and the tests read what arrived as a
//! mail program would (decoded by `mail-parser`) and what staff see on the case.

use atiende_core::cases::{self, NewCase};
use atiende_core::types::{CaseType, Channel as Door, Role};
use atiende_server::Settings;
use atiende_server::settings::SmtpTls;
use atiende_tests::{TestApp, spawn_app, spawn_app_with};
use mail_parser::{HeaderName, HeaderValue};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::smtp_receiver::SmtpReceiver;

const MAILBOX: &str = "buzon@empresa.test";

pub(crate) fn mail_settings(port: u16) -> Settings {
    Settings {
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(port),
        smtp_tls: SmtpTls::None,
        mail_from: "Servicio al cliente <pqrs@empresa.test>".into(),
        mail_service_mailbox: Some(MAILBOX.into()),
        public_base_url: "https://pqrs.empresa.test/".into(),
        mail_interval_ms: 50,
        ..atiende_tests::test_settings()
    }
}

pub(crate) async fn mail_app(pool: PgPool, receiver: &SmtpReceiver) -> TestApp {
    spawn_app_with(pool, mail_settings(receiver.addr.port())).await
}

/// A customer who filed on the web form: a `customers` row with an address (and the language of
/// the form, when it recorded one), no app user.
async fn web_customer(app: &TestApp, document: &str, email: &str, language: Option<&str>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, email, language)
         values ($1, 'person', 'CC', $2, 'Ana Pérez', $3, $4)",
    )
    .bind(id)
    .bind(document)
    .bind(email)
    .bind(language)
    .execute(&app.pool)
    .await
    .expect("customer");
    id
}

/// Files a case for `customer` by `door`; returns its id and radicado.
async fn file_by(app: &TestApp, customer: Uuid, door: Door) -> (Uuid, String) {
    let new = NewCase {
        id: Uuid::new_v4(),
        case_type: CaseType::Reclamo,
        subject: "Cobro doble".into(),
        description: "Me cobraron dos veces la visita.".into(),
        channel: door,
        chat_id: None,
        work_order_id: None,
    };
    match cases::file(&app.pool, customer, None, new)
        .await
        .expect("file")
    {
        cases::Filed::Created(c) => (c.id, c.radicado),
        cases::Filed::Existing(_) => panic!("a new case"),
    }
}

async fn director(app: &TestApp) -> String {
    app.staff("director@test.co", Role::QualityDirector, None)
        .await
        .1
}

fn header_text(message: &mail_parser::Message<'_>, name: &str) -> String {
    match message.header(name) {
        Some(HeaderValue::Text(t)) => t.to_string(),
        Some(HeaderValue::Address(a)) => a
            .iter()
            .filter_map(|a| a.address())
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

async fn case_link(app: &TestApp, case: Uuid) -> String {
    let token: String = sqlx::query_scalar("select token from case_links where case_id = $1")
        .bind(case)
        .fetch_one(&app.pool)
        .await
        .expect("the case has a link");
    format!("https://pqrs.empresa.test/pqrs/caso/{token}")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_web_case_is_acknowledged_by_email_in_the_customers_language(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let director = director(&app).await;
    let english = web_customer(&app, "900111", "Ana@Example.test", Some("en")).await;
    let spanish = web_customer(&app, "900222", "luis@example.test", None).await;
    let (en_case, en_radicado) = file_by(&app, english, Door::Web).await;
    let (es_case, es_radicado) = file_by(&app, spanish, Door::Web).await;

    let to_ana = receiver
        .wait_for("ana@example.test", |m| !m.is_empty())
        .await;
    assert_eq!(to_ana.len(), 1);
    assert_eq!(
        to_ana[0].rcpt_to,
        vec!["ana@example.test"],
        "the acknowledgement is not copied to the mailbox"
    );
    assert_eq!(to_ana[0].mail_from, "pqrs@empresa.test");
    let mail = to_ana[0].parsed();
    assert_eq!(
        mail.subject(),
        Some(format!("{en_radicado}: we received your claim").as_str())
    );
    let body = mail.body_text(0).expect("a text body").into_owned();
    assert!(body.starts_with("Hello Ana Pérez,"), "{body}");
    assert!(
        body.contains(&format!(
            "We received your claim with filing number {en_radicado}."
        )),
        "{body}"
    );
    let link = case_link(&app, en_case).await;
    assert!(body.contains(&link), "{body}");
    let html = mail.body_html(0).expect("an HTML alternative").into_owned();
    assert!(
        html.contains(&format!("<a href=\"{link}\">{link}</a>")),
        "{html}"
    );
    assert_eq!(header_text(&mail, "Reply-To"), MAILBOX);
    assert_eq!(header_text(&mail, "Auto-Submitted"), "auto-generated");
    // The Message-ID is stored on the delivery, so a reply can be matched to the case. The
    // worker records it once the server has accepted the mail, which may be just after it arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stored: String = loop {
        let stored: Option<String> = sqlx::query_scalar(
            "select external_message_id from deliveries where channel = 'email' and target = 'ana@example.test'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("the delivery");
        match stored {
            Some(id) => break id,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            None => panic!("the delivery's message id was never recorded"),
        }
    };
    assert_eq!(mail.message_id(), Some(stored.as_str()));
    let seen = app
        .staff_sees_delivery(&director, en_case, "acknowledgement", "email", |d| {
            d["state"] == "sent"
        })
        .await;
    assert_eq!(seen["last_status"], 250);

    let to_luis = receiver
        .wait_for("luis@example.test", |m| !m.is_empty())
        .await;
    let mail = to_luis[0].parsed();
    assert_eq!(
        mail.subject(),
        Some(format!("Radicado {es_radicado}: recibimos su reclamo").as_str()),
        "a customer whose language is unknown reads Spanish"
    );
    let body = mail.body_text(0).expect("a text body").into_owned();
    assert!(body.starts_with("Hola, Ana Pérez:"), "{body}");
    assert!(body.contains(&case_link(&app, es_case).await), "{body}");
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn app_cases_are_emailed_only_to_customers_who_chose_email(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let token = app.customer("marta@example.test", "52000111").await;
    let first = app.file(&token, "queja").await;
    let emails = |app: &TestApp| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from deliveries where channel = 'email'")
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        emails(&app).await,
        0,
        "an app case is not e-mailed by default"
    );

    sqlx::query(
        "update customers set email_notifications = true where email = 'marta@example.test'",
    )
    .execute(&app.pool)
    .await
    .expect("the customer chooses e-mail");
    let second = app.file(&token, "peticion").await;
    let got = receiver
        .wait_for("marta@example.test", |m| !m.is_empty())
        .await;
    assert_eq!(got.len(), 1);
    let subject = got[0].parsed().subject().unwrap_or_default().to_owned();
    assert!(
        subject.contains(second["radicado"].as_str().expect("radicado")),
        "{subject}"
    );
    assert!(!subject.contains(first["radicado"].as_str().expect("radicado")));
    assert_eq!(emails(&app).await, 1);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_answer_reaches_the_customer_and_the_service_mailbox(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let org = app.org().await;
    let customer = web_customer(&app, "900333", "rosa@example.test", Some("es")).await;
    let (case, radicado) = file_by(&app, customer, Door::Web).await;
    receiver
        .wait_for("rosa@example.test", |m| !m.is_empty())
        .await;

    app.answer(
        &org,
        &case.to_string(),
        "Le devolvemos el cobro doble esta semana.",
    )
    .await;
    let answers = receiver.wait_for(MAILBOX, |m| !m.is_empty()).await;
    assert_eq!(answers.len(), 1, "only the answer is copied to the mailbox");
    let answer = &answers[0];
    assert_eq!(
        answer.rcpt_to,
        vec!["rosa@example.test".to_owned(), MAILBOX.to_owned()],
        "one message to the customer, with the mailbox as a blind copy"
    );
    let mail = answer.parsed();
    assert_eq!(
        mail.subject(),
        Some(format!("Radicado {radicado}: respuesta a su reclamo").as_str())
    );
    assert_eq!(header_text(&mail, "To"), "rosa@example.test");
    assert!(
        mail.header(HeaderName::Bcc).is_none(),
        "the customer does not see the copy"
    );
    let body = mail.body_text(0).expect("a text body").into_owned();
    assert!(
        body.contains("Le devolvemos el cobro doble esta semana."),
        "{body}"
    );
    assert!(body.contains(&case_link(&app, case).await), "{body}");
    app.staff_sees_delivery(&org.director, case, "answer", "email", |d| {
        d["state"] == "sent"
    })
    .await;
    app.stop().await;
}

/// Lets every pending delivery's wait pass.
async fn time_passes(app: &TestApp) {
    sqlx::query("update deliveries set next_attempt_at = now() where state = 'pending'")
        .execute(&app.pool)
        .await
        .expect("time passes");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_permanent_refusal_fails_the_delivery_and_staff_see_why(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    receiver.refuse("nadie@example.test", "550 5.1.1 no such user here");
    let app = mail_app(pool, &receiver).await;
    let director = director(&app).await;
    let customer = web_customer(&app, "900444", "nadie@example.test", None).await;
    let (case, _) = file_by(&app, customer, Door::Web).await;

    let failed = app
        .staff_sees_delivery(&director, case, "acknowledgement", "email", |d| {
            d["state"] != "pending"
        })
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["last_status"], 550);
    assert_eq!(failed["attempts"], 1);
    let reason = failed["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("no such user here"), "{reason}");
    time_passes(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        receiver.attempts("nadie@example.test"),
        1,
        "never tried again"
    );
    assert!(receiver.messages().is_empty());
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_temporary_refusal_is_tried_again_until_it_is_accepted(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    receiver.refuse("llena@example.test", "451 4.2.2 mailbox full, try later");
    let app = mail_app(pool, &receiver).await;
    let director = director(&app).await;
    let customer = web_customer(&app, "900555", "llena@example.test", None).await;
    let (case, radicado) = file_by(&app, customer, Door::Web).await;

    let waiting = app
        .staff_sees_delivery(&director, case, "acknowledgement", "email", |d| {
            d["attempts"] == 1 && d["last_error"].is_string()
        })
        .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert_eq!(waiting["last_status"], 451);
    assert!(
        waiting["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("mailbox full")),
        "{waiting}"
    );

    receiver.accept_again("llena@example.test");
    time_passes(&app).await;
    let got = receiver
        .wait_for("llena@example.test", |m| !m.is_empty())
        .await;
    assert!(
        got[0]
            .parsed()
            .subject()
            .is_some_and(|s| s.contains(&radicado))
    );
    let sent = app
        .staff_sees_delivery(&director, case, "acknowledgement", "email", |d| {
            d["state"] == "sent"
        })
        .await;
    assert_eq!(sent["attempts"], 2);
    assert_eq!(sent["last_error"], Value::Null);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_unreachable_mail_server_is_tried_again(pool: PgPool) {
    // A port nothing listens on: the connection is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let app = spawn_app_with(pool, mail_settings(port)).await;
    let director = director(&app).await;
    let customer = web_customer(&app, "900666", "eva@example.test", None).await;
    let (case, _) = file_by(&app, customer, Door::Web).await;
    let waiting = app
        .staff_sees_delivery(&director, case, "acknowledgement", "email", |d| {
            d["attempts"] == 1 && d["last_error"].is_string()
        })
        .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert_eq!(waiting["last_status"], Value::Null);
    assert!(
        waiting["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused")),
        "{waiting}"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn without_an_smtp_host_emails_wait_in_the_outbox(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = web_customer(&app, "900777", "sin.correo@example.test", None).await;
    let (case, _) = file_by(&app, customer, Door::Email).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waiting: Vec<(String, i32)> = sqlx::query_as(
        "select d.state, d.attempts from deliveries d join notifications n on n.id = d.notification_id
         where n.case_id = $1 and d.channel = 'email'",
    )
    .bind(case)
    .fetch_all(&app.pool)
    .await
    .expect("deliveries");
    assert_eq!(waiting, vec![("pending".to_owned(), 0)]);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn with_starttls_required_nothing_leaves_in_clear_text(pool: PgPool) {
    // The receiver does not offer STARTTLS: a server (or someone in the middle) that strips it
    // gets no message, and the delivery waits to be tried again.
    let receiver = SmtpReceiver::start().await;
    let settings = Settings {
        smtp_tls: SmtpTls::Starttls,
        ..mail_settings(receiver.addr.port())
    };
    let app = spawn_app_with(pool, settings).await;
    let director = director(&app).await;
    let customer = web_customer(&app, "900888", "clara@example.test", None).await;
    let (case, _) = file_by(&app, customer, Door::Web).await;
    let waiting = app
        .staff_sees_delivery(&director, case, "acknowledgement", "email", |d| {
            d["attempts"] == 1 && d["last_error"].is_string()
        })
        .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert!(
        waiting["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("STARTTLS is not supported")),
        "{waiting}"
    );
    assert!(receiver.messages().is_empty());
    assert_eq!(
        receiver.attempts("clara@example.test"),
        0,
        "not even the envelope"
    );
    app.stop().await;
}
