//! Sync server figures: simulated devices against the Atiende sync server and, in the same run,
//! the same load against the reference JavaScript sync server (`bench/js/reference-server.mjs`:
//! automerge-repo 2.5.6 with its WebSocket server adapter and file storage), with the ratios.
//!
//! Both servers run as child processes of this driver (the release `atiende` binary, and Node),
//! one after the other and freshly started for each scenario, so their CPU time and memory can be
//! read from `/proc`. The devices are Rust protocol clients (`atiende_sync::client`: our codec and
//! the automerge crate's sync protocol), the same code for both servers. A change is acknowledged when the server's
//! heads include it: Atiende sends those only after the change is committed to PostgreSQL.
//! Creates (and drops first) a scratch database `atiende_bench_sync`.
//!
//! ```sh
//! cargo build --release
//! npm ci --prefix bench/js
//! cargo run --release -p atiende-tests --bin bench-sync -- \
//!     --server-url postgres://postgres@127.0.0.1:5432
//! ```
//!
//! Scenarios (`--scenarios abcde` by default):
//! - a) one device, one document, changes sent one per message, each acknowledged before the
//!   next: server CPU per 1,000 changes.
//! - b) 100 devices × 200 changes 5 ms apart, alternating between the device's own document and
//!   one shared by its group of 4: changes acknowledged per second, server CPU utilisation.
//! - c) 100 devices in groups of 4 on shared documents, 250 changes/s in total: time from a
//!   change on one device to its arrival on the others.
//! - d) 500 devices offering 1,000 changes/s (own and group documents): acknowledgements,
//!   dropped connections, peak memory.
//! - e) memory with 100 devices connected, each with its own and its group's document open.
//! - f) scale: 10,000 devices connected, each with its own and its group's document open, 100 of
//!   them making 250 changes/s in total for 20 s: memory, change → other device latency, dropped
//!   connections. Not in the default list (`--scenarios f`).
//!
//! Every document is the field report of a work order, so Atiende projects the changes into the
//! order's rows as it does in production, and its figures count the PostgreSQL backends serving
//! it (CPU, and memory as proportional set size) beside the server's own.
//!
//! Where things are: `scenarios` (the devices, documents and pace of each), `setup` (scratch
//! database, technicians, work orders), `servers` and `reference` (the two servers as child
//! processes), `device` (one simulated device), `run` (one scenario against one server),
//! `measure` (CPU and memory from `/proc`) and `report` (the tables).

mod device;
mod measure;
mod reference;
mod report;
mod run;
mod scenarios;
mod servers;
mod setup;

use std::path::PathBuf;

use clap::Parser;
use uuid::Uuid;

use crate::run::{Ctx, run_side};
use crate::scenarios::{Scenario, scenario};
use crate::servers::Side;
use crate::setup::{Scratch, create_documents, create_office, create_users};

