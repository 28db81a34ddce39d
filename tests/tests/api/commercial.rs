//! Cases about a visit, and the commercial register of PRO-008: quotes, the contracts they become,
//! and the renewal the commercial process is alerted to offer before a contract ends.

use atiende_core::types::Role;
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use chrono::{Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

struct World {
    app: TestApp,
    org: Org,
    customer: String,
    customer_id: String,
    other: String,
    other_id: String,
    technician: Uuid,
}

/// The server's own scheduler waits an hour between rounds: the test runs the rounds it needs.
async fn world(pool: PgPool) -> World {
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool, settings).await;
    let org = app.org().await;
    let (technician, _) = app
        .staff("ana.tecnica@test.co", Role::Technician, None)
        .await;
    let customer = app.customer("cliente@test.co", "900123").await;
    let other = app.customer("otro@test.co", "900456").await;
    let id_of = async |token: &str| {
        app.get("/api/v1/me", Some(token)).await.body["customer_id"]
            .as_str()
            .expect("customer id")
            .to_owned()
    };
    let (customer_id, other_id) = (id_of(&customer).await, id_of(&other).await);
    World {
        app,
        org,
        customer,
        customer_id,
        other,
        other_id,
        technician,
    }
}

async fn work_order(w: &World, customer_id: &str) -> String {
    let r = w
        .app
        .post(
            "/api/v1/staff/work-orders",
            Some(&w.org.director),
            json!({"customer_id": customer_id, "process": "OPERATIVO", "address": "Calle 10 # 20-30",
                   "scheduled_at": "2026-12-02T14:00:00Z", "service_type": "fumigación",
                   "technicians": [w.technician]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

fn complaint(work_order: Option<&str>) -> Value {
    json!({"id": Uuid::new_v4(), "type": "queja", "subject": "La visita",
           "description": "El técnico no fumigó la bodega.", "work_order_id": work_order})
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_case_names_one_of_the_customers_own_visits(pool: PgPool) {
    let w = world(pool).await;
    let mine = work_order(&w, &w.customer_id).await;
    let theirs = work_order(&w, &w.other_id).await;

    let filed = w
        .app
        .post("/api/v1/cases", Some(&w.customer), complaint(Some(&mine)))
        .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{}", filed.body);
    assert_eq!(filed.body["work_order_id"], mine.as_str());
    let case_id = filed.body["id"].as_str().expect("id").to_owned();

    // Another customer's visit and one that does not exist get the same refusal: it says nothing
    // about other customers, and nothing is filed.
    let before = w.app.count("select count(*) from cases").await;
    let foreign = w
        .app
        .post("/api/v1/cases", Some(&w.customer), complaint(Some(&theirs)))
        .await;
    let missing = w
        .app
        .post(
            "/api/v1/cases",
            Some(&w.customer),
            complaint(Some(&Uuid::new_v4().to_string())),
        )
        .await;
    for r in [&foreign, &missing] {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.code(), "unknown_work_order");
    }
    assert_eq!(foreign.body["detail"], missing.body["detail"]);
    assert_eq!(w.app.count("select count(*) from cases").await, before);

    // The work order's staff view lists the case.
    let order = w
        .app
        .get(
            &format!("/api/v1/staff/work-orders/{mine}"),
            Some(&w.org.director),
        )
        .await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.body);
    let listed: Vec<&Value> = order.body["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .collect();
    assert_eq!(listed.len(), 1, "{}", order.body);
    assert_eq!(listed[0]["id"], case_id.as_str());
    assert_eq!(listed[0]["radicado"], filed.body["radicado"]);

    // Staff name the visit of a case filed without one.
    let later = w
        .app
        .post("/api/v1/cases", Some(&w.other), complaint(None))
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    assert_eq!(later.body["work_order_id"], Value::Null);
    let later_id = later.body["id"].as_str().expect("id");
    let path = format!("/api/v1/staff/cases/{later_id}/work-order");
    let wrong = w
        .app
        .put(&path, Some(&w.org.director), json!({"work_order_id": mine}))
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert_eq!(wrong.code(), "work_order_of_another_customer");
    let none = w
        .app
        .put(
            &path,
            Some(&w.org.director),
            json!({"work_order_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::NOT_FOUND, "work_order_not_found")
    );
    let customer = w
        .app
        .put(&path, Some(&w.other), json!({"work_order_id": theirs}))
        .await;
    assert_eq!(
        (customer.status, customer.code()),
        (StatusCode::FORBIDDEN, "staff_only")
    );
    let malformed = w
        .app
        .send(
            w.app
                .client
                .put(w.app.url(&path))
                .bearer_auth(&w.org.director)
                .header("content-type", "application/json")
                .body("{\"work_order_id\": "),
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let unlinked = w
        .app
        .get(
            &format!("/api/v1/staff/cases/{later_id}"),
            Some(&w.org.director),
        )
        .await;
    assert_eq!(
        unlinked.body["work_order_id"],
        Value::Null,
        "refusals change nothing"
    );

    let set = w
        .app
        .put(
            &path,
            Some(&w.org.director),
            json!({"work_order_id": theirs}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["work_order_id"], theirs.as_str());
    let events = w
        .app
        .get(
            &format!("/api/v1/staff/cases/{later_id}"),
            Some(&w.org.director),
        )
        .await;
    assert!(
        events.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "work_order_linked"),
        "{}",
        events.body
    );
    let customer_view = w
        .app
        .get(&format!("/api/v1/cases/{later_id}"), Some(&w.other))
        .await;
    assert_eq!(customer_view.body["work_order_id"], theirs.as_str());
    w.app.stop().await;
}

fn quote_body(customer_id: &str) -> Value {
    json!({"customer_id": customer_id, "services": ["Fumigación trimestral", "Control de roedores"],
           "amount_cop": 1_250_000, "sent_on": "2026-11-02", "follow_up_on": "2026-11-16"})
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn quotes_are_decided_once_and_an_accepted_one_becomes_a_contract(pool: PgPool) {
    let w = world(pool).await;
    // Staff of another process, technicians and customers keep no quotes.
    for (token, code) in [
        (&w.org.collaborator, "not_commercial_staff"),
        (&w.org.leader, "not_commercial_staff"),
        (&w.org.technician, "staff_only"),
        (&w.customer, "staff_only"),
    ] {
        let r = w
            .app
            .post(
                "/api/v1/staff/quotes",
                Some(token),
                quote_body(&w.customer_id),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, code),
            "{}",
            r.body
        );
    }
    for (body, code) in [
        (json!({"amount_cop": -1}), "invalid_amount"),
        (json!({"services": []}), "invalid_services"),
        (json!({"services": ["  "]}), "invalid_services"),
        (json!({"follow_up_on": "2026-11-01"}), "invalid_follow_up"),
        (
            json!({"sent_on": "2999-01-01", "follow_up_on": null}),
            "sent_in_future",
        ),
        (json!({"customer_id": Uuid::new_v4()}), "unknown_customer"),
        (json!({"amount_cop": "mucho"}), "invalid_body"),
    ] {
        let mut q = quote_body(&w.customer_id);
        for (k, v) in body.as_object().expect("object") {
            q[k] = v.clone();
        }
        let r = w
            .app
            .post("/api/v1/staff/quotes", Some(&w.org.other_collaborator), q)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{}",
            r.body
        );
    }
    assert_eq!(w.app.count("select count(*) from quotes").await, 0);

    let created = w
        .app
        .post(
            "/api/v1/staff/quotes",
            Some(&w.org.other_collaborator),
            quote_body(&w.customer_id),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["amount_cop"], 1_250_000);
    assert_eq!(created.body["outcome"], Value::Null);
    let id = created.body["id"].as_str().expect("id");

    // Not accepted yet: no contract.
    let terms =
        json!({"visit_frequency": "quarterly", "starts_on": "2027-01-01", "ends_on": "2027-12-31"});
    let early = w
        .app
        .post(
            &format!("/api/v1/staff/quotes/{id}/contract"),
            Some(&w.org.director),
            terms.clone(),
        )
        .await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "quote_not_accepted")
    );

    let outcome = format!("/api/v1/staff/quotes/{id}/outcome");
    let bad = w
        .app
        .post(&outcome, Some(&w.org.director), json!({"outcome": "maybe"}))
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let before_sent = w
        .app
        .post(
            &outcome,
            Some(&w.org.director),
            json!({"outcome": "accepted", "decided_at": "2026-10-01T15:00:00Z"}),
        )
        .await;
    assert_eq!(
        (before_sent.status, before_sent.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_decided_at")
    );
    let accepted = w
        .app
        .post(
            &outcome,
            Some(&w.org.other_leader),
            json!({"outcome": "accepted", "decided_at": "2026-11-20T15:00:00Z", "note": "Aceptó por teléfono"}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(accepted.body["outcome"], "accepted");
    assert_eq!(accepted.body["outcome_at"], "2026-11-20T15:00:00Z");
    let again = w
        .app
        .post(
            &outcome,
            Some(&w.org.director),
            json!({"outcome": "rejected"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "quote_already_decided")
    );
    let stored = w
        .app
        .get(&format!("/api/v1/staff/quotes/{id}"), Some(&w.org.admin))
        .await;
    assert_eq!(
        stored.body["outcome"], "accepted",
        "a refusal changes nothing"
    );

    let bad_dates = w
        .app
        .post(
            &format!("/api/v1/staff/quotes/{id}/contract"),
            Some(&w.org.director),
            json!({"visit_frequency": "quarterly", "starts_on": "2027-01-01", "ends_on": "2026-12-31"}),
        )
        .await;
    assert_eq!(
        (bad_dates.status, bad_dates.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_contract_dates")
    );
    let contract = w
        .app
        .post(
            &format!("/api/v1/staff/quotes/{id}/contract"),
            Some(&w.org.director),
            terms.clone(),
        )
        .await;
    assert_eq!(contract.status, StatusCode::CREATED, "{}", contract.body);
    assert_eq!(contract.body["customer_id"], w.customer_id.as_str());
    assert_eq!(
        contract.body["services"],
        json!(["Fumigación trimestral", "Control de roedores"])
    );
    assert_eq!(contract.body["quote_id"], id);
    assert_eq!(contract.body["status"], "active");
    let twice = w
        .app
        .post(
            &format!("/api/v1/staff/quotes/{id}/contract"),
            Some(&w.org.director),
            terms,
        )
        .await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::CONFLICT, "quote_already_contracted")
    );
    assert_eq!(w.app.count("select count(*) from contracts").await, 1);
    let listed = w
        .app
        .get(
            &format!("/api/v1/staff/quotes?customer_id={}", w.customer_id),
            Some(&w.org.other_collaborator),
        )
        .await;
    assert_eq!(listed.body["quotes"][0]["contract_id"], contract.body["id"]);
    w.app.stop().await;
}

async fn alerts(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select n.dedupe_key, u.email from notifications n join users u on u.id = n.user_id
         where n.kind = 'contract_renewal' order by u.email",
    )
    .fetch_all(&app.pool)
    .await
    .expect("alerts")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn renewal_is_alerted_once_then_offered_and_decided(pool: PgPool) {
    let w = world(pool).await;
    let today = atiende_core::calendar::local_date(Utc::now());
    let date = |days: u64| {
        today
            .checked_add_days(Days::new(days))
            .expect("date")
            .to_string()
    };
    let contract = |ends_on: String| {
        json!({"customer_id": w.customer_id, "services": ["Fumigación"], "visit_frequency": "monthly",
               "starts_on": "2026-01-01", "ends_on": ends_on})
    };
    let soon = w
        .app
        .post(
            "/api/v1/staff/contracts",
            Some(&w.org.other_leader),
            contract(date(10)),
        )
        .await;
    assert_eq!(soon.status, StatusCode::CREATED, "{}", soon.body);
    let later = w
        .app
        .post(
            "/api/v1/staff/contracts",
            Some(&w.org.other_leader),
            contract(date(90)),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    let soon_id = soon.body["id"].as_str().expect("id").to_owned();

    // Rounds of several processes at once, and again later: each contract is alerted once, to
    // each member and the leader of the commercial process.
    let rounds = (0..4).map(|_| {
        atiende_core::commercial::alert_renewals(&w.app.pool, "COMERCIAL", 30, today, 500)
    });
    let alerted: usize = futures_util::future::join_all(rounds)
        .await
        .into_iter()
        .map(|r| r.expect("round"))
        .sum();
    assert!(alerted <= 1, "{alerted}");
    atiende_core::commercial::alert_renewals(&w.app.pool, "COMERCIAL", 30, today, 500)
        .await
        .expect("round");
    let sent = alerts(&w.app).await;
    let emails: Vec<&str> = sent.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        emails,
        ["colab.comercial@test.co", "lider.comercial@test.co"]
    );
    assert!(sent.iter().all(|(k, _)| k.contains(&soon_id)), "{sent:?}");
    let got = w
        .app
        .get(
            &format!("/api/v1/staff/contracts/{soon_id}"),
            Some(&w.org.director),
        )
        .await;
    assert!(
        got.body["renewal"]["alerted_at"].is_string(),
        "{}",
        got.body
    );
    let (title, body) = atiende_core::texts::push(
        "es",
        "contract_renewal",
        &sqlx::query_scalar::<_, Value>(
            "select data from notifications where kind = 'contract_renewal' limit 1",
        )
        .fetch_one(&w.app.pool)
        .await
        .expect("data"),
    );
    assert_eq!(title, "Renovación de contrato: Cliente de prueba");
    assert!(
        body.starts_with("El contrato de Cliente de prueba termina el "),
        "{body}"
    );

    let renewal = format!("/api/v1/staff/contracts/{soon_id}/renewal");
    let offer = format!("/api/v1/staff/contracts/{soon_id}/renewal-offer");
    let unoffered = w
        .app
        .post(
            &renewal,
            Some(&w.org.director),
            json!({"outcome": "not_renewed", "reason": "Precio"}),
        )
        .await;
    assert_eq!(
        (unoffered.status, unoffered.code()),
        (StatusCode::CONFLICT, "renewal_not_offered")
    );
    let outsider = w
        .app
        .post(
            &offer,
            Some(&w.org.collaborator),
            json!({"note": "Llamada"}),
        )
        .await;
    assert_eq!(
        (outsider.status, outsider.code()),
        (StatusCode::FORBIDDEN, "not_commercial_staff")
    );
    let offered = w
        .app
        .post(
            &offer,
            Some(&w.org.other_collaborator),
            json!({"note": "Propuesta enviada con 5 % de descuento"}),
        )
        .await;
    assert_eq!(offered.status, StatusCode::OK, "{}", offered.body);
    assert_eq!(
        offered.body["renewal"]["offer_note"],
        "Propuesta enviada con 5 % de descuento"
    );
    let reoffer = w
        .app
        .post(
            &offer,
            Some(&w.org.other_collaborator),
            json!({"note": "Otra"}),
        )
        .await;
    assert_eq!(
        (reoffer.status, reoffer.code()),
        (StatusCode::CONFLICT, "renewal_already_offered")
    );
    for (body, status, code) in [
        (
            json!({"outcome": "not_renewed", "reason": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
        ),
        (
            json!({"outcome": "not_renewed"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"outcome": "lost"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"outcome": "renewed", "next": {"ends_on": "2020-01-01"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_contract_dates",
        ),
    ] {
        let r = w.app.post(&renewal, Some(&w.org.director), body).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    }
    assert_eq!(
        w.app.count("select count(*) from contracts").await,
        2,
        "nothing half-written"
    );

    let renewed = w
        .app
        .post(
            &renewal,
            Some(&w.org.other_leader),
            json!({"outcome": "renewed", "next": {"ends_on": date(400)}}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    assert_eq!(renewed.body["status"], "renewed");
    let next_id = renewed.body["renewal"]["next_contract_id"]
        .as_str()
        .expect("next contract")
        .to_owned();
    let next = w
        .app
        .get(
            &format!("/api/v1/staff/contracts/{next_id}"),
            Some(&w.org.director),
        )
        .await;
    assert_eq!(next.body["starts_on"], date(11));
    assert_eq!(next.body["ends_on"], date(400));
    assert_eq!(next.body["visit_frequency"], "monthly");
    assert_eq!(next.body["renews_contract_id"], soon_id.as_str());
    let again = w
        .app
        .post(
            &renewal,
            Some(&w.org.director),
            json!({"outcome": "not_renewed", "reason": "Precio"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "renewal_already_decided")
    );

    // Not renewed, with the reason.
    let later_id = later.body["id"].as_str().expect("id");
    w.app
        .post(
            &format!("/api/v1/staff/contracts/{later_id}/renewal-offer"),
            Some(&w.org.director),
            json!({"note": "Visita comercial"}),
        )
        .await;
    let lost = w
        .app
        .post(
            &format!("/api/v1/staff/contracts/{later_id}/renewal"),
            Some(&w.org.director),
            json!({"outcome": "not_renewed", "reason": "Cambió de proveedor"}),
        )
        .await;
    assert_eq!(lost.status, StatusCode::OK, "{}", lost.body);
    assert_eq!(lost.body["status"], "not_renewed");
    assert_eq!(
        lost.body["renewal"]["not_renewed_reason"],
        "Cambió de proveedor"
    );
    w.app.stop().await;
}
