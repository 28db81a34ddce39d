//! The scenarios: which devices share which documents, how many changes each makes and at what
//! pace, and what every change writes.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::Args;

/// When a device makes its next change.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As soon as every change it made is acknowledged.
    AfterAck,
    /// This long after its previous change (the first one `offset` after the start).
    Every { period: Duration, offset: Duration },
    /// Never: the device only holds its documents open and receives.
    Idle,
}

pub struct Scenario {
    pub key: char,
    pub title: String,
    /// Members of each document, by device index; the first one owns it.
    pub docs: Vec<Vec<usize>>,
    /// For each device, its documents (indices into `docs`); changes go to them in turn.
    pub device_docs: Vec<Vec<usize>>,
    pub changes: usize,
    pub pace: Vec<Pace>,
    pub track_arrivals: bool,
    /// Seconds devices keep sending (for the overall time limit).
    pub duration: Duration,
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

/// `rate` changes per second from all the devices together for `seconds`: how many each device
/// makes, and when.
fn at_rate(devices: usize, rate: f64, seconds: u64) -> (usize, Vec<Pace>) {
    let period = Duration::from_secs_f64(devices as f64 / rate);
    let changes = (seconds as f64 * rate / devices as f64) as usize;
    (changes, spread(devices, period))
}

pub fn scenario(key: char, args: &Args) -> Option<Scenario> {
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
            let (changes, pace) = at_rate(args.c_devices, args.c_rate, args.c_seconds);
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
                pace,
                track_arrivals: true,
                duration: Duration::from_secs(args.c_seconds),
            }
        }
        'd' => {
            let (docs, device_docs) = layout(args.d_devices, g, true);
            let (changes, pace) = at_rate(args.d_devices, args.d_rate, args.d_seconds);
            Scenario {
                key,
                title: format!(
                    "d) overload: {} devices offering {} changes/s for {} s (own and group documents)",
                    args.d_devices, args.d_rate, args.d_seconds
                ),
                docs,
                device_docs,
                changes,
                pace,
                track_arrivals: false,
                duration: Duration::from_secs(args.d_seconds),
            }
        }
        'f' => {
            let (docs, device_docs) = layout(args.f_devices, g, true);
            let active = args.f_active.clamp(1, args.f_devices.max(1));
            let (changes, active_pace) = at_rate(active, args.f_rate, args.f_seconds);
            // Active devices spread over the groups, so each change reaches idle devices.
            let stride = args.f_devices / active;
            let mut pace = vec![Pace::Idle; args.f_devices];
            for (k, p) in active_pace.into_iter().enumerate() {
                pace[k * stride] = p;
            }
            Scenario {
                key,
                title: format!(
                    "f) scale: {} devices connected, each with its own and its group's document \
                     open; {} of them making {} changes/s in total for {} s",
                    args.f_devices, active, args.f_rate, args.f_seconds
                ),
                docs,
                device_docs,
                changes,
                pace,
                track_arrivals: true,
                duration: Duration::from_secs(args.f_seconds),
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

/// The visit of every benchmark work order.
pub const ADDRESS: &str = "Carrera 1 # 2-34, Cartagena";
pub const SERVICE_TYPE: &str = "Control de plagas";

pub fn scheduled_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_261_600, 0).unwrap_or_default()
}

/// One device's edit, a valid field report every time (`core/src/field_reports.rs` `parse`), so
/// the server projects it into its work order's rows: the technician's note and the arrival time,
/// the same size for every change.
pub fn edit(doc: &mut AutoCommit, device: usize, i: usize) {
    let note = format!(
        "device {device:04} change {i:06}: kitchen and storage room treated, no activity found"
    );
    let arrival = scheduled_at() + chrono::Duration::seconds(i as i64);
    doc.put(ROOT, "observations", note)
        .expect("put observations");
    doc.put(
        ROOT,
        "arrival_at",
        arrival.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
    .expect("put arrival_at");
}