#[derive(Parser)]
pub struct Args {
    /// A PostgreSQL server where the role may create databases (no database name; parameters
    /// such as `?sslmode=disable` are kept, and the server under test gets them too).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub server_url: String,
    /// The `atiende` binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/atiende")]
    pub atiende: PathBuf,
    /// Node.js, for the reference server.
    #[arg(long, default_value = "node")]
    pub node: String,
    /// Folder of the reference server (`npm ci` is run there when `node_modules` is missing).
    #[arg(long, default_value = "bench/js")]
    pub reference_dir: PathBuf,
    /// The reference's `saveDebounceRate`: how long automerge-repo waits to write a changed
    /// document to its files (its default is 100).
    #[arg(long, default_value_t = 100)]
    pub reference_save_debounce_ms: u64,
    /// Runs Atiende only, without the reference (its columns then say so): for comparing
    /// Atiende's own settings quickly.
    #[arg(long)]
    pub without_reference: bool,
    /// Which scenarios to run, in order.
    #[arg(long, default_value = "abcde")]
    pub scenarios: String,
    /// a) changes, each acknowledged before the next.
    #[arg(long, default_value_t = 1000)]
    pub a_changes: usize,
    /// b) devices.
    #[arg(long, default_value_t = 100)]
    pub b_devices: usize,
    /// b) changes per device.
    #[arg(long, default_value_t = 200)]
    pub b_changes: usize,
    /// b) milliseconds between one device's changes.
    #[arg(long, default_value_t = 5)]
    pub b_interval_ms: u64,
    /// c) devices.
    #[arg(long, default_value_t = 100)]
    pub c_devices: usize,
    /// c) changes per second, all devices together.
    #[arg(long, default_value_t = 250.0)]
    pub c_rate: f64,
    /// c) seconds of changes.
    #[arg(long, default_value_t = 20)]
    pub c_seconds: u64,
    /// d) devices.
    #[arg(long, default_value_t = 500)]
    pub d_devices: usize,
    /// d) changes per second offered, all devices together.
    #[arg(long, default_value_t = 1000.0)]
    pub d_rate: f64,
    /// d) seconds of changes.
    #[arg(long, default_value_t = 20)]
    pub d_seconds: u64,
    /// e) devices connected.
    #[arg(long, default_value_t = 100)]
    pub e_devices: usize,
    /// f) devices connected.
    #[arg(long, default_value_t = 10_000)]
    pub f_devices: usize,
    /// f) devices making changes; the others only receive.
    #[arg(long, default_value_t = 100)]
    pub f_active: usize,
    /// f) changes per second, the active devices together.
    #[arg(long, default_value_t = 250.0)]
    pub f_rate: f64,
    /// f) seconds of changes.
    #[arg(long, default_value_t = 20)]
    pub f_seconds: u64,
    /// Devices connecting and opening their documents at once.
    #[arg(long, default_value_t = 256)]
    pub connects_in_flight: usize,
    /// Devices that share one document in b) to f).
    #[arg(long, default_value_t = 4)]
    pub group_size: usize,
    /// How long devices wait for outstanding acknowledgements after their last change.
    #[arg(long, default_value_t = 60)]
    pub drain_seconds: u64,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = args
        .scenarios
        .chars()
        .filter_map(|k| scenario(k, &args))
        .collect();
    if scenarios.is_empty() {
        return Err("no known scenario in --scenarios (a to f)".into());
    }
    if !args.atiende.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            args.atiende.display()
        )
        .into());
    }
    reference::install(&args).await?;
    raise_open_files_limit();
    let hz = measure::clock_ticks();

    let dir = PathBuf::from("target/bench-sync");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;

    let scratch = Scratch::create(&args.server_url).await?;
    let pool = &scratch.pool;

    let devices = scenarios
        .iter()
        .map(|s| s.device_docs.len())
        .max()
        .unwrap_or(1);
    eprintln!("creating {devices} technicians and their sessions…");
    let office = create_office(pool).await?;
    let (users, tokens): (Vec<Uuid>, Vec<String>) =
        create_users(pool, devices).await?.into_iter().unzip();

    let ctx = Ctx {
        args: &args,
        hz,
        driver: pool,
        tokens: &tokens,
        db_url: &scratch.url,
        dir: &dir,
    };
    for sc in &scenarios {
        eprintln!("{}) creating {} work orders…", sc.key, sc.docs.len());
        let docs = create_documents(pool, &office, sc, &users).await?;
        let mut outcomes = Vec::new();
        for side in [Side::Atiende, Side::Reference] {
            if side == Side::Reference && args.without_reference {
                outcomes.push(run::Outcome {
                    devices: sc.device_docs.len(),
                    failure: Some("not run (--without-reference)".to_owned()),
                    ..run::Outcome::default()
                });
                continue;
            }
            eprintln!(
                "{}) {}: {} devices, {} documents, {} changes each…",
                sc.key,
                side.name(),
                sc.device_docs.len(),
                sc.docs.len(),
                sc.changes
            );
            let started = std::time::Instant::now();
            let o = match run_side(&ctx, side, sc, &docs).await {
                Ok(o) => o,
                // What the reference cannot hold is a finding: Atiende's figures still count.
                Err(e) if side == Side::Reference => {
                    eprintln!("{}) reference: {e}", sc.key);
                    run::Outcome {
                        devices: sc.device_docs.len(),
                        failure: Some(format!(
                            "gave up after {:.0} s: {e}",
                            started.elapsed().as_secs_f64()
                        )),
                        ..run::Outcome::default()
                    }
                }
                Err(e) => return Err(e),
            };
            eprintln!(
                "{}) {}: {} of {} changes acknowledged, {} connections dropped, {:.1} s",
                sc.key,
                side.name(),
                o.acked,
                o.sent,
                o.dropped,
                started.elapsed().as_secs_f64()
            );
            outcomes.push(o);
        }
        report::report(sc, &outcomes[0], &outcomes[1]);
    }
    println!(
        "\nreference: automerge-repo 2.5.6, NodeWSServerAdapter, NodeFSStorageAdapter, \
         saveDebounceRate {} ms; logs in {}",
        args.reference_save_debounce_ms,
        dir.display()
    );

    scratch.drop_database().await
}

/// Every device is a socket of this process: the soft open-files limit is raised to the hard one,
/// as the server does for its own (`server/src/main.rs`), and printed, since it bounds `f)`.
fn raise_open_files_limit() {
    let before = rlimit::Resource::NOFILE.get();
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(now)) => {
            println!("open files: soft limit {now} (was {soft}, hard limit {hard})")
        }
        (_, Ok(now)) => println!("open files: soft limit {now}"),
        (_, Err(e)) => println!("open files: could not raise the limit: {e}"),
    }
}
