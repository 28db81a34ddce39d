//! A web filing made with a customer's document number is stored under an unverified contact; it
//! joins the customer's record only when the contact on file confirms it with a one-time code.
//! Through the real server and a real SMTP receiver: the page reads the same whoever the number
//! belongs to, the code arrives by e-mail, and wrong, expired, dead and used codes are refused.

use atiende_core::types::Role;
use atiende_tests::{TestApp, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use sqlx::PgPool;
use uuid::Uuid;

use crate::email::mail_settings;
use crate::smtp_receiver::SmtpReceiver;
use crate::web::{Form, case_link, good, hidden, open_form, post, post_form, with};

/// The server, mailing to a local receiver, and a customer with an app user and an e-mail address
/// on file whose document number is 80012345, with their API token.
async fn start(pool: PgPool) -> (SmtpReceiver, TestApp, String) {
    let receiver = SmtpReceiver::start().await;
    let app = spawn_app_with(pool, mail_settings(receiver.addr.port())).await;
    let token = app.customer("cliente@example.test", "80012345").await;
    (receiver, app, token)
}

/// A filing made on the web form, as its filer holds it: the browser's cookie and CSRF token,
/// the case's secret path and its radicado.
struct Filed {
    form: Form,
    case_path: String,
    radicado: String,
}

async fn file_on_web(app: &TestApp, document: &str, email: &str) -> Filed {
    let form = open_form(app, "?lang=es").await;
    let fields = with(&good(&form, document), "email", email);
    let (status, html) = post(app, "/pqrs?lang=es", &form.cookie, &fields, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let case_path = case_link(&html);
    assert!(
        html.contains(&format!("action=\"{case_path}/vincular?lang=es\"")),
        "the acknowledgement offers to link the filing: {html}"
    );
    assert_eq!(hidden(&html, "csrf"), form.csrf);
    let radicado = html
        .split("id=\"radicado\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the radicado")
        .to_owned();
    Filed {
        form,
        case_path,
        radicado,
    }
}

/// Asks for a code on the filing's page; returns the status and the page.
async fn ask(app: &TestApp, filed: &Filed) -> (StatusCode, String) {
    let r = post_form(
        app,
        &format!("{}/vincular?lang=es", filed.case_path),
        &filed.form.cookie,
        &[("csrf", filed.form.csrf.as_str())],
    )
    .await;
    (r.status(), r.text().await.expect("body"))
}

async fn type_code(app: &TestApp, filed: &Filed, code: &str) -> reqwest::Response {
    post_form(
        app,
        &format!("{}/vincular/codigo?lang=es", filed.case_path),
        &filed.form.cookie,
        &[("csrf", filed.form.csrf.as_str()), ("code", code)],
    )
    .await
}

/// Types a code that links nothing: its status and the error's code.
async fn refused(app: &TestApp, filed: &Filed, code: &str) -> (StatusCode, String) {
    let r = type_code(app, filed, code).await;
    let status = r.status();
    (status, error_code(&r.text().await.expect("body")))
}

/// The `data-code` of the first error on a page.
fn error_code(html: &str) -> String {
    html.split("class=\"error\" id=\"code-error\" data-code=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// The page's main content with the filing's own secret path and radicado taken out, so pages of
/// different filings can be compared.
fn main_of(html: &str, filed: &Filed) -> String {
    let start = html.find("<main").expect("<main>");
    html[start..]
        .replace(&filed.case_path, "/pqrs/caso/TOKEN")
        .replace(&filed.radicado, "RADICADO")
        .replace(&filed.form.csrf, "CSRF")
}

/// The code in the link-code e-mails to `address`, the newest last.
async fn codes_mailed(receiver: &SmtpReceiver, address: &str, count: usize) -> Vec<String> {
    receiver
        .wait_for(address, |m| {
            m.iter()
                .filter(|m| {
                    m.parsed()
                        .subject()
                        .is_some_and(|s| s.starts_with("Código para vincular"))
                })
                .count()
                >= count
        })
        .await
        .iter()
        .filter_map(|m| {
            let mail = m.parsed();
            if !mail.subject()?.starts_with("Código para vincular") {
                return None;
            }
            let body = mail.body_text(0)?.into_owned();
            body.lines()
                .map(str::trim)
                .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_owned)
        })
        .collect()
}

async fn contact_of(app: &TestApp, filed: &Filed) -> (Uuid, Option<Uuid>, Option<String>) {
    let token = filed.case_path.trim_start_matches("/pqrs/caso/");
    sqlx::query_as(
        "select c.id, c.merged_into, c.merged_how from web_filings w
         join customers c on c.id = w.customer_id
         join cases k on k.id = w.filing_id
         join case_links l on l.case_id = k.id
         where l.token = $1",
    )
    .bind(token)
    .fetch_one(&app.pool)
    .await
    .expect("the filing's contact")
}

/// How many link codes were sent, to anyone.
async fn codes_sent(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from notifications where kind = 'link_code'")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

async fn radicados_of(app: &TestApp, token: &str) -> Vec<String> {
    let r = app.get("/api/v1/cases", Some(token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["radicado"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_code_sent_to_the_customer_on_file_links_the_filing(pool: PgPool) {
    let (receiver, app, customer) = start(pool).await;
    let customer_id: Uuid =
        sqlx::query_scalar("select id from customers where email = 'cliente@example.test'")
            .fetch_one(&app.pool)
            .await
            .expect("the customer");

    let filed = file_on_web(&app, "80012345", "otra@example.test").await;
    let (contact, merged_into, _) = contact_of(&app, &filed).await;
    assert_ne!(
        contact, customer_id,
        "a typed document number proves nothing"
    );
    assert_eq!(merged_into, None);
    assert!(
        !radicados_of(&app, &customer)
            .await
            .contains(&filed.radicado)
    );

    let (status, page) = ask(&app, &filed).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("data-code=\"link_code_sent\""), "{page}");
    assert!(page.contains("Vence en 15 minutos."), "{page}");
    let code = codes_mailed(&receiver, "cliente@example.test", 1)
        .await
        .pop()
        .expect("the code");
    let mail = receiver.wait_for("cliente@example.test", |_| true).await;
    let mail = mail
        .iter()
        .find(|m| m.parsed().body_text(0).is_some_and(|b| b.contains(&code)))
        .expect("the code's e-mail");
    let parsed = mail.parsed();
    let subject = parsed.subject().expect("a subject");
    assert!(
        subject.contains(&filed.radicado) && !subject.contains(&code),
        "{subject}"
    );
    let body = parsed.body_text(0).expect("a body").into_owned();
    assert!(
        body.contains("Si no fue usted, ignore este mensaje"),
        "{body}"
    );
    assert!(
        !body.contains("/pqrs/caso/"),
        "no case link in a code: {body}"
    );
    assert!(
        receiver.messages().iter().all(|m| !m
            .parsed()
            .body_text(0)
            .is_some_and(|b| b.contains(&code))
            || m.rcpt_to == vec!["cliente@example.test"]),
        "the code goes to the contact on file only"
    );
    let stored: Vec<String> =
        sqlx::query_scalar("select encode(code_digest, 'hex') from link_codes")
            .fetch_all(&app.pool)
            .await
            .expect("link codes");
    assert!(stored.iter().all(|d| !d.contains(&code) && d.len() == 64));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = type_code(&app, &filed, wrong).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.expect("body");
    assert_eq!(error_code(&html), "link_code_wrong", "{html}");
    assert!(html.contains("Le quedan 4 intentos."), "{html}");
    assert_eq!(
        refused(&app, &filed, "12a4").await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "link_code_malformed".to_owned()
        )
    );
    let tries: i32 = sqlx::query_scalar("select failed_attempts from link_codes")
        .fetch_one(&app.pool)
        .await
        .expect("tries");
    assert_eq!(tries, 1, "a wrong code is counted, a malformed one is not");
    assert_eq!(contact_of(&app, &filed).await.1, None, "nothing linked");

    let r = type_code(&app, &filed, &code).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()[LOCATION].to_str().expect("location").to_owned();
    assert_eq!(location, format!("{}?lang=es&done=linked", filed.case_path));
    let page = app
        .client
        .get(app.url(&location))
        .send()
        .await
        .expect("the case page")
        .text()
        .await
        .expect("body");
    assert!(page.contains("id=\"linked\""), "{page}");
    assert!(!page.contains("id=\"link-offer\""), "{page}");
    assert!(
        radicados_of(&app, &customer)
            .await
            .contains(&filed.radicado)
    );
    assert_eq!(
        contact_of(&app, &filed).await,
        (contact, Some(customer_id), Some("customer_code".into()))
    );
    let (role, comment): (String, String) = sqlx::query_as(
        "select e.actor_role, e.comment from case_events e join cases k on k.id = e.case_id
         where k.radicado = $1 and e.kind = 'merged'",
    )
    .bind(&filed.radicado)
    .fetch_one(&app.pool)
    .await
    .expect("the merged event");
    assert_eq!(role, "customer");
    assert!(comment.contains("one-time code"), "{comment}");
    let kept: Option<String> =
        sqlx::query_scalar("select data ->> 'code' from notifications where kind = 'link_code'")
            .fetch_one(&app.pool)
            .await
            .expect("the notification");
    assert_eq!(kept, None, "a used code is not kept in the outbox");

    assert_eq!(
        refused(&app, &filed, &code).await,
        (StatusCode::CONFLICT, "link_code_used".to_owned())
    );

    // The same form posted again after the link files nothing new and reads the same.
    let fields = with(&good(&filed.form, "80012345"), "email", "otra@example.test");
    let (status, html) = post(&app, "/pqrs?lang=es", &filed.form.cookie, &fields, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&filed.radicado), "{html}");
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn expired_and_dead_codes_link_nothing(pool: PgPool) {
    let (receiver, app, _) = start(pool).await;
    let filed = file_on_web(&app, "80012345", "otra@example.test").await;

    assert_eq!(ask(&app, &filed).await.0, StatusCode::OK);
    let first = codes_mailed(&receiver, "cliente@example.test", 1).await[0].clone();
    // Fifteen minutes pass.
    sqlx::query("update link_codes set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire the code");
    assert_eq!(
        refused(&app, &filed, &first).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "link_code_expired".to_owned()
        )
    );

    // A new code replaces the old one; five wrong tries kill it.
    assert_eq!(ask(&app, &filed).await.0, StatusCode::OK);
    let second = codes_mailed(&receiver, "cliente@example.test", 2).await[1].clone();
    let wrong = if second == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (0..5).rev() {
        let r = type_code(&app, &filed, wrong).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.expect("body");
        let code = if left == 0 {
            "link_code_dead"
        } else {
            "link_code_wrong"
        };
        assert_eq!(error_code(&html), code, "{left} left: {html}");
    }
    assert_eq!(
        refused(&app, &filed, &second).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "link_code_expired".to_owned()
        ),
        "the right code after five wrong ones is dead"
    );
    assert_eq!(contact_of(&app, &filed).await.1, None, "nothing linked");

    // Codes per filing are limited: five a day.
    for _ in 0..3 {
        assert_eq!(ask(&app, &filed).await.0, StatusCode::OK);
    }
    let (status, page) = ask(&app, &filed).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("data-code=\"link_code_too_many\""), "{page}");
    let sent = codes_sent(&app).await;
    assert_eq!(sent, 5);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_page_reads_the_same_whether_or_not_a_code_was_sent(pool: PgPool) {
    let (receiver, app, _) = start(pool).await;
    // A customer the company registered with no e-mail, app or chat.
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, verified)
         values ($1, 'person', 'CC', '70055555', 'Sin Contacto', true)",
    )
    .bind(Uuid::new_v4())
    .execute(&app.pool)
    .await
    .expect("a customer without contact");

    let known = file_on_web(&app, "80012345", "otra@example.test").await;
    let new = file_on_web(&app, "91000111", "nuevo@example.test").await;
    let unreachable = file_on_web(&app, "70055555", "alguien@example.test").await;
    let mut pages = Vec::new();
    for filed in [&known, &new, &unreachable] {
        let (status, page) = ask(&app, filed).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(main_of(&page, filed));
    }
    assert_eq!(pages[0], pages[1], "a new document number reads the same");
    assert_eq!(
        pages[0], pages[2],
        "a customer without contact reads the same"
    );

    codes_mailed(&receiver, "cliente@example.test", 1).await;
    let codes: Vec<(String, Option<String>)> = sqlx::query_as(
        "select n.kind, cu.email from notifications n join customers cu on cu.id = n.customer_id
         where n.kind = 'link_code'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("notifications");
    assert_eq!(
        codes,
        vec![(
            "link_code".to_owned(),
            Some("cliente@example.test".to_owned())
        )],
        "one code, to the customer with a contact on file"
    );
    // The new customer hears of their filing, and of nothing else.
    let to_new = receiver
        .wait_for("nuevo@example.test", |m| !m.is_empty())
        .await;
    assert!(
        to_new
            .iter()
            .all(|m| !m.parsed().subject().unwrap_or_default().contains("Código")),
        "no code for a new document number"
    );

    // Whatever is typed where nothing was sent is just a wrong code.
    for filed in [&new, &unreachable] {
        assert_eq!(
            refused(&app, filed, "123456").await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "link_code_wrong".to_owned()
            )
        );
    }
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_code_works_only_on_its_own_filings_link(pool: PgPool) {
    let (receiver, app, _) = start(pool).await;
    let mine = file_on_web(&app, "80012345", "otra@example.test").await;
    let theirs = file_on_web(&app, "80012345", "tercero@example.test").await;
    assert_eq!(ask(&app, &mine).await.0, StatusCode::OK);
    let code = codes_mailed(&receiver, "cliente@example.test", 1).await[0].clone();

    // The code of one filing typed on another filing's link links nothing.
    let r = type_code(&app, &theirs, &code).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(contact_of(&app, &theirs).await.1, None);
    assert_eq!(contact_of(&app, &mine).await.1, None);

    // A made-up link, and a form without its CSRF token, do nothing.
    let before: i64 = sqlx::query_scalar("select count(*) from link_codes")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    let fake = Filed {
        case_path: format!("/pqrs/caso/pqrs_{}", Uuid::new_v4().simple()),
        form: open_form(&app, "").await,
        radicado: String::new(),
    };
    assert_eq!(ask(&app, &fake).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        type_code(&app, &fake, &code).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = post_form(
        &app,
        &format!("{}/vincular/codigo", mine.case_path),
        &mine.form.cookie,
        &[("code", code.as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let after: i64 = sqlx::query_scalar("select count(*) from link_codes")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(before, after);
    assert_eq!(contact_of(&app, &mine).await.1, None);

    // On its own link the code still works.
    assert_eq!(
        type_code(&app, &mine, &code).await.status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_form_posted_again_after_staff_merged_its_contact_files_once(pool: PgPool) {
    let (_receiver, app, customer) = start(pool).await;
    let director = app
        .staff("director@test.co", Role::QualityDirector, None)
        .await
        .1;
    let filed = file_on_web(&app, "80012345", "otra@example.test").await;
    let (contact, _, _) = contact_of(&app, &filed).await;
    let customer_id: Uuid =
        sqlx::query_scalar("select id from customers where email = 'cliente@example.test'")
            .fetch_one(&app.pool)
            .await
            .expect("the customer");
    let r = app
        .post(
            &format!("/api/v1/staff/customers/{customer_id}/merge"),
            Some(&director),
            serde_json::json!({"contact_id": contact}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        contact_of(&app, &filed).await,
        (contact, Some(customer_id), Some("staff".into()))
    );

    let fields = with(&good(&filed.form, "80012345"), "email", "otra@example.test");
    let (status, html) = post(&app, "/pqrs?lang=en", &filed.form.cookie, &fields, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&filed.radicado), "{html}");
    assert_eq!(
        radicados_of(&app, &customer).await,
        vec![filed.radicado.clone()]
    );

    // Asking for a code now sends nothing (the filing is the customer's) and reads as ever.
    let r = post_form(
        &app,
        &format!("{}/vincular?lang=en", filed.case_path),
        &filed.form.cookie,
        &[("csrf", filed.form.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("body");
    assert!(page.contains("It expires in 15 minutes."), "{page}");
    let sent = codes_sent(&app).await;
    assert_eq!(sent, 0);
    app.stop().await;
}
