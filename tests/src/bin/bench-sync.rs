//! Sync server figures: simulated devices against the Atiende sync server and, in the same run,
//! the same load against the reference JavaScript sync server (`bench/js/reference-server.mjs`:
//! automerge-repo 2.5.6 with its WebSocket server adapter and file storage), with the ratios.
//!
//! Both servers run as child processes of this driver (the release `atiende` binary, and Node),
//! one after the other and freshly started for each scenario, so their CPU time and memory can be
//! read from `/proc`. The devices are Rust protocol clients (our codec and the automerge crate's
//! sync protocol), the same code for both servers. A change is acknowledged when the server's
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
//! Scenarios (`--scenarios abcde`):
//! - a) one device, one document, changes sent one per message, each acknowledged before the
//!   next: server CPU per 1,000 changes.
//! - b) 100 devices × 200 changes 5 ms apart, alternating between the device's own document and
//!   one shared by its group of 4: changes acknowledged per second, server CPU utilisation.
//! - c) 100 devices in groups of 4 on shared documents, 250 changes/s in total: time from a
//!   change on one device to its arrival on the others.
//! - d) 500 devices offering 1,000 changes/s (own and group documents): acknowledgements,
//!   dropped connections, peak memory.
//! - e) memory with 100 devices connected, each with its own and its group's document open.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use atiende_core::auth::{self, NewUser, Password};
use atiende_core::types::Role;
use atiende_sync::storage::{self, DocumentKind, Mode};
use atiende_sync::{DocumentId, Message, PROTOCOL_V1, decode, encode};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// A PostgreSQL server where the role may create databases (no database name; parameters
    /// such as `?sslmode=disable` are kept, and the server under test gets them too).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server_url: String,
    /// The `atiende` binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/atiende")]
    atiende: PathBuf,
    /// Node.js, for the reference server.
    #[arg(long, default_value = "node")]
    node: String,
    /// Folder of the reference server (`npm ci` is run there when `node_modules` is missing).
    #[arg(long, default_value = "bench/js")]
    reference_dir: PathBuf,
    /// The reference's `saveDebounceRate`: how long automerge-repo waits to write a changed
    /// document to its files (its default is 100).
    #[arg(long, default_value_t = 100)]
    reference_save_debounce_ms: u64,
    /// Which scenarios to run, in order.
    #[arg(long, default_value = "abcde")]
    scenarios: String,
    /// a) changes, each acknowledged before the next.
    #[arg(long, default_value_t = 1000)]
    a_changes: usize,
    /// b) devices.
    #[arg(long, default_value_t = 100)]
    b_devices: usize,
    /// b) changes per device.
    #[arg(long, default_value_t = 200)]
    b_changes: usize,
    /// b) milliseconds between one device's changes.
    #[arg(long, default_value_t = 5)]
    b_interval_ms: u64,
    /// c) devices.
    #[arg(long, default_value_t = 100)]
    c_devices: usize,
    /// c) changes per second, all devices together.
    #[arg(long, default_value_t = 250.0)]
    c_rate: f64,
    /// c) seconds of changes.
    #[arg(long, default_value_t = 20)]
    c_seconds: u64,
    /// d) devices.
    #[arg(long, default_value_t = 500)]
    d_devices: usize,
    /// d) changes per second offered, all devices together.
    #[arg(long, default_value_t = 1000.0)]
    d_rate: f64,
    /// d) seconds of changes.
    #[arg(long, default_value_t = 20)]
    d_seconds: u64,
    /// e) devices connected.
    #[arg(long, default_value_t = 100)]
    e_devices: usize,
    /// Devices that share one document in b) to e).
    #[arg(long, default_value_t = 4)]
    group_size: usize,
    /// How long devices wait for outstanding acknowledgements after their last change.
    #[arg(long, default_value_t = 60)]
    drain_seconds: u64,
}

const DB: &str = "atiende_bench_sync";
/// Marks the driver's own database sessions, which are left out of PostgreSQL's CPU figures.
const DRIVER_APP: &str = "bench-sync-driver";
/// Time for the reference to write what it debounced before CPU is read again.
const SETTLE: Duration = Duration::from_millis(500);
/// How long connecting and opening documents may take before a scenario is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------- processes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Atiende,
    Reference,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Atiende => "atiende",
            Side::Reference => "reference",
        }
    }
}

/// A server under test, started by us.
struct Running {
    side: Side,
    child: Child,
    pid: u32,
    /// `ws://…` without the token.
    base: String,
    log: PathBuf,
}

