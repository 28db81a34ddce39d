//! Chat throughput: signed Telegram webhook updates pushed at a running server (with its Bot API
//! pointed at a local stand-in this benchmark serves), then the time until every update was
//! handled and every reply sent, and a check that nothing was sent twice.
//!
//!     # the stand-in Bot API listens on --mock-listen (default 127.0.0.1:8099)
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/atiende_bench \
//!     ATIENDE_TELEGRAM_BOT_TOKEN=1:bench ATIENDE_TELEGRAM_WEBHOOK_SECRET=bench-secret \
//!     ATIENDE_TELEGRAM_API_URL=http://127.0.0.1:8099 ATIENDE_BOTS_INTERVAL_MS=20 \
//!         cargo run --release -- serve &
//!     DATABASE_URL=postgres://postgres@127.0.0.1:5432/atiende_bench \
//!         cargo run --release -p atiende-tests --bin bench-bots -- --chats 1000
//!
//! Each chat goes through a realistic conversation, each update posted as soon as the previous
//! one was accepted (Telegram sends one chat's updates in order): consent, registration, the
//! list of cases and help; one chat in four also files a PQRS. One update in ten is posted twice,
//! as Telegram does when an answer is slow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Base URL of the running atiende server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's database, to see when everything was handled and sent.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the stand-in Bot API listens (the server's ATIENDE_TELEGRAM_API_URL).
    #[arg(long, default_value = "127.0.0.1:8099")]
    mock_listen: SocketAddr,
    /// The server's ATIENDE_TELEGRAM_WEBHOOK_SECRET.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// Conversations.
    #[arg(long, default_value_t = 1000)]
    chats: usize,
    /// Conversations posting at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// What the stand-in Bot API counted.
#[derive(Default)]
struct Counted {
    messages: AtomicU64,
    other: AtomicU64,
}

async fn bot_api(
    State(counted): State<Arc<Counted>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Json<Value> {
    if uri.path().ends_with("/SendMessage") {
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

/// One chat's conversation, as Telegram updates' contents.
fn conversation(chat: i64, run: &str, files: bool) -> Vec<(&'static str, Value)> {
    let text = |t: String| ("message", json!({"text": t}));
    let tap = |d: &str| ("callback_query", json!({"data": d}));
    let mut steps = vec![
        text("/start".into()),
        tap("consent:yes"),
        tap("register"),
        text(format!("Cliente {chat}")),
        tap("doc:CC"),
        text(format!("{run}{chat}")),
        tap("menu:cases"),
        tap("menu:help"),
    ];
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
    // Update ids and chats of this run start where earlier runs on the database ended.
    let base: i64 = sqlx::query_scalar(
        "select coalesce(max(update_key::bigint), 0) + 1 from bot_updates where channel = 'telegram' and update_key ~ '^[0-9]+$'",
    )
    .fetch_one(&pool)
    .await?;
    let run = format!("{}", base % 100_000 + 10_000);
    let next_id = Arc::new(AtomicU64::new(base as u64));
    let url = format!(
        "{}/api/v1/bots/telegram/webhook",
        args.url.trim_end_matches('/')
    );
    eprintln!(
        "{} conversations, {} at a time, against {url}…",
        args.chats, args.concurrency
    );

    let started = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = futures_util::stream::iter(0..args.chats)
        .map(|i| {
            let (client, url, secret, next_id, run) = (
                client.clone(),
                url.clone(),
                args.secret.clone(),
                next_id.clone(),
                run.clone(),
            );
            async move {
                let chat = base * 10 + i as i64;
                let mut latencies = Vec::new();
                let mut posted = 0;
                for (n, step) in conversation(chat, &run, i % 4 == 0).iter().enumerate() {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let body = update(id, chat, step);
                    let times = if (i + n) % 10 == 0 { 2 } else { 1 };
                    for _ in 0..times {
                        let t = Instant::now();
                        let r = client
                            .post(&url)
                            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                            .json(&body)
                            .send()
                            .await;
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
                  + (select count(*) from deliveries where channel = 'telegram' and state = 'pending')",
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
    let numeric =
        |column: &str| format!("case when {column} ~ '^[0-9]+$' then {column}::bigint end");
    let (stored, sent, failed): (i64, i64, i64) = sqlx::query_as(&format!(
        "select (select count(*) from bot_updates where channel = 'telegram' and {} >= $1),
                (select count(*) from deliveries where channel = 'telegram' and state = 'sent' and {} >= $2),
                (select count(*) from deliveries where channel = 'telegram' and state in ('failed', 'gone') and {} >= $2)",
        numeric("update_key"),
        numeric("target"),
        numeric("target"),
    ))
    .bind(base)
    .bind(base * 10)
    .fetch_one(&pool)
    .await?;
    let messages = counted.messages.load(Ordering::Relaxed);

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
        "replies sent: {sent} deliveries, {messages} messages received by the Bot API ({}); failed or gone: {failed}",
        if messages as i64 == sent {
            "nothing sent twice"
        } else {
            "MISMATCH"
        }
    );
    Ok(())
}
