//! Inbound mail figures: how fast e-mails placed in the service mailbox become cases. Starts a
//! Dovecot of its own (Debian's `dovecot-imapd`, as the tests do), delivers the messages into its
//! mailbox, creates (and drops first) a scratch database named `atiende_bench_mail` on the given
//! server, then runs the real mailbox reader against them and prints the time until every message
//! is a case (or a customer's message on one), with a progress line every second.
//!
//! ```sh
//! cargo run --release -p atiende-tests --bin bench-mail-inbound -- \
//!     --server-url postgres://postgres@127.0.0.1:5432 --messages 2000
//! ```
//!
//! The mix: most messages come from people the company does not know (a few messages each),
//! a fifth from its customers, one in ten with a PDF attached.

use std::time::{Duration, Instant};

use atiende_mail::TlsMode;
use atiende_mail::inbound::{ImapSettings, Inbox, Limits};
use atiende_tests::dovecot::{Dovecot, PASSWORD, Security, USER};
use base64::Engine;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A PostgreSQL server where the role may create databases (no database name).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server_url: String,
    /// E-mails placed in the mailbox.
    #[arg(long, default_value_t = 2_000)]
    messages: usize,
}

const DB: &str = "atiende_bench_mail";
const CUSTOMERS: usize = 200;
const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn message(i: usize) -> Vec<u8> {
    let from = if i.is_multiple_of(5) {
        format!("cliente{}@bench.invalid", i % CUSTOMERS)
    } else {
        format!("persona{}@example.invalid", i / 3)
    };
    let text = format!(
        "Buenos días. Les escribo por el servicio número {i}: el técnico no llegó a la hora acordada \
         y nadie llamó para avisar. Quedo atento a su respuesta.\r\n\r\nGracias."
    );
    if i % 10 == 3 {
        let pdf = base64::engine::general_purpose::STANDARD.encode(PDF);
        format!(
            "From: Remitente {i} <{from}>\r\nTo: servicioalcliente@empresa.invalid\r\nSubject: Queja {i}\r\n\
             Message-ID: <bench-{i}@example.invalid>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --b\r\nContent-Type: application/pdf; name=\"factura-{i}.pdf\"\r\nContent-Disposition: attachment; filename=\"factura-{i}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--b--\r\n"
        )
        .into_bytes()
    } else {
        format!(
            "From: Remitente {i} <{from}>\r\nTo: servicioalcliente@empresa.invalid\r\nSubject: Queja {i}\r\n\
             Message-ID: <bench-{i}@example.invalid>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        )
        .into_bytes()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (mut admin, pool) = atiende_tests::scratch_database(&args.server_url, DB, 8).await?;
    sqlx::query(
        "insert into customers (id, kind, document_type, document_number, name, email)
         select gen_random_uuid(), 'person', 'CC', (10000000 + g)::text, 'Cliente ' || g,
                'cliente' || g || '@bench.invalid'
         from generate_series(0, $1 - 1) g",
    )
    .bind(CUSTOMERS as i64)
    .execute(&pool)
    .await?;

    let mut dovecot = Dovecot::start(Security::Plain).await;
    eprintln!("placing {} e-mails in the mailbox…", args.messages);
    for i in 0..args.messages {
        dovecot.deliver(&message(i));
    }
    let settings = ImapSettings {
        host: "127.0.0.1".into(),
        port: dovecot.port,
        tls: TlsMode::None,
        username: USER.into(),
        password: PASSWORD.into(),
        folder: "INBOX".into(),
        poll: Duration::from_secs(1),
        idle_for: Duration::from_secs(600),
        ca_file: None,
        timeout: Duration::from_secs(120),
        limits: Limits {
            attachment_bytes: 10 * 1024 * 1024,
            message_bytes: 40 * 1024 * 1024,
        },
    };
    let inbox = Inbox::new(pool.clone(), settings)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        inbox
            .run(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let total = args.messages as i64;
    let mut done = 0;
    let mut first_stored = None;
    while done < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stored: i64;
        (stored, done) = sqlx::query_as(
            "select count(*), count(*) filter (where state <> 'pending') from inbound_mail",
        )
        .fetch_one(&pool)
        .await?;
        if first_stored.is_none() && stored == total {
            first_stored = Some(started.elapsed());
        }
        eprint!(
            "\r{:>6.1} s: {stored} stored, {done} processed of {total}",
            started.elapsed().as_secs_f64()
        );
    }
    let elapsed = started.elapsed();
    eprintln!();
    let _ = stop_tx.send(());
    let _ = reader.await;
    let (cases, failed, attachments): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from cases), (select count(*) from inbound_mail where state = 'failed'),
                (select count(*) from case_attachments)",
    )
    .fetch_one(&pool)
    .await?;
    println!("inbound mail: {total} e-mails placed in the mailbox before the reader started");
    println!(
        "  all stored after {:.1} s; all processed after {:.1} s",
        first_stored.unwrap_or(elapsed).as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} e-mails/s end to end ({cases} cases, {attachments} attachments, {failed} failed)",
        total as f64 / elapsed.as_secs_f64()
    );
    drop(dovecot);
    pool.close().await;
    atiende_tests::drop_scratch_database(&mut admin, DB).await?;
    Ok(())
}
