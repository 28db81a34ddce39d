//! One scenario against one server: start it, run every device, read CPU and memory around the
//! load, stop it, and add the devices' figures up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atiende_sync::DocumentId;
use atiende_sync::storage;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep};

use crate::device::{
    DONE_DRAINED, DONE_OPEN, DONE_OWNED, DeviceSpec, STEP_GO, STEP_OPEN_REST, STEP_STOP, SentAt,
    device,
};
use crate::measure::{backend_cpu, backend_pss_kb, cpu_delta, cpu_seconds, status_kb};
use crate::reference::start_reference;
use crate::scenarios::{Pace, Scenario};
use crate::servers::{Running, Side, start_atiende, stop};
use crate::setup::Documents;
use crate::{Args, Result};

/// Time for the reference to write what it debounced before CPU is read again.
const SETTLE: Duration = Duration::from_millis(500);
/// How long connecting and opening documents may take before a scenario is given up (more
/// for many devices, see `setup_timeout`).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often memory is sampled for the peak of server plus PostgreSQL.
const SAMPLE: Duration = Duration::from_millis(250);

fn setup_timeout(devices: usize) -> Duration {
    SETUP_TIMEOUT.max(Duration::from_millis(20) * devices as u32)
}

#[derive(Default)]
pub struct Outcome {
    pub devices: usize,
    pub failed_setup: usize,
    pub dropped: usize,
    pub drop_reasons: HashMap<String, usize>,
    pub sent: usize,
    pub acked: usize,
    pub ack: Vec<Duration>,
    pub arrivals: Vec<Duration>,
    pub expected_arrivals: usize,
    /// From the start signal to the last acknowledgement.
    pub busy: Duration,
    /// First to last change.
    pub sending: Duration,
    /// From the start signal until CPU was read again (after the drain, `SETTLE` and, for
    /// Atiende, the projection of every changed field report).
    pub window: Duration,
    pub server_cpu: f64,
    pub postgres_cpu: Option<f64>,
    pub driver_cpu: f64,
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub peak_kb: u64,
    /// The PostgreSQL backends' `Pss` (see `measure::backend_pss_kb`) when `rss_idle_kb` and
    /// `rss_kb` were read; Atiende only.
    pub postgres_idle_kb: Option<u64>,
    pub postgres_kb: Option<u64>,
    /// Highest server RSS plus backends' `Pss` seen, sampled every `SAMPLE` from before the
    /// devices connect until `rss_kb` is read.
    pub peak_with_postgres_kb: u64,
    /// From the first connection until every device had all its documents open.
    pub setup: Duration,
    pub stored: Option<usize>,
    /// Of the scenario's field reports in Atiende: how many were projected into their work
    /// order's rows, and how many hold a projection error.
    pub projected: Option<(i64, i64)>,
    /// Field reports still waiting to be projected when CPU was read (see `projections_done`).
    pub projections_left: i64,
    /// Why the scenario could not be completed against this server.
    pub failure: Option<String>,
}

pub struct Ctx<'a> {
    pub args: &'a Args,
    pub hz: f64,
    pub driver: &'a PgPool,
    pub tokens: &'a [String],
    pub db_url: &'a str,
    pub dir: &'a Path,
}

pub async fn run_side(
    ctx: &Ctx<'_>,
    side: Side,
    sc: &Scenario,
    docs: &Documents,
) -> Result<Outcome> {
    let ids = &docs.ids;
    let label = format!("{}", sc.key);
    let server = match side {
        Side::Atiende => start_atiende(ctx.args, ctx.db_url, ctx.dir, &label).await?,
        Side::Reference => start_reference(ctx.args, ctx.dir, &label).await?,
    };
    let outcome = drive(ctx, &server, sc, docs).await;
    let log = server.log.clone();
    stop(server).await;
    let mut outcome = outcome.map_err(|e| format!("{e} (server log: {})", log.display()))?;
    if side == Side::Atiende {
        outcome.stored = Some(stored_changes(ctx.driver, ids).await?);
        outcome.projected = Some(projected_reports(ctx.driver, ids).await?);
    }
    Ok(outcome)
}

