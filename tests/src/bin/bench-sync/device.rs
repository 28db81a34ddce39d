//! One simulated device: joins, opens its documents when the coordinator says so, makes its
//! changes at its pace and times their acknowledgements (and, in c) and f), their arrival on the
//! other devices), the same way against both servers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use atiende_sync::client::{Connection, Peer, Received, join};
use atiende_sync::{DocumentId, Message};
use automerge::{AutoCommit, ChangeHash};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use uuid::Uuid;

use crate::scenarios::{Pace, edit};

pub type SentAt = Arc<Mutex<HashMap<ChangeHash, std::time::Instant>>>;

/// What the coordinator tells every device, in order.
pub const STEP_OPEN_REST: u8 = 1;
pub const STEP_GO: u8 = 2;
pub const STEP_STOP: u8 = 3;

/// What a device tells the coordinator, in order (each exactly once, even after a failure).
pub const DONE_OWNED: u8 = 0;
pub const DONE_OPEN: u8 = 1;
pub const DONE_DRAINED: u8 = 2;

pub struct DeviceSpec {
    pub index: usize,
    pub url: String,
    /// Document id, whether this device opens it first (and, on the reference, announces it),
    /// and its initial content as Atiende saved it.
    pub docs: Vec<(DocumentId, bool, Arc<[u8]>)>,
    pub announce: bool,
    pub changes: usize,
    pub pace: Pace,
    pub drain: Duration,
    pub step: watch::Receiver<u8>,
    pub done: mpsc::UnboundedSender<u8>,
    pub sent_at: Option<SentAt>,
    /// Held while connecting and while opening documents, so that only so many devices do at
    /// once.
    pub permits: Arc<Semaphore>,
}

#[derive(Default)]
pub struct DeviceResult {
    pub sent: usize,
    pub acked: usize,
    pub ack_latencies: Vec<Duration>,
    pub arrivals: Vec<Duration>,
    pub first_change: Option<Instant>,
    pub last_change: Option<Instant>,
    pub last_ack: Option<Instant>,
    /// Why the connection ended before we closed it.
    pub dropped: Option<String>,
    /// Ended before it was ready to start.
    pub failed_setup: bool,
}

/// One of the device's documents; its content and sync state are in the device's [`Peer`].
struct Slot {
    id: DocumentId,
    /// Changes made and not yet acknowledged, oldest first.
    pending: VecDeque<(ChangeHash, Instant)>,
    first: bool,
    opened: bool,
    saved: Arc<[u8]>,
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
    peer: Peer,
    /// Whether the documents this device opens first are announced with their initial content
    /// (the reference only has the documents its peers give it).
    announce: bool,
    slots: Vec<Slot>,
    out: mpsc::UnboundedSender<Message>,
    sent_at: Option<SentAt>,
}

impl Device {
    fn send(&self, message: Message) {
        let _ = self.out.send(message);
    }

    /// Starts syncing a document: a `request` for one we do not have, a `sync` announcing one we
    /// do (as automerge-repo clients do for documents they create).
    fn open(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.opened = true;
        let doc = if slot.first && self.announce {
            AutoCommit::load(&slot.saved).expect("initial content")
        } else {
            AutoCommit::new()
        };
        if let Some(message) = self.peer.open(slot.id, doc) {
            self.send(message);
        }
    }

    fn change(&mut self, i: usize, n: usize, result: &mut DeviceResult) {
        let id = self.slots[i].id;
        let Some(replica) = self.peer.replica_mut(id) else {
            return;
        };
        edit(&mut replica.doc, self.index, n);
        let Some(hash) = replica.doc.commit() else {
            return;
        };
        let now = Instant::now();
        self.slots[i].pending.push_back((hash, now));
        if let Some(sent_at) = &self.sent_at {
            lock(sent_at).insert(hash, now.into_std());
        }
        result.sent += 1;
        result.first_change.get_or_insert(now);
        result.last_change = Some(now);
        if let Some(message) = self.peer.sync_message(id) {
            self.send(message);
        }
    }

