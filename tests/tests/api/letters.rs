//! The acknowledgement of a case staff register goes to the customer: by e-mail when there is an
//! address on file, otherwise as a letter staff print (`GET /staff/cases/{id}/letter`), and the
//! registration tells staff which.

use atiende_core::texts;
use atiende_core::types::Role;
use atiende_tests::TestApp;
use chrono::{NaiveDate, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::email::mail_app;
use crate::smtp_receiver::SmtpReceiver;

async fn customer(app: &TestApp, token: &str, fields: Value) -> String {
    let mut body = json!({"document_type": "CC", "name": "Marta Lucía Gómez",
                          "phone": "310 555 1234", "consent_channel": "phone"});
    for (k, v) in fields.as_object().expect("fields") {
        body[k] = v.clone();
    }
    let r = app.post("/api/v1/staff/customers", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn register(app: &TestApp, token: &str, customer: &str, case_type: &str) -> Value {
    let r = app
        .post(
            "/api/v1/staff/cases",
            Some(token),
            json!({"id": Uuid::new_v4(), "customer_id": customer, "type": case_type, "channel": "phone",
                   "subject": "Cobro de una visita que no se hizo",
                   "description": "Llamó a la línea: le cobraron la visita del martes, que no se hizo.",
                   "received_at": Utc::now()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn letter(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("GET the letter");
    let status = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let challenge = r.headers().get(WWW_AUTHENTICATE).cloned();
    let html = r.text().await.expect("body");
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            challenge.as_ref().and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
    (status, content_type, html)
}

fn due(case: &Value) -> NaiveDate {
    case["legal_due_date"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a due date")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_phone_case_without_an_email_gets_a_printed_letter_for_staff_only(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    app.process("OPERATIVO").await;
    app.process("COMERCIAL").await;
    let (_, colab) = app
        .staff("colab@test.co", Role::Collaborator, Some("OPERATIVO"))
        .await;
    let (_, other) = app
        .staff("otro@test.co", Role::Collaborator, Some("COMERCIAL"))
        .await;
    let (_, director) = app
        .staff("director@test.co", Role::QualityDirector, None)
        .await;
    let marta = customer(&app, &colab, json!({"document_number": "52111333"})).await;
    let case = register(&app, &colab, &marta, "reclamo").await;
    let id = case["id"].as_str().expect("id");
    let radicado = case["radicado"].as_str().expect("radicado");
    let ack = &case["acknowledgement"];
    assert_eq!(ack["by"], "letter", "{case}");
    assert!(ack.get("sent_to").is_none(), "{case}");
    let path = format!("/staff/cases/{id}/letter");
    assert_eq!(ack["letter_url"], path.as_str());
    assert_eq!(
        case["channel"], "phone",
        "the case view is all there: {case}"
    );

    // The staff member who registered it prints it, though the case is in nobody's process yet.
    let (status, content_type, html) = letter(&app, &path, Some(&colab)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(html.contains(radicado), "{html}");
    assert!(html.contains("Marta Lucía Gómez"), "{html}");
    assert!(html.contains("52111333"), "{html}");
    let due_es = texts::long_date("es", due(&case));
    assert!(html.contains(&due_es), "{due_es} in {html}");
    assert!(html.contains("Ley 1755 de 2015, art. 14"), "{html}");
    assert!(html.contains("/pqrs/estado"), "{html}");
    assert!(html.contains("@media print"), "{html}");
    assert!(html.contains("<html lang=\"es\">"), "{html}");
    let (status, _, _) = letter(&app, &path, Some(&director)).await;
    assert_eq!(status, StatusCode::OK, "the director works every case");

    // Nobody else reads it.
    let customer_token = app.customer("cliente@example.test", "52000999").await;
    let (status, _, html) = letter(&app, &path, Some(&customer_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("data-code=\"staff_only\""), "{html}");
    assert!(!html.contains(radicado), "{html}");
    let (status, _, html) = letter(&app, &path, Some(&other)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another process's collaborator"
    );
    assert!(html.contains("data-code=\"case_not_found\""), "{html}");
    assert!(!html.contains(radicado), "{html}");
    let (status, _, html) = letter(&app, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("data-code=\"unauthenticated\""), "{html}");
    let (status, _, _) = letter(&app, &path, Some("atd_not_a_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = letter(&app, "/staff/cases/not-a-uuid/letter", Some(&colab)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let emails: i64 = sqlx::query_scalar("select count(*) from deliveries where channel = 'email'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(
        emails, 0,
        "nothing is e-mailed: there is no address on file"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_letter_speaks_the_customers_language_and_names_the_law_of_the_type(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let (_, director) = app
        .staff("director@test.co", Role::QualityDirector, None)
        .await;
    let john = customer(
        &app,
        &director,
        json!({"document_number": "PA998877", "document_type": "PA", "name": "John Smith", "language": "en"}),
    )
    .await;
    let case = register(&app, &director, &john, "datos_reclamo").await;
    let path = case["acknowledgement"]["letter_url"]
        .as_str()
        .expect("letter url")
        .to_owned();
    let (status, _, html) = letter(&app, &path, Some(&director)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(html.contains("John Smith"), "{html}");
    assert!(html.contains(&texts::long_date("en", due(&case))), "{html}");
    assert!(html.contains("Ley 1581 de 2012, art. 15"), "{html}");
    let (_, _, spanish) = letter(&app, &format!("{path}?lang=es"), Some(&director)).await;
    assert!(
        spanish.contains("<html lang=\"es\">"),
        "staff may print the other language"
    );

    // What staff typed is printed as text, never as markup.
    let odd = customer(
        &app,
        &director,
        json!({"document_number": "52777888", "name": "<b>Ana</b> & Cía"}),
    )
    .await;
    let case = register(&app, &director, &odd, "queja").await;
    let path = case["acknowledgement"]["letter_url"].as_str().expect("url");
    let (status, _, html) = letter(&app, path, Some(&director)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<b>Ana</b>"), "{html}");
    assert!(
        html.contains("Ana&#60;/b&#62; &#38; Cía") || html.contains("Ana&lt;/b&gt; &amp; Cía"),
        "{html}"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_customer_with_an_email_is_acknowledged_by_email(pool: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = mail_app(pool, &receiver).await;
    let (_, colab) = app.staff("colab@test.co", Role::Collaborator, None).await;
    let ana = customer(
        &app,
        &colab,
        json!({"document_number": "52444555", "email": "ana@example.test"}),
    )
    .await;
    let case = register(&app, &colab, &ana, "peticion").await;
    let ack = &case["acknowledgement"];
    assert_eq!(ack["by"], "email", "{case}");
    assert_eq!(ack["sent_to"], "a***@example.test");
    let radicado = case["radicado"].as_str().expect("radicado");
    let mails = receiver
        .wait_for("ana@example.test", |m| !m.is_empty())
        .await;
    assert!(
        mails[0]
            .parsed()
            .subject()
            .is_some_and(|s| s.contains(radicado)),
        "the acknowledgement e-mail"
    );
    assert!(
        receiver
            .messages()
            .iter()
            .all(|m| m.rcpt_to.iter().all(|r| r != "colab@test.co")),
        "never to the staff member who typed it"
    );
    app.stop().await;
}