async fn drive(
    ctx: &Ctx<'_>,
    server: &Running,
    sc: &Scenario,
    docs: &Documents,
) -> Result<Outcome> {
    let n = sc.device_docs.len();
    let (step_tx, step_rx) = watch::channel(0_u8);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u8>();
    let sent_at: Option<SentAt> = sc.track_arrivals.then(Default::default);
    let with_postgres = server.side == Side::Atiende;
    let rss_idle_kb = status_kb(server.pid, "VmRSS");
    let postgres_idle_kb = match with_postgres {
        true => Some(backend_pss_kb(ctx.driver).await),
        false => None,
    };
    let (stop_sampling, sampler) =
        sample_peak(server.pid, with_postgres.then(|| ctx.driver.clone()));
    let permits = Arc::new(Semaphore::new(ctx.args.connects_in_flight.max(1)));
    let setup_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (d, mine) in sc.device_docs.iter().enumerate() {
        let spec = DeviceSpec {
            index: d,
            url: server.url(&ctx.tokens[d]),
            docs: mine
                .iter()
                .map(|&k| (docs.ids[k], sc.docs[k][0] == d, docs.saved[k].clone()))
                .collect(),
            announce: server.side == Side::Reference,
            changes: sc.changes,
            pace: sc.pace[d],
            drain: Duration::from_secs(ctx.args.drain_seconds),
            step: step_rx.clone(),
            done: done_tx.clone(),
            sent_at: sent_at.clone(),
            permits: permits.clone(),
        };
        tasks.push(tokio::spawn(device(spec)));
    }
    drop(done_tx);
    let mut counts = [0_usize; 3];
    let what = format!("{}) {}", sc.key, server.side.name());
    let mut wait_for = async |phase: u8, within: Duration| -> Result<()> {
        let deadline = Instant::now() + within;
        let mut progress = Instant::now() + PROGRESS;
        while counts[phase as usize] < n {
            if Instant::now() >= progress {
                progress = Instant::now() + PROGRESS;
                if n >= 1_000 {
                    eprintln!(
                        "{what}: {} of {n} devices {}",
                        counts[phase as usize], PHASES[phase as usize]
                    );
                }
            }
            match timeout_at_opt(deadline.min(progress), done_rx.recv()).await {
                Some(Some(p)) => counts[p as usize] += 1,
                Some(None) => break,
                None if Instant::now() < deadline => {}
                None => {
                    return Err(format!(
                        "only {} of {n} devices {} within {} s (server RSS then {} MB)",
                        counts[phase as usize],
                        PHASES[phase as usize],
                        within.as_secs(),
                        status_kb(server.pid, "VmRSS") / 1024
                    )
                    .into());
                }
            }
        }
        Ok(())
    };
    let stopper = step_tx.clone();
    let result: Result<(Outcome, Instant)> = async {
        wait_for(DONE_OWNED, setup_timeout(n)).await?;
        let _ = step_tx.send(STEP_OPEN_REST);
        wait_for(DONE_OPEN, setup_timeout(n)).await?;
        let setup = setup_started.elapsed();

        let pg0 = backend_cpu(ctx.driver, ctx.hz).await;
        let cpu0 = cpu_seconds(&server.pid.to_string(), ctx.hz);
        let me0 = cpu_seconds("self", ctx.hz);
        let t0 = Instant::now();
        let _ = step_tx.send(STEP_GO);
        let limit =
            sc.duration * 3 + Duration::from_secs(ctx.args.drain_seconds) + Duration::from_secs(60);
        wait_for(DONE_DRAINED, limit).await?;
        sleep(SETTLE).await;
        let projections_left = match with_postgres {
            true => projections_done(ctx.driver).await,
            false => 0,
        };
        let cpu1 = cpu_seconds(&server.pid.to_string(), ctx.hz);
        let me1 = cpu_seconds("self", ctx.hz);
        let pg1 = backend_cpu(ctx.driver, ctx.hz).await;
        let window = t0.elapsed();
        // Memory once the load is over but every device is still connected.
        sleep(Duration::from_secs(1)).await;
        let rss_kb = status_kb(server.pid, "VmRSS");
        let peak_kb = status_kb(server.pid, "VmHWM");
        let postgres_kb = match with_postgres {
            true => Some(backend_pss_kb(ctx.driver).await),
            false => None,
        };
        let outcome = Outcome {
            devices: n,
            window,
            server_cpu: cpu1 - cpu0,
            postgres_cpu: (server.side == Side::Atiende).then(|| cpu_delta(&pg0, &pg1)),
            driver_cpu: me1 - me0,
            rss_idle_kb,
            rss_kb,
            peak_kb,
            postgres_idle_kb,
            postgres_kb,
            setup,
            projections_left,
            ..Outcome::default()
        };
        Ok((outcome, t0))
    }
    .await;
    let _ = stopper.send(STEP_STOP);
    let _ = stop_sampling.send(());
    let peak_with_postgres_kb = sampler.await.unwrap_or(0);
    if result.is_err() {
        for task in &tasks {
            task.abort();
        }
    }
    let (mut outcome, t_go) = result?;
    outcome.peak_with_postgres_kb = peak_with_postgres_kb;
    let mut first: Option<Instant> = None;
    let mut last_change: Option<Instant> = None;
    let mut last_ack: Option<Instant> = None;
    for task in tasks {
        let r = task.await?;
        outcome.sent += r.sent;
        outcome.acked += r.acked;
        outcome.ack.extend(r.ack_latencies);
        outcome.arrivals.extend(r.arrivals);
        if r.failed_setup {
            outcome.failed_setup += 1;
        }
        if let Some(why) = r.dropped {
            outcome.dropped += 1;
            // Keep the reason's kind, not its details.
            let kind: String = why.chars().take(60).collect();
            *outcome.drop_reasons.entry(kind).or_default() += 1;
        }
        first = min_opt(first, r.first_change);
        last_change = max_opt(last_change, r.last_change);
        last_ack = max_opt(last_ack, r.last_ack);
    }
    if sc.track_arrivals {
        // Each change goes to the device's documents in turn and should reach their other members.
        outcome.expected_arrivals = sc
            .device_docs
            .iter()
            .zip(&sc.pace)
            .filter(|(_, pace)| !matches!(pace, Pace::Idle))
            .map(|(docs, _)| {
                (0..sc.changes)
                    .map(|i| sc.docs[docs[i % docs.len()]].len() - 1)
                    .sum::<usize>()
            })
            .sum();
    }
    outcome.busy = last_ack.map_or(Duration::ZERO, |t| t - t_go);
    outcome.sending = match (first, last_change) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    Ok(outcome)
}

