//! Filing throughput: PQRS filed through the HTTP API of a running server, then the same filings
//! written straight to PostgreSQL with `atiende_core` (no HTTP, no auth), and the ratio. Both
//! phases get customers registered the same way (through the API) and warmed up with one filing
//! each, and each starts once the server has projected every earlier filing into its customer's
//! inbox document, so neither pays for the other's background work.
//!
//!     cargo run --release -p atiende-tests --bin bench-filing -- \
//!         --url http://127.0.0.1:8080 --database-url postgres://postgres@127.0.0.1:5432/atiende_bench

use std::sync::Arc;
use std::time::{Duration, Instant};

use atiende_core::auth::{self, User};
use atiende_core::cases::{self, NewCase};
use atiende_core::types::{CaseType, Channel};
use clap::Parser;
use serde_json::json;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Base URL of a running atiende server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The same database the server uses, for the direct comparison.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Filings per phase.
    #[arg(long, default_value_t = 4000)]
    count: usize,
}

struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn report(&self, label: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{label:<8} {:>6} cases in {:>6.2} s = {:>7.0} cases/s   latency p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms",
            l.len(),
            self.elapsed.as_secs_f64(),
            self.rate(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.95).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
    }
}

fn body(i: usize) -> serde_json::Value {
    json!({"id": Uuid::new_v4(), "type": "peticion", "subject": format!("Benchmark {i}"), "description": "Filed by bench-filing."})
}

fn new_case(i: usize) -> NewCase {
    NewCase {
        id: Uuid::new_v4(),
        case_type: CaseType::Peticion,
        subject: format!("Benchmark {i}"),
        description: "Filed by bench-filing.".into(),
        channel: Channel::App,
        chat_id: None,
        work_order_id: None,
    }
}

/// Registers a benchmark customer through the API; returns its session token.
async fn register(
    client: &reqwest::Client,
    url: &str,
    run_id: &str,
    i: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let r = client
        .post(format!("{url}/api/v1/auth/register"))
        .json(&json!({"email": format!("bench-{run_id}-{i}@bench.invalid"), "password": "benchmark password",
                      "name": "Benchmark", "document_type": "CC", "document_number": format!("B{}{i}", &run_id[..12]),
                      "accept_data_policy": true}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::CREATED {
        return Err(format!(
            "registering a benchmark customer: {} {}",
            r.status(),
            r.text().await?
        )
        .into());
    }
    Ok(r.json::<serde_json::Value>().await?["token"]
        .as_str()
        .ok_or("no token")?
        .to_owned())
}

/// Waits until the server has projected every filed case into its customer's inbox document,
/// saying how long that took; gives up after ten minutes.
async fn drained(pool: &sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar("select count(*) from sync_inbox_queue")
            .fetch_one(pool)
            .await?;
        if waiting == 0 {
            eprintln!(
                "inbox queue drained in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(
                format!("{waiting} cases still wait for their inbox after 10 minutes").into(),
            );
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!("waiting for the inbox queue to drain: {waiting} cases left…");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.concurrency as u32 + 2)
        .connect(&args.database_url)
        .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let run_id = Uuid::new_v4().simple().to_string();
    eprintln!("registering {} customers…", 2 * args.concurrency);
    let mut tokens = Vec::new();
    for i in 0..2 * args.concurrency {
        tokens.push(register(&client, &args.url, &run_id, i).await?);
    }
    let direct_tokens = tokens.split_off(args.concurrency);
    let mut customers: Vec<(Uuid, User)> = Vec::new();
    for token in &direct_tokens {
        let (user, _) = auth::authenticate_session(&pool, token).await?;
        customers.push((user.customer_id.ok_or("no customer")?, user));
    }

    eprintln!("warming up…");
    for (i, t) in tokens.iter().enumerate() {
        client
            .post(format!("{}/api/v1/cases", args.url))
            .bearer_auth(t)
            .json(&body(i))
            .send()
            .await?
            .error_for_status()?;
    }
    for (i, (customer_id, user)) in customers.iter().enumerate() {
        cases::file(&pool, *customer_id, Some(user), new_case(i)).await?;
    }
    drained(&pool).await?;

    eprintln!(
        "filing {} cases over HTTP with {} clients…",
        args.count, args.concurrency
    );
    let per_client = args.count / args.concurrency;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let (client, url) = (client.clone(), format!("{}/api/v1/cases", args.url));
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body(i))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status() != reqwest::StatusCode::CREATED {
                    return Err(format!("filing answered {}", r.status()));
                }
                r.bytes().await.map_err(|e| e.to_string())?;
                lat.push(t0.elapsed());
            }
            Ok::<_, String>(lat)
        });
    }
    let http = collect(&mut tasks, started).await?;
    drained(&pool).await?;

    eprintln!(
        "filing {} cases straight to PostgreSQL with {} clients…",
        args.count, args.concurrency
    );
    let pool = Arc::new(pool);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (customer_id, user) in customers {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t0 = Instant::now();
                cases::file(&pool, customer_id, Some(&user), new_case(i))
                    .await
                    .map_err(|e| e.to_string())?;
                lat.push(t0.elapsed());
            }
            Ok::<_, String>(lat)
        });
    }
    let direct = collect(&mut tasks, started).await?;
    drained(&pool).await?;

    println!(
        "filing a PQRS, {} clients, {} cases per phase",
        args.concurrency,
        per_client * args.concurrency
    );
    http.report("http");
    direct.report("direct");
    println!(
        "ratio    http / direct = {:.2} (target >= 0.5)",
        http.rate() / direct.rate()
    );
    Ok(())
}

async fn collect(
    tasks: &mut tokio::task::JoinSet<Result<Vec<Duration>, String>>,
    started: Instant,
) -> Result<Run, Box<dyn std::error::Error>> {
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r??);
    }
    Ok(Run {
        elapsed: started.elapsed(),
        latencies,
    })
}