impl Running {
    fn url(&self, token: &str) -> String {
        match self.side {
            Side::Atiende => format!("{}?ticket={token}", self.base),
            Side::Reference => self.base.clone(),
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_atiende(args: &Args, db_url: &str, dir: &Path, label: &str) -> Result<Running> {
    let port = free_port()?;
    let log = dir.join(format!("atiende-{label}.log"));
    let out = File::create(&log)?;
    let child = Command::new(&args.atiende)
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("ATIENDE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATIENDE_DATA_DIR", dir.join("atiende-data"))
        .env("ATIENDE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", args.atiende.display()))?;
    let pid = child.id().ok_or("atiende exited at once")?;
    let mut running = Running {
        side: Side::Atiende,
        child,
        pid,
        base: format!("ws://127.0.0.1:{port}/api/v1/sync"),
        log,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(running);
        }
        if running.child.try_wait()?.is_some() || Instant::now() > deadline {
            return Err(format!(
                "atiende did not become ready; see {}",
                running.log.display()
            )
            .into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

async fn start_reference(args: &Args, dir: &Path, label: &str) -> Result<Running> {
    let log = dir.join(format!("reference-{label}.log"));
    let err = File::create(&log)?;
    let mut child = Command::new(&args.node)
        .arg("reference-server.mjs")
        .current_dir(&args.reference_dir)
        .env("BENCH_PORT", "0")
        .env(
            "BENCH_DATA_DIR",
            dir.join(format!("reference-data-{label}")),
        )
        .env(
            "BENCH_SAVE_DEBOUNCE_MS",
            args.reference_save_debounce_ms.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", args.node))?;
    let pid = child.id().ok_or("node exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| format!("the reference did not start; see {}", log.display()))??
        .ok_or_else(|| format!("the reference exited; see {}", log.display()))?;
    let port: u16 = first
        .strip_prefix("listening on ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("unexpected first line from the reference: {first}"))?;
    // Whatever else it prints goes to the log; a closed pipe would fail its writes.
    let mut copy = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .await?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = copy.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok(Running {
        side: Side::Reference,
        child,
        pid,
        base: format!("ws://127.0.0.1:{port}/"),
        log,
    })
}

/// SIGTERM, then SIGKILL if it does not stop in time.
async fn stop(mut running: Running) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.pid.to_string())
        .status()
        .await;
    if timeout(Duration::from_secs(15), running.child.wait())
        .await
        .is_err()
    {
        let _ = running.child.kill().await;
    }
}

/// User plus system CPU time of a process (all its threads), in seconds.
fn cpu_seconds(pid: &str, hz: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after it do not.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / hz
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of every PostgreSQL backend serving the scratch database but ours.
async fn backend_cpu(pool: &PgPool, hz: f64) -> HashMap<i32, f64> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = current_database() \
         and coalesce(application_name, '') <> $1",
    )
    .bind(DRIVER_APP)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    pids.into_iter()
        .map(|pid| (pid, cpu_seconds(&pid.to_string(), hz)))
        .collect()
}

fn cpu_delta(before: &HashMap<i32, f64>, after: &HashMap<i32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

// ---------------------------------------------------------------------------------- scenario

/// When a device makes its next change.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// As soon as every change it made is acknowledged.
    AfterAck,
    /// This long after its previous change (the first one `offset` after the start).
    Every { period: Duration, offset: Duration },
}

struct Scenario {
    key: char,
    title: String,
    /// Members of each document, by device index; the first one owns it.
    docs: Vec<Vec<usize>>,
    /// For each device, its documents (indices into `docs`); changes go to them in turn.
    device_docs: Vec<Vec<usize>>,
    changes: usize,
    pace: Vec<Pace>,
    track_arrivals: bool,
    /// Seconds devices keep sending (for the overall time limit).
    duration: Duration,
}

/// Each device its own document and the document of its group, or only the group's.
fn layout(devices: usize, group: usize, own: bool) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let group = group.max(1);
    let mut docs = Vec::new();
    let mut device_docs = vec![Vec::new(); devices];
    if own {
        for (d, list) in device_docs.iter_mut().enumerate() {
            list.push(docs.len());
            docs.push(vec![d]);
        }
    }
    for start in (0..devices).step_by(group) {
        let members: Vec<usize> = (start..(start + group).min(devices)).collect();
        for &d in &members {
            device_docs[d].push(docs.len());
        }
        docs.push(members);
    }
    (docs, device_docs)
}

/// Every device changing once per `period`, the devices spread evenly over it.
fn spread(devices: usize, period: Duration) -> Vec<Pace> {
    (0..devices)
        .map(|d| Pace::Every {
            period,
            offset: period.mul_f64(d as f64 / devices as f64),
        })
        .collect()
}

fn scenario(key: char, args: &Args) -> Option<Scenario> {
    let g = args.group_size;
    Some(match key {
        'a' => Scenario {
            key,
            title: format!(
                "a) server CPU for changes sent one per message, each acknowledged before the next \
                 (1 device, 1 document, {} changes)",
                args.a_changes
            ),
            docs: vec![vec![0]],
            device_docs: vec![vec![0]],
            changes: args.a_changes,
            pace: vec![Pace::AfterAck],
            track_arrivals: false,
            duration: Duration::from_secs(120),
        },
        'b' => {
            let (docs, device_docs) = layout(args.b_devices, g, true);
            let period = Duration::from_millis(args.b_interval_ms);
            Scenario {
                key,
                title: format!(
                    "b) {} devices × {} changes {} ms apart, alternating between their own document \
                     and their group's ({} per group)",
                    args.b_devices, args.b_changes, args.b_interval_ms, g
                ),
                docs,
                device_docs,
                changes: args.b_changes,
                pace: spread(args.b_devices, period),
                track_arrivals: false,
                duration: period * args.b_changes as u32,
            }
        }
        'c' => {
            let (docs, device_docs) = layout(args.c_devices, g, false);
            let period = Duration::from_secs_f64(args.c_devices as f64 / args.c_rate);
            let changes = (args.c_seconds as f64 * args.c_rate / args.c_devices as f64) as usize;
            Scenario {
                key,
                title: format!(
                    "c) latency: {} devices in groups of {} on shared documents, {} changes/s in total \
                     for {} s",
                    args.c_devices, g, args.c_rate, args.c_seconds
                ),
                docs,
                device_docs,
                changes,
                pace: spread(args.c_devices, period),
                track_arrivals: true,
                duration: Duration::from_secs(args.c_seconds),
            }
        }
        'd' => {
            let (docs, device_docs) = layout(args.d_devices, g, true);
            let period = Duration::from_secs_f64(args.d_devices as f64 / args.d_rate);
            let changes = (args.d_seconds as f64 * args.d_rate / args.d_devices as f64) as usize;
            Scenario {
                key,
                title: format!(
                    "d) overload: {} devices offering {} changes/s for {} s (own and group documents)",
                    args.d_devices, args.d_rate, args.d_seconds
                ),
                docs,
                device_docs,
                changes,
                pace: spread(args.d_devices, period),
                track_arrivals: false,
                duration: Duration::from_secs(args.d_seconds),
            }
        }
        'e' => {
            let (docs, device_docs) = layout(args.e_devices, g, true);
            Scenario {
                key,
                title: format!(
                    "e) memory with {} devices connected, each with its own and its group's document \
                     open (10 changes each)",
                    args.e_devices
                ),
                docs,
                device_docs,
                changes: 10,
                pace: spread(args.e_devices, Duration::from_millis(200)),
                track_arrivals: false,
                duration: Duration::from_secs(2),
            }
        }
        _ => return None,
    })
}

/// What every document starts with, on both servers.
fn initial(doc: &mut AutoCommit) -> Result<(), automerge::AutomergeError> {
    doc.put(ROOT, "status", "scheduled")?;
    doc.put(ROOT, "observations", "")?;
    doc.put(ROOT, "updated_at", 0_i64)?;
    Ok(())
}

/// One device's edit: a technician's note and a counter, the same size for every change.
fn edit(doc: &mut AutoCommit, device: usize, i: usize) {
    let note = format!(
        "device {device:04} change {i:06}: kitchen and storage room treated, no activity found"
    );
    doc.put(ROOT, "observations", note)
        .expect("put observations");
    doc.put(ROOT, "updated_at", i as i64)
        .expect("put updated_at");
}

// ------------------------------------------------------------------------------------ device

type SentAt = Arc<Mutex<HashMap<ChangeHash, std::time::Instant>>>;

/// What the coordinator tells every device, in order.
const STEP_OPEN_REST: u8 = 1;
const STEP_GO: u8 = 2;
const STEP_STOP: u8 = 3;

/// What a device tells the coordinator, in order (each exactly once, even after a failure).
const DONE_OWNED: u8 = 0;
const DONE_OPEN: u8 = 1;
const DONE_DRAINED: u8 = 2;

struct DeviceSpec {
    index: usize,
    url: String,
    /// Document id and whether this device opens it first (and, on the reference, announces it).
    docs: Vec<(String, bool)>,
    announce: bool,
    changes: usize,
    pace: Pace,
    drain: Duration,
    step: watch::Receiver<u8>,
    done: mpsc::UnboundedSender<u8>,
    sent_at: Option<SentAt>,
}

#[derive(Default)]
struct DeviceResult {
    sent: usize,
    acked: usize,
    ack_latencies: Vec<Duration>,
    arrivals: Vec<Duration>,
    first_change: Option<Instant>,
    last_change: Option<Instant>,
    last_ack: Option<Instant>,
    /// Why the connection ended before we closed it.
    dropped: Option<String>,
    /// Ended before it was ready to start.
    failed_setup: bool,
}

struct Slot {
    id: String,
    doc: AutoCommit,
    state: sync::State,
    pending: VecDeque<(ChangeHash, Instant)>,
    first: bool,
    opened: bool,
}

impl Slot {
    fn synced(&mut self) -> bool {
        let heads = self.doc.get_heads();
        !heads.is_empty() && self.state.their_heads.as_ref() == Some(&heads)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Joining,
    OpeningOwned,
    WaitingForRest,
    OpeningRest,
    Ready,
    Running,
    Draining,
    Holding,
}

struct Device {
    index: usize,
    peer_id: String,
    server_id: Option<String>,
    slots: Vec<Slot>,
    by_id: HashMap<String, usize>,
    out: mpsc::UnboundedSender<WsMessage>,
    sent_at: Option<SentAt>,
}

impl Device {
    fn send(&self, message: &Message) {
        let _ = self.out.send(WsMessage::Binary(encode(message).into()));
    }

    fn server(&self) -> String {
        self.server_id.clone().unwrap_or_default()
    }

    /// Starts syncing a document: a `request` for one we do not have, a `sync` announcing one we
    /// do (as automerge-repo clients do for documents they create).
    fn open(&mut self, i: usize) {
        let (sender_id, target_id) = (self.peer_id.clone(), self.server());
        let slot = &mut self.slots[i];
        slot.opened = true;
        let Some(data) = slot.doc.sync().generate_sync_message(&mut slot.state) else {
            return;
        };
        let (document_id, data) = (slot.id.clone(), data.encode());
        let message = if slot.doc.get_heads().is_empty() {
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
        } else {
            Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            }
        };
        self.send(&message);
    }

    fn push(&mut self, i: usize) {
        let target_id = self.server();
        let slot = &mut self.slots[i];
        let next = slot.doc.sync().generate_sync_message(&mut slot.state);
        if let Some(data) = next {
            let message = Message::Sync {
                sender_id: self.peer_id.clone(),
                target_id,
                document_id: slot.id.clone(),
                data: data.encode(),
            };
            self.send(&message);
        }
    }

    fn change(&mut self, i: usize, n: usize, result: &mut DeviceResult) {
        let slot = &mut self.slots[i];
        edit(&mut slot.doc, self.index, n);
        let Some(hash) = slot.doc.commit() else {
            return;
        };
        let now = Instant::now();
        slot.pending.push_back((hash, now));
        if let Some(sent_at) = &self.sent_at {
            lock(sent_at).insert(hash, now.into_std());
        }
        result.sent += 1;
        result.first_change.get_or_insert(now);
        result.last_change = Some(now);
        self.push(i);
    }

    fn receive(&mut self, frame: &[u8], result: &mut DeviceResult) -> Result<(), String> {
        let message = decode(frame).map_err(|e| format!("undecodable frame: {e}"))?;
        match message {
            Message::Peer { sender_id, .. } => self.server_id = Some(sender_id),
            Message::Sync {
                document_id, data, ..
            }
            | Message::Request {
                document_id, data, ..
            } => {
                if let Some(&i) = self.by_id.get(&document_id) {
                    self.sync(i, &data, result)?;
                }
            }
            Message::DocUnavailable { document_id, .. } => {
                return Err(format!("doc-unavailable for {document_id}"));
            }
            Message::Error { message, .. } => return Err(format!("error message: {message}")),
            _ => {}
        }
        Ok(())
    }

    fn sync(&mut self, i: usize, data: &[u8], result: &mut DeviceResult) -> Result<(), String> {
        let slot = &mut self.slots[i];
        let message = sync::Message::decode(data).map_err(|e| format!("sync data: {e}"))?;
        let before = slot.doc.get_heads();
        slot.doc
            .sync()
            .receive_sync_message(&mut slot.state, message)
            .map_err(|e| format!("applying sync data: {e}"))?;
        let now = Instant::now();
        if let Some(sent_at) = &self.sent_at
            && slot.doc.get_heads() != before
        {
            let actor = slot.doc.get_actor().clone();
            let arrived: Vec<ChangeHash> = slot
                .doc
                .get_changes_meta(&before)
                .into_iter()
                .filter(|m| *m.actor != actor)
                .map(|m| m.hash)
                .collect();
            let sent_at = lock(sent_at);
            let now = now.into_std();
            for hash in arrived {
                if let Some(t) = sent_at.get(&hash) {
                    result.arrivals.push(now.duration_since(*t));
                }
            }
        }
        if !slot.pending.is_empty() {
            // A change is acknowledged once it is among the server's heads or their ancestors.
            let theirs = slot.state.their_heads.clone().unwrap_or_default();
            let known: Vec<ChangeHash> = theirs
                .into_iter()
                .filter(|h| slot.doc.get_change_meta_by_hash(h).is_some())
                .collect();
            if !known.is_empty() {
                let unacked: HashSet<ChangeHash> = slot
                    .doc
                    .get_changes_meta(&known)
                    .into_iter()
                    .map(|m| m.hash)
                    .collect();
                while let Some(&(hash, at)) = slot.pending.front() {
                    if unacked.contains(&hash) {
                        break;
                    }
                    slot.pending.pop_front();
                    result.acked += 1;
                    result.ack_latencies.push(now - at);
                    result.last_ack = Some(now);
                }
            }
        }
        self.push(i);
        Ok(())
    }

    fn all(&mut self, which: impl Fn(&Slot) -> bool) -> bool {
        self.slots
            .iter_mut()
            .filter(|s| which(s))
            .all(|s| s.synced())
    }

    fn pending(&self) -> usize {
        self.slots.iter().map(|s| s.pending.len()).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn device(mut spec: DeviceSpec) -> DeviceResult {
    let mut result = DeviceResult::default();
    let mut told = 0_u8;
    let tell = |told: &mut u8, upto: u8| {
        while *told <= upto {
            let _ = spec.done.send(*told);
            *told += 1;
        }
    };
    // Nagle off, as browsers and Node do, so that small frames are not held back.
    let connected = timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async_with_config(spec.url.as_str(), None, true),
    )
    .await;
    let socket = match connected {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => {
            result.dropped = Some(format!("connect: {e}"));
            result.failed_setup = true;
            tell(&mut told, DONE_DRAINED);
            return result;
        }
        Err(_) => {
            result.dropped = Some("connect: timed out".to_owned());
            result.failed_setup = true;
            tell(&mut told, DONE_DRAINED);
            return result;
        }
    };
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::unbounded_channel::<WsMessage>();
    // Writes on their own task, so a device never stops reading while the server is not.
    let writer = tokio::spawn(async move {
        while let Some(first) = outbox.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(next) = outbox.try_recv() {
                if sink.feed(next).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let slots: Vec<Slot> = spec
        .docs
        .iter()
        .map(|(id, first)| {
            let mut doc = AutoCommit::new();
            if *first && spec.announce {
                initial(&mut doc).expect("initial content");
                doc.commit();
            }
            Slot {
                id: id.clone(),
                doc,
                state: sync::State::new(),
                pending: VecDeque::new(),
                first: *first,
                opened: false,
            }
        })
        .collect();
    let by_id = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let mut dev = Device {
        index: spec.index,
        peer_id: format!("bench-{}-{}", spec.index, Uuid::new_v4()),
        server_id: None,
        slots,
        by_id,
        out,
        sent_at: spec.sent_at.take(),
    };
    dev.send(&Message::Join {
        sender_id: dev.peer_id.clone(),
        supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
        peer_metadata: None,
    });

    let mut stage = Stage::Joining;
    let mut next_change: Option<Instant> = None;
    let mut drain_until = Instant::now();
    let far = Duration::from_secs(3600);
    loop {
        // Move on as far as the state allows.
        loop {
            let before = stage;
            let step = *spec.step.borrow();
            match stage {
                Stage::Joining if dev.server_id.is_some() => {
                    for i in 0..dev.slots.len() {
                        if dev.slots[i].first {
                            dev.open(i);
                        }
                    }
                    stage = Stage::OpeningOwned;
                }
                Stage::OpeningOwned if dev.all(|s| s.first) => {
                    tell(&mut told, DONE_OWNED);
                    stage = Stage::WaitingForRest;
                }
                Stage::WaitingForRest if step >= STEP_OPEN_REST => {
                    for i in 0..dev.slots.len() {
                        if !dev.slots[i].opened {
                            dev.open(i);
                        }
                    }
                    stage = Stage::OpeningRest;
                }
                Stage::OpeningRest if dev.all(|_| true) => {
                    tell(&mut told, DONE_OPEN);
                    stage = Stage::Ready;
                }
                Stage::Ready if step >= STEP_GO => {
                    next_change = Some(match spec.pace {
                        Pace::AfterAck => Instant::now(),
                        Pace::Every { offset, .. } => Instant::now() + offset,
                    });
                    stage = Stage::Running;
                }
                Stage::Running if result.sent >= spec.changes => {
                    next_change = None;
                    drain_until = Instant::now() + spec.drain;
                    stage = Stage::Draining;
                }
                Stage::Running if matches!(spec.pace, Pace::AfterAck) && dev.pending() == 0 => {
                    next_change = Some(Instant::now());
                }
                Stage::Draining if dev.pending() == 0 || Instant::now() >= drain_until => {
                    tell(&mut told, DONE_DRAINED);
                    stage = Stage::Holding;
                }
                Stage::Holding if step >= STEP_STOP => {
                    let _ = dev.out.send(WsMessage::Close(None));
                    drop(dev);
                    let _ = timeout(Duration::from_secs(2), writer).await;
                    return result;
                }
                _ => {}
            }
            if stage == before {
                break;
            }
        }

        let change_at = next_change.unwrap_or_else(|| Instant::now() + far);
        let drain_at = if stage == Stage::Draining {
            drain_until
        } else {
            Instant::now() + far
        };
        tokio::select! {
            frame = stream.next() => {
                let ended = match frame {
                    Some(Ok(WsMessage::Binary(bytes))) => dev.receive(&bytes, &mut result).err(),
                    Some(Ok(WsMessage::Close(frame))) => Some(format!(
                        "closed by the server: {}",
                        frame.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default()
                    )),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(format!("socket: {e}")),
                    None => Some("socket ended".to_owned()),
                };
                if let Some(why) = ended {
                    result.failed_setup = stage < Stage::Ready;
                    result.dropped = Some(why);
                    tell(&mut told, DONE_DRAINED);
                    // Stay until told to stop, so the other devices' figures are not disturbed.
                    let _ = spec.step.wait_for(|s| *s >= STEP_STOP).await;
                    writer.abort();
                    return result;
                }
            }
            () = sleep_until(change_at), if next_change.is_some() => {
                let n = result.sent;
                let i = n % dev.slots.len();
                dev.change(i, n, &mut result);
                next_change = match spec.pace {
                    Pace::AfterAck => None,
                    // Delayed rather than bunched up when the driver falls behind.
                    Pace::Every { period, .. } => Some((change_at + period).max(Instant::now())),
                };
            }
            () = sleep_until(drain_at), if stage == Stage::Draining => {}
            _ = spec.step.changed() => {}
        }
    }
}

// ------------------------------------------------------------------------------- one side run

#[derive(Default)]
struct Outcome {
    devices: usize,
    failed_setup: usize,
    dropped: usize,
    drop_reasons: HashMap<String, usize>,
    sent: usize,
    acked: usize,
    ack: Vec<Duration>,
    arrivals: Vec<Duration>,
    expected_arrivals: usize,
    /// From the start signal to the last acknowledgement.
    busy: Duration,
    /// First to last change.
    sending: Duration,
    /// From the start signal until CPU was read again (after the drain and `SETTLE`).
    window: Duration,
    server_cpu: f64,
    postgres_cpu: Option<f64>,
    driver_cpu: f64,
    rss_idle_kb: u64,
    rss_kb: u64,
    peak_kb: u64,
    stored: Option<usize>,
}

struct Ctx<'a> {
    args: &'a Args,
    hz: f64,
    driver: &'a PgPool,
    tokens: &'a [String],
    db_url: &'a str,
    dir: &'a Path,
}

async fn run_side(ctx: &Ctx<'_>, side: Side, sc: &Scenario, ids: &[DocumentId]) -> Result<Outcome> {
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
            docs: docs
                .iter()
                .map(|&k| (ids[k].to_string(), sc.docs[k][0] == d))
                .collect(),
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

// ----------------------------------------------------------------------------------- reports

struct Row {
    label: String,
    ours: String,
    reference: String,
    ratio: String,
}

fn row(label: &str, ours: String, reference: String, ratio: Option<f64>) -> Row {
    Row {
        label: label.to_owned(),
        ours,
        reference,
        ratio: ratio
            .filter(|r| r.is_finite())
            .map_or_else(String::new, |r| format!("{r:.3}")),
    }
}

fn ratio(ours: f64, reference: f64) -> Option<f64> {
    (reference > 0.0).then(|| ours / reference)
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    let w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(10)
        .max(10);
    println!(
        "  {:<w$}  {:>16}  {:>16}  {:>9}",
        "", "atiende", "reference", "ratio"
    );
    for r in rows {
        println!(
            "  {:<w$}  {:>16}  {:>16}  {:>9}",
            r.label, r.ours, r.reference, r.ratio
        );
    }
}

/// The goal of each scenario, as the README's table of sync figures states it.
fn target(key: char) -> &'static str {
    match key {
        'a' => "atiende's server CPU at most 1/10 of the reference's (ratio <= 0.100)",
        'b' => {
            "the server is never the bottleneck (the reference saturated one core at ~1,400 changes/s)"
        }
        'c' => "p99 < 50 ms (reference: p99 about 220 ms)",
        'd' => "every change acknowledged, no connection dropped, memory bounded",
        _ => "< 100 MB with 100 devices (reference: about 220 MB)",
    }
}

fn pct(v: &[Duration], p: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Some(v[i.min(v.len() - 1)])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

fn msf(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn latency_rows(rows: &mut Vec<Row>, what: &str, o: &[Duration], r: &[Duration]) {
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("max", 1.0)] {
        rows.push(row(
            &format!("{what} {name}, ms"),
            ms(pct(o, p)),
            ms(pct(r, p)),
            ratio(msf(pct(o, p)), msf(pct(r, p))),
        ));
    }
}

fn common_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    rows.push(row(
        "changes acknowledged / sent",
        format!("{} / {}", o.acked, o.sent),
        format!("{} / {}", r.acked, r.sent),
        None,
    ));
    if let Some(stored) = o.stored {
        rows.push(row(
            "changes stored (PostgreSQL)",
            stored.to_string(),
            "-".to_owned(),
            None,
        ));
    }
    if o.failed_setup + r.failed_setup > 0 {
        rows.push(row(
            "devices that never got ready",
            o.failed_setup.to_string(),
            r.failed_setup.to_string(),
            None,
        ));
    }
    rows.push(row(
        "connections dropped / devices",
        format!("{} / {}", o.dropped, o.devices),
        format!("{} / {}", r.dropped, r.devices),
        None,
    ));
}

fn cpu_rows(rows: &mut Vec<Row>, o: &Outcome, r: &Outcome) {
    let secs = o.window.as_secs_f64();
    let rsecs = r.window.as_secs_f64();
    rows.push(row(
        "server CPU, % of one core",
        format!("{:.0}", 100.0 * o.server_cpu / secs),
        format!("{:.0}", 100.0 * r.server_cpu / rsecs),
        ratio(o.server_cpu / secs, r.server_cpu / rsecs),
    ));
    if let Some(pg) = o.postgres_cpu {
        rows.push(row(
            "  PostgreSQL backends, % of one core",
            format!("{:.0}", 100.0 * pg / secs),
            "-".to_owned(),
            None,
        ));
    }
    rows.push(row(
        "driver (all devices) CPU, % of one core",
        format!("{:.0}", 100.0 * o.driver_cpu / secs),
        format!("{:.0}", 100.0 * r.driver_cpu / rsecs),
        None,
    ));
}

fn report(sc: &Scenario, o: &Outcome, r: &Outcome) {
    let mut rows = Vec::new();
    match sc.key {
        'a' => {
            let per = |x: &Outcome, cpu: f64| cpu * 1000.0 / x.acked.max(1) as f64;
            rows.push(row(
                "server CPU, s",
                format!("{:.3}", o.server_cpu),
                format!("{:.3}", r.server_cpu),
                ratio(o.server_cpu, r.server_cpu),
            ));
            rows.push(row(
                "server CPU per 1,000 changes, s",
                format!("{:.3}", per(o, o.server_cpu)),
                format!("{:.3}", per(r, r.server_cpu)),
                ratio(per(o, o.server_cpu), per(r, r.server_cpu)),
            ));
            if let Some(pg) = o.postgres_cpu {
                let both = o.server_cpu + pg;
                rows.push(row(
                    "  PostgreSQL backends CPU, s",
                    format!("{pg:.3}"),
                    "-".to_owned(),
                    None,
                ));
                rows.push(row(
                    "  server + PostgreSQL per 1,000 changes, s",
                    format!("{:.3}", per(o, both)),
                    format!("{:.3}", per(r, r.server_cpu)),
                    ratio(per(o, both), per(r, r.server_cpu)),
                ));
            }
            rows.push(row(
                "wall time, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                ratio(o.busy.as_secs_f64(), r.busy.as_secs_f64()),
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            rows.push(row(
                "driver CPU, s",
                format!("{:.3}", o.driver_cpu),
                format!("{:.3}", r.driver_cpu),
                None,
            ));
            common_rows(&mut rows, o, r);
        }
        'b' => {
            let rate = |x: &Outcome| x.acked as f64 / x.busy.as_secs_f64().max(1e-9);
            let offered = |x: &Outcome| x.sent as f64 / x.sending.as_secs_f64().max(1e-9);
            rows.push(row(
                "changes offered per second",
                format!("{:.0}", offered(o)),
                format!("{:.0}", offered(r)),
                None,
            ));
            rows.push(row(
                "changes acknowledged per second",
                format!("{:.0}", rate(o)),
                format!("{:.0}", rate(r)),
                ratio(rate(o), rate(r)),
            ));
            rows.push(row(
                "start to last acknowledgement, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                ratio(o.busy.as_secs_f64(), r.busy.as_secs_f64()),
            ));
            cpu_rows(&mut rows, o, r);
            rows.push(row(
                "server CPU per 1,000 changes, s",
                format!("{:.3}", o.server_cpu * 1000.0 / o.acked.max(1) as f64),
                format!("{:.3}", r.server_cpu * 1000.0 / r.acked.max(1) as f64),
                ratio(
                    o.server_cpu / o.acked.max(1) as f64,
                    r.server_cpu / r.acked.max(1) as f64,
                ),
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            common_rows(&mut rows, o, r);
        }
        'c' => {
            rows.push(row(
                "arrivals seen / expected",
                format!("{} / {}", o.arrivals.len(), o.expected_arrivals),
                format!("{} / {}", r.arrivals.len(), r.expected_arrivals),
                None,
            ));
            latency_rows(&mut rows, "change → other device", &o.arrivals, &r.arrivals);
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
            common_rows(&mut rows, o, r);
        }
        'd' => {
            let offered = |x: &Outcome| x.sent as f64 / x.sending.as_secs_f64().max(1e-9);
            rows.push(row(
                "changes offered per second",
                format!("{:.0}", offered(o)),
                format!("{:.0}", offered(r)),
                None,
            ));
            common_rows(&mut rows, o, r);
            let lost =
                |x: &Outcome| 100.0 * (x.sent - x.acked.min(x.sent)) as f64 / x.sent.max(1) as f64;
            rows.push(row(
                "acknowledgements missing, %",
                format!("{:.1}", lost(o)),
                format!("{:.1}", lost(r)),
                None,
            ));
            rows.push(row(
                "peak RSS, MB",
                mb(o.peak_kb),
                mb(r.peak_kb),
                ratio(o.peak_kb as f64, r.peak_kb as f64),
            ));
            rows.push(row(
                "start to last acknowledgement, s",
                format!("{:.2}", o.busy.as_secs_f64()),
                format!("{:.2}", r.busy.as_secs_f64()),
                None,
            ));
            latency_rows(&mut rows, "acknowledgement", &o.ack, &r.ack);
            cpu_rows(&mut rows, o, r);
        }
        _ => {
            rows.push(row(
                "RSS before any connection, MB",
                mb(o.rss_idle_kb),
                mb(r.rss_idle_kb),
                ratio(o.rss_idle_kb as f64, r.rss_idle_kb as f64),
            ));
            rows.push(row(
                &format!("RSS with {} devices connected, MB", o.devices),
                mb(o.rss_kb),
                mb(r.rss_kb),
                ratio(o.rss_kb as f64, r.rss_kb as f64),
            ));
            rows.push(row(
                "peak RSS, MB",
                mb(o.peak_kb),
                mb(r.peak_kb),
                ratio(o.peak_kb as f64, r.peak_kb as f64),
            ));
            common_rows(&mut rows, o, r);
        }
    }
    print_table(&sc.title, &rows);
    println!("  target: {}", target(sc.key));
    for (side, x) in [("atiende", o), ("reference", r)] {
        for (why, count) in &x.drop_reasons {
            println!("  {side}: {count} × {why}");
        }
    }
}

// -------------------------------------------------------------------------------------- main

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = args
        .scenarios
        .chars()
        .filter_map(|k| scenario(k, &args))
        .collect();
    if scenarios.is_empty() {
        return Err("no known scenario in --scenarios (a to e)".into());
    }
    if !args.atiende.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            args.atiende.display()
        )
        .into());
    }
    if !args.reference_dir.join("node_modules").exists() {
        eprintln!("installing the reference server (npm ci)…");
        let ok = Command::new("npm")
            .arg("ci")
            .arg("--prefix")
            .arg(&args.reference_dir)
            .status()
            .await?
            .success();
        if !ok {
            return Err("npm ci failed in the reference folder".into());
        }
    }
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);

    let dir = PathBuf::from("target/bench-sync");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;

    let mut admin = PgConnection::connect(&database_url(&args.server_url, "postgres")).await?;
    sqlx::query(&format!("drop database if exists {DB} with (force)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("create database {DB}"))
        .execute(&mut admin)
        .await?;
    let db_url = database_url(&args.server_url, DB);
    let options: PgConnectOptions = db_url
        .parse::<PgConnectOptions>()?
        .application_name(DRIVER_APP);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.disable_statement_logging())
        .await?;
    atiende_core::MIGRATOR.run(&pool).await?;

    let devices = scenarios
        .iter()
        .map(|s| s.device_docs.len())
        .max()
        .unwrap_or(1);
    eprintln!("creating {devices} technicians and their sessions…");
    let (users, tokens): (Vec<Uuid>, Vec<String>) =
        create_users(&pool, devices).await?.into_iter().unzip();

    let ctx = Ctx {
        args: &args,
        hz,
        driver: &pool,
        tokens: &tokens,
        db_url: &db_url,
        dir: &dir,
    };
    for sc in &scenarios {
        let ids = create_documents(&pool, sc, &users).await?;
        let mut outcomes = Vec::new();
        for side in [Side::Atiende, Side::Reference] {
            eprintln!(
                "{}) {}: {} devices, {} documents, {} changes each…",
                sc.key,
                side.name(),
                sc.device_docs.len(),
                sc.docs.len(),
                sc.changes
            );
            let started = std::time::Instant::now();
            let o = run_side(&ctx, side, sc, &ids).await?;
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
        report(sc, &outcomes[0], &outcomes[1]);
    }
    println!(
        "\nreference: automerge-repo 2.5.6, NodeWSServerAdapter, NodeFSStorageAdapter, \
         saveDebounceRate {} ms; logs in {}",
        args.reference_save_debounce_ms,
        dir.display()
    );

    pool.close().await;
    sqlx::query(&format!("drop database if exists {DB} with (force)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Technicians with a session each: (user id, token) by device index.
/// The server URL with a database name, before any parameters.
fn database_url(server_url: &str, db: &str) -> String {
    match server_url.split_once('?') {
        Some((base, params)) => format!("{}/{db}?{params}", base.trim_end_matches('/')),
        None => format!("{}/{db}", server_url.trim_end_matches('/')),
    }
}

async fn create_users(pool: &PgPool, n: usize) -> Result<Vec<(Uuid, String)>> {
    let mut users = Vec::with_capacity(n);
    // Password hashing is deliberately slow and memory hungry: a few at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(4) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let pool = pool.clone();
            set.spawn(async move {
                let user = auth::create_user(
                    &pool,
                    &auth::Hashing::default(),
                    NewUser {
                        email: format!("bench-sync-{i:04}@bench.invalid"),
                        name: format!("Técnico {i}"),
                        role: Role::Technician,
                        password: Password::parse("benchmark password".to_owned())?,
                        customer_id: None,
                        language: "es".to_owned(),
                    },
                )
                .await?;
                let session =
                    auth::start_session(&pool, user.id, Duration::from_secs(86_400)).await?;
                // Devices open the socket with a sync ticket, as the apps do; one that lasts
                // the whole run.
                let ticket = atiende_core::sync_tickets::issue(
                    &pool,
                    &session.token,
                    Duration::from_secs(86_400),
                )
                .await?;
                Ok::<_, atiende_core::Error>((i, user.id, ticket.ticket))
            });
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            got.push(r??);
        }
        got.sort();
        users.extend(got.into_iter().map(|(_, id, token)| (id, token)));
    }
    Ok(users)
}

/// The scenario's documents in Atiende's database, with write access for their members; the
/// reference gets the same ids, announced by their first member.
async fn create_documents(pool: &PgPool, sc: &Scenario, users: &[Uuid]) -> Result<Vec<DocumentId>> {
    let mut ids = Vec::with_capacity(sc.docs.len());
    for members in &sc.docs {
        let access: Vec<(Uuid, Mode)> = members.iter().map(|&d| (users[d], Mode::Write)).collect();
        ids.push(
            storage::create_document(pool, DocumentKind::FieldReport, &access, initial).await?,
        );
    }
    Ok(ids)
}