/// How often the connecting of many devices is reported.
const PROGRESS: Duration = Duration::from_secs(5);
const PHASES: [&str; 3] = [
    "connected with their own documents open",
    "with all their documents open",
    "done",
];

/// Samples the server's RSS plus, with a pool, the PostgreSQL backends' `Pss` until told to stop;
/// the highest sum.
fn sample_peak(
    pid: u32,
    postgres: Option<PgPool>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        let mut tick = tokio::time::interval(SAMPLE);
        loop {
            tokio::select! {
                _ = &mut stopped => return peak,
                _ = tick.tick() => {
                    let pg = match &postgres {
                        Some(pool) => backend_pss_kb(pool).await,
                        None => 0,
                    };
                    peak = peak.max(status_kb(pid, "VmRSS") + pg);
                }
            }
        }
    });
    (stop, task)
}

async fn timeout_at_opt<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Changes the devices added to the documents, as stored in PostgreSQL (the initial change of
/// each document left out).
async fn stored_changes(pool: &PgPool, ids: &[DocumentId]) -> Result<usize> {
    let mut total = 0;
    for &id in ids {
        if let Some(mut stored) = storage::load(pool, id).await? {
            total += stored.doc.get_changes_meta(&[]).len().saturating_sub(1);
        }
    }
    Ok(total)
}

/// Waits (up to `PROJECTION_WAIT`) until the server has projected every changed field report,
/// so that the CPU read afterwards includes the projections; how many were still queued.
async fn projections_done(pool: &PgPool) -> i64 {
    let deadline = Instant::now() + PROJECTION_WAIT;
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from sync_projection_queue")
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

const PROJECTION_WAIT: Duration = Duration::from_secs(60);

/// Field reports among `ids` that were projected, and those that were refused.
async fn projected_reports(pool: &PgPool, ids: &[DocumentId]) -> Result<(i64, i64)> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(sqlx::query_as(
        "select count(*) filter (where f.projected_at is not null),
                count(*) filter (where f.projection_error is not null)
         from field_reports f join work_orders w on w.id = f.work_order_id
         where w.report_document_id = any($1)",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await?)
}
