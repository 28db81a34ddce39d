//! Semestral survey campaigns (PRO-SIG-10) and template versions through the real server, a real
//! SMTP receiver and real PostgreSQL: a campaign reaches every active customer or an exact random
//! sample; the scheduler opens one campaign per configured month however many rounds run at once,
//! reminds once and closes it, after which its links show the expired page; answers on the web page
//! count in the figures; only the quality director and admins create, close and keep versions; a
//! version's questions freeze once an invitation uses it.

use std::collections::BTreeSet;

use atiende_core::surveys::campaigns;
use atiende_server::Settings;
use atiende_tests::{Org, TestApp, spawn_app_with};
use chrono::{Datelike, Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::app_users::{Page, open};
use crate::email::mail_settings;
use crate::smtp_receiver::SmtpReceiver;
use crate::web::post_form;

const CAMPAIGNS: &str = "/api/v1/staff/survey-campaigns";
const BASE: &str = "https://pqrs.empresa.test";

struct World {
    receiver: SmtpReceiver,
    app: TestApp,
    org: Org,
    settings: Settings,
    /// The active customers: four with a contract in force (one of them without an e-mail) and
    /// one with a visit completed ten days ago.
    active: BTreeSet<Uuid>,
}

/// The server mailing to a local receiver, its own scheduler rounds an hour apart (the test runs
/// them) and opening campaigns in `months`.
async fn start(pool: PgPool, months: Vec<u32>) -> World {
    let receiver = SmtpReceiver::start().await;
    let settings = Settings {
        scheduler_interval_ms: 3_600_000,
        survey_campaign_months: months,
        ..mail_settings(receiver.addr.port())
    };
    let app = spawn_app_with(pool, settings.clone()).await;
    let org = app.org().await;
    World {
        receiver,
        app,
        org,
        settings,
        active: BTreeSet::new(),
    }
}

async fn customer(app: &TestApp, n: u32, email: Option<&str>, verified: bool) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, email, verified)
         values ($1, 'person', 'CC', $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(format!("{}", 70_000_000 + n))
    .bind(format!("Cliente {n}"))
    .bind(email)
    .bind(verified)
    .execute(&app.pool)
    .await
    .expect("customer");
    id
}

