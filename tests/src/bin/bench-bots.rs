//! Chat throughput: Telegram webhook updates (with the secret) and signed WhatsApp webhook events
//! pushed at a running server (with both platforms' APIs pointed at a local stand-in this
//! benchmark serves), then the time until every update was handled and every reply sent, and a
//! check that nothing was sent twice.
//!
//!     # the stand-in platform APIs listen on --mock-listen (default 127.0.0.1:8099)
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/atiende_bench \
//!     ATIENDE_TELEGRAM_BOT_TOKEN=1:bench ATIENDE_TELEGRAM_WEBHOOK_SECRET=bench-secret \
//!     ATIENDE_TELEGRAM_API_URL=http://127.0.0.1:8099 \
//!     ATIENDE_WHATSAPP_ACCESS_TOKEN=bench ATIENDE_WHATSAPP_PHONE_NUMBER_ID=1065403522 \
//!     ATIENDE_WHATSAPP_APP_SECRET=bench-secret ATIENDE_WHATSAPP_API_URL=http://127.0.0.1:8099 \
//!     ATIENDE_BOTS_INTERVAL_MS=20 cargo run --release -- serve &
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/atiende_bench \
//!         cargo run --release -p atiende-tests --bin bench-bots -- --chats 1000
//!
//! Each chat goes through a realistic conversation, each update posted as soon as the previous
//! one was accepted (the platforms send one chat's updates in order): consent, registration, the
//! list of cases and help; one chat in four also files a PQRS. One update in ten is posted twice,
//! as the platforms do when an answer is slow. `--channel both` (the default) alternates chats
//! between Telegram and WhatsApp.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Telegram,
    Whatsapp,
    Both,
}

