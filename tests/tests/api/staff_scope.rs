//! Who works which case: the quality director every case; collaborators and process leaders the
//! cases of their processes and those assigned to them; admins none. Any other case is a 404
//! exactly like a missing one, for the queue, every read, every move and the case's blobs.

use std::collections::BTreeSet;

use atiende_core::types::Role;
use atiende_tests::{Org, Reply, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::blobs::{PNG, upload};

struct Scene {
    app: TestApp,
    org: Org,
    customer: String,
    /// A collaborator of OPERATIVO who was assigned `mine` and then left the process.
    moved: String,
    /// Assigned to OPERATIVO, nobody in particular.
    operativo: String,
    /// Assigned to COMERCIAL.
    comercial: String,
    /// Not assigned yet.
    received: String,
    /// Assigned to OPERATIVO and to `moved` by name.
    mine: String,
}

async fn assign(app: &TestApp, org: &Org, id: &str, process: &str, assignee: Option<uuid::Uuid>) {
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/assign"),
            Some(&org.director),
            json!({"process": process, "assignee": assignee, "impact": "low", "urgency": "low"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn scene(pool: PgPool) -> Scene {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let (moved_id, moved) = app
        .staff("movida@test.co", Role::Collaborator, Some("OPERATIVO"))
        .await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            app.file(&customer, "queja").await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let [operativo, comercial, received, mine] = <[String; 4]>::try_from(ids).expect("4 cases");
    assign(&app, &org, &operativo, "OPERATIVO", None).await;
    assign(&app, &org, &comercial, "COMERCIAL", None).await;
    assign(&app, &org, &mine, "OPERATIVO", Some(moved_id)).await;
    sqlx::query("delete from process_members where user_id = $1")
        .bind(moved_id)
        .execute(&app.pool)
        .await
        .expect("leave the process");
    Scene {
        app,
        org,
        customer,
        moved,
        operativo,
        comercial,
        received,
        mine,
    }
}

/// Every case in `token`'s queue, one per page so the pages are checked too.
async fn queue(app: &TestApp, token: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/staff/cases?limit=1&cursor={c}"),
            None => "/api/v1/staff/cases?limit=1".to_owned(),
        };
        let r = app.get(&path, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let items = r.body["items"].as_array().expect("items");
        assert!(items.len() <= 1);
        for c in items {
            assert!(seen.insert(c["id"].as_str().expect("id").to_owned()));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
    panic!("the queue did not end");
}

async fn read(app: &TestApp, token: &str, id: &str) -> [Reply; 2] {
    [
        app.get(&format!("/api/v1/staff/cases/{id}"), Some(token))
            .await,
        app.get(
            &format!("/api/v1/staff/cases/{id}/notifications"),
            Some(token),
        )
        .await,
    ]
}

fn is_missing(r: &Reply) -> bool {
    r.status == StatusCode::NOT_FOUND && r.code() == "case_not_found"
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn each_role_sees_and_reads_only_the_cases_it_works(pool: PgPool) {
    let s = scene(pool).await;
    let (o, app) = (&s.org, &s.app);
    let set = |ids: &[&String]| ids.iter().map(|i| (*i).clone()).collect::<BTreeSet<_>>();
    let all = set(&[&s.operativo, &s.comercial, &s.received, &s.mine]);
    let expectations = [
        ("director", &o.director, all.clone()),
        ("OPERATIVO leader", &o.leader, set(&[&s.operativo, &s.mine])),
        (
            "OPERATIVO collaborator",
            &o.collaborator,
            set(&[&s.operativo, &s.mine]),
        ),
        (
            "COMERCIAL collaborator",
            &o.other_collaborator,
            set(&[&s.comercial]),
        ),
        ("COMERCIAL leader", &o.other_leader, set(&[&s.comercial])),
        ("assignee who left the process", &s.moved, set(&[&s.mine])),
        ("admin", &o.admin, BTreeSet::new()),
    ];
    for (who, token, expected) in expectations {
        assert_eq!(queue(app, token).await, expected, "{who}'s queue");
        for id in &all {
            for r in read(app, token, id).await {
                if expected.contains(id) {
                    assert_eq!(r.status, StatusCode::OK, "{who} reads {id}: {}", r.body);
                } else {
                    assert!(is_missing(&r), "{who} reads {id}: {} {}", r.status, r.body);
                }
            }
        }
    }
    // Out of scope reads exactly like a case that does not exist.
    let [none, _] = read(app, &o.admin, &uuid::Uuid::new_v4().to_string()).await;
    let [theirs, _] = read(app, &o.admin, &s.operativo).await;
    assert_eq!(none.body, theirs.body);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_cannot_write_to_or_pause_a_case_they_do_not_work(pool: PgPool) {
    let s = scene(pool).await;
    let (o, app) = (&s.org, &s.app);
    for token in [&o.other_collaborator, &o.other_leader, &o.admin, &s.moved] {
        let r = app
            .post(
                &format!("/api/v1/staff/cases/{}/messages", s.operativo),
                Some(token),
                json!({"body": "Hola"}),
            )
            .await;
        assert!(is_missing(&r), "{} {}", r.status, r.body);
        let r = app
            .post(
                &format!("/api/v1/staff/cases/{}/request-info", s.operativo),
                Some(token),
                json!({"question": "¿Dirección?"}),
            )
            .await;
        assert!(is_missing(&r), "{} {}", r.status, r.body);
    }
    // Draft, approve and return: another process's staff get the 404 before any role rule.
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{}/draft", s.operativo),
            Some(&o.other_collaborator),
            json!({"answer": "x"}),
        )
        .await;
    assert!(is_missing(&r), "{} {}", r.status, r.body);
    for action in ["approve", "return"] {
        let r = app
            .post(
                &format!("/api/v1/staff/cases/{}/{action}", s.operativo),
                Some(&o.other_leader),
                json!({"comment": "no"}),
            )
            .await;
        assert!(is_missing(&r), "{action}: {} {}", r.status, r.body);
    }
    // Nothing was written: no message, the case still received/assigned, no clock moved.
    let view = app
        .get(
            &format!("/api/v1/staff/cases/{}", s.operativo),
            Some(&o.director),
        )
        .await;
    assert_eq!(view.body["status"], "assigned");
    assert_eq!(view.body["messages"], json!([]));
    let stops: i64 = sqlx::query_scalar(
        "select count(*) from case_clock_events where kind in ('stop', 'pause')",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(stops, 0);

    // Those who work it may: the assignee who left the process still works the case assigned to them.
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{}/messages", s.mine),
            Some(&s.moved),
            json!({"body": "Estamos revisando su caso."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{}/request-info", s.operativo),
            Some(&o.collaborator),
            json!({"question": "¿Cuál es la dirección?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            &format!("/api/v1/staff/cases/{}/draft", s.mine),
            Some(&s.moved),
            json!({"answer": "Reprogramamos la visita."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_case_blob_is_for_the_staff_who_work_the_case(pool: PgPool) {
    let s = scene(pool).await;
    let (o, app) = (&s.org, &s.app);
    let photo = upload(app, &s.customer, "image/png", PNG).await;
    let r = app
        .post(
            &format!("/api/v1/cases/{}/messages", s.operativo),
            Some(&s.customer),
            json!({"body": "Adjunto la foto.", "attachments": [photo]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let get = |token: &str| {
        app.client
            .get(app.url(&format!("/api/v1/blobs/{photo}")))
            .bearer_auth(token.to_owned())
            .send()
    };
    for token in [&o.director, &o.collaborator, &o.leader] {
        assert_eq!(get(token).await.expect("reply").status(), StatusCode::OK);
    }
    for token in [&o.other_collaborator, &o.other_leader, &o.admin, &s.moved] {
        let r = get(token).await.expect("reply");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body: Value = r.json().await.expect("problem");
        assert_eq!(body["code"], "blob_not_found");
    }
}
