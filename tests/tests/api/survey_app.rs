//! Surveys in the app through the real sync path: an invitation appears in the customer's inbox
//! document with its questions; answers written to the outbox document are stored through the same
//! core path as the web page's (taken via the app, once, low score → follow-up); a refused answer
//! is reported in the inbox with its code, as a refused rating is.

use std::collections::BTreeMap;

use atiende_core::surveys::{self, Answering, LowScore, TakenVia};
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::sync_support::{edit, eventually, read};

/// The server with scheduler rounds an hour apart, so the test decides when invitations go.
pub(crate) fn quiet_scheduler(settings: Settings) -> Settings {
    Settings {
        scheduler_interval_ms: 3_600_000,
        ..settings
    }
}

/// A visit of OPERATIVO to `customer_id`, completed 30 hours ago (standing in for the signed
/// field report, whose projection the work order tests cover), and its invitation.
pub(crate) async fn invited(app: &TestApp, org: &Org, customer_id: Uuid) -> Uuid {
    let technician = app.user_id("tecnico@test.co").await;
    let r = app
        .post(
            "/api/v1/staff/work-orders",
            Some(&org.director),
            json!({"customer_id": customer_id, "process": "OPERATIVO", "address": "Calle 1 # 2-3",
                   "scheduled_at": "2026-12-01T14:00:00Z", "service_type": "Fumigación",
                   "technicians": [technician]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let work_order: Uuid = r.body["id"].as_str().expect("id").parse().expect("uuid");
    sqlx::query(
        "update work_orders set status = 'completed', completed_at = now() - interval '30 hours' where id = $1",
    )
    .bind(work_order)
    .execute(&app.pool)
    .await
    .expect("complete the visit");
    let schedule = Settings::default().survey_schedule();
    surveys::invite_completed(&app.pool, &schedule, 500)
        .await
        .expect("a scheduler round");
    sqlx::query_scalar("select id from survey_invitations where work_order_id = $1")
        .bind(work_order)
        .fetch_one(&app.pool)
        .await
        .expect("the visit's invitation")
}

/// How many answers are stored for the invitation, and how they were taken.
pub(crate) async fn stored(app: &TestApp, invitation: Uuid) -> (i64, Option<String>) {
    sqlx::query_as(
        "select (select count(*) from survey_answers where invitation_id = $1), taken_via
         from survey_invitations where id = $1",
    )
    .bind(invitation)
    .fetch_one(&app.pool)
    .await
    .expect("the invitation")
}

/// The lowest score of the invitation's open follow-up, if one was opened.
pub(crate) async fn follow_up(app: &TestApp, invitation: Uuid) -> Option<i16> {
    sqlx::query_scalar("select lowest_score from survey_follow_ups where invitation_id = $1")
        .bind(invitation)
        .fetch_optional(&app.pool)
        .await
        .expect("follow-ups")
}

/// A customer of the app, with their documents.
struct Customer {
    id: Uuid,
    outbox: String,
    inbox: String,
}

async fn customer(app: &TestApp, email: &str, document: &str) -> Customer {
    let docs = crate::outbox::customer(app, email, document).await;
    let me = app.get("/api/v1/me", Some(&docs.token)).await;
    let id = me.body["customer_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the customer");
    Customer {
        id,
        outbox: docs.outbox,
        inbox: docs.inbox,
    }
}

/// Writes `answers` for the invitation into the customer's outbox, as the app does.
async fn answer_in_app(app: &TestApp, c: &Customer, invitation: Uuid, answers: Value) {
    edit(&app.pool, &c.outbox, |doc| {
        let surveys = match doc.get(ROOT, "surveys")? {
            Some((_, id)) => id,
            None => doc.put_object(ROOT, "surveys", ObjType::Map)?,
        };
        let entry = doc.put_object(&surveys, invitation.to_string(), ObjType::Map)?;
        let map = doc.put_object(&entry, "answers", ObjType::Map)?;
        for (code, v) in answers.as_object().into_iter().flatten() {
            match v {
                Value::Number(n) => doc.put(&map, code.as_str(), n.as_i64().unwrap_or(0))?,
                Value::Bool(b) => doc.put(&map, code.as_str(), *b)?,
                other => doc.put(&map, code.as_str(), other.as_str().unwrap_or_default())?,
            }
        }
        Ok(())
    })
    .await;
}

/// What the inbox says of the app's answer to the invitation, once it says `status`.
async fn outcome(app: &TestApp, c: &Customer, invitation: Uuid, wanted: &Value) -> Value {
    eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let said = inbox["survey_answers"][invitation.to_string()].clone();
        (said["status"] == wanted["status"] && said["code"] == wanted["code"]).then_some(said)
    })
    .await
}

/// The inbox's refusal of the app's answer to the invitation, once it names `code`.
async fn refused(app: &TestApp, c: &Customer, invitation: Uuid, code: &str) -> Value {
    outcome(
        app,
        c,
        invitation,
        &json!({"status": "rejected", "code": code}),
    )
    .await
}

fn good_answers(quality: i64) -> Value {
    json!({"service_quality": quality, "punctuality": 4, "technician_attention": 5,
           "would_recommend": true, "comments": "Muy amables"})
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_app_shows_the_invitation_and_answers_it_through_the_outbox_once(pool: PgPool) {
    let app = spawn_app_with(pool, quiet_scheduler(atiende_tests::test_settings())).await;
    let org = app.org().await;
    let c = customer(&app, "cliente@test.co", "900123").await;
    let invitation = invited(&app, &org, c.id).await;

    // The invitation appears in the inbox with its questions, in both languages.
    let shown = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let entry = inbox["surveys"][invitation.to_string()].clone();
        (!entry.is_null()).then_some(entry)
    })
    .await;
    assert_eq!(shown["status"], "open", "{shown}");
    assert_eq!(shown["template"], "post_service");
    assert!(shown["expires_at"].is_string());
    let questions = shown["questions"].as_array().expect("questions");
    let kinds: Vec<&str> = questions
        .iter()
        .filter_map(|q| q["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["scale", "scale", "scale", "yes_no", "text"]);
    assert_eq!(
        questions[0]["label_es"],
        "¿Cómo califica la calidad del servicio prestado?"
    );
    assert_eq!(questions[4]["required"], json!(false));

    // Refused answers are reported with their code, and store nothing.
    let mut bad = good_answers(7);
    answer_in_app(&app, &c, invitation, bad.clone()).await;
    let said = refused(&app, &c, invitation, "invalid_survey_score").await;
    assert!(
        said["reason"]
            .as_str()
            .is_some_and(|r| r.contains("service_quality"))
    );
    bad["service_quality"] = json!(3);
    bad["comments"] = json!("x".repeat(surveys::answers::MAX_TEXT + 1));
    answer_in_app(&app, &c, invitation, bad.clone()).await;
    refused(&app, &c, invitation, "survey_text_too_long").await;
    bad["comments"] = json!("Bien");
    bad["color"] = json!("azul");
    answer_in_app(&app, &c, invitation, bad).await;
    refused(&app, &c, invitation, "unknown_survey_question").await;
    let mut missing = good_answers(3);
    missing["punctuality"] = Value::Null;
    if let Some(m) = missing.as_object_mut() {
        m.remove("punctuality");
    }
    answer_in_app(&app, &c, invitation, missing).await;
    refused(&app, &c, invitation, "survey_answer_required").await;
    assert_eq!(stored(&app, invitation).await, (0, None));

    // A valid set with a low score is stored once, taken via the app, and opens the follow-up.
    answer_in_app(&app, &c, invitation, good_answers(1)).await;
    let said = outcome(&app, &c, invitation, &json!({"status": "accepted"})).await;
    assert!(said["code"].is_null(), "{said}");
    assert_eq!(stored(&app, invitation).await, (5, Some("app".into())));
    assert_eq!(follow_up(&app, invitation).await, Some(1));
    let answered = eventually(|| async {
        let inbox = read(&app.pool, &c.inbox).await;
        let entry = inbox["surveys"][invitation.to_string()].clone();
        (entry["status"] == "answered").then_some(entry)
    })
    .await;
    assert_eq!(answered["taken_via"], "app");
    assert_eq!(answered["questions"].as_array().map(Vec::len), Some(5));

    // Synced again: nothing is stored twice and the inbox still says accepted.
    edit(&app.pool, &c.outbox, |doc| {
        doc.put(ROOT, "last_sync", "2026-12-05T10:00:00Z")?;
        Ok(())
    })
    .await;
    eventually(|| async {
        let queued = app
            .count("select count(*) from sync_projection_queue")
            .await;
        (queued == 0).then_some(())
    })
    .await;
    assert_eq!(stored(&app, invitation).await, (5, Some("app".into())));
    let inbox = read(&app.pool, &c.inbox).await;
    assert_eq!(
        inbox["survey_answers"][invitation.to_string()]["status"],
        "accepted"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn answers_to_another_customers_an_answered_or_an_expired_invitation_are_refused(
    pool: PgPool,
) {
    let app = spawn_app_with(pool, quiet_scheduler(atiende_tests::test_settings())).await;
    let org = app.org().await;
    let c = customer(&app, "cliente@test.co", "900123").await;
    let other = customer(&app, "otro@test.co", "900456").await;
    let theirs = invited(&app, &org, other.id).await;
    let on_web = invited(&app, &org, c.id).await;
    let expired = invited(&app, &org, c.id).await;

    // Another customer's invitation reads like none at all, and is left unanswered.
    answer_in_app(&app, &c, theirs, good_answers(5)).await;
    refused(&app, &c, theirs, "survey_not_found").await;
    assert_eq!(stored(&app, theirs).await, (0, None));

    // Answered on the web page first: the app's answers are refused, the page's stay.
    let raw: BTreeMap<String, String> = [
        ("service_quality", "5"),
        ("punctuality", "5"),
        ("technician_attention", "5"),
        ("would_recommend", "yes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let low = LowScore::default();
    let who = Answering {
        via: TakenVia::Web,
        entered_by: None,
        low: &low,
    };
    assert!(
        surveys::answer(&app.pool, on_web, &raw, false, who)
            .await
            .is_ok()
    );
    answer_in_app(&app, &c, on_web, good_answers(1)).await;
    refused(&app, &c, on_web, "survey_answered").await;
    assert_eq!(stored(&app, on_web).await, (4, Some("web".into())));
    assert_eq!(follow_up(&app, on_web).await, None);

    // Past its window.
    sqlx::query(
        "update survey_invitations set sent_at = now() - interval '20 days', expires_at = now() - interval '1 day' where id = $1",
    )
    .bind(expired)
    .execute(&app.pool)
    .await
    .expect("expire");
    answer_in_app(&app, &c, expired, good_answers(4)).await;
    refused(&app, &c, expired, "survey_expired").await;
    assert_eq!(stored(&app, expired).await, (0, None));

    // A value of the wrong shape.
    edit(&app.pool, &c.outbox, |doc| {
        let (_, surveys) = doc.get(ROOT, "surveys")?.expect("surveys map");
        let entry = doc.put_object(&surveys, expired.to_string(), ObjType::Map)?;
        let answers = doc.put_object(&entry, "answers", ObjType::Map)?;
        let list = doc.put_object(&answers, "service_quality", ObjType::List)?;
        doc.insert(&list, 0, 5)?;
        Ok(())
    })
    .await;
    refused(&app, &c, expired, "invalid_survey_answers").await;
    app.stop().await;
}