#[derive(Parser)]
struct Args {
    /// Base URL of the running atiende server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's database, to see when everything was handled and sent.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the stand-in platform APIs listen (the server's ATIENDE_TELEGRAM_API_URL and
    /// ATIENDE_WHATSAPP_API_URL).
    #[arg(long, default_value = "127.0.0.1:8099")]
    mock_listen: SocketAddr,
    /// The server's ATIENDE_TELEGRAM_WEBHOOK_SECRET.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// The server's ATIENDE_WHATSAPP_APP_SECRET, which signs the WhatsApp events.
    #[arg(long, default_value = "bench-secret")]
    app_secret: String,
    /// The server's ATIENDE_WHATSAPP_PHONE_NUMBER_ID.
    #[arg(long, default_value = "1065403522")]
    phone_number_id: String,
    /// Which channel the conversations use.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    channel: Which,
    /// Conversations.
    #[arg(long, default_value_t = 1000)]
    chats: usize,
    /// Conversations posting at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// What the stand-in platform APIs counted.
#[derive(Default)]
struct Counted {
    messages: AtomicU64,
    whatsapp: AtomicU64,
    other: AtomicU64,
}

async fn bot_api(
    State(counted): State<Arc<Counted>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Json<Value> {
    if uri.path().ends_with("/messages") {
        let n = counted.whatsapp.fetch_add(1, Ordering::Relaxed);
        Json(
            json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.bench-out-{n}")}]}),
        )
    } else if uri.path().ends_with("/SendMessage") {
        counted.messages.fetch_add(1, Ordering::Relaxed);
        let chat = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["chat_id"].as_i64())
            .unwrap_or(0);
        Json(json!({"ok": true, "result": {
            "message_id": 1, "date": 1_764_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Bench"}, "text": "ok"
        }}))
    } else {
        counted.other.fetch_add(1, Ordering::Relaxed);
        Json(json!({"ok": true, "result": true}))
    }
}

/// One chat's conversation, as Telegram updates' contents. WhatsApp vouches for the number, so
/// there is no "register" to tap there.
fn conversation(chat: i64, run: &str, files: bool, whatsapp: bool) -> Vec<(&'static str, Value)> {
    let text = |t: String| ("message", json!({"text": t}));
    let tap = |d: &str| ("callback_query", json!({"data": d}));
    let mut steps = vec![text("/start".into()), tap("consent:yes")];
    if !whatsapp {
        steps.push(tap("register"));
    }
    steps.extend([
        text(format!("Cliente {chat}")),
        tap("doc:CC"),
        text(format!("{run}{chat}")),
        tap("menu:cases"),
        tap("menu:help"),
    ]);
    if files {
        steps.extend([
            tap("menu:file"),
            tap("type:queja"),
            text("Medidor dañado".into()),
            text("El medidor no marca desde el lunes.".into()),
            tap("done"),
            tap("send"),
        ]);
    }
    steps
}

fn update(id: u64, chat: i64, (kind, content): &(&'static str, Value)) -> Value {
    let user = json!({"id": chat, "is_bot": false, "first_name": "Bench", "language_code": "es"});
    let message = |extra: &Value| {
        let mut m = json!({"message_id": id, "date": 1_764_000_000, "chat": {"id": chat, "type": "private", "first_name": "Bench"}, "from": user});
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        m
    };
    match *kind {
        "message" => json!({"update_id": id, "message": message(content)}),
        _ => json!({"update_id": id, "callback_query": {
            "id": format!("cb{id}"), "from": user, "chat_instance": "bench",
            "message": message(&json!({"text": "menu"})), "data": content["data"]
        }}),
    }
}

/// A WhatsApp webhook event with one message from `from`.
fn whatsapp_event(
    id: &str,
    from: &str,
    number_id: &str,
    (kind, content): &(&'static str, Value),
) -> Value {
    let mut message = json!({"from": from, "id": id, "timestamp": "1764680000"});
    if *kind == "message" {
        message["type"] = json!("text");
        message["text"] = json!({"body": content["text"]});
    } else {
        message["type"] = json!("interactive");
        message["interactive"] =
            json!({"type": "button_reply", "button_reply": {"id": content["data"], "title": "x"}});
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "bench", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "576015550000", "phone_number_id": number_id},
                  "contacts": [{"profile": {"name": "Bench"}, "wa_id": from}],
                  "messages": [message]}
    }]}]})
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let counted = Arc::new(Counted::default());
    let listener = tokio::net::TcpListener::bind(args.mock_listen).await?;
    let mock = Router::new()
        .fallback(post(bot_api))
        .with_state(counted.clone());
    tokio::spawn(async move { axum::serve(listener, mock).await });
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    // Update ids and chats of this run start where earlier runs on the database ended; what
    // this run stored and sent is what lies past the watermarks.
    let base: i64 = sqlx::query_scalar(
        "select coalesce(max(update_key::bigint), 0) + 1 from bot_updates where channel = 'telegram' and update_key ~ '^[0-9]+$'",
    )
    .fetch_one(&pool)
    .await?;
    let (updates_mark, deliveries_mark): (i64, i64) = sqlx::query_as(
        "select (select coalesce(max(id), 0) from bot_updates), (select coalesce(max(id), 0) from deliveries)",
    )
    .fetch_one(&pool)
    .await?;
    let run = format!("{}", base % 100_000 + 10_000);
    let next_id = Arc::new(AtomicU64::new(base as u64));
    let server = args.url.trim_end_matches('/').to_owned();
    eprintln!(
        "{} conversations, {} at a time, against {server}…",
        args.chats, args.concurrency
    );

    let started = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = futures_util::stream::iter(0..args.chats)
        .map(|i| {
            let (client, server, secret, app_secret, number_id, next_id, run) = (
                client.clone(),
                server.clone(),
                args.secret.clone(),
                args.app_secret.clone(),
                args.phone_number_id.clone(),
                next_id.clone(),
                run.clone(),
            );
            let whatsapp = match args.channel {
                Which::Telegram => false,
                Which::Whatsapp => true,
                Which::Both => i % 2 == 1,
            };
            async move {
                let chat = base * 10 + i as i64;
                let number = format!("57{chat:010}");
                let mut latencies = Vec::new();
                let mut posted = 0;
                let steps = conversation(chat, &run, i % 4 == 0, whatsapp);
                for (n, step) in steps.iter().enumerate() {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let request = if whatsapp {
                        let body = serde_json::to_vec(&whatsapp_event(
                            &format!("wamid.bench-{id}"),
                            &number,
                            &number_id,
                            step,
                        ))
                        .expect("json");
                        client
                            .post(format!("{server}/api/v1/bots/whatsapp/webhook"))
                            .header(
                                "X-Hub-Signature-256",
                                atiende_tests::whatsapp_signature(&app_secret, &body),
                            )
                            .header("content-type", "application/json")
                            .body(body)
                    } else {
                        client
                            .post(format!("{server}/api/v1/bots/telegram/webhook"))
                            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                            .json(&update(id, chat, step))
                    };
                    let times = if (i + n) % 10 == 0 { 2 } else { 1 };
                    for _ in 0..times {
                        let t = Instant::now();
                        let r = request.try_clone().expect("a body in memory").send().await;
                        match r {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => panic!("the webhook answered {}", r.status()),
                            Err(e) => panic!("posting an update: {e}"),
                        }
                        latencies.push(t.elapsed());
                        posted += 1;
                    }
                }
                (latencies, posted)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let accepted_in = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
    latencies.sort();
    let posted: usize = results.iter().map(|r| r.1).sum();

    // Everything handled and sent?
    let settle_started = Instant::now();
    loop {
        let pending: i64 = sqlx::query_scalar(
            "select (select count(*) from bot_updates where processed_at is null)
                  + (select count(*) from deliveries where channel in ('telegram', 'whatsapp') and state = 'pending')",
        )
        .fetch_one(&pool)
        .await?;
        if pending == 0 {
            break;
        }
        if settle_started.elapsed() > Duration::from_secs(600) {
            return Err(
                format!("{pending} updates or messages still pending after 10 minutes").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done_in = started.elapsed();
    let (stored, sent, failed): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from bot_updates where id > $1),
                (select count(*) from deliveries where id > $2 and channel in ('telegram', 'whatsapp') and state = 'sent'),
                (select count(*) from deliveries where id > $2 and channel in ('telegram', 'whatsapp') and state in ('failed', 'gone'))",
    )
    .bind(updates_mark)
    .bind(deliveries_mark)
    .fetch_one(&pool)
    .await?;
    let messages =
        counted.messages.load(Ordering::Relaxed) + counted.whatsapp.load(Ordering::Relaxed);

    println!(
        "accepted {posted} webhook posts ({stored} distinct updates) in {:.2} s = {:.0} updates/s   latency p50 {:.2} ms  p99 {:.2} ms",
        accepted_in.as_secs_f64(),
        posted as f64 / accepted_in.as_secs_f64(),
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
    );
    println!(
        "every update handled and every reply sent {:.2} s after the first post ({:.2} s after the last was accepted)",
        done_in.as_secs_f64(),
        (done_in - accepted_in).as_secs_f64(),
    );
    println!(
        "replies sent: {sent} deliveries, {messages} messages received by the platform APIs ({} on WhatsApp; {}); failed or gone: {failed}",
        counted.whatsapp.load(Ordering::Relaxed),
        if messages as i64 == sent {
            "nothing sent twice"
        } else {
            "MISMATCH"
        }
    );
    Ok(())
}