/// A contract of the customer from `starts` to `ends` days from today.
async fn contract(w: &World, customer: Uuid, starts: i32, ends: i32) {
    let director = w.app.user_id("director@test.co").await;
    sqlx::query(
        "insert into contracts (id, customer_id, services, visit_frequency, starts_on, ends_on, created_by)
         values ($1, $2, array['Fumigación'], 'monthly', current_date + $3, current_date + $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(customer)
    .bind(starts)
    .bind(ends)
    .bind(director)
    .execute(&w.app.pool)
    .await
    .expect("contract");
}

/// A visit to the customer completed `days_ago` (standing in for the signed field report).
async fn visit(w: &World, customer: Uuid, days_ago: i32) {
    let technician = w.app.user_id("tecnico@test.co").await;
    let r = w
        .app
        .post(
            "/api/v1/staff/work-orders",
            Some(&w.org.director),
            json!({"customer_id": customer, "process": "OPERATIVO", "address": "Calle 1 # 2-3",
                   "scheduled_at": "2026-06-01T14:00:00Z", "service_type": "Fumigación",
                   "technicians": [technician]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    sqlx::query(
        "update work_orders set status = 'completed', completed_at = now() - make_interval(days => $2) where id = $1::uuid",
    )
    .bind(r.body["id"].as_str().expect("id"))
    .bind(days_ago)
    .execute(&w.app.pool)
    .await
    .expect("complete the visit");
}

/// Five active customers and three who are not: a contract that ended, a visit eight months ago,
/// and an unverified contact.
async fn customers(w: &mut World) {
    for n in 1..=4 {
        let email = format!("c{n}@test.co");
        let id = customer(&w.app, n, (n != 4).then_some(email.as_str()), true).await;
        contract(w, id, -100, 200).await;
        w.active.insert(id);
    }
    let served = customer(&w.app, 5, Some("c5@test.co"), true).await;
    visit(w, served, 10).await;
    w.active.insert(served);
    let ended = customer(&w.app, 6, Some("c6@test.co"), true).await;
    contract(w, ended, -400, -30).await;
    let long_ago = customer(&w.app, 7, Some("c7@test.co"), true).await;
    visit(w, long_ago, 240).await;
    let contact = customer(&w.app, 8, Some("c8@test.co"), false).await;
    contract(w, contact, -10, 100).await;
}

async fn invited(app: &TestApp, campaign: &str) -> Vec<Uuid> {
    sqlx::query_scalar(
        "select customer_id from survey_invitations where campaign_id = $1::uuid order by customer_id",
    )
    .bind(campaign)
    .fetch_all(&app.pool)
    .await
    .expect("invitations")
}

fn today() -> NaiveDate {
    campaigns::today()
}

fn id_of(r: &atiende_tests::Reply) -> String {
    r.body["id"].as_str().expect("id").to_owned()
}

/// The survey links (`/s/<token>?lang=es`) in the e-mails to `to` whose text contains `marker`,
/// once there are `n` of them.
async fn links(w: &World, to: &str, marker: &str, n: usize) -> Vec<String> {
    let matching = |m: &crate::smtp_receiver::Received| {
        m.parsed()
            .body_text(0)
            .is_some_and(|b| b.contains(marker) && b.contains("/s/srv_"))
    };
    let mails = w
        .receiver
        .wait_for(to, |m| m.iter().filter(|m| matching(m)).count() >= n)
        .await;
    mails
        .iter()
        .filter(|m| matching(m))
        .map(|m| {
            let body = m.parsed().body_text(0).expect("a body").into_owned();
            let start = body.find(&format!("{BASE}/s/")).expect("the link");
            body[start + BASE.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ')')
                .collect()
        })
        .collect()
}

/// The campaign an e-mailed link belongs to.
async fn campaign_of(app: &TestApp, link: &str) -> Uuid {
    let token = link
        .trim_start_matches("/s/")
        .split('?')
        .next()
        .expect("token");
    sqlx::query_scalar(
        "select i.campaign_id from survey_links l join survey_invitations i on i.id = l.invitation_id
         where l.token_hash = $1",
    )
    .bind(atiende_core::auth::token_digest(token))
    .fetch_one(&app.pool)
    .await
    .expect("the link's invitation")
}

/// The problem the API answered with.
#[track_caller]
fn refused(r: &atiende_tests::Reply, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
}

async fn campaign(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app.get(&format!("{CAMPAIGNS}/{id}"), Some(token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_campaign_reaches_every_active_customer_or_an_exact_sample(pool: PgPool) {
    let mut w = start(pool, Vec::new()).await;
    customers(&mut w).await;
    let closes_on = (today() + Days::new(20)).to_string();

    // Every active customer, once each, on their channel.
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.director),
            json!({"title": "Encuesta semestral diciembre", "closes_on": closes_on}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let all = id_of(&r);
    assert_eq!(r.body["status"], "open");
    assert_eq!(r.body["template"], "semestral");
    assert_eq!(r.body["population"], 5);
    assert_eq!(r.body["sample_size"], Value::Null);
    assert_eq!(r.body["sample_exceeded_population"], false);
    assert_eq!(r.body["figures"]["invited"], 5);
    assert_eq!(
        r.body["figures"]["without_channel"], 1,
        "the customer without an e-mail, chat or app is left to a call"
    );
    assert_eq!(r.body["figures"]["response_rate_percent"], 0.0);
    let got: BTreeSet<Uuid> = invited(&w.app, &all).await.into_iter().collect();
    assert_eq!(got, w.active);

    // The customer answers on the page the e-mail links to; the answer counts in the figures.
    let link = links(&w, "c1@test.co", "", 1).await.remove(0);
    let Page {
        status,
        cookie,
        csrf,
        html,
    } = open(&w.app, &link).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("¿Cómo califica la calidad de nuestros servicios en este semestre?"));
    let r = post_form(
        &w.app,
        &link,
        &cookie,
        &[
            ("csrf", csrf.as_str()),
            ("service_quality", "5"),
            ("punctuality", "4"),
            ("technician_attention", "5"),
            ("expectations", "met"),
            ("would_recommend", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let figures = campaign(&w.app, &w.org.leader, &all).await["figures"].clone();
    assert_eq!(figures["answered"], 1);
    assert_eq!(figures["response_rate_percent"], 20.0);

    // A sample: exactly that many active customers, each once.
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.admin),
            json!({"title": "Muestra", "closes_on": closes_on, "sample_size": 3, "version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let sample = id_of(&r);
    assert_eq!(
        (&r.body["figures"]["invited"], &r.body["population"]),
        (&json!(3), &json!(5))
    );
    let chosen = invited(&w.app, &sample).await;
    let distinct: BTreeSet<Uuid> = chosen.iter().copied().collect();
    assert_eq!((chosen.len(), distinct.len()), (3, 3));
    assert!(distinct.is_subset(&w.active), "{chosen:?}");
    // A sample larger than the active customers takes them all and says so.
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.director),
            json!({"title": "Muestra grande", "closes_on": closes_on, "sample_size": 50}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["figures"]["invited"], 5);
    assert_eq!(r.body["sample_size"], 50);
    assert_eq!(r.body["sample_exceeded_population"], true);

    // Staff close the sample early: its links show the expired page and no reminder goes.
    let emails: Vec<Option<String>> =
        sqlx::query_scalar("select email from customers where id = any($1) order by id")
            .bind(&chosen)
            .fetch_all(&w.app.pool)
            .await
            .expect("emails");
    let to = emails
        .into_iter()
        .flatten()
        .next()
        .expect("one with e-mail");
    let mut sample_link = None;
    for link in links(&w, &to, "", 3).await {
        if campaign_of(&w.app, &link).await.to_string() == sample {
            sample_link = Some(link);
        }
    }
    let sample_link = sample_link.expect("the sample's e-mail");
    assert_eq!(open(&w.app, &sample_link).await.status, StatusCode::OK);
    let close = format!("{CAMPAIGNS}/{sample}/close");
    for (token, status, code) in [
        (&w.org.leader, StatusCode::FORBIDDEN, "role_not_allowed"),
        (
            &w.org.collaborator,
            StatusCode::FORBIDDEN,
            "role_not_allowed",
        ),
        (&w.org.technician, StatusCode::FORBIDDEN, "staff_only"),
    ] {
        let r = w.app.post(&close, Some(token), json!({})).await;
        refused(&r, status, code);
    }
    let r = w.app.post(&close, Some(&w.org.director), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "closed");
    assert!(r.body["closed_at"].is_string());
    let r = w.app.post(&close, Some(&w.org.admin), json!({})).await;
    refused(&r, StatusCode::CONFLICT, "survey_campaign_closed");
    let r = w
        .app
        .post(
            &format!("{CAMPAIGNS}/{}/close", Uuid::new_v4()),
            Some(&w.org.director),
            json!({}),
        )
        .await;
    refused(&r, StatusCode::NOT_FOUND, "survey_campaign_not_found");
    let Page { status, html, .. } = open(&w.app, &sample_link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("data-code=\"survey_expired\""), "{html}");
    sqlx::query(
        "update survey_invitations set sent_at = sent_at - interval '20 days' where campaign_id = $1::uuid",
    )
    .bind(&sample)
    .execute(&w.app.pool)
    .await
    .expect("time passes");
    let schedule = w.settings.survey_campaigns();
    campaigns::round(&w.app.pool, &schedule, today(), 500)
        .await
        .expect("a round");
    let reminded: i64 = sqlx::query_scalar(
        "select count(*) from survey_invitations where campaign_id = $1::uuid and reminded_at is not null",
    )
    .bind(&sample)
    .fetch_one(&w.app.pool)
    .await
    .expect("count");
    assert_eq!(reminded, 0, "no reminder after the closing");

    // The list, newest first, with figures; process leaders read it, collaborators and customers
    // do not.
    let r = w.app.get(CAMPAIGNS, Some(&w.org.leader)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["id"], json!(all));
    assert_eq!(items[2]["figures"]["answered"], 1);
    let r = w
        .app
        .get(&format!("{CAMPAIGNS}?limit=2"), Some(&w.org.admin))
        .await;
    let cursor = r.body["next_cursor"].as_str().expect("a next page");
    let r = w
        .app
        .get(
            &format!("{CAMPAIGNS}?limit=2&cursor={cursor}"),
            Some(&w.org.admin),
        )
        .await;
    assert_eq!(r.body["items"][0]["id"], json!(all));
    let customer = w.app.customer("cliente@test.co", "1020304050").await;
    for (token, code) in [
        (&w.org.collaborator, "role_not_allowed"),
        (&customer, "staff_only"),
    ] {
        let r = w.app.get(CAMPAIGNS, Some(token)).await;
        refused(&r, StatusCode::FORBIDDEN, code);
        let r = w.app.get(&format!("{CAMPAIGNS}/{all}"), Some(token)).await;
        refused(&r, StatusCode::FORBIDDEN, code);
        let r = w
            .app
            .post(
                CAMPAIGNS,
                Some(token),
                json!({"title": "X", "closes_on": closes_on}),
            )
            .await;
        refused(&r, StatusCode::FORBIDDEN, code);
    }
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.leader),
            json!({"title": "X", "closes_on": closes_on}),
        )
        .await;
    refused(&r, StatusCode::FORBIDDEN, "role_not_allowed");
    w.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_campaigns_are_refused_and_a_later_campaign_opens_on_its_day(pool: PgPool) {
    let mut w = start(pool, Vec::new()).await;
    let day = |d: i64| {
        if d >= 0 {
            today() + Days::new(d.unsigned_abs())
        } else {
            today() - Days::new(d.unsigned_abs())
        }
        .to_string()
    };
    for (body, status, code) in [
        (
            json!({"title": "  ", "closes_on": day(10)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_title",
        ),
        (
            json!({"title": "x".repeat(201), "closes_on": day(10)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_title",
        ),
        (
            json!({"title": "Junio", "opens_on": day(-1), "closes_on": day(10)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_dates",
        ),
        (
            json!({"title": "Junio", "opens_on": day(5), "closes_on": day(4)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_dates",
        ),
        (
            json!({"title": "Junio", "opens_on": day(1), "closes_on": day(92)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_dates",
        ),
        (
            json!({"title": "Junio", "opens_on": day(367), "closes_on": day(370)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_campaign_dates",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "sample_size": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sample_size",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "sample_size": 100_001}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sample_size",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "template": "post_service"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_campaign_template",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "template": "otra"}),
            StatusCode::NOT_FOUND,
            "survey_template_not_found",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "version": 9}),
            StatusCode::NOT_FOUND,
            "survey_version_not_found",
        ),
        (
            json!({"title": "Junio", "closes_on": "mañana"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"title": "Junio", "closes_on": day(10), "to": "todos"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let r = w.app.post(CAMPAIGNS, Some(&w.org.director), body).await;
        refused(&r, status, code);
    }
    assert_eq!(
        w.app.count("select count(*) from survey_campaigns").await,
        0
    );
    // The longest title and span are taken; a campaign that opens later invites nobody yet.
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.director),
            json!({"title": "x".repeat(200), "opens_on": day(1), "closes_on": day(91), "sample_size": 100_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    assert_eq!(r.body["figures"]["invited"], 0);
    assert_eq!(r.body["population"], Value::Null);
    let later = id_of(&r);
    // Its day comes: the scheduler draws it, once.
    customers(&mut w).await;
    sqlx::query(
        "update survey_campaigns set opens_at = now() - interval '1 minute' where id = $1::uuid",
    )
    .bind(&later)
    .execute(&w.app.pool)
    .await
    .expect("time passes");
    let schedule = w.settings.survey_campaigns();
    let rounds = futures_util::future::join_all(
        (0..3).map(|_| campaigns::round(&w.app.pool, &schedule, today(), 500)),
    )
    .await;
    let drawn: usize = rounds.into_iter().map(|r| r.expect("round").invited).sum();
    assert_eq!(drawn, 5);
    let c = campaign(&w.app, &w.org.director, &later).await;
    assert_eq!(c["status"], "open");
    assert_eq!(c["population"], 5);
    assert_eq!(c["sample_exceeded_population"], true);
    assert_eq!(c["figures"]["invited"], 5);
    let got: BTreeSet<Uuid> = invited(&w.app, &later).await.into_iter().collect();
    assert_eq!(got, w.active);
    let r = w
        .app
        .get(
            &format!("{CAMPAIGNS}/{}", Uuid::new_v4()),
            Some(&w.org.director),
        )
        .await;
    refused(&r, StatusCode::NOT_FOUND, "survey_campaign_not_found");
    w.app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_scheduler_opens_a_months_campaign_once_reminds_once_and_closes_it(pool: PgPool) {
    // The server's own scheduler opens this month's campaign when this month is configured.
    let this_month = today().with_day(1).expect("first day");
    let mut w = start(pool, vec![this_month.month()]).await;
    let mut own = Value::Null;
    for _ in 0..600 {
        let r = w.app.get(CAMPAIGNS, Some(&w.org.director)).await;
        if let Some(c) = r.body["items"].as_array().and_then(|i| i.first()) {
            own = c.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(own["scheduled_for"], json!(this_month), "{own}");
    assert_eq!(own["figures"]["invited"], 0, "nobody is active yet");
    customers(&mut w).await;

    // June is configured: rounds in July open nothing; four rounds at once on a June day open one
    // campaign, and a later June day none.
    let schedule = Settings {
        survey_campaign_months: vec![6],
        ..w.settings.clone()
    }
    .survey_campaigns();
    let june = NaiveDate::from_ymd_opt(2027, 6, 2).expect("date");
    let july = NaiveDate::from_ymd_opt(2027, 7, 1).expect("date");
    let round = |day| campaigns::round(&w.app.pool, &schedule, day, 500);
    assert_eq!(round(july).await.expect("round").opened, 0);
    let rounds = futures_util::future::join_all((0..4).map(|_| round(june))).await;
    let opened: usize = rounds.into_iter().map(|r| r.expect("round").opened).sum();
    assert_eq!(opened, 1);
    assert_eq!(round(june + Days::new(18)).await.expect("round").opened, 0);
    let scheduled: Vec<(Uuid, Option<NaiveDate>)> = sqlx::query_as(
        "select id, scheduled_for from survey_campaigns where scheduled_for = '2027-06-01'",
    )
    .fetch_all(&w.app.pool)
    .await
    .expect("campaigns");
    assert_eq!(scheduled.len(), 1);
    let id = scheduled[0].0.to_string();
    let got: BTreeSet<Uuid> = invited(&w.app, &id).await.into_iter().collect();
    assert_eq!(got, w.active);
    let c = campaign(&w.app, &w.org.director, &id).await;
    assert_eq!(c["title"], "Semestral 2027-06");
    assert_eq!(c["status"], "open");

    // Not yet a week: no reminder. One customer answers by phone.
    assert_eq!(round(june).await.expect("round").reminded, 0);
    let c1 = sqlx::query_scalar::<_, Uuid>("select id from customers where email = 'c1@test.co'")
        .fetch_one(&w.app.pool)
        .await
        .expect("c1");
    let invitation: Uuid = sqlx::query_scalar(
        "select id from survey_invitations where campaign_id = $1::uuid and customer_id = $2",
    )
    .bind(&id)
    .bind(c1)
    .fetch_one(&w.app.pool)
    .await
    .expect("invitation");
    // The invitation e-mail leaves before the call: one answered first is never sent.
    links(&w, "c1@test.co", "", 1).await;
    let r = w
        .app
        .post(
            &format!("/api/v1/staff/survey-invitations/{invitation}/responses"),
            Some(&w.org.collaborator),
            json!({"taken_via": "phone", "answers": {"service_quality": 4, "punctuality": 4,
                   "technician_attention": 5, "expectations": "met", "would_recommend": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // A week later the others are reminded, once, however many rounds run.
    sqlx::query(
        "update survey_invitations set sent_at = sent_at - interval '8 days' where campaign_id = $1::uuid",
    )
    .bind(&id)
    .execute(&w.app.pool)
    .await
    .expect("time passes");
    let rounds = futures_util::future::join_all((0..3).map(|_| round(june))).await;
    let reminded: usize = rounds.into_iter().map(|r| r.expect("round").reminded).sum();
    assert_eq!(reminded, 4);
    assert_eq!(round(june).await.expect("round").reminded, 0);
    let notices: i64 = sqlx::query_scalar(
        "select count(*) from notifications where kind = 'survey_reminder' and data->>'campaign_id' = $1",
    )
    .bind(&id)
    .fetch_one(&w.app.pool)
    .await
    .expect("count");
    assert_eq!(notices, 4);
    let reminder = links(&w, "c2@test.co", "Aún no ha respondido", 1)
        .await
        .remove(0);
    assert_eq!(campaign_of(&w.app, &reminder).await.to_string(), id);
    let Page { status, html, .. } = open(&w.app, &reminder).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let c = campaign(&w.app, &w.org.director, &id).await;
    assert_eq!(c["figures"]["reminded"], 4);
    assert_eq!(c["figures"]["answered"], 1);
    assert_eq!(c["figures"]["response_rate_percent"], 20.0);

    // The closing date comes: the campaign closes, its open links show the expired page.
    sqlx::query(
        "update survey_campaigns set opens_at = now() - interval '40 days', closes_at = now() - interval '1 minute' where id = $1::uuid",
    )
    .bind(&id)
    .execute(&w.app.pool)
    .await
    .expect("time passes");
    let rounds = futures_util::future::join_all((0..3).map(|_| round(july))).await;
    let closed: usize = rounds.into_iter().map(|r| r.expect("round").closed).sum();
    assert_eq!(closed, 1);
    let Page { status, html, .. } = open(&w.app, &reminder.replace("lang=es", "lang=en")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        html.contains("The time to answer this survey has run out."),
        "{html}"
    );
    let c = campaign(&w.app, &w.org.director, &id).await;
    assert_eq!(c["status"], "closed");
    assert!(c["closed_at"].is_string());
    assert_eq!(c["figures"]["answered"], 1, "answers stay counted");
    w.app.stop().await;
}

fn question(code: &str, kind: &str) -> Value {
    let mut q = json!({"code": code, "kind": kind, "label_es": "¿Qué tal el servicio?",
                       "label_en": "How was the service?"});
    if kind == "choice" {
        q["options"] = json!([{"value": "si", "es": "Sí", "en": "Yes"},
                              {"value": "no", "es": "No", "en": "No"}]);
    }
    q
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn template_versions_are_written_checked_chosen_and_frozen_once_used(pool: PgPool) {
    let mut w = start(pool, Vec::new()).await;
    let versions = "/api/v1/staff/survey-templates/semestral/versions";
    let good = json!({"questions": [question("quality", "scale"), question("recommend", "yes_no"),
                                    question("reason", "choice"), question("comments", "text")]});

    // Only the quality director and admins write versions.
    for (token, code) in [
        (&w.org.leader, "role_not_allowed"),
        (&w.org.collaborator, "role_not_allowed"),
        (&w.org.technician, "staff_only"),
    ] {
        let r = w.app.post(versions, Some(token), good.clone()).await;
        refused(&r, StatusCode::FORBIDDEN, code);
    }
    // Every bound, exceeded.
    let many: Vec<Value> = (0..21)
        .map(|i| question(&format!("q{i}"), "scale"))
        .collect();
    let mut long_label = question("quality", "scale");
    long_label["label_es"] = json!("x".repeat(301));
    let mut one_option = question("reason", "choice");
    one_option["options"] = json!([{"value": "si", "es": "Sí", "en": "Yes"}]);
    let mut eleven = question("reason", "choice");
    eleven["options"] = json!(
        (0..11)
            .map(|i| json!({"value": format!("o{i}"), "es": "Sí", "en": "Yes"}))
            .collect::<Vec<_>>()
    );
    let mut same_option = question("reason", "choice");
    same_option["options"][1]["value"] = json!("si");
    let mut blank_label = question("quality", "scale");
    blank_label["label_en"] = json!("   ");
    let mut long_value = question("reason", "choice");
    long_value["options"][0]["value"] = json!("v".repeat(41));
    let mut long_option = question("reason", "choice");
    long_option["options"][0]["en"] = json!("x".repeat(81));
    let mut options_on_scale = question("quality", "scale");
    options_on_scale["options"] = json!([{"value": "si", "es": "Sí", "en": "Yes"},
                                         {"value": "no", "es": "No", "en": "No"}]);
    for (questions, code) in [
        (json!([]), "invalid_survey_question_count"),
        (json!(many), "invalid_survey_question_count"),
        (
            json!([question("Quality", "scale")]),
            "invalid_survey_question_code",
        ),
        (
            json!([question(&"q".repeat(41), "scale")]),
            "invalid_survey_question_code",
        ),
        (
            json!([question("quality", "scale"), question("quality", "text")]),
            "duplicate_survey_question",
        ),
        (json!([long_label]), "invalid_survey_label"),
        (json!([one_option]), "invalid_survey_options"),
        (json!([eleven]), "invalid_survey_options"),
        (json!([options_on_scale]), "invalid_survey_options"),
        (json!([same_option]), "duplicate_survey_option"),
        (json!([long_option]), "invalid_survey_option"),
        (json!([long_value]), "invalid_survey_option"),
        (json!([blank_label]), "invalid_survey_label"),
        (json!([question("quality", "stars")]), "invalid_body"),
    ] {
        let r = w
            .app
            .post(
                versions,
                Some(&w.org.director),
                json!({"questions": questions}),
            )
            .await;
        refused(&r, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let r = w
        .app
        .post(
            "/api/v1/staff/survey-templates/otra/versions",
            Some(&w.org.director),
            good.clone(),
        )
        .await;
    refused(&r, StatusCode::NOT_FOUND, "survey_template_not_found");
    assert_eq!(
        w.app
            .count(
                "select count(*) from survey_template_versions where template_code = 'semestral'"
            )
            .await,
        1,
        "nothing was written"
    );

    // Version 2: written, not current, still editable.
    let r = w.app.post(versions, Some(&w.org.admin), good.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["current"], false);
    assert_eq!(r.body["frozen"], false);
    assert_eq!(r.body["questions"][2]["options"][1]["value"], "no");
    assert_eq!(r.body["questions"][3]["required"], true);
    let mut edited = good.clone();
    edited["questions"][0]["label_es"] = json!("¿Cómo califica el semestre?");
    edited["questions"][3]["required"] = json!(false);
    let v2 = format!("{versions}/2");
    let r = w.app.put(&v2, Some(&w.org.director), edited.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["questions"][0]["label_es"],
        "¿Cómo califica el semestre?"
    );
    assert_eq!(r.body["questions"][3]["required"], false);
    let r = w
        .app
        .put(
            &format!("{versions}/7"),
            Some(&w.org.director),
            edited.clone(),
        )
        .await;
    refused(&r, StatusCode::NOT_FOUND, "survey_version_not_found");
    let r = w
        .app
        .put(&v2, Some(&w.org.director), json!({"questions": []}))
        .await;
    refused(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_survey_question_count",
    );

    // Made current, new campaigns use it; once invited, it is frozen.
    let current = "/api/v1/staff/survey-templates/semestral/current";
    let r = w
        .app
        .put(current, Some(&w.org.collaborator), json!({"version": 2}))
        .await;
    refused(&r, StatusCode::FORBIDDEN, "role_not_allowed");
    let r = w
        .app
        .put(current, Some(&w.org.director), json!({"version": 3}))
        .await;
    refused(&r, StatusCode::NOT_FOUND, "survey_version_not_found");
    let r = w
        .app
        .put(current, Some(&w.org.director), json!({"version": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["questions"][0]["code"], "quality");
    let r = w
        .app
        .get("/api/v1/staff/survey-templates", Some(&w.org.collaborator))
        .await;
    assert_eq!(r.body["templates"][1]["version"], 2, "{}", r.body);
    customers(&mut w).await;
    let r = w
        .app
        .post(
            CAMPAIGNS,
            Some(&w.org.director),
            json!({"title": "Con la versión 2", "closes_on": (today() + Days::new(5)).to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    let r = w.app.put(&v2, Some(&w.org.director), good.clone()).await;
    refused(&r, StatusCode::CONFLICT, "survey_version_frozen");
    // The page asks version 2's questions.
    let link = links(&w, "c1@test.co", "", 1).await.remove(0);
    let html = open(&w.app, &link).await.html;
    assert!(html.contains("¿Cómo califica el semestre?"), "{html}");

    let r = w.app.get(versions, Some(&w.org.collaborator)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let listed: Vec<(i64, bool, bool, i64)> = r.body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap_or_default(),
                v["current"].as_bool().unwrap_or_default(),
                v["frozen"].as_bool().unwrap_or_default(),
                v["invitations"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(listed, [(2, true, true, 5), (1, false, false, 0)]);
    let r = w.app.get(versions, Some(&w.org.technician)).await;
    refused(&r, StatusCode::FORBIDDEN, "staff_only");
    w.app.stop().await;
}
