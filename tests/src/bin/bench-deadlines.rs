//! Deadline scheduler and push delivery figures. Creates (and drops first) a scratch database
//! named `atiende_bench_deadlines` on the given server, fills it with open cases and their alerts,
//! and prints:
//! - the time of a scheduler tick with every case open and nothing due;
//! - the time of the tick that fires 10,000 due alerts (and writes their notifications);
//! - push deliveries per second against a local mock push service.
//!
//! ```sh
//! cargo run --release -p atiende-tests --bin bench-deadlines -- \
//!     --server-url postgres://postgres@127.0.0.1:5432 --cases 1000000
//! ```

use std::time::{Duration, Instant};

use atiende_server::push::{PushSender, generate_keys};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A PostgreSQL server where the role may create databases (no database name).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server_url: String,
    /// Open cases to create (each with 12 pending alerts).
    #[arg(long, default_value_t = 1_000_000)]
    cases: i64,
    /// Alerts made due for the second measurement.
    #[arg(long, default_value_t = 10_000)]
    due: i64,
    /// Push deliveries for the throughput measurement.
    #[arg(long, default_value_t = 5_000)]
    pushes: i64,
}

const DB: &str = "atiende_bench_deadlines";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (mut admin, pool) = atiende_tests::scratch_database(&args.server_url, DB, 8).await?;

    eprintln!("creating {} open cases with 12 alerts each…", args.cases);
    let started = Instant::now();
    for sql in [
        "insert into customers (id, kind, document_type, document_number, name) values ('00000000-0000-0000-0000-000000000001', 'company', 'NIT', '900000001', 'Benchmark')",
        "insert into users (id, email, name, role, password_hash) values ('00000000-0000-0000-0000-0000000000d1', 'director@bench.invalid', 'Director', 'quality_director', 'x')",
        "insert into cases (id, radicado, type, subject, description, channel, customer_id, request_hash, status, impact, urgency, priority, legal_term_days, legal_due_date)
         select md5(g::text)::uuid, 'PQRS-2026-' || lpad(g::text, 7, '0'), 'peticion', 'Benchmark', 'Benchmark', 'app',
                '00000000-0000-0000-0000-000000000001', '\\x00', 'received', 'medium', 'medium', 'medium', 15, current_date + 21
         from generate_series(1, $1) g",
        "insert into deadline_alerts (case_id, clock, percent, due_at)
         select md5(g::text)::uuid, c.clock, p.percent, now() + make_interval(hours => (1 + g % 500)::int)
         from generate_series(1, $1) g
         cross join (values ('legal'), ('first_response'), ('resolution')) c (clock)
         cross join (values (50::int2), (75::int2), (90::int2), (100::int2)) p (percent)",
        "analyze",
    ] {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") { q.bind(args.cases) } else { q };
        q.execute(&pool).await?;
    }
    eprintln!("created in {:.1} s", started.elapsed().as_secs_f64());

    let mut idle = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let fired = atiende_core::scheduler::tick(&pool, atiende_core::scheduler::BATCH).await?;
        idle.push(t0.elapsed());
        assert_eq!(fired, 0, "nothing is due");
    }
    idle.sort();
    println!(
        "scheduler tick, {} open cases ({} pending alerts), nothing due: p50 {:.2} ms, max {:.2} ms (50 ticks)",
        args.cases,
        args.cases * 12,
        ms(idle[idle.len() / 2]),
        ms(idle[idle.len() - 1])
    );

    sqlx::query(
        "update deadline_alerts set due_at = now() - interval '1 minute'
         where (case_id, clock, percent) in (select case_id, clock, percent from deadline_alerts where percent = 50 and clock = 'resolution' limit $1)",
    )
    .bind(args.due)
    .execute(&pool)
    .await?;
    let t0 = Instant::now();
    let mut fired = 0;
    loop {
        match atiende_core::scheduler::tick(&pool, atiende_core::scheduler::BATCH).await? {
            0 => break,
            n => fired += n,
        }
    }
    let took = t0.elapsed();
    println!(
        "scheduler, {fired} alerts due: fired with their notifications in {:.0} ms ({:.0} alerts/s)",
        ms(took),
        fired as f64 / took.as_secs_f64()
    );

    // A push service on this machine that accepts everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mock = axum::Router::new().fallback(|| async { axum::http::StatusCode::CREATED });
    tokio::spawn(async move { axum::serve(listener, mock).await });
    let (pair, auth) = ece::generate_keypair_and_auth_secret()?;
    let p256dh = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        pair.pub_as_raw()?,
    );
    let auth = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, auth);
    sqlx::query("delete from deliveries").execute(&pool).await?;
    sqlx::query(
        "insert into push_subscriptions (id, user_id, endpoint, p256dh, auth)
         select md5('sub' || g)::uuid, '00000000-0000-0000-0000-0000000000d1', $1 || '/push/' || g, $2, $3 from generate_series(1, $4) g",
    )
    .bind(format!("http://{addr}"))
    .bind(&p256dh)
    .bind(&auth)
    .bind(args.pushes)
    .execute(&pool)
    .await?;
    sqlx::query(
        "insert into deliveries (notification_id, channel, subscription_id, target)
         select (select min(id) from notifications), 'push', s.id, s.endpoint from push_subscriptions s",
    )
    .execute(&pool)
    .await?;
    let (private, _) = generate_keys()?;
    // The mock push service listens on this machine.
    let sender = PushSender::new(
        &private,
        "mailto:bench@atiende.invalid",
        atiende_core::push_endpoint::Reach::PublicAndLoopback,
    )?;
    let t0 = Instant::now();
    let mut sent = 0;
    loop {
        match sender.deliver_due(&pool).await? {
            0 => break,
            n => sent += n,
        }
    }
    let took = t0.elapsed();
    println!(
        "push delivery, {sent} messages (encrypt, sign, POST, record) to a local mock service: {:.0} ms = {:.0} messages/s (one worker)",
        ms(took),
        sent as f64 / took.as_secs_f64()
    );
    pool.close().await;
    atiende_tests::drop_scratch_database(&mut admin, DB).await?;
    Ok(())
}
