//! The public web form (`/pqrs`) through the real server: filing with attachments, who the filer
//! is, status by radicado, the case's own page, and every guard (CSRF, rate limit, sizes,
//! honeypot), each asserting what the page says and what was written.

use atiende_server::Settings;
use atiende_tests::{TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_LANGUAGE, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use serde_json::json;
use sqlx::PgPool;

/// A PNG's first bytes: enough for the type check.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";

/// The form as a browser holds it after loading `/pqrs`.
pub(crate) struct Form {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
    pub(crate) filing_id: String,
}

/// The value of the hidden input `name` in a page.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect(name) + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

pub(crate) async fn open_form(app: &TestApp, query: &str) -> Form {
    let r = app
        .client
        .get(app.url(&format!("/pqrs{query}")))
        .send()
        .await
        .expect("GET /pqrs");
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("the CSRF cookie")
        .to_owned();
    let html = r.text().await.expect("body");
    Form {
        csrf: hidden(&html, "csrf"),
        filing_id: hidden(&html, "filing_id"),
        cookie,
    }
}

/// Form fields as (name, value).
type Fields<'a> = Vec<(&'a str, &'a str)>;

/// A file part: (file name, content type, bytes).
type File<'a> = (&'a str, &'a str, &'a [u8]);

fn multipart(fields: &[(&str, &str)], files: &[File<'_>]) -> (String, Vec<u8>) {
    let boundary = "----atiende-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (file_name, content_type, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A complete, valid filing; tests change or drop fields from it.
pub(crate) fn good<'a>(form: &'a Form, document: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", &form.csrf),
        ("filing_id", &form.filing_id),
        ("consent", "yes"),
        ("document_type", "CC"),
        ("document_number", document),
        ("name", "Ana Pérez"),
        ("email", "ana@example.co"),
        ("phone", "+57 300 123 4567"),
        ("case_type", "reclamo"),
        ("subject", "Cobro doble"),
        (
            "description",
            "Me cobraron dos veces la visita de noviembre.",
        ),
        ("website", ""),
    ]
}

pub(crate) fn without<'a>(fields: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    fields.iter().filter(|(n, _)| *n != name).copied().collect()
}

pub(crate) fn with<'a>(
    fields: &[(&'a str, &'a str)],
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut f = without(fields, name);
    f.push((name, value));
    f
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    files: &[File<'_>],
) -> (StatusCode, String) {
    let (content_type, body) = multipart(fields, files);
    let r = app
        .client
        .post(app.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("POST");
    (r.status(), r.text().await.expect("body"))
}

pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    // Redirects are not followed: the tests look at where a form sends the browser.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(app.url(path))
        .header(COOKIE, cookie)
        .form(fields)
        .send()
        .await
        .expect("POST")
}

/// Rows the web form writes, so a refused submission can be shown to have written none.
async fn written(pool: &PgPool) -> [i64; 6] {
    let n = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect("count")
    };
    [
        n("select count(*) from cases").await,
        n("select count(*) from customers").await,
        n("select count(*) from consents").await,
        n("select count(*) from blobs").await,
        n("select count(*) from web_filings").await,
        n("select count(*) from case_links").await,
    ]
}

/// The text between `<dd id="{id}"...>` and `</dd>`.
fn dd(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = html.find(&marker).expect(id);
    let rest = &html[start..];
    let open = rest.find('>').expect(">") + 1;
    rest[open..]
        .split('<')
        .next()
        .expect("text")
        .trim()
        .to_owned()
}

