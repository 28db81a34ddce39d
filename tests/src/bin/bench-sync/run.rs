//! One scenario against one server: start it, run every device, read CPU and memory around the
//! load, stop it, and add the devices' figures up.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use atiende_sync::DocumentId;
use atiende_sync::storage;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep};

use crate::device::{
    DONE_DRAINED, DONE_OPEN, DONE_OWNED, DeviceSpec, STEP_GO, STEP_OPEN_REST, STEP_STOP, SentAt,
    device,
};
use crate::measure::{backend_cpu, cpu_delta, cpu_seconds, status_kb};
use crate::reference::start_reference;
use crate::scenarios::Scenario;
use crate::servers::{Running, Side, start_atiende, stop};
use crate::{Args, Result};

/// Time for the reference to write what it debounced before CPU is read again.
const SETTLE: Duration = Duration::from_millis(500);
/// How long connecting and opening documents may take before a scenario is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// From the start signal until CPU was read again (after the drain and `SETTLE`).
    pub window: Duration,
    pub server_cpu: f64,
    pub postgres_cpu: Option<f64>,
    pub driver_cpu: f64,
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub peak_kb: u64,
    pub stored: Option<usize>,
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
    ids: &[DocumentId],
) -> Result<Outcome> {
    let label = format!("{}", sc.key);
    let server = match side {
        Side::Atiende => start_atiende(ctx.args, ctx.db_url, ctx.dir, &label).await?,
        Side::Reference => start_reference(ctx.args, ctx.dir, &label).await?,
    };
    let outcome = drive(ctx, &server, sc, ids).await;
    let log = server.log.clone();
    stop(server).await;
    let mut outcome = outcome.map_err(|e| format!("{e} (server log: {})", log.display()))?;
    if side == Side::Atiende {
        outcome.stored = Some(stored_changes(ctx.driver, ids).await?);
    }
    Ok(outcome)
}

async fn drive(
    ctx: &Ctx<'_>,
    server: &Running,
    sc: &Scenario,
    ids: &[DocumentId],
) -> Result<Outcome> {
    let n = sc.device_docs.len();
    let (step_tx, step_rx) = watch::channel(0_u8);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u8>();
    let sent_at: Option<SentAt> = sc.track_arrivals.then(Default::default);
    let rss_idle_kb = status_kb(server.pid, "VmRSS");
    let mut tasks = Vec::with_capacity(n);
    for (d, docs) in sc.device_docs.iter().enumerate() {
        let spec = DeviceSpec {
            index: d,
            url: server.url(&ctx.tokens[d]),
            docs: docs.iter().map(|&k| (ids[k], sc.docs[k][0] == d)).collect(),
            announce: server.side == Side::Reference,
            changes: sc.changes,
            pace: sc.pace[d],
            drain: Duration::from_secs(ctx.args.drain_seconds),
            step: step_rx.clone(),
            done: done_tx.clone(),
            sent_at: sent_at.clone(),
        };
        tasks.push(tokio::spawn(device(spec)));
    }
    drop(done_tx);
    let mut counts = [0_usize; 3];
    let mut wait_for = async |phase: u8, within: Duration| -> Result<()> {
        let deadline = Instant::now() + within;
        while counts[phase as usize] < n {
            match timeout_at_opt(deadline, done_rx.recv()).await {
                Some(Some(p)) => counts[p as usize] += 1,
                Some(None) => break,
                None => {
                    return Err(format!(
                        "only {} of {n} devices got past phase {phase} in time",
                        counts[phase as usize]
                    )
                    .into());
                }
            }
        }
        Ok(())
    };
    let stopper = step_tx.clone();
    let result: Result<(Outcome, Instant)> = async {
        wait_for(DONE_OWNED, SETUP_TIMEOUT).await?;
        let _ = step_tx.send(STEP_OPEN_REST);
        wait_for(DONE_OPEN, SETUP_TIMEOUT).await?;

        let pg0 = backend_cpu(ctx.driver, ctx.hz).await;
        let cpu0 = cpu_seconds(&server.pid.to_string(), ctx.hz);
        let me0 = cpu_seconds("self", ctx.hz);
        let t0 = Instant::now();
        let _ = step_tx.send(STEP_GO);
        let limit =
            sc.duration * 3 + Duration::from_secs(ctx.args.drain_seconds) + Duration::from_secs(60);
        wait_for(DONE_DRAINED, limit).await?;
        sleep(SETTLE).await;
        let cpu1 = cpu_seconds(&server.pid.to_string(), ctx.hz);
        let me1 = cpu_seconds("self", ctx.hz);
        let pg1 = backend_cpu(ctx.driver, ctx.hz).await;
        let window = t0.elapsed();
        // Memory once the load is over but every device is still connected.
        sleep(Duration::from_secs(1)).await;
        let rss_kb = status_kb(server.pid, "VmRSS");
        let peak_kb = status_kb(server.pid, "VmHWM");
        let outcome = Outcome {
            devices: n,
            window,
            server_cpu: cpu1 - cpu0,
            postgres_cpu: (server.side == Side::Atiende).then(|| cpu_delta(&pg0, &pg1)),
            driver_cpu: me1 - me0,
            rss_idle_kb,
            rss_kb,
            peak_kb,
            ..Outcome::default()
        };
        Ok((outcome, t0))
    }
    .await;
    let _ = stopper.send(STEP_STOP);
    let (mut outcome, t_go) = result?;
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
        outcome.expected_arrivals = sc
            .device_docs
            .iter()
            .map(|docs| {
                let group = &sc.docs[docs[0]];
                sc.changes * (group.len() - 1)
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
