//! Memory follows what is in use, not every document ever touched: a server that opens ten
//! thousand documents drops each from memory once it has been idle for `idle_unload`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use atiende_sync::storage;
use atiende_sync::{DocumentId, DocumentKind, Mode, SyncSettings};
use automerge::ReadDoc;
use automerge::transaction::Transactable;
use common::*;
use sqlx::PgPool;

const DOCUMENTS: usize = 10_000;
/// Documents are created and opened by this many tasks side by side.
const WORKERS: usize = 4;

/// Every `WORKERS`th document from `first`, in one transaction; `visit` numbers them.
async fn create_reports(pool: &PgPool, first: usize) -> Vec<(usize, DocumentId)> {
    let mut tx = pool.begin().await.expect("begin");
    let mut ids = Vec::new();
    for n in (first..DOCUMENTS).step_by(WORKERS) {
        let id = storage::create_document(&mut *tx, DocumentKind::CustomerInbox, &[], |doc| {
            doc.put(automerge::ROOT, "visit", n as i64)?;
            Ok(())
        })
        .await
        .expect("create document");
        ids.push((n, id));
    }
    tx.commit().await.expect("commit");
    ids
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn ten_thousand_documents_opened_once_do_not_stay_in_memory(pool: PgPool) {
    let settings = SyncSettings {
        idle_unload: Duration::from_millis(100),
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let janitor = spawn_janitor(&server.state);
    let mut ids = Vec::with_capacity(DOCUMENTS);
    let creators = (0..WORKERS).map(|first| create_reports(&pool, first));
    for created in futures_util::future::join_all(creators).await {
        ids.extend(created);
    }
    ids.sort_unstable();
    let ids: Vec<DocumentId> = ids.into_iter().map(|(_, id)| id).collect();

    // Watch how many documents are in memory while every one is opened (loaded, as the server
    // does to write a customer's inbox) and then left alone.
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (state, peak, done) = (server.state.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(state.stats().loaded_documents, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let state = &server.state;
    let openers = ids.chunks(DOCUMENTS / WORKERS).map(|share| async move {
        for &id in share {
            state
                .change_document(id, |_| Ok(()))
                .await
                .expect("open document");
        }
    });
    futures_util::future::join_all(openers).await;
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");

    // Only those used within the last `idle_unload` or so were ever in memory together.
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak > 0 && peak <= DOCUMENTS / 4,
        "{peak} documents in memory at once while {DOCUMENTS} were opened"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let loaded = server.state.stats().loaded_documents;
        if loaded == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{loaded} documents still in memory long after they were last used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Unloaded, not lost: the last one opens again with its content and takes a change.
    let last = *ids.last().expect("documents");
    server
        .state
        .change_document(last, |doc| {
            doc.put(automerge::ROOT, "answered", true)?;
            Ok(())
        })
        .await
        .expect("change");
    let stored = storage::load(&pool, last)
        .await
        .expect("load")
        .expect("exists");
    let visit = stored.doc.get(automerge::ROOT, "visit").expect("get");
    assert_eq!(
        visit.and_then(|(v, _)| v.as_i64()),
        Some(DOCUMENTS as i64 - 1)
    );
    assert!(
        stored
            .doc
            .get(automerge::ROOT, "answered")
            .expect("get")
            .is_some()
    );
    janitor.stop().await;
    server.stop().await;
}

/// Waits until the janitor has put at least `n` documents to sleep in all.
async fn slept_at_least(server: &Server, n: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.state.stats().documents_slept < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "documents open but idle were not put to sleep: {:?}",
            server.state.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn idle_documents_sleep_while_open_and_wake_for_whoever_uses_them(pool: PgPool) {
    // Nothing stays awake once idle for 50 ms.
    let settings = SyncSettings {
        awake_documents: 0,
        sleep_after: Duration::from_millis(50),
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let janitor = spawn_janitor(&server.state);
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;
    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    for c in [&mut a, &mut b] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
    }

    // Asleep while both have it open: a change from one reaches the other, and is stored.
    slept_at_least(&server, 1).await;
    a.change(id, |d| put(d, "observations", "termites in the kitchen"))
        .await;
    b.wait_until_with(&mut a, id, |d| {
        get_str(d, "observations").as_deref() == Some("termites in the kitchen")
    })
    .await;
    assert!(server.state.stats().documents_woken >= 1);
    assert_eq!(
        stored_once(&pool, id, "observations", "termites in the kitchen")
            .await
            .as_deref(),
        Some("termites in the kitchen")
    );

    // Asleep again: a change the server makes (as it does to a customer's inbox) is kept with
    // the earlier ones and reaches both devices.
    let slept = server.state.stats().documents_slept;
    slept_at_least(&server, slept + 1).await;
    server
        .state
        .change_document(id, |doc| {
            doc.put(automerge::ROOT, "status", "completed")?;
            Ok(())
        })
        .await
        .expect("change");
    a.wait_until_with(&mut b, id, |d| {
        get_str(d, "status").as_deref() == Some("completed")
    })
    .await;
    b.wait_until_with(&mut a, id, |d| {
        get_str(d, "status").as_deref() == Some("completed")
    })
    .await;
    assert_eq!(a.doc(id).get_heads(), b.doc(id).get_heads());
    assert_eq!(
        get_str(a.doc(id), "observations").as_deref(),
        Some("termites in the kitchen")
    );
    assert_eq!(
        stored_str(&pool, id, "status").await.as_deref(),
        Some("completed")
    );
    janitor.stop().await;
    server.stop().await;
}
