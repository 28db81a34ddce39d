//! Satisfaction surveys (PRO-008 §5.4, PRO-SIG-10) through the real server, a real SMTP receiver
//! and real PostgreSQL: a completed visit's customer is invited once, after the delay, by an e-mail
//! whose link opens the survey page; the page stores the answers once and refuses malformed ones;
//! used, expired and unknown links get their own pages; staff enter answers taken by phone; a low
//! score opens one follow-up that its process's staff close.

use atiende_core::surveys;
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::app_users::{Page, open};
use crate::email::mail_settings;
use crate::smtp_receiver::SmtpReceiver;
use crate::web::post_form;

const CUSTOMER: &str = "cliente@test.co";

struct Survey {
    receiver: SmtpReceiver,
    app: TestApp,
    org: Org,
    settings: Settings,
    customer_id: Uuid,
    /// The customer's API token.
    customer: String,
}

/// The server mailing to a local receiver, with its own scheduler rounds an hour apart so the
/// test decides when invitations go; the staff of OPERATIVO and a customer with an e-mail.
async fn start(pool: PgPool) -> Survey {
    let receiver = SmtpReceiver::start().await;
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        ..mail_settings(receiver.addr.port())
    };
    let app = spawn_app_with(pool, settings.clone()).await;
    let org = app.org().await;
    let customer = app.customer(CUSTOMER, "1020304050").await;
    let customer_id = sqlx::query_scalar("select customer_id from users where email = $1")
        .bind(CUSTOMER)
        .fetch_one(&app.pool)
        .await
        .expect("the customer");
    Survey {
        receiver,
        app,
        org,
        settings,
        customer_id,
        customer,
    }
}

