//! The `atiende` binary killed with SIGKILL in the middle of a stream of sync changes keeps every
//! change it acknowledged: after a restart on the same database, a device syncing again gets all
//! of them, and they are in `sync_changes`/`sync_snapshots`. A process killed after storing a
//! change and before announcing it to the other processes: a device on another process still gets
//! the change.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atiende_sync::client::{Client, PATIENCE, Received, get_str};
use atiende_sync::{DocumentId, DocumentKind, Message, Mode, storage};
use automerge::sync;
use automerge::transaction::Transactable;
use automerge::{ChangeHash, ReadDoc};
use common::{Atiende, device};
use sqlx::PgPool;

/// Changes the device sends at most, one per message: below the server's burst allowance
/// (2,000 frames), so the stream is never cut for flooding.
const CHANGES: usize = 1_500;
/// The server is killed once it has acknowledged this many.
const KILL_AFTER: usize = 200;

/// A technician's sync ticket, a field report they may write, and a directory for logs.
async fn field_report(pool: &PgPool) -> (String, DocumentId, PathBuf) {
    let (user, token) = common::technician_with_ticket(pool, "tecnico@example.com").await;
    let id = storage::create_document(
        pool,
        DocumentKind::FieldReport,
        &[(user.id, Mode::Write)],
        |doc| {
            doc.put(automerge::ROOT, "status", "in_progress")?;
            Ok(())
        },
    )
    .await
    .expect("document");
    let dir = std::env::temp_dir().join(format!("atiende-sync-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    (token, id, dir)
}

fn key(n: usize) -> String {
    format!("reading-{n:04}")
}

/// Marks the report completed and waits until the server has stored it.
async fn complete(device: &mut Client, id: DocumentId) {
    device
        .change(id, |d| {
            d.put(automerge::ROOT, "status", "completed").expect("put");
        })
        .await;
    device.wait_acknowledged(id).await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn every_acknowledged_change_survives_kill_9(pool: PgPool) {
    let (token, id, dir) = field_report(&pool).await;
    let log = |name: &str| -> PathBuf { dir.join(name) };

    let mut server = Atiende::start(&pool, &log("first.log"));
    let Client {
        connection,
        mut peer,
        ..
    } = device(&server.sync_url(&token), id).await;
    let (mut sender, mut receiver) = connection.split();

    // Which change each hash is; the server acknowledges a change when the heads in its answer
    // are that change (one writer, so every change follows the one before).
    let numbered: Arc<Mutex<HashMap<ChangeHash, usize>>> = Arc::default();
    let acknowledged = Arc::new(Mutex::new(0usize));
    let reader = {
        let (numbered, acknowledged) = (numbered.clone(), acknowledged.clone());
        tokio::spawn(async move {
            // Until the socket dies with the server, frames already sent before the kill included.
            // No time limit here: a reader that gave up while the device still sends would stop
            // draining the socket, and the sends below would wait for ever behind it.
            loop {
                let data = match receiver.next().await {
                    Received::Message(Message::Sync { data, .. }) => data,
                    Received::Closed(_) | Received::Lost(_) => break,
                    _ => continue,
                };
                let heads = sync::Message::decode(&data).expect("sync message").heads;
                let numbered = numbered.lock().expect("lock");
                let mut acknowledged = acknowledged.lock().expect("lock");
                for head in heads {
                    if let Some(&n) = numbered.get(&head) {
                        *acknowledged = (*acknowledged).max(n + 1);
                    }
                }
            }
        })
    };

    let mut sent = 0;
    for n in 0..CHANGES {
        let doc = &mut peer.replica_mut(id).expect("document opened").doc;
        doc.put(automerge::ROOT, key(n), n as i64).expect("put");
        doc.commit();
        let head = doc.get_heads()[0];
        numbered.lock().expect("lock").insert(head, n);
        let message = peer.sync_message(id).expect("a message for the new change");
        match tokio::time::timeout(PATIENCE, sender.send(&message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => panic!("the server stopped reading after {sent} changes"),
        }
        sent = n + 1;
        if *acknowledged.lock().expect("lock") >= KILL_AFTER {
            break;
        }
        // Let the reader and the socket keep up; the server is still behind.
        tokio::task::yield_now().await;
    }
    // Sending may finish first on a slow machine: the server is still working through them.
    let deadline = Instant::now() + PATIENCE;
    while *acknowledged.lock().expect("lock") < KILL_AFTER.min(sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_9();
    reader.await.expect("reader");
    let acknowledged = *acknowledged.lock().expect("lock");
    assert!(
        acknowledged >= KILL_AFTER.min(sent),
        "only {acknowledged} of {sent} changes acknowledged before the kill"
    );
    eprintln!("killed after {sent} changes sent, {acknowledged} acknowledged");

    // In the database, as stored: snapshot and change rows.
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("document");
    for n in 0..acknowledged {
        assert!(
            stored
                .doc
                .get(automerge::ROOT, key(n))
                .expect("get")
                .is_some(),
            "acknowledged change {n} is not stored"
        );
    }

    // And as a device sees it after a restart on the same database.
    let mut server = Atiende::start(&pool, &log("second.log"));
    let mut device = device(&server.sync_url(&token), id).await;
    for n in 0..acknowledged {
        let value = device.doc(id).get(automerge::ROOT, key(n)).expect("get");
        assert_eq!(
            value.and_then(|(v, _)| v.as_i64()),
            Some(n as i64),
            "acknowledged change {n} is missing after the restart"
        );
    }
    // The restarted server takes new changes as before.
    complete(&mut device, id).await;
    drop(device);
    server.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_change_whose_process_died_before_announcing_it_still_reaches_other_processes(
    pool: PgPool,
) {
    let (token, id, dir) = field_report(&pool).await;
    // The writer's process would announce what it stores only after an hour: it is killed long
    // before, so no other process is ever told.
    let mut writing = Atiende::start_with(
        &pool,
        &dir.join("writing.log"),
        &[("ATIENDE_SYNC_ANNOUNCE_WINDOW_MS", "3600000")],
    );
    let reading = Atiende::start_with(
        &pool,
        &dir.join("reading.log"),
        &[("ATIENDE_SYNC_CATCH_UP_SECS", "1")],
    );
    let mut office = device(&reading.sync_url(&token), id).await;
    let mut technician = device(&writing.sync_url(&token), id).await;

    complete(&mut technician, id).await;
    writing.kill_9();
    assert!(
        office
            .reaches(id, |d| get_str(d, "status").as_deref() == Some("completed"))
            .await,
        "the change stored by the killed process never reached the device on the other process"
    );
    let log = std::fs::read_to_string(dir.join("reading.log")).expect("log");
    assert!(
        log.contains("never announced"),
        "the reading process caught up without saying so:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