    fn receive(&mut self, message: Message, result: &mut DeviceResult) -> Result<(), String> {
        match message {
            Message::Peer { sender_id, .. } => self.peer.joined(sender_id),
            Message::Sync {
                document_id, data, ..
            }
            | Message::Request {
                document_id, data, ..
            } => {
                if let Some(i) = self.slot(&document_id) {
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

    /// The opened document the server speaks of.
    fn slot(&self, document_id: &str) -> Option<usize> {
        let id = DocumentId::parse(document_id).ok()?;
        self.slots.iter().position(|s| s.opened && s.id == id)
    }

    fn sync(&mut self, i: usize, data: &[u8], result: &mut DeviceResult) -> Result<(), String> {
        let id = self.slots[i].id;
        let replica = self.peer.replica_mut(id).ok_or("document not open")?;
        let before = replica.doc.get_heads();
        let answer = self
            .peer
            .receive_sync(id, data)
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        let replica = self.peer.replica_mut(id).ok_or("document not open")?;
        if let Some(sent_at) = &self.sent_at
            && replica.doc.get_heads() != before
        {
            let actor = replica.doc.get_actor().clone();
            let arrived: Vec<ChangeHash> = replica
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
        let pending = &mut self.slots[i].pending;
        if !pending.is_empty() {
            // A change is acknowledged once it is among the server's heads or their ancestors.
            let theirs = replica.state.their_heads.clone().unwrap_or_default();
            let known: Vec<ChangeHash> = theirs
                .into_iter()
                .filter(|h| replica.doc.get_change_meta_by_hash(h).is_some())
                .collect();
            if !known.is_empty() {
                let unacked: HashSet<ChangeHash> = replica
                    .doc
                    .get_changes_meta(&known)
                    .into_iter()
                    .map(|m| m.hash)
                    .collect();
                while let Some(&(hash, at)) = pending.front() {
                    if unacked.contains(&hash) {
                        break;
                    }
                    pending.pop_front();
                    result.acked += 1;
                    result.ack_latencies.push(now - at);
                    result.last_ack = Some(now);
                }
            }
        }
        if let Some(message) = answer {
            self.send(message);
        }
        Ok(())
    }

    /// Whether the server has every change of the chosen documents (and they have some).
    fn all(&mut self, which: impl Fn(&Slot) -> bool) -> bool {
        let ids: Vec<DocumentId> = self
            .slots
            .iter()
            .filter(|s| which(s))
            .map(|s| s.id)
            .collect();
        ids.into_iter().all(|id| self.peer.in_sync(id))
    }

    fn pending(&self) -> usize {
        self.slots.iter().map(|s| s.pending.len()).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub async fn device(mut spec: DeviceSpec) -> DeviceResult {
    let mut result = DeviceResult::default();
    let mut told = 0_u8;
    let tell = |told: &mut u8, upto: u8| {
        while *told <= upto {
            let _ = spec.done.send(*told);
            *told += 1;
        }
    };
    let mut permit = spec.permits.clone().acquire_owned().await.ok();
    let connected = timeout(
        Duration::from_secs(60),
        Connection::connect(spec.url.as_str()),
    )
    .await;
    let connection = match connected {
        Ok(Ok(connection)) => connection,
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
    let (mut sender, mut receiver) = connection.split();
    let (out, mut outbox) = mpsc::unbounded_channel::<Message>();
    // Writes on their own task, so a device never stops reading while the server is not.
    let writer = tokio::spawn(async move {
        while let Some(first) = outbox.recv().await {
            if sender.feed(&first).await.is_err() {
                return;
            }
            while let Ok(next) = outbox.try_recv() {
                if sender.feed(&next).await.is_err() {
                    return;
                }
            }
            if sender.flush().await.is_err() {
                return;
            }
        }
        let _ = sender.close().await;
    });

    let slots = spec
        .docs
        .iter()
        .map(|(id, first, saved)| Slot {
            id: *id,
            pending: VecDeque::new(),
            first: *first,
            opened: false,
            saved: saved.clone(),
        })
        .collect();
    let mut dev = Device {
        index: spec.index,
        peer: Peer::new(format!("bench-{}-{}", spec.index, Uuid::new_v4())),
        announce: spec.announce,
        slots,
        out,
        sent_at: spec.sent_at.take(),
    };
    dev.send(join(dev.peer.id()));

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
                Stage::Joining if dev.peer.server_id().is_some() => {
                    for i in 0..dev.slots.len() {
                        if dev.slots[i].first {
                            dev.open(i);
                        }
                    }
                    stage = Stage::OpeningOwned;
                }
                Stage::OpeningOwned if dev.all(|s| s.first) => {
                    drop(permit.take());
                    tell(&mut told, DONE_OWNED);
                    stage = Stage::WaitingForRest;
                }
                Stage::WaitingForRest if step >= STEP_OPEN_REST => {
                    permit = spec.permits.clone().acquire_owned().await.ok();
                    for i in 0..dev.slots.len() {
                        if !dev.slots[i].opened {
                            dev.open(i);
                        }
                    }
                    stage = Stage::OpeningRest;
                }
                Stage::OpeningRest if dev.all(|_| true) => {
                    drop(permit.take());
                    tell(&mut told, DONE_OPEN);
                    stage = Stage::Ready;
                }
                Stage::Ready if step >= STEP_GO => {
                    next_change = match spec.pace {
                        Pace::AfterAck => Some(Instant::now()),
                        Pace::Every { offset, .. } => Some(Instant::now() + offset),
                        Pace::Idle => None,
                    };
                    stage = match spec.pace {
                        Pace::Idle => Stage::Draining,
                        _ => Stage::Running,
                    };
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
                    // The writer sends what is queued, then closes.
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
            received = receiver.next() => {
                let ended = match received {
                    Received::Message(message) => dev.receive(message, &mut result).err(),
                    Received::Undecodable(e) => Some(format!("undecodable frame: {e}")),
                    Received::Closed(frame) => Some(format!(
                        "closed by the server: {}",
                        frame.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default()
                    )),
                    Received::Text(_) | Received::Nothing => None,
                    Received::Lost(Some(e)) => Some(format!("socket: {e}")),
                    Received::Lost(None) => Some("socket ended".to_owned()),
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
                    Pace::Idle => None,
                };
            }
            () = sleep_until(drain_at), if stage == Stage::Draining => {}
            _ = spec.step.changed() => {}
        }
    }
}
