//! The customer's outbox and inbox documents: a PQRS drafted offline is filed exactly once
//! however often it syncs and even when the app also posts it over REST; the inbox shows the
//! radicado, status, answer and rating prompt; a rating written to the outbox rates the case.

use atiende_tests::{TestApp, spawn_app};
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::sync_support::{edit, eventually, read};

pub(crate) struct Customer {
    pub(crate) token: String,
    pub(crate) outbox: String,
    pub(crate) inbox: String,
}

pub(crate) async fn customer(app: &TestApp, email: &str, document: &str) -> Customer {
    let token = app.customer(email, document).await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let outbox = me.body["outbox_url"]
        .as_str()
        .expect("outbox url")
        .to_owned();
    let inbox = me.body["inbox_url"].as_str().expect("inbox url").to_owned();
    // Asking again gives the same documents.
    let again = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(again.body["outbox_url"], json!(outbox));
    assert_eq!(again.body["inbox_url"], json!(inbox));
    Customer {
        token,
        outbox,
        inbox,
    }
}

async fn draft(app: &TestApp, c: &Customer, id: uuid::Uuid, case_type: &str, subject: &str) {
    edit(&app.pool, &c.outbox, |doc| {
        let (_, drafts) = doc.get(ROOT, "drafts")?.expect("drafts map");
        let d = doc.put_object(&drafts, id.to_string(), ObjType::Map)?;
        doc.put(&d, "type", case_type)?;
        doc.put(&d, "subject", subject)?;
        doc.put(
            &d,
            "description",
            "El técnico no llegó a la visita del martes.",
        )?;
        Ok(())
    })
    .await;
}

