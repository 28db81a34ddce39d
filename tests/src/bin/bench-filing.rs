//! Filing throughput: PQRS filed through the HTTP API of a running server, then the same filings
//! written straight to PostgreSQL with `atiende_core` (no HTTP, no auth), and the ratio.
//!
//!     cargo run --release -p atiende-tests --bin bench-filing -- \
//!         --url http://127.0.0.1:8080 --database-url postgres://postgres@127.0.0.1:5432/atiende_bench

use std::sync::Arc;
use std::time::{Duration, Instant};

use atiende_core::auth::{self, Password, Registration};
use atiende_core::cases::{self, NewCase};
use atiende_core::types::{CaseType, Channel, DocumentType};
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
    eprintln!("registering {} customers…", args.concurrency);
    let mut tokens = Vec::new();
    for i in 0..args.concurrency {
        let r = client
            .post(format!("{}/api/v1/auth/register", args.url))
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
        tokens.push(
            r.json::<serde_json::Value>().await?["token"]
                .as_str()
                .ok_or("no token")?
                .to_owned(),
        );
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

    eprintln!(
        "filing {} cases straight to PostgreSQL with {} clients…",
        args.count, args.concurrency
    );
    let customers: Vec<(Uuid, auth::User)> = {
        let mut v = Vec::new();
        for i in 0..args.concurrency {
            let user = auth::register_customer(
                &pool,
                &auth::Hashing::default(),
                Registration {
                    email: format!("direct-{run_id}-{i}@bench.invalid"),
                    password: Password::parse("benchmark password".into())?,
                    name: "Benchmark".into(),
                    phone: None,
                    document_type: DocumentType::Cc,
                    document_number: format!("D{}{i}", &run_id[..12]),
                    accept_data_policy: true,
                    language: "es".into(),
                },
                "app",
            )
            .await?;
            v.push((user.customer_id.ok_or("no customer")?, user));
        }
        v
    };
    let pool = Arc::new(pool);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (customer_id, user) in customers {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t0 = Instant::now();
                let new = NewCase {
                    id: Uuid::new_v4(),
                    case_type: CaseType::Peticion,
                    subject: format!("Benchmark {i}"),
                    description: "Filed by bench-filing.".into(),
                    channel: Channel::App,
                    chat_id: None,
                };
                cases::file(&pool, customer_id, Some(&user), new)
                    .await
                    .map_err(|e| e.to_string())?;
                lat.push(t0.elapsed());
            }
            Ok::<_, String>(lat)
        });
    }
    let direct = collect(&mut tasks, started).await?;

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
