use atiende_tests::{Org, TestApp, message_bodies, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn staff_case(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn move_case(
    app: &TestApp,
    token: &str,
    id: &str,
    action: &str,
    body: Value,
) -> atiende_tests::Reply {
    app.post(
        &format!("/api/v1/staff/cases/{id}/{action}"),
        Some(token),
        body,
    )
    .await
}

async fn assign(app: &TestApp, org: &Org, id: &str) {
    let r = move_case(app, &org.director, id, "assign", json!({"process": "OPERATIVO", "assignee": org.collaborator_id, "impact": "high", "urgency": "high"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_case_goes_through_every_role_of_pro_sig_10(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;

    let filed = app.file(&customer, "queja").await;
    let id = filed["id"].as_str().expect("id").to_owned();
    assert!(
        filed["radicado"]
            .as_str()
            .is_some_and(|r| r.starts_with("PQRS-") && r.len() == "PQRS-2026-000001".len()),
        "{filed}"
    );
    assert_eq!(filed["status"], "received");
    assert_eq!(filed["channel"], "app");
    assert_eq!(filed["priority"], "medium");
    assert!(filed["answer"].is_null());

    assign(&app, &org, &id).await;
    let after_assign = staff_case(&app, &org.director, &id).await;
    assert_eq!(after_assign["status"], "assigned");
    assert_eq!(after_assign["process"], "OPERATIVO");
    assert_eq!(
        after_assign["priority"], "critical",
        "high impact × high urgency"
    );

    let r = move_case(
        &app,
        &org.collaborator,
        &id,
        "draft",
        json!({"answer": "Reprogramamos la visita para mañana."}),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("in_approval")),
        "{}",
        r.body
    );

    // The customer never sees a draft.
    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(r.body["status"], "in_approval");
    assert!(r.body["answer"].is_null(), "draft leaked: {}", r.body);

    let r = move_case(
        &app,
        &org.leader,
        &id,
        "return",
        json!({"comment": "Indique la hora de la visita."}),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("assigned")),
        "{}",
        r.body
    );
    let r = move_case(
        &app,
        &org.collaborator,
        &id,
        "draft",
        json!({"answer": "Reprogramamos la visita para mañana a las 9:00."}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = move_case(&app, &org.leader, &id, "approve", json!({})).await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("approved")),
        "{}",
        r.body
    );
    let r = move_case(
        &app,
        &org.director,
        &id,
        "close",
        json!({"in_favor_of_customer": true, "outcome": "Visita reprogramada"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (StatusCode::OK, &json!("answered")),
        "{}",
        r.body
    );
    assert_eq!(r.body["in_favor_of_customer"], true);

    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(r.body["status"], "answered");
    assert_eq!(
        r.body["answer"],
        "Reprogramamos la visita para mañana a las 9:00."
    );
    assert_eq!(
        kinds(&r.body["events"]),
        ["filed", "assigned", "closed"],
        "the customer sees progress, not internal review"
    );

    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&customer),
            json!({"score": 5, "comment": "Muy bien"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "rated");
    assert_eq!(r.body["rating"], json!({"score": 5, "comment": "Muy bien"}));

    let full = staff_case(&app, &org.director, &id).await;
    assert_eq!(
        kinds(&full["events"]),
        [
            "filed", "assigned", "drafted", "returned", "drafted", "approved", "closed", "rated"
        ]
    );
    let returned = &full["events"][3];
    assert_eq!(returned["actor_role"], "process_leader");
    assert_eq!(returned["from_status"], "in_approval");
    assert_eq!(returned["to_status"], "assigned");
    assert_eq!(returned["comment"], "Indique la hora de la visita.");
    assert!(full["events"].as_array().is_some_and(|e| {
        e.iter()
            .all(|e| e["at"].is_string() && e["actor_id"].is_string())
    }));
}

async fn snapshot(app: &TestApp, token: &str, id: &str) -> (Value, usize) {
    let c = staff_case(app, token, id).await;
    let events = c["events"].as_array().map_or(0, Vec::len);
    (c["status"].clone(), events)
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn illegal_moves_are_conflicts_that_change_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "reclamo").await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let before = snapshot(&app, &org.director, &id).await;
    // Before assignment no process works the case: to its collaborators and leaders it does not
    // exist yet (so `case_not_assigned` is a 404 to them).
    for (token, action, body, status, code) in [
        (
            &org.collaborator,
            "draft",
            json!({"answer": "x"}),
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
        (
            &org.leader,
            "approve",
            json!({}),
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
        (
            &org.director,
            "close",
            json!({"in_favor_of_customer": false}),
            StatusCode::CONFLICT,
            "answer_not_approved",
        ),
    ] {
        let r = move_case(&app, token, &id, action, body).await;
        assert_eq!((r.status, r.code()), (status, code), "{action}: {}", r.body);
    }
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&customer),
            json!({"score": 4}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_not_answered")
    );
    assert_eq!(
        snapshot(&app, &org.director, &id).await,
        before,
        "a refused move changed the case"
    );

    assign(&app, &org, &id).await;
    for (action, body) in [("approve", json!({})), ("return", json!({"comment": "x"}))] {
        let r = move_case(&app, &org.leader, &id, action, body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "no_draft_to_review"),
            "{action}: {}",
            r.body
        );
    }
    move_case(
        &app,
        &org.collaborator,
        &id,
        "draft",
        json!({"answer": "Respuesta"}),
    )
    .await;
    let r = move_case(
        &app,
        &org.collaborator,
        &id,
        "draft",
        json!({"answer": "Otra"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "draft_pending_approval")
    );
    let r = move_case(
        &app,
        &org.director,
        &id,
        "assign",
        json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_past_assignment")
    );
    move_case(&app, &org.leader, &id, "approve", json!({})).await;
    move_case(
        &app,
        &org.director,
        &id,
        "close",
        json!({"in_favor_of_customer": false}),
    )
    .await;
    let r = move_case(
        &app,
        &org.director,
        &id,
        "close",
        json!({"in_favor_of_customer": true}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_already_closed")
    );
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&customer),
            json!({"score": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = snapshot(&app, &org.director, &id).await;
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&customer),
            json!({"score": 5}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "case_already_rated")
    );
    assert_eq!(snapshot(&app, &org.director, &id).await, before);
    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(r.body["rating"]["score"], 2, "the first rating stands");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn each_move_belongs_to_one_role(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "peticion").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let assign_body = json!({"process": "OPERATIVO", "impact": "low", "urgency": "low"});

    for token in [&customer, &org.technician] {
        let r = move_case(&app, token, &id, "assign", assign_body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "staff_only"),
            "{}",
            r.body
        );
        let r = app.get("/api/v1/staff/cases", Some(token)).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    }
    for token in [&org.collaborator, &org.leader, &org.admin] {
        let r = move_case(&app, token, &id, "assign", assign_body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "role_not_allowed"),
            "{}",
            r.body
        );
    }
    let r = app.post("/api/v1/cases", Some(&org.director), json!({"id": uuid::Uuid::new_v4(), "type": "queja", "subject": "s", "description": "d"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "customers_only")
    );

    assign(&app, &org, &id).await;
    // Another process's staff do not work the case: to them it does not exist.
    for (token, status, code) in [
        (&org.director, StatusCode::FORBIDDEN, "role_not_allowed"),
        (&org.leader, StatusCode::FORBIDDEN, "role_not_allowed"),
        (
            &org.other_collaborator,
            StatusCode::NOT_FOUND,
            "case_not_found",
        ),
    ] {
        let r = move_case(&app, token, &id, "draft", json!({"answer": "x"})).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    move_case(
        &app,
        &org.collaborator,
        &id,
        "draft",
        json!({"answer": "Respuesta"}),
    )
    .await;
    for (token, status, code) in [
        (&org.collaborator, StatusCode::FORBIDDEN, "role_not_allowed"),
        (&org.director, StatusCode::FORBIDDEN, "role_not_allowed"),
        (&org.other_leader, StatusCode::NOT_FOUND, "case_not_found"),
    ] {
        let r = move_case(&app, token, &id, "approve", json!({})).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
        let r = move_case(&app, token, &id, "return", json!({"comment": "no"})).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    move_case(&app, &org.leader, &id, "approve", json!({})).await;
    for token in [&org.leader, &org.collaborator, &org.admin] {
        let r = move_case(
            &app,
            token,
            &id,
            "close",
            json!({"in_favor_of_customer": true}),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "role_not_allowed"),
            "{}",
            r.body
        );
    }
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/rating"),
            Some(&org.director),
            json!({"score": 5}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "customers_only")
    );
    assert_eq!(
        staff_case(&app, &org.director, &id).await["status"],
        "approved",
        "no refused move changed the case"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn customer_and_staff_talk_on_the_case(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let id = app.file(&customer, "consulta").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assign(&app, &org, &id).await;

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/messages"),
            Some(&org.collaborator),
            json!({"body": "¿A qué dirección fue la visita?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "Calle 10 # 20-30"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["from_staff"]),
        (StatusCode::CREATED, &json!(false))
    );

    let r = app
        .get(&format!("/api/v1/cases/{id}"), Some(&customer))
        .await;
    assert_eq!(
        message_bodies(&r.body),
        [
            (json!(true), json!("¿A qué dirección fue la visita?")),
            (json!(false), json!("Calle 10 # 20-30"))
        ]
    );
    let r = app
        .post(
            &format!("/api/v1/cases/{id}/messages"),
            Some(&customer),
            json!({"body": "   "}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_message")
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_staff_queue_is_ordered_and_filtered(pool: PgPool) {
    let app = spawn_app(pool).await;
    let org = app.org().await;
    let customer = app.customer("cliente@test.co", "1020304050").await;
    let consulta = app.file(&customer, "consulta").await; // 30 business days
    let info = app.file(&customer, "solicitud_informacion").await; // 10
    let queja = app.file(&customer, "queja").await; // 15
    assign(&app, &org, queja["id"].as_str().expect("id")).await;

    let r = app.get("/api/v1/staff/cases", Some(&org.director)).await;
    let radicados: Vec<_> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["radicado"].clone())
        .collect();
    assert_eq!(
        radicados,
        [
            info["radicado"].clone(),
            queja["radicado"].clone(),
            consulta["radicado"].clone()
        ],
        "soonest due first"
    );

    let r = app
        .get(
            "/api/v1/staff/cases?status=assigned&process=operativo",
            Some(&org.leader),
        )
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["items"][0]["id"], queja["id"]);
    let due = queja["legal_due_date"].as_str().expect("due");
    let r = app
        .get(
            &format!("/api/v1/staff/cases?due_before={due}"),
            Some(&org.director),
        )
        .await;
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(1),
        "only the 10-day term is due before the 15-day one"
    );

    let mut seen = Vec::new();
    let mut path = "/api/v1/staff/cases?limit=2".to_owned();
    loop {
        let r = app.get(&path, Some(&org.director)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(
            r.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|c| c["id"].clone()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/staff/cases?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            info["id"].clone(),
            queja["id"].clone(),
            consulta["id"].clone()
        ]
    );
}