pub(crate) fn case_link(html: &str) -> String {
    let start = html.find("/pqrs/caso/").expect("the case link");
    html[start..]
        .split(['?', '"', '<'])
        .next()
        .expect("link")
        .to_owned()
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_form_files_a_case_with_its_attachment(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let form = open_form(&app, "").await;
    let fields = good(&form, "1020304050");
    let (status, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &fields,
        &[("factura.png", "image/png", PNG)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Recibimos su solicitud"), "{html}");

    let case = sqlx::query!(
        r#"select c.id, c.radicado, c.channel, c.type, c.legal_due_date, cu.email, cu.phone, cu.verified, cu.language,
                  l.token, (select count(*) from case_attachments a where a.case_id = c.id) as "attachments!",
                  (select channel from consents where customer_id = cu.id) as "consent!"
           from cases c join customers cu on cu.id = c.customer_id join case_links l on l.case_id = c.id"#
    )
    .fetch_one(&pool)
    .await
    .expect("the case");
    assert_eq!(
        case.id.to_string(),
        form.filing_id,
        "the filing id is the case id"
    );
    assert_eq!(dd(&html, "radicado"), case.radicado);
    assert_eq!(
        dd(&html, "due-date"),
        atiende_core::texts::long_date("es", case.legal_due_date)
    );
    assert_eq!(case_link(&html), format!("/pqrs/caso/{}", case.token));
    assert_eq!(
        (case.channel.as_str(), case.r#type.as_str()),
        ("web", "reclamo")
    );
    assert_eq!(case.email.as_deref(), Some("ana@example.co"));
    assert_eq!(case.phone.as_deref(), Some("+573001234567"));
    assert!(case.verified, "a new document number makes a customer");
    assert_eq!(
        case.language.as_deref(),
        Some("es"),
        "e-mails follow the page's language"
    );
    assert_eq!(case.attachments, 1);
    assert_eq!(case.consent, "web");
    // The typed phone reaches the person but claims nothing: a chat from that number is not
    // linked to this record.
    assert_eq!(
        atiende_core::contacts::find_by_phone(&pool, "+57 300 123 4567")
            .await
            .expect("lookup"),
        atiende_core::contacts::PhoneMatch::None
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_pages_speak_english_when_asked(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let r = app
        .client
        .get(app.url("/pqrs"))
        .header(ACCEPT_LANGUAGE, "en-US,en;q=0.9,es;q=0.5")
        .send()
        .await
        .expect("GET");
    let html = r.text().await.expect("body");
    assert!(
        html.contains("<html lang=\"en\">") && html.contains("Send request"),
        "{html}"
    );

    let form = open_form(&app, "?lang=en").await;
    let fields = with(&good(&form, "88776655"), "case_type", "datos_consulta");
    let (status, html) = post(&app, "/pqrs?lang=en", &form.cookie, &fields, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("We received your request"), "{html}");
    let (due, term) = sqlx::query_as::<_, (chrono::NaiveDate, i32)>(
        "select legal_due_date, legal_term_days from cases",
    )
    .fetch_one(&pool)
    .await
    .expect("case");
    assert_eq!(
        term, 10,
        "a personal-data consultation is answered in 10 business days"
    );
    assert_eq!(
        dd(&html, "due-date"),
        atiende_core::texts::long_date("en", due)
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_same_form_posted_twice_files_once(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let form = open_form(&app, "").await;
    let fields = good(&form, "1020304050");
    let files: &[File<'_>] = &[("foto.png", "image/png", PNG)];
    let (first, second) = tokio::join!(
        post(&app, "/pqrs", &form.cookie, &fields, files),
        post(&app, "/pqrs", &form.cookie, &fields, files)
    );
    let (third_status, third) = post(&app, "/pqrs", &form.cookie, &fields, files).await;
    assert_eq!(
        (first.0, second.0, third_status),
        (StatusCode::OK, StatusCode::OK, StatusCode::OK)
    );
    let radicados = [
        dd(&first.1, "radicado"),
        dd(&second.1, "radicado"),
        dd(&third, "radicado"),
    ];
    assert!(
        radicados.iter().all(|r| *r == radicados[0]),
        "{radicados:?}"
    );
    assert_eq!(written(&pool).await, [1, 1, 1, 1, 1, 1]);

    // The same filing id with other content is not a retry: it is refused, nothing is added.
    let changed = with(&fields, "subject", "Otro asunto");
    let (status, html) = post(&app, "/pqrs", &form.cookie, &changed, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(
        html.contains("data-code=\"idempotency_conflict\""),
        "{html}"
    );
    assert_eq!(written(&pool).await, [1, 1, 1, 1, 1, 1]);
    app.stop().await;
}

/// The page's text with the parts that differ per filing blanked out.
fn shape(html: &str) -> String {
    let mut out = html.to_owned();
    // The form's CSRF token comes back in the offer to link the filing to a customer record.
    for part in [dd(html, "radicado"), case_link(html), hidden(html, "csrf")] {
        out = out.replace(&part, "#");
    }
    out
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_known_document_number_gets_a_contact_of_its_own(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let owner = app.customer("dueno@test.co", "1020304050").await;
    let owners_case = app.file(&owner, "peticion").await;

    let form = open_form(&app, "").await;
    let (status, known) = post(&app, "/pqrs", &form.cookie, &good(&form, "1020304050"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{known}");
    let other = open_form(&app, "").await;
    let (status, unknown) =
        post(&app, "/pqrs", &other.cookie, &good(&other, "99887766"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{unknown}");
    assert_eq!(
        shape(&known),
        shape(&unknown),
        "the page does not tell a known number"
    );

    let rows = sqlx::query!(
        "select cu.id, cu.verified, cu.email from cases c join customers cu on cu.id = c.customer_id
         where c.id = $1::text::uuid",
        form.filing_id
    )
    .fetch_one(&pool)
    .await
    .expect("the web case");
    let owner_id = sqlx::query_scalar!(
        "select customer_id from cases where id = $1::text::uuid",
        owners_case["id"].as_str()
    )
    .fetch_one(&pool)
    .await
    .expect("owner");
    assert_ne!(rows.id, owner_id, "never the owner's record");
    assert!(!rows.verified, "an unverified contact staff may merge");
    assert_eq!(rows.email.as_deref(), Some("ana@example.co"));
    let owner_email = sqlx::query_scalar!("select email from customers where id = $1", owner_id)
        .fetch_one(&pool)
        .await
        .expect("owner");
    assert_ne!(
        owner_email.as_deref(),
        Some("ana@example.co"),
        "the owner's record is untouched"
    );

    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_input_is_shown_next_to_its_field_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let form = open_form(&app, "").await;
    let base = good(&form, "1020304050");
    // (the form, the field in error, its code, the start of its text)
    let cases: Vec<(Fields<'_>, &str, &str, &str)> = vec![
        (
            without(&base, "consent"),
            "consent",
            "consent_required",
            "Debe autorizar el tratamiento de sus datos",
        ),
        (
            with(&base, "document_number", "12"),
            "document_number",
            "invalid_document_number",
            "El número de documento debe tener de 3 a 20",
        ),
        (
            with(&base, "document_number", "12 34 <b>"),
            "document_number",
            "invalid_document_number",
            "El número de documento debe tener de 3 a 20",
        ),
        (
            with(&base, "document_type", "XX"),
            "document_type",
            "invalid_document_type",
            "Seleccione el tipo de documento",
        ),
        (
            with(&with(&base, "email", ""), "phone", ""),
            "email",
            "contact_required",
            "Escriba un correo electrónico o un teléfono",
        ),
        (
            with(&base, "email", "no-es-correo"),
            "email",
            "invalid_email",
            "El correo electrónico no es válido",
        ),
        (
            with(&base, "phone", "12"),
            "phone",
            "invalid_phone",
            "El teléfono debe tener de 7 a 15",
        ),
        (
            with(&base, "case_type", "consulta"),
            "case_type",
            "invalid_case_type",
            "Seleccione el tipo de solicitud",
        ),
        (
            with(&base, "subject", "   "),
            "subject",
            "invalid_subject",
            "Escriba el asunto",
        ),
        (
            without(&base, "description"),
            "description",
            "invalid_description",
            "Describa su solicitud",
        ),
    ];
    for (fields, field, code, text) in cases {
        let (status, html) = post(&app, "/pqrs", &form.cookie, &fields, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {html}");
        assert!(
            html.contains(&format!(
                "<p class=\"error\" id=\"{field}-error\" data-code=\"{code}\">{text}"
            )),
            "{code} next to {field}: {html}"
        );
        assert!(
            html.contains(&format!("<a href=\"#{field}\" data-code=\"{code}\">{text}")),
            "{code} in the summary: {html}"
        );
        assert!(html.contains("El formulario tiene errores"));
    }
    // What was typed comes back, escaped.
    let (_, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &with(&without(&base, "consent"), "subject", "<script>x</script>"),
        &[],
    )
    .await;
    assert!(
        html.contains("value=\"&#60;script&#62;x&#60;/script&#62;\"")
            || html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>x"), "{html}");
    // The same filing id stays, so the corrected form still files once.
    assert_eq!(hidden(&html, "filing_id"), form.filing_id);
    assert_eq!(written(&pool).await, [0; 6]);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn attachments_are_limited_in_number_size_and_type(pool: PgPool) {
    let settings = Settings {
        blob_max_bytes: 64 * 1024,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool.clone(), settings).await;
    let form = open_form(&app, "").await;
    let fields = good(&form, "1020304050");

    let six: Vec<File<'_>> = (0..6).map(|_| ("f.png", "image/png", PNG)).collect();
    let (status, html) = post(&app, "/pqrs", &form.cookie, &fields, &six).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("data-code=\"too_many_attachments\">Puede adjuntar máximo 5 archivos"),
        "{html}"
    );

    let mut big = PNG.to_vec();
    big.resize(64 * 1024 + 1, 0);
    let (status, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &fields,
        &[("grande.png", "image/png", &big)],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("data-code=\"attachment_too_large\">El archivo «grande.png» supera"),
        "{html}"
    );

    for (name, declared, bytes) in [
        ("nota.txt", "text/plain", &b"hola"[..]),
        ("disfraz.png", "image/png", &b"%PDF-1.4 not a png"[..]),
    ] {
        let (status, html) = post(
            &app,
            "/pqrs",
            &form.cookie,
            &fields,
            &[(name, declared, bytes)],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            html.contains(&format!(
                "data-code=\"attachment_unsupported\">El archivo «{name}» no es una imagen"
            )),
            "{html}"
        );
    }

    // Beyond the body limit (five files at their largest and the text fields) nothing is read.
    let huge = vec![b'a'; 6 * 64 * 1024 + 1024 * 1024];
    let (status, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &with(
            &fields,
            "description",
            std::str::from_utf8(&huge).expect("ascii"),
        ),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{html}");
    assert!(html.contains("data-code=\"too_large\""), "{html}");

    // A text field over its limit is that field's error.
    let long = "a".repeat(60 * 1024);
    let (status, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &with(&fields, "subject", &long),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("id=\"subject-error\" data-code=\"field_too_long\""),
        "{html}"
    );
    assert_eq!(written(&pool).await, [0; 6]);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_post_without_the_csrf_token_is_refused(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let form = open_form(&app, "").await;
    let other = open_form(&app, "").await;
    let fields = good(&form, "1020304050");
    for (cookie, fields) in [
        ("", fields.clone()),
        (other.cookie.as_str(), fields.clone()),
        (form.cookie.as_str(), without(&fields, "csrf")),
        (
            form.cookie.as_str(),
            with(&fields, "csrf", "0123456789abcdef0123456789abcdef"),
        ),
    ] {
        let (status, html) = post(&app, "/pqrs", cookie, &fields, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert!(
            html.contains("data-code=\"csrf\">Por seguridad no pudimos aceptar este envío"),
            "{html}"
        );
    }
    let r = post_form(
        &app,
        "/pqrs/estado",
        &other.cookie,
        &[
            ("csrf", &form.csrf),
            ("radicado", "PQRS-2026-000001"),
            ("document_number", "1020304050"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(written(&pool).await, [0; 6]);
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn too_many_posts_from_one_address_wait_for_the_window(pool: PgPool) {
    let settings = Settings {
        web_posts_per_window: 2,
        web_window_secs: 3600,
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool.clone(), settings).await;
    let form = open_form(&app, "").await;
    let fields = without(&good(&form, "1020304050"), "consent");
    for _ in 0..2 {
        let (status, _) = post(&app, "/pqrs", &form.cookie, &fields, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (content_type, body) = multipart(&good(&form, "1020304050"), &[]);
    let r = app
        .client
        .post(app.url("/pqrs"))
        .header(COOKIE, &form.cookie)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: i64 = r.headers()[RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=3600).contains(&wait), "{wait}");
    let html = r.text().await.expect("body");
    assert!(html.contains("data-code=\"rate_limited\">Recibimos muchos envíos desde su conexión. Intente de nuevo en"), "{html}");
    // Reading is not limited; the other forms are.
    let r = app
        .client
        .get(app.url("/pqrs/estado"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let r = post_form(&app, "/pqrs/estado", &form.cookie, &[("csrf", &form.csrf)]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(written(&pool).await, [0; 6]);

    // The count lives in PostgreSQL, so another server process on the same database agrees.
    let second = spawn_app_with(
        pool.clone(),
        Settings {
            web_posts_per_window: 2,
            web_window_secs: 3600,
            ..atiende_tests::test_settings()
        },
    )
    .await;
    let r = post_form(
        &second,
        "/pqrs/estado",
        &form.cookie,
        &[("csrf", &form.csrf)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    second.stop().await;
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy(pool: PgPool) {
    let limited = |trusted: bool| Settings {
        web_posts_per_window: 1,
        trusted_proxies: if trusted {
            vec!["127.0.0.1".parse().expect("cidr")]
        } else {
            Vec::new()
        },
        ..atiende_tests::test_settings()
    };
    let app = spawn_app_with(pool.clone(), limited(false)).await;
    let form = open_form(&app, "").await;
    let send = |app: &TestApp, client: &'static str| {
        app.client
            .post(app.url("/pqrs/estado"))
            .header(COOKIE, form.cookie.clone())
            .header("x-forwarded-for", client)
            .form(&[("csrf", form.csrf.as_str())])
            .send()
    };
    assert_eq!(
        send(&app, "203.0.113.1").await.expect("POST").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Untrusted, the header is ignored: the socket's address is over its limit.
    assert_eq!(
        send(&app, "203.0.113.2").await.expect("POST").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
    sqlx::query("delete from web_post_counts")
        .execute(&pool)
        .await
        .expect("reset");

    let app = spawn_app_with(pool.clone(), limited(true)).await;
    assert_eq!(
        send(&app, "203.0.113.1").await.expect("POST").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(&app, "203.0.113.2").await.expect("POST").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(&app, "203.0.113.1").await.expect("POST").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_filled_honeypot_looks_filed_but_files_nothing(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let form = open_form(&app, "").await;
    let fields = with(&good(&form, "1020304050"), "website", "http://spam.example");
    let (status, html) = post(
        &app,
        "/pqrs",
        &form.cookie,
        &fields,
        &[("f.png", "image/png", PNG)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Recibimos su solicitud") && html.contains("id=\"radicado\""),
        "{html}"
    );
    assert_eq!(written(&pool).await, [0; 6]);
    app.stop().await;
}

/// Files through the form and returns (radicado, case link).
async fn file_on_the_web(app: &TestApp, document: &str) -> (Form, String, String) {
    let form = open_form(app, "").await;
    let (status, html) = post(app, "/pqrs", &form.cookie, &good(&form, document), &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (radicado, link) = (dd(&html, "radicado"), case_link(&html));
    (form, radicado, link)
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_status_needs_the_radicado_and_the_filers_document(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (form, radicado, _) = file_on_the_web(&app, "1020304050").await;
    let lookup = |radicado: String, document: &'static str| {
        let form = &form;
        let app = &app;
        async move {
            let r = post_form(
                app,
                "/pqrs/estado",
                &form.cookie,
                &[
                    ("csrf", form.csrf.as_str()),
                    ("radicado", &radicado),
                    ("document_number", document),
                ],
            )
            .await;
            (r.status(), r.text().await.expect("body"))
        }
    };
    let (status, html) = lookup(radicado.to_lowercase(), "1020304050").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("data-status=\"received\">Recibida"), "{html}");
    assert!(
        !html.contains("Cobro doble"),
        "status and dates only: {html}"
    );

    let (mismatch_status, mismatch) = lookup(radicado.clone(), "99999999").await;
    let (unknown_status, unknown) = lookup("PQRS-2026-999999".into(), "99999999").await;
    assert_eq!(
        (mismatch_status, unknown_status),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert!(unknown.contains("data-code=\"case_not_found\">No encontramos una solicitud con ese radicado y ese documento."));
    assert_eq!(
        mismatch.replace(&radicado, "#"),
        unknown.replace("PQRS-2026-999999", "#"),
        "an unknown radicado and someone else's read the same"
    );
    app.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_case_page_takes_a_reply_and_a_rating(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let org = app.org().await;
    let (form, _, link) = file_on_the_web(&app, "1020304050").await;
    let id = form.filing_id.clone();

    let r = app
        .client
        .get(app.url("/pqrs/caso/pqrs_0000"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("data-code=\"not_found\">El enlace no corresponde a ninguna solicitud")
    );

    let page = app.client.get(app.url(&link)).send().await.expect("GET");
    let html = page.text().await.expect("body");
    assert!(
        html.contains("Cobro doble") && !html.contains("name=\"body\""),
        "{html}"
    );
    // Replying is for a case that waits on the customer.
    let r = post_form(
        &app,
        &format!("{link}/respuesta"),
        &form.cookie,
        &[("csrf", &form.csrf), ("body", "¿Hola?")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = app
        .post(
            &format!("/api/v1/staff/cases/{id}/request-info"),
            Some(&org.director),
            json!({"question": "Envíe la factura, por favor."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let html = app
        .client
        .get(app.url(&link))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("Envíe la factura, por favor.") && html.contains("name=\"body\""),
        "{html}"
    );
    assert!(html.contains("data-status=\"waiting_customer\""), "{html}");

    let r = post_form(
        &app,
        &format!("{link}/respuesta"),
        &form.cookie,
        &[("csrf", &form.csrf), ("body", " ")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("id=\"body-error\" data-code=\"invalid_message\"")
    );
    let r = post_form(
        &app,
        &format!("{link}/respuesta"),
        &form.cookie,
        &[("csrf", &form.csrf), ("body", "Adjunto la factura 123.")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[LOCATION]
            .to_str()
            .expect("ascii")
            .ends_with("done=reply")
    );
    let status = sqlx::query_scalar!("select status from cases where id = $1::text::uuid", id)
        .fetch_one(&pool)
        .await
        .expect("status");
    assert_eq!(status, "received", "the reply resumes the case");
    let author = sqlx::query_scalar!(
        "select author_customer_id from case_messages where case_id = $1::text::uuid and not from_staff",
        id
    )
    .fetch_one(&pool)
    .await
    .expect("the reply");
    assert!(author.is_some(), "the customer's own message");

    app.answer(&org, &id, "Devolvimos el cobro doble.").await;
    let html = app
        .client
        .get(app.url(&link))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("Devolvimos el cobro doble.") && html.contains("name=\"score\""),
        "{html}"
    );
    let r = post_form(
        &app,
        &format!("{link}/calificacion"),
        &form.cookie,
        &[("csrf", &form.csrf), ("score", "9")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("data-code=\"invalid_score\"")
    );
    let r = post_form(
        &app,
        &format!("{link}/calificacion"),
        &form.cookie,
        &[("csrf", &form.csrf), ("score", "5"), ("comment", "Rápido")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = app
        .client
        .get(app.url(&link))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("Gracias por calificar: 5 de 5.") && !html.contains("name=\"score\""),
        "{html}"
    );
    let rating = sqlx::query!(
        "select rating_score, rating_comment from cases where id = $1::text::uuid",
        id
    )
    .fetch_one(&pool)
    .await
    .expect("rating");
    assert_eq!(
        (rating.rating_score, rating.rating_comment.as_deref()),
        (Some(5), Some("Rápido"))
    );
    app.stop().await;
}