/// A visit of OPERATIVO to the customer, completed `hours_ago` (standing in for the signed field
/// report, whose projection the work order tests cover).
async fn completed_visit(s: &Survey, hours_ago: i32) -> Uuid {
    let technician = s.app.user_id("tecnico@test.co").await;
    let r = s
        .app
        .post(
            "/api/v1/staff/work-orders",
            Some(&s.org.director),
            json!({"customer_id": s.customer_id, "process": "OPERATIVO", "address": "Calle 1 # 2-3",
                   "scheduled_at": "2026-12-01T14:00:00Z", "service_type": "Fumigación",
                   "technicians": [technician]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id: Uuid = r.body["id"].as_str().expect("id").parse().expect("uuid");
    sqlx::query(
        "update work_orders set status = 'completed', completed_at = now() - make_interval(hours => $2) where id = $1",
    )
    .bind(id)
    .bind(hours_ago)
    .execute(&s.app.pool)
    .await
    .expect("complete the visit");
    id
}

async fn invite(s: &Survey) -> usize {
    surveys::invite_completed(&s.app.pool, &s.settings.survey_schedule(), 500)
        .await
        .expect("a scheduler round")
}

async fn invitations_of(s: &Survey, work_order: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar("select id from survey_invitations where work_order_id = $1")
        .bind(work_order)
        .fetch_all(&s.app.pool)
        .await
        .expect("invitations")
}

/// The path (`/s/<token>?lang=es`) of the survey link in the `n`-th survey e-mail to the customer.
async fn link_in_mail(s: &Survey, n: usize) -> String {
    let is_survey = |m: &crate::smtp_receiver::Received| {
        m.parsed()
            .body_text(0)
            .is_some_and(|b| b.contains("https://pqrs.empresa.test/s/"))
    };
    let mails = s
        .receiver
        .wait_for(CUSTOMER, |m| m.iter().filter(|m| is_survey(m)).count() > n)
        .await;
    let mail = mails
        .iter()
        .filter(|m| is_survey(m))
        .nth(n)
        .expect("the mail");
    let body = mail.parsed().body_text(0).expect("a body").into_owned();
    let start = body.find("https://pqrs.empresa.test/s/").expect("the link");
    let link: String = body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')')
        .collect();
    link.trim_start_matches("https://pqrs.empresa.test")
        .to_owned()
}

/// A count the test reads from the database, of rows about `id`.
async fn count(s: &Survey, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&s.app.pool)
        .await
        .expect(sql)
}

async fn stored(s: &Survey, invitation: Uuid) -> (i64, Option<String>) {
    sqlx::query_as(
        "select (select count(*) from survey_answers where invitation_id = $1), taken_via
         from survey_invitations where id = $1",
    )
    .bind(invitation)
    .fetch_one(&s.app.pool)
    .await
    .expect("the register")
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_completed_visit_is_surveyed_once_after_the_delay_and_answered_on_the_web(pool: PgPool) {
    let s = start(pool).await;
    // Completed an hour ago: the 24-hour delay has not passed.
    let visit = completed_visit(&s, 1).await;
    assert_eq!(invite(&s).await, 0);
    assert!(invitations_of(&s, visit).await.is_empty());
    // Completed six days ago: past PRO-008's five days, never invited.
    let stale = completed_visit(&s, 6 * 24).await;
    sqlx::query("update work_orders set completed_at = now() - interval '25 hours' where id = $1")
        .bind(visit)
        .execute(&s.app.pool)
        .await
        .expect("time passes");
    assert_eq!(invite(&s).await, 1);
    // However many rounds run, in however many processes, once per visit.
    let rounds = futures_util::future::join_all((0..4).map(|_| invite(&s))).await;
    assert_eq!(rounds.iter().sum::<usize>(), 0);
    assert_eq!(invitations_of(&s, visit).await.len(), 1);
    assert!(invitations_of(&s, stale).await.is_empty());
    let invitation = invitations_of(&s, visit).await[0];
    let notices = count(
        &s,
        "select count(*) from notifications where kind = 'survey_invitation' and customer_id = $1",
        s.customer_id,
    )
    .await;
    assert_eq!(notices, 1);

    // The e-mail carries the link; only its digest is stored.
    let path = link_in_mail(&s, 0).await;
    let token = path
        .trim_start_matches("/s/")
        .split('?')
        .next()
        .expect("token")
        .to_owned();
    let in_clear: i64 = sqlx::query_scalar(
        "select count(*) from notifications n join deliveries d on d.notification_id = n.id
         where n.data::text like '%' || $1 || '%' or d.payload::text like '%' || $1 || '%'",
    )
    .bind(&token)
    .fetch_one(&s.app.pool)
    .await
    .expect("search");
    assert_eq!(in_clear, 0, "the token is never stored in clear");

    let Page {
        status,
        cookie,
        csrf,
        html,
    } = open(&s.app, &path).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for label in [
        "¿Cómo califica la calidad del servicio prestado?",
        "¿Cómo califica la puntualidad de la visita?",
        "¿Cómo califica la atención del técnico?",
        "¿Recomendaría nuestros servicios?",
        "Comentarios o sugerencias",
    ] {
        assert!(html.contains(label), "{label}: {html}");
    }
    assert!(html.contains("name=\"service_quality\" value=\"5\""));
    let english = open(&s.app, &path.replace("lang=es", "lang=en")).await.html;
    assert!(english.contains("How do you rate the punctuality of the visit?"));

    // Malformed answers: shown on the page, nothing stored.
    let r = post_form(
        &s.app,
        &path,
        &cookie,
        &[
            ("csrf", csrf.as_str()),
            ("service_quality", "9"),
            ("technician_attention", "4"),
            ("would_recommend", "maybe"),
            ("comments", &"x".repeat(2_001)),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.expect("body");
    for code in [
        "invalid_survey_score",
        "survey_answer_required",
        "invalid_survey_yes_no",
        "survey_text_too_long",
    ] {
        assert!(
            page.contains(&format!("data-code=\"{code}\"")),
            "{code}: {page}"
        );
    }
    assert!(page.contains("Elija una calificación de 1 a 5."));
    assert!(
        page.contains(
            "id=\"technician_attention-4\" name=\"technician_attention\" value=\"4\" checked"
        ),
        "what was chosen stays chosen: {page}"
    );
    assert_eq!(stored(&s, invitation).await, (0, None));
    // Without the CSRF token nothing is stored either.
    let r = post_form(&s.app, &path, &cookie, &[("service_quality", "5")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(stored(&s, invitation).await, (0, None));

    // A good answer, with a low score.
    let answers = [
        ("csrf", csrf.as_str()),
        ("service_quality", "2"),
        ("punctuality", "4"),
        ("technician_attention", "5"),
        ("would_recommend", "no"),
        ("comments", "Llegaron tarde y no explicaron el tratamiento."),
    ];
    let r = post_form(&s.app, &path, &cookie, &answers).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("Gracias por responder")
    );
    assert_eq!(stored(&s, invitation).await, (5, Some("web".into())));
    let register: (i16, bool, String) = sqlx::query_as(
        "select (select score from survey_answers where invitation_id = $1 and position = 1),
                (select yes from survey_answers where invitation_id = $1 and position = 4),
                (select text from survey_answers where invitation_id = $1 and position = 5)",
    )
    .bind(invitation)
    .fetch_one(&s.app.pool)
    .await
    .expect("the register");
    assert_eq!(
        register,
        (
            2,
            false,
            "Llegaron tarde y no explicaron el tratamiento.".into()
        )
    );

    // The link was single-use.
    let r = post_form(&s.app, &path, &cookie, &answers).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("data-code=\"survey_answered\"")
    );
    let Page { status, html, .. } = open(&s.app, &path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("Esta encuesta ya fue respondida"));
    assert_eq!(stored(&s, invitation).await, (5, Some("web".into())));

    // Staff read what the customer answered.
    let r = s
        .app
        .get(
            &format!("/api/v1/staff/survey-invitations/{invitation}"),
            Some(&s.org.director),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["taken_via"], "web");
    assert_eq!(r.body["work_order_id"], json!(visit));
    assert_eq!(r.body["answers"][0]["question"], "service_quality");
    assert_eq!(r.body["answers"][0]["score"], 2);
    let r = s
        .app
        .get(
            &format!("/api/v1/staff/survey-invitations?work_order={visit}&status=answered"),
            Some(&s.org.leader),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    let r = s
        .app
        .get(
            "/api/v1/staff/survey-invitations?status=open",
            Some(&s.org.leader),
        )
        .await;
    assert_eq!(r.body["items"], json!([]));

    // The low score opened one follow-up for OPERATIVO, whose leader heard of it.
    let follow_ups: Vec<(Uuid, Option<String>, i16)> = sqlx::query_as(
        "select id, process_code, lowest_score from survey_follow_ups where invitation_id = $1",
    )
    .bind(invitation)
    .fetch_all(&s.app.pool)
    .await
    .expect("follow-ups");
    assert_eq!(follow_ups.len(), 1);
    let (follow_up, process, score) = follow_ups[0].clone();
    assert_eq!((process.as_deref(), score), (Some("OPERATIVO"), 2));
    let leader = s.app.user_id("lider@test.co").await;
    let told = count(
        &s,
        "select count(*) from notifications where kind = 'follow_up_opened' and user_id = $1",
        leader,
    )
    .await;
    assert_eq!(told, 1);

    // Staff of another process neither see nor close it; its leader closes it once.
    let r = s
        .app
        .get(
            "/api/v1/staff/survey-follow-ups?open=true",
            Some(&s.org.other_leader),
        )
        .await;
    assert_eq!(r.body["follow_ups"], json!([]));
    let close = format!("/api/v1/staff/survey-follow-ups/{follow_up}/close");
    let r = s
        .app
        .post(&close, Some(&s.org.other_leader), json!({"action": "Nada"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "follow_up_not_found")
    );
    let r = s
        .app
        .get(
            "/api/v1/staff/survey-follow-ups?open=true",
            Some(&s.org.leader),
        )
        .await;
    assert_eq!(r.body["follow_ups"][0]["id"], json!(follow_up));
    let r = s
        .app
        .post(&close, Some(&s.org.leader), json!({"action": "   "}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_follow_up_action")
    );
    let done = "Llamamos al cliente y reprogramamos el técnico con aviso previo.";
    let r = s
        .app
        .post(&close, Some(&s.org.leader), json!({"action": done}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["action"], done);
    assert!(r.body["closed_at"].is_string());
    let r = s
        .app
        .post(&close, Some(&s.org.leader), json!({"action": done}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "follow_up_closed")
    );

    // The version that was sent keeps its questions.
    let frozen = sqlx::query(
        "update survey_questions set label_es = 'Otra pregunta'
         where version_id = (select version_id from survey_invitations where id = $1)",
    )
    .bind(invitation)
    .execute(&s.app.pool)
    .await;
    assert!(frozen.is_err(), "a sent version's questions do not change");
    s.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn expired_unknown_and_foreign_links_get_clear_pages(pool: PgPool) {
    let s = start(pool).await;
    let visit = completed_visit(&s, 30).await;
    assert_eq!(invite(&s).await, 1);
    let path = link_in_mail(&s, 0).await;
    let token = path
        .trim_start_matches("/s/")
        .split('?')
        .next()
        .expect("token")
        .to_owned();
    let Page {
        status,
        cookie,
        csrf,
        html,
    } = open(&s.app, &path).await;
    assert_eq!(status, StatusCode::OK, "{html}");

    // The survey link opens nothing else: not the API, not a case page.
    let r = s.app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let status = open(&s.app, &format!("/pqrs/caso/{token}")).await.status;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nor does another secret open a survey.
    let Page { status, html, .. } = open(&s.app, &format!("/s/{}", s.customer)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("data-code=\"survey_not_found\""));
    let Page { status, html, .. } =
        open(&s.app, &format!("/s/{}x", &token[..token.len() - 1])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    let status = open(&s.app, &format!("/s/{}", "a".repeat(5000)))
        .await
        .status;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Past the answer window.
    let invitation = invitations_of(&s, visit).await[0];
    sqlx::query(
        "update survey_invitations set sent_at = now() - interval '20 days', expires_at = now() - interval '5 days' where id = $1",
    )
    .bind(invitation)
    .execute(&s.app.pool)
    .await
    .expect("time passes");
    let Page { status, html, .. } = open(&s.app, &path.replace("lang=es", "lang=en")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("The time to answer this survey has run out."));
    let r = post_form(
        &s.app,
        &path,
        &cookie,
        &[
            ("csrf", csrf.as_str()),
            ("service_quality", "5"),
            ("punctuality", "5"),
            ("technician_attention", "5"),
            ("would_recommend", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(stored(&s, invitation).await, (0, None));
    s.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn staff_enter_answers_taken_by_phone(pool: PgPool) {
    let s = start(pool).await;
    let visit = completed_visit(&s, 30).await;
    assert_eq!(invite(&s).await, 1);
    let invitation = invitations_of(&s, visit).await[0];
    let path = format!("/api/v1/staff/survey-invitations/{invitation}/responses");
    // The link is e-mailed before the call: an invitation answered before its e-mail leaves is
    // never sent.
    let link = link_in_mail(&s, 0).await;

    let r = s
        .app
        .get("/api/v1/staff/survey-templates", Some(&s.org.collaborator))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let codes: Vec<&str> = r.body["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["code"].as_str())
        .collect();
    assert_eq!(codes, ["post_service", "semestral"]);
    assert_eq!(r.body["templates"][1]["questions"][3]["kind"], "choice");

    let good = json!({"taken_via": "phone", "answers": {"service_quality": 5, "punctuality": 4,
        "technician_attention": 5, "would_recommend": true}});
    // Customers may not enter answers.
    let r = s.app.post(&path, Some(&s.customer), good.clone()).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "staff_only"));
    // Bad answers of every kind: a clear error, nothing stored.
    for (body, code) in [
        (
            json!({"taken_via": "phone", "answers": {"service_quality": "cinco", "punctuality": 4, "technician_attention": 5, "would_recommend": true}}),
            "invalid_survey_score",
        ),
        (
            json!({"taken_via": "phone", "answers": {"service_quality": 0, "punctuality": 4, "technician_attention": 5, "would_recommend": true}}),
            "invalid_survey_score",
        ),
        (
            json!({"taken_via": "phone", "answers": {"service_quality": 5, "punctuality": 4, "technician_attention": 5, "would_recommend": "tal vez"}}),
            "invalid_survey_yes_no",
        ),
        (
            json!({"taken_via": "phone", "answers": {"service_quality": 5, "punctuality": 4, "technician_attention": 5}}),
            "survey_answer_required",
        ),
        (
            json!({"taken_via": "phone", "answers": {"service_quality": 5, "punctuality": 4, "technician_attention": 5, "would_recommend": true, "color": "azul"}}),
            "unknown_survey_question",
        ),
        (
            json!({"taken_via": "phone", "answers": {"service_quality": 5, "punctuality": 4, "technician_attention": 5, "would_recommend": true, "comments": {"a": 1}}}),
            "survey_text_too_long",
        ),
    ] {
        let r = s.app.post(&path, Some(&s.org.collaborator), body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{}",
            r.body
        );
    }
    let r = s
        .app
        .post(
            &path,
            Some(&s.org.collaborator),
            json!({"taken_via": "web", "answers": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = s
        .app
        .post(
            &format!(
                "/api/v1/staff/survey-invitations/{}/responses",
                Uuid::new_v4()
            ),
            Some(&s.org.collaborator),
            good.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "survey_not_found")
    );
    assert_eq!(stored(&s, invitation).await, (0, None));

    let r = s
        .app
        .post(&path, Some(&s.org.collaborator), good.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["taken_via"], "phone");
    assert_eq!(r.body["answers"].as_array().map(Vec::len), Some(4));
    assert_eq!(r.body["answers"][3]["yes"], true);
    assert_eq!(stored(&s, invitation).await, (4, Some("phone".into())));
    let entered_by: Option<Uuid> =
        sqlx::query_scalar("select entered_by from survey_invitations where id = $1")
            .bind(invitation)
            .fetch_one(&s.app.pool)
            .await
            .expect("who");
    assert_eq!(entered_by, Some(s.org.collaborator_id));
    // Good scores open no follow-up; a second entry is refused.
    let follow_ups: i64 = sqlx::query_scalar("select count(*) from survey_follow_ups")
        .fetch_one(&s.app.pool)
        .await
        .expect("count");
    assert_eq!(follow_ups, 0);
    let r = s.app.post(&path, Some(&s.org.director), good).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "survey_answered")
    );
    assert_eq!(stored(&s, invitation).await, (4, Some("phone".into())));

    // The e-mailed link of an invitation answered by phone no longer opens it.
    let status = open(&s.app, &link).await.status;
    assert_eq!(status, StatusCode::GONE);
    s.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_low_score_by_phone_opens_one_follow_up_for_the_default_process_without_a_visit(
    pool: PgPool,
) {
    let s = start(pool).await;
    s.app.process("SIG").await;
    // A campaign invitation: no visit, so the default process answers for it.
    let mut tx = s.app.pool.begin().await.expect("tx");
    let campaign = Uuid::new_v4();
    sqlx::query(
        "insert into survey_campaigns (id, version_id, name, closes_at)
         values ($1, '5e1f0000-0000-4000-8000-000000000002', 'Diciembre 2026', now() + interval '30 days')",
    )
    .bind(campaign)
    .execute(&mut *tx)
    .await
    .expect("campaign");
    let invitation = Uuid::new_v4();
    sqlx::query(
        "insert into survey_invitations (id, customer_id, version_id, campaign_id, expires_at)
         values ($1, $2, '5e1f0000-0000-4000-8000-000000000002', $3, now() + interval '30 days')",
    )
    .bind(invitation)
    .bind(s.customer_id)
    .bind(campaign)
    .execute(&mut *tx)
    .await
    .expect("invitation");
    tx.commit().await.expect("commit");
    let path = format!("/api/v1/staff/survey-invitations/{invitation}/responses");
    let bad_choice = json!({"taken_via": "visit", "answers": {"service_quality": 1, "punctuality": 3,
        "technician_attention": 3, "expectations": "regular", "would_recommend": false}});
    let r = s.app.post(&path, Some(&s.org.director), bad_choice).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_survey_choice")
    );
    let r = s
        .app
        .post(
            &path,
            Some(&s.org.director),
            json!({"taken_via": "visit", "answers": {"service_quality": 1, "punctuality": 3,
                "technician_attention": 3, "expectations": "not_met", "would_recommend": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["campaign_id"], json!(campaign));
    let r = s
        .app
        .get(
            &format!("/api/v1/staff/survey-invitations?campaign={campaign}"),
            Some(&s.org.director),
        )
        .await;
    assert_eq!(r.body["items"][0]["taken_via"], "visit");
    let r = s
        .app
        .get("/api/v1/staff/survey-follow-ups", Some(&s.org.director))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = r.body["follow_ups"].as_array().expect("follow-ups");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["process"], "SIG");
    assert_eq!(list[0]["lowest_score"], 1);
    // SIG has no leader: the quality director heard of it.
    let director = s.app.user_id("director@test.co").await;
    let told = count(
        &s,
        "select count(*) from notifications where kind = 'follow_up_opened' and user_id = $1",
        director,
    )
    .await;
    assert_eq!(told, 1);
    s.app.stop().await;
}
