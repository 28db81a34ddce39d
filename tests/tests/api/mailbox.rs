//! The service mailbox as a door, end to end against real servers: a real Dovecot holds the
//! mailbox ([`atiende_tests::dovecot`]), the real server reads it over IMAP, and answers leave over
//! SMTP to a real receiver ([`crate::smtp_receiver`]). The tests put e-mails in the mailbox as a
//! mail server would and look at what the customer and staff see.

use std::time::Duration;

use atiende_server::Settings;
use atiende_server::settings::SmtpTls;
use atiende_tests::dovecot::{Dovecot, PASSWORD, Security, USER};
use atiende_tests::{TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::smtp_receiver::SmtpReceiver;

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn settings(dovecot: &Dovecot, security: Security, smtp: &SmtpReceiver) -> Settings {
    let (host, tls, ca) = match security {
        Security::Plain => ("127.0.0.1", SmtpTls::None, None),
        Security::Tls => ("localhost", SmtpTls::Tls, Some(dovecot.ca_file())),
        Security::StartTls => ("localhost", SmtpTls::Starttls, Some(dovecot.ca_file())),
    };
    Settings {
        imap_host: Some(host.into()),
        imap_port: Some(dovecot.port),
        imap_tls: tls,
        imap_username: Some(USER.into()),
        imap_password: Some(atiende_server::settings::Secret::new(PASSWORD)),
        imap_poll_secs: 1,
        imap_ca_file: ca,
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: Some(smtp.addr.port()),
        smtp_tls: SmtpTls::None,
        mail_from: "Servicio al cliente <pqrs@empresa.test>".into(),
        mail_service_mailbox: Some("servicioalcliente@empresa.test".into()),
        public_base_url: "https://pqrs.empresa.test".into(),
        mail_interval_ms: 50,
        ..atiende_tests::test_settings()
    }
}

struct Setup {
    app: TestApp,
    dovecot: Dovecot,
    smtp: SmtpReceiver,
    org: atiende_tests::Org,
    director: String,
}

async fn setup(pool: PgPool, security: Security, tune: impl FnOnce(&mut Settings)) -> Setup {
    let dovecot = Dovecot::start(security).await;
    let smtp = SmtpReceiver::start().await;
    let mut s = settings(&dovecot, security, &smtp);
    tune(&mut s);
    let app = spawn_app_with(pool, s).await;
    let org = app.org().await;
    let director = org.director.clone();
    Setup {
        app,
        dovecot,
        smtp,
        org,
        director,
    }
}

/// An e-mail as a mail program writes it.
fn mail(from: &str, subject: &str, message_id: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: servicioalcliente@empresa.test\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Fri, 4 Dec 2026 09:00:00 -0500\r\n{extra_headers}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An e-mail with attachments: (file name, type, bytes).
fn mail_with(
    from: &str,
    subject: &str,
    message_id: &str,
    body: &str,
    files: &[(&str, &str, &[u8])],
) -> Vec<u8> {
    let mut out = format!(
        "From: {from}\r\nTo: servicioalcliente@empresa.test\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"limite\"\r\n\r\n\
         --limite\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    );
    for (name, ctype, bytes) in files {
        out.push_str(&format!(
            "--limite\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64(bytes)
        ));
    }
    out.push_str("--limite--\r\n");
    out.into_bytes()
}

/// Waits until every stored message is processed and `n` are stored; returns their states.
async fn processed(app: &TestApp, n: i64) -> Vec<(String, Option<String>, Option<Uuid>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, Option<String>, Option<Uuid>)> =
            sqlx::query_as("select state, reason, case_id from inbound_mail order by id")
                .fetch_all(&app.pool)
                .await
                .expect("inbound mail");
        if rows.len() as i64 >= n && rows.iter().all(|r| r.0 != "pending") {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} messages processed: {rows:?}",
            rows.iter().filter(|r| r.0 != "pending").count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn staff_case(s: &Setup, id: Uuid) -> Value {
    let r = s
        .app
        .get(&format!("/api/v1/staff/cases/{id}"), Some(&s.director))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// Waits until the mailbox has every message marked seen.
async fn all_seen(dovecot: &Dovecot, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dovecot.seen_and_unseen() != (n, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seen, unseen: {:?}",
            dovecot.seen_and_unseen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_email_from_an_unknown_address_files_a_peticion_for_a_new_contact(pool: PgPool) {
    let mut s = setup(pool, Security::Plain, |_| {}).await;
    s.dovecot.deliver(&mail_with(
        "Marta Gómez <Marta.Gomez@Example.test>",
        "El técnico no llegó",
        "m1@example.test",
        "Esperé toda la mañana y nadie vino.",
        &[
            ("factura.pdf", "application/pdf", PDF),
            ("programa.exe", "application/octet-stream", b"MZ\x90\x00"),
        ],
    ));
    let rows = processed(&s.app, 1).await;
    assert_eq!(rows[0].0, "filed");
    let case_id = rows[0].2.expect("a case");
    let case = staff_case(&s, case_id).await;
    assert_eq!(case["channel"], "email");
    assert_eq!(case["type"], "peticion");
    assert_eq!(case["subject"], "El técnico no llegó");
    let description = case["description"].as_str().expect("description");
    assert!(
        description.starts_with("Esperé toda la mañana y nadie vino."),
        "{description}"
    );
    assert!(description.contains("programa.exe"), "{description}");
    assert!(!description.contains("factura.pdf"), "{description}");

    // The sender is an unverified contact known by the address, with no document.
    let (verified, document, email, name): (bool, Option<String>, String, String) = sqlx::query_as(
        "select cu.verified, cu.document_number, cu.email, cu.name from cases c
         join customers cu on cu.id = c.customer_id where c.id = $1",
    )
    .bind(case_id)
    .fetch_one(&s.app.pool)
    .await
    .expect("the customer");
    assert_eq!(
        (verified, document, email.as_str(), name.as_str()),
        (false, None, "marta.gomez@example.test", "Marta Gómez")
    );
    let attachments: Vec<(String, i64)> = sqlx::query_as(
        "select b.content_type, b.size from case_attachments a join blobs b on b.sha256 = a.sha256
         where a.case_id = $1",
    )
    .bind(case_id)
    .fetch_all(&s.app.pool)
    .await
    .expect("attachments");
    assert_eq!(
        attachments,
        vec![("application/pdf".to_owned(), PDF.len() as i64)]
    );

    // Staff find the contact by the address (it has no document) and merge it into the customer
    // it turns out to be: the case comes along.
    let found = s
        .app
        .get(
            "/api/v1/staff/customers?q=marta.gomez@example.test",
            Some(&s.director),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let contact = found
        .body
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("the contact");
    assert_eq!(contact["document_number"], Value::Null, "{contact}");
    assert_eq!(contact["verified"], false);
    let created = s
        .app
        .post(
            "/api/v1/staff/customers",
            Some(&s.director),
            json!({"document_type": "CC", "document_number": "52123456", "name": "Marta Gómez",
                   "email": "marta.gomez@example.test", "consent_channel": "phone"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let merged = s
        .app
        .post(
            &format!(
                "/api/v1/staff/customers/{}/merge",
                created.body["id"].as_str().expect("id")
            ),
            Some(&s.director),
            json!({"contact_id": contact["id"]}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let owner: Uuid = sqlx::query_scalar("select customer_id from cases where id = $1")
        .bind(case_id)
        .fetch_one(&s.app.pool)
        .await
        .expect("owner");
    assert_eq!(owner.to_string(), created.body["id"].as_str().expect("id"));

    // The acknowledgement and the notice of the refused file go back by e-mail.
    let radicado = case["radicado"].as_str().expect("radicado").to_owned();
    let to_marta = s
        .smtp
        .wait_for("marta.gomez@example.test", |m| m.len() >= 2)
        .await;
    let subjects: Vec<String> = to_marta
        .iter()
        .map(|m| m.parsed().subject().unwrap_or_default().to_owned())
        .collect();
    assert!(
        subjects.iter().all(|t| t.contains(&radicado)),
        "{subjects:?}"
    );
    let refused = to_marta
        .iter()
        .map(|m| m.parsed().body_text(0).unwrap_or_default().into_owned())
        .find(|b| b.contains("programa.exe"))
        .expect("the notice of the refused attachment");
    assert!(refused.contains("PDF"), "{refused}");
    all_seen(&s.dovecot, 1).await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_known_customers_email_is_filed_as_theirs_over_tls(pool: PgPool) {
    let mut s = setup(pool, Security::Tls, |_| {}).await;
    let token = s.app.customer("Cliente@Test.co", "1020304050").await;
    s.dovecot.deliver(&mail(
        "cliente@test.co",
        "Solicito copia del contrato",
        "m2@test.co",
        "",
        "Por favor envíenme el contrato firmado.",
    ));
    let rows = processed(&s.app, 1).await;
    let case_id = rows[0].2.expect("a case");
    // The customer sees it in the app among their own cases.
    let mine = s.app.get("/api/v1/cases", Some(&token)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let ids: Vec<&str> = mine.body["items"]
        .as_array()
        .or(mine.body.as_array())
        .map(|a| a.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![case_id.to_string().as_str()], "{}", mine.body);
    all_seen(&s.dovecot, 1).await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_reply_to_a_request_for_information_resumes_the_case(pool: PgPool) {
    let mut s = setup(pool, Security::Plain, |_| {}).await;
    let org = &s.org;
    s.dovecot.deliver(&mail(
        "pedro@example.test",
        "Cobro indebido",
        "m3@example.test",
        "",
        "Me cobraron una visita que no se hizo.",
    ));
    let case_id = processed(&s.app, 1).await[0].2.expect("a case");
    let r = s
        .app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/assign"),
            Some(&org.director),
            json!({"process": "OPERATIVO", "assignee": org.collaborator_id, "impact": "medium", "urgency": "medium"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .app
        .post(
            &format!("/api/v1/staff/cases/{case_id}/request-info"),
            Some(&org.collaborator),
            json!({"question": "¿Cuál es el número de la factura?"}),
        )
        .await;
    assert_eq!(r.body["status"], "waiting_customer", "{}", r.body);
    let question = s
        .smtp
        .wait_for("pedro@example.test", |m| {
            m.iter().any(|m| {
                m.parsed()
                    .body_text(0)
                    .is_some_and(|b| b.contains("número de la factura"))
            })
        })
        .await
        .into_iter()
        .find(|m| {
            m.parsed()
                .body_text(0)
                .is_some_and(|b| b.contains("número de la factura"))
        })
        .expect("the question by e-mail");
    let asked_id = question
        .parsed()
        .message_id()
        .expect("message id")
        .to_owned();
    // The customer answers from another address (their phone's mail): the thread names the case.
    s.dovecot.deliver(&mail(
        "pedro.movil@example.test",
        "Re: lo que pidieron",
        "m4@example.test",
        &format!("In-Reply-To: <{asked_id}>\r\nReferences: <{asked_id}>\r\n"),
        "La factura es la 4455.\r\n\r\nEl jue, 3 dic 2026, Servicio al cliente escribió:\r\n> ¿Cuál es el número de la factura?",
    ));
    let rows = processed(&s.app, 2).await;
    assert_eq!(rows[1].0, "replied", "{rows:?}");
    assert_eq!(rows[1].2, Some(case_id));
    let case = staff_case(&s, case_id).await;
    assert_eq!(case["status"], "assigned", "{case}");
    assert_eq!(
        atiende_tests::message_bodies(&case).last(),
        Some(&(json!(false), json!("La factura es la 4455."))),
        "the customer's own words, without the quote: {case}"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_radicado_in_the_subject_counts_only_from_the_cases_own_address(pool: PgPool) {
    // Read over STARTTLS, which must succeed before the password is sent.
    let mut s = setup(pool, Security::StartTls, |_| {}).await;
    s.dovecot.deliver(&mail(
        "lucia@example.test",
        "Daño en el medidor",
        "m5@example.test",
        "",
        "El medidor gotea.",
    ));
    let case_id = processed(&s.app, 1).await[0].2.expect("a case");
    let radicado = staff_case(&s, case_id).await["radicado"]
        .as_str()
        .expect("radicado")
        .to_owned();
    s.dovecot.deliver(&mail(
        "otro@example.test",
        &format!("Sobre {radicado}"),
        "m6@example.test",
        "",
        "Yo también.",
    ));
    s.dovecot.deliver(&mail(
        "Lucia@Example.test",
        &format!("RE: {radicado}"),
        "m7@example.test",
        "",
        "Sigue goteando.",
    ));
    let rows = processed(&s.app, 3).await;
    assert_eq!(
        rows[1].0, "filed",
        "someone else's mail is a case of its own: {rows:?}"
    );
    assert_ne!(rows[1].2, Some(case_id));
    assert_eq!(rows[2].0, "replied", "{rows:?}");
    assert_eq!(rows[2].2, Some(case_id));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn machines_and_our_own_copies_file_nothing_and_answer_nothing(pool: PgPool) {
    let mut s = setup(pool, Security::Plain, |_| {}).await;
    s.dovecot.deliver(&mail(
        "a@example.test",
        "Fuera de la oficina",
        "auto1@example.test",
        "Auto-Submitted: auto-replied\r\n",
        "Vuelvo el lunes.",
    ));
    s.dovecot.deliver(&mail(
        "b@example.test",
        "Ofertas",
        "bulk1@example.test",
        "Precedence: bulk\r\n",
        "Compre ya.",
    ));
    s.dovecot.deliver(&mail(
        "c@example.test",
        "Respuesta automática",
        "auto2@example.test",
        "X-Autoreply: yes\r\n",
        "Gracias.",
    ));
    s.dovecot.deliver(&mail(
        "MAILER-DAEMON@mx.example.test",
        "Undelivered Mail Returned to Sender",
        "bounce1@example.test",
        "",
        "No se pudo entregar.",
    ));
    s.dovecot.deliver(&mail(
        "persona@example.test",
        "Una queja de verdad",
        "real1@example.test",
        "",
        "Hola.",
    ));
    let rows = processed(&s.app, 5).await;
    let states: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        states,
        ["ignored", "ignored", "ignored", "ignored", "filed"],
        "{rows:?}"
    );
    // Only the real person hears back.
    let ack = s
        .smtp
        .wait_for("persona@example.test", |m| !m.is_empty())
        .await;
    for machine in [
        "a@example.test",
        "b@example.test",
        "c@example.test",
        "mailer-daemon@mx.example.test",
    ] {
        assert_eq!(s.smtp.attempts(machine), 0, "{machine} was answered");
    }
    // Our own acknowledgement comes back to the mailbox (a copy, a forward, a loop).
    s.dovecot.deliver(&ack[0].data);
    let rows = processed(&s.app, 6).await;
    assert_eq!(rows[5].0, "ignored", "{rows:?}");
    assert_eq!(rows[5].1.as_deref(), Some("one of Atiende's own e-mails"));
    let cases: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&s.app.pool)
        .await
        .expect("count");
    assert_eq!(cases, 1);
    all_seen(&s.dovecot, 6).await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn the_same_message_twice_and_two_servers_file_it_once(pool: PgPool) {
    let mut s = setup(pool, Security::Plain, |_| {}).await;
    // A second server process reading the same mailbox.
    let second = spawn_app_with(
        s.app.pool.clone(),
        settings(&s.dovecot, Security::Plain, &s.smtp),
    )
    .await;
    for i in 0..20 {
        let m = mail(
            "rosa@example.test",
            &format!("Solicitud {i}"),
            &format!("r{i}@example.test"),
            "",
            "Texto.",
        );
        s.dovecot.deliver(&m);
        // The same message arrives twice (a copy the sender's server retried).
        s.dovecot.deliver(&m);
    }
    let rows = processed(&s.app, 20).await;
    assert_eq!(rows.len(), 20, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == "filed"), "{rows:?}");
    let cases: i64 = sqlx::query_scalar("select count(*) from cases")
        .fetch_one(&s.app.pool)
        .await
        .expect("count");
    assert_eq!(cases, 20);
    all_seen(&s.dovecot, 40).await;
    second.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_message_stored_before_a_crash_is_filed_after_the_restart(pool: PgPool) {
    // What a process left behind when it died between storing a message and filing it.
    sqlx::query(
        "insert into inbound_mail (message_key, mailbox, uid_validity, uid, raw, size)
         values ('crash@example.test', 'pqrs@127.0.0.1/INBOX', 1, 1, $1, 10)",
    )
    .bind(mail(
        "tomas@example.test",
        "Antes del corte",
        "crash@example.test",
        "",
        "Se fue la luz.",
    ))
    .execute(&pool)
    .await
    .expect("a stored message");
    let s = setup(pool, Security::Plain, |_| {}).await;
    let rows = processed(&s.app, 1).await;
    assert_eq!(rows[0].0, "filed");
    let case = staff_case(&s, rows[0].2.expect("a case")).await;
    assert_eq!(case["subject"], "Antes del corte");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn odd_mail_is_filed_without_losing_it(pool: PgPool) {
    let mut s = setup(pool, Security::Plain, |s| {
        s.blob_max_bytes = 64 * 1024;
        s.imap_max_message_bytes = 512 * 1024;
    })
    .await;
    // HTML only, in a charset nobody knows.
    s.dovecot.deliver(b"From: h@example.test\r\nSubject: =?x-desconocido?Q?Queja?=\r\nMessage-ID: <html@example.test>\r\nContent-Type: text/html; charset=x-desconocido\r\n\r\n<p>El t\xe9cnico <b>no</b> vino &amp; no llam\xf3</p>\r\n");
    // A multipart whose closing boundary never comes, with a NUL in its text.
    s.dovecot.deliver(b"From: m@example.test\r\nSubject: Cortado\r\nMessage-ID: <cut@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nTexto con \x00 nulo que sigue\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0x");
    // An attachment over the blob limit.
    let big = vec![b'x'; 100 * 1024];
    let mut pdf = PDF.to_vec();
    pdf.extend_from_slice(&big);
    s.dovecot.deliver(&mail_with(
        "g@example.test",
        "Adjunto grande",
        "big@example.test",
        "Va el archivo.",
        &[("grande.pdf", "application/pdf", &pdf)],
    ));
    // A message over the size read whole.
    let huge = vec![b'y'; 700 * 1024];
    s.dovecot.deliver(&mail_with(
        "z@example.test",
        "Muy pesado",
        "huge@example.test",
        "Mire los adjuntos.",
        &[("fotos.pdf", "application/pdf", &huge)],
    ));
    // No subject, no text.
    s.dovecot
        .deliver(b"From: v@example.test\r\nMessage-ID: <empty@example.test>\r\n\r\n");
    let rows = processed(&s.app, 5).await;
    assert!(rows.iter().all(|r| r.0 == "filed"), "{rows:?}");
    // Each case by the address it came from (the mailbox may hand them over in another order).
    let mut by_sender = std::collections::HashMap::new();
    for r in &rows {
        let case = staff_case(&s, r.2.expect("a case")).await;
        let email: String = sqlx::query_scalar(
            "select cu.email from cases c join customers cu on cu.id = c.customer_id where c.id = $1",
        )
        .bind(r.2)
        .fetch_one(&s.app.pool)
        .await
        .expect("sender");
        by_sender.insert(
            email,
            (
                case["subject"].as_str().unwrap_or_default().to_owned(),
                case["description"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    let case = |from: &str| by_sender.get(from).cloned().expect(from);
    let html = case("h@example.test").1;
    assert!(
        html.contains("cnico") && html.contains("no vino") && !html.contains("<b>"),
        "{html}"
    );
    let cut = case("m@example.test").1;
    assert!(cut.contains("Texto con") && cut.contains("nulo"), "{cut}");
    assert!(
        case("g@example.test").1.contains("grande.pdf"),
        "the refused file is named"
    );
    let (subject, text) = case("z@example.test");
    assert_eq!(subject, "Muy pesado");
    assert!(text.contains("MB"), "{text}");
    assert_eq!(case("v@example.test").0, "Correo sin asunto");
    // Nothing is lost: every message is kept as it arrived (the huge one by its header).
    let kept: Vec<(String, i64, bool)> = sqlx::query_as(
        "select message_key, length(raw)::bigint, body_skipped from inbound_mail order by id",
    )
    .fetch_all(&s.app.pool)
    .await
    .expect("kept");
    assert_eq!(kept.len(), 5);
    for (key, length, skipped) in &kept {
        assert_eq!(*skipped, key == "huge@example.test", "{kept:?}");
        assert!(!skipped || *length < 4096, "{kept:?}");
    }
    all_seen(&s.dovecot, 5).await;
}