async fn inbox_entry(app: &TestApp, c: &Customer, section: &str, key: &str) -> Value {
    eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let entry = inbox[section][key].clone();
        (!entry.is_null()).then_some(entry)
    })
    .await
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_offline_draft_is_filed_once_and_answered_in_the_inbox(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let c = customer(&app, "cliente@test.co", "900123").await;
    let id = uuid::Uuid::new_v4();

    draft(&app, &c, id, "queja", "No vino el técnico").await;
    let filed = inbox_entry(&app, &c, "drafts", &id.to_string()).await;
    assert_eq!(filed["status"], "filed", "{filed}");
    assert_eq!(filed["case_id"], json!(id));
    let radicado = filed["radicado"].as_str().expect("radicado").to_owned();
    assert!(radicado.starts_with("PQRS-"), "{radicado}");

    // Synced again (another change to the outbox), and also posted over REST by the app.
    edit(&app.pool, &c.outbox, |doc| {
        doc.put(ROOT, "last_sync", "2026-12-01T10:00:00Z")?;
        Ok(())
    })
    .await;
    let posted = app
        .post(
            "/api/v1/cases",
            Some(&c.token),
            json!({"id": id, "type": "queja", "subject": "No vino el técnico",
                   "description": "El técnico no llegó a la visita del martes."}),
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    assert_eq!(posted.body["radicado"], json!(radicado));

    let case = inbox_entry(&app, &c, "cases", &id.to_string()).await;
    assert_eq!(case["radicado"], json!(radicado));
    assert_eq!(case["status"], "received");
    assert!(case["legal_due_date"].is_string());
    let listed = app.get("/api/v1/cases", Some(&c.token)).await;
    let items = listed.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", listed.body);
    let rows: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    // The answer reaches the inbox with a prompt to rate it; a rating in the outbox rates it.
    app.answer(
        &org,
        &id.to_string(),
        "Reprogramamos la visita para el jueves.",
    )
    .await;
    let answered = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let case = inbox["cases"][id.to_string()].clone();
        (case["status"] == "answered").then_some(case)
    })
    .await;
    assert_eq!(
        answered["answer"],
        "Reprogramamos la visita para el jueves."
    );
    assert_eq!(answered["rating_requested"], json!(true));
    assert!(
        answered["rating_prompt"]
            .as_str()
            .is_some_and(|p| p.contains(&radicado)),
        "{answered}"
    );
    edit(&app.pool, &c.outbox, |doc| {
        let (_, ratings) = doc.get(ROOT, "ratings")?.expect("ratings map");
        let r = doc.put_object(&ratings, id.to_string(), ObjType::Map)?;
        doc.put(&r, "score", 4)?;
        doc.put(&r, "comment", "Buena atención")?;
        Ok(())
    })
    .await;
    let rated = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let case = inbox["cases"][id.to_string()].clone();
        (case["status"] == "rated").then_some(case)
    })
    .await;
    assert_eq!(rated["rating"], json!(4));
    assert_eq!(rated["rating_requested"], json!(false));
    let case = app
        .get(&format!("/api/v1/cases/{id}"), Some(&c.token))
        .await;
    assert_eq!(case.body["status"], "rated", "{}", case.body);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_draft_that_fails_validation_is_answered_with_the_reason(pool: PgPool) {
    let app = spawn_app(pool).await;
    let c = customer(&app, "cliente@test.co", "900123").await;
    let bad_type = uuid::Uuid::new_v4();
    let empty_subject = uuid::Uuid::new_v4();
    draft(&app, &c, bad_type, "felicitacion", "Gracias").await;
    draft(&app, &c, empty_subject, "peticion", "   ").await;
    let refused = inbox_entry(&app, &c, "drafts", &bad_type.to_string()).await;
    assert_eq!(refused["status"], "rejected");
    assert_eq!(refused["code"], "invalid_type");
    let refused = inbox_entry(&app, &c, "drafts", &empty_subject.to_string()).await;
    assert_eq!(refused["code"], "invalid_subject", "{refused}");
    let rows: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);

    // Corrected on the phone, the draft is filed.
    edit(&app.pool, &c.outbox, |doc| {
        let (_, drafts) = doc.get(ROOT, "drafts")?.expect("drafts");
        let (_, d) = doc.get(&drafts, empty_subject.to_string())?.expect("draft");
        doc.put(&d, "subject", "Solicito copia del contrato")?;
        Ok(())
    })
    .await;
    let filed = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let entry = inbox["drafts"][empty_subject.to_string()].clone();
        (entry["status"] == "filed").then_some(entry)
    })
    .await;
    assert_eq!(filed["case_id"], json!(empty_subject));

    // An id already used for a different case (here: another customer's) files nothing and
    // reveals nothing of that case.
    let other = app.customer("otra@test.co", "900999").await;
    let theirs = app.file(&other, "peticion").await;
    let taken: uuid::Uuid = theirs["id"].as_str().expect("id").parse().expect("uuid");
    draft(&app, &c, taken, "queja", "Otro asunto").await;
    let refused = inbox_entry(&app, &c, "drafts", &taken.to_string()).await;
    assert_eq!(refused["status"], "rejected");
    assert_eq!(refused["code"], "idempotency_conflict");
    assert_eq!(refused.get("radicado"), None);
    let mine = app.get("/api/v1/cases", Some(&c.token)).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn each_customer_has_documents_of_their_own(pool: PgPool) {
    let app = spawn_app(pool).await;
    let ana = customer(&app, "ana@test.co", "900123").await;
    let beto = customer(&app, "beto@test.co", "900456").await;
    assert_ne!(ana.outbox, beto.outbox);
    assert_ne!(ana.inbox, beto.inbox);
    // Access rows: each customer writes their outbox and reads their inbox, and nothing else.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select u.email, d.kind, a.mode from sync_document_access a
         join users u on u.id = a.user_id join sync_documents d on d.document_id = a.document_id
         order by 1, 2",
    )
    .fetch_all(&app.pool)
    .await
    .expect("access");
    let expected: Vec<(String, String, String)> = [
        ("ana@test.co", "customer_inbox", "read"),
        ("ana@test.co", "customer_outbox", "write"),
        ("beto@test.co", "customer_inbox", "read"),
        ("beto@test.co", "customer_outbox", "write"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
    .collect();
    assert_eq!(rows, expected);

    // A case filed over REST before the first sync shows up in the inbox too.
    let filed = app.file(&beto.token, "peticion").await;
    let id = filed["id"].as_str().expect("id");
    let entry = inbox_entry(&app, &beto, "cases", id).await;
    assert_eq!(entry["radicado"], filed["radicado"]);
    let ana_inbox = read(&app.pool, &ana.inbox).await;
    assert_eq!(ana_inbox["cases"], json!({}));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_draft_is_filed_before_its_photo_arrives_and_the_photo_is_attached_later(pool: PgPool) {
    let app = spawn_app(pool).await;
    let c = customer(&app, "cliente@test.co", "900123").await;
    let case_id = uuid::Uuid::new_v4();
    let photo = crate::blobs::id(crate::blobs::PNG);
    edit(&app.pool, &c.outbox, |doc| {
        let (_, drafts) = doc.get(ROOT, "drafts")?.expect("drafts map");
        let d = doc.put_object(&drafts, case_id.to_string(), ObjType::Map)?;
        doc.put(&d, "type", "reclamo")?;
        doc.put(&d, "subject", "Mancha tras la fumigación")?;
        doc.put(
            &d,
            "description",
            "Quedó una mancha en el piso de la bodega.",
        )?;
        let a = doc.put_object(&d, "attachments", ObjType::List)?;
        doc.insert(&a, 0, photo.as_str())?;
        Ok(())
    })
    .await;
    let filed = inbox_entry(&app, &c, "drafts", &case_id.to_string()).await;
    assert_eq!(filed["status"], "filed", "{filed}");
    assert_eq!(filed["missing_attachments"], json!([photo]));

    crate::blobs::upload(&app, &c.token, "image/png", crate::blobs::PNG).await;
    let case = eventually(|| async {
        let r = app
            .get(&format!("/api/v1/cases/{case_id}"), Some(&c.token))
            .await;
        (r.body["attachments"]
            .as_array()
            .is_some_and(|a| !a.is_empty()))
        .then_some(r)
    })
    .await;
    assert_eq!(case.body["attachments"][0]["sha256"], json!(photo));
    assert_eq!(case.body["attachments"][0]["content_type"], "image/png");
    let settled = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let entry = inbox["drafts"][case_id.to_string()].clone();
        (entry["missing_attachments"] == json!([])).then_some(entry)
    })
    .await;
    assert_eq!(settled["case_id"], json!(case_id));
    let cases: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(cases, 1);
}
