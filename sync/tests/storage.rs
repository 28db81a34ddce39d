//! Storage functions against a real database: creation, access, appends, compaction, errors.

mod common;

use atiende_sync::storage::{self, StorageError};
use atiende_sync::{DocumentId, DocumentKind, Mode};
use automerge::ReadDoc;
use automerge::transaction::Transactable;
use common::*;
use sqlx::PgPool;

async fn report(pool: &PgPool, access: &[(uuid::Uuid, Mode)]) -> DocumentId {
    storage::create_document(pool, DocumentKind::FieldReport, access, |doc| {
        doc.put(automerge::ROOT, "status", "scheduled")?;
        Ok(())
    })
    .await
    .expect("create")
}

/// A batch of changes on top of the stored document, as the server would append it.
async fn edit(pool: &PgPool, id: DocumentId, key: &str) -> Vec<u8> {
    let mut doc = storage::load(pool, id)
        .await
        .expect("load")
        .expect("exists")
        .doc;
    let before = doc.get_heads();
    doc.put(automerge::ROOT, key, "v").expect("put");
    doc.commit();
    doc.save_after(&before)
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn documents_are_created_with_content_and_access(pool: PgPool) {
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let (cliente, _) = customer(&pool, "cliente@example.com", "1234567").await;
    let id = report(&pool, &[(ana.id, Mode::Write), (cliente.id, Mode::Read)]).await;

    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(stored.kind, DocumentKind::FieldReport);
    assert_eq!(stored.incremental_rows, 0);
    assert_eq!(get_str(&stored.doc, "status").as_deref(), Some("scheduled"));

    let access = |user| storage::access(&pool, id, user);
    assert_eq!(
        access(ana.id).await.expect("access"),
        Some((DocumentKind::FieldReport, Some(Mode::Write)))
    );
    assert_eq!(
        access(cliente.id).await.expect("access"),
        Some((DocumentKind::FieldReport, Some(Mode::Read)))
    );
    assert_eq!(
        access(uuid::Uuid::new_v4()).await.expect("access"),
        Some((DocumentKind::FieldReport, None))
    );
    let missing = DocumentId::generate().expect("id");
    assert_eq!(
        storage::access(&pool, missing, ana.id)
            .await
            .expect("access"),
        None
    );
    assert!(storage::load(&pool, missing).await.expect("load").is_none());
    assert_eq!(
        storage::documents_of_user(&pool, cliente.id)
            .await
            .expect("list"),
        vec![(id, DocumentKind::FieldReport, Mode::Read)]
    );

    // An empty initial state still gets a change, so clients see a document with heads.
    let empty = storage::create_document(&pool, DocumentKind::CustomerOutbox, &[], |_| Ok(()))
        .await
        .expect("create");
    let mut stored = storage::load(&pool, empty)
        .await
        .expect("load")
        .expect("exists");
    assert!(!stored.doc.get_heads().is_empty());
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn creation_is_part_of_the_callers_transaction(pool: PgPool) {
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let mut tx = pool.begin().await.expect("begin");
    let id = storage::create_document(
        &mut *tx,
        DocumentKind::FieldReport,
        &[(ana.id, Mode::Write)],
        |_| Ok(()),
    )
    .await
    .expect("create");
    tx.rollback().await.expect("rollback");
    assert!(storage::load(&pool, id).await.expect("load").is_none());

    // A bad access list fails the whole creation.
    let ghost = uuid::Uuid::new_v4();
    let failed = storage::create_document(
        &pool,
        DocumentKind::FieldReport,
        &[(ghost, Mode::Read)],
        |_| Ok(()),
    )
    .await;
    assert!(
        matches!(failed, Err(StorageError::NoSuchUser(u)) if u == ghost),
        "{failed:?}"
    );
    assert!(
        storage::documents_of_user(&pool, ghost)
            .await
            .expect("list")
            .is_empty()
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn grant_and_revoke(pool: PgPool) {
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let id = report(&pool, &[]).await;
    storage::grant(&pool, id, ana.id, Mode::Read)
        .await
        .expect("grant");
    storage::grant(&pool, id, ana.id, Mode::Write)
        .await
        .expect("upgrade");
    assert_eq!(
        storage::access(&pool, id, ana.id).await.expect("access"),
        Some((DocumentKind::FieldReport, Some(Mode::Write)))
    );
    assert!(storage::revoke(&pool, id, ana.id).await.expect("revoke"));
    assert!(
        !storage::revoke(&pool, id, ana.id)
            .await
            .expect("revoke again")
    );

    let missing = DocumentId::generate().expect("id");
    let refused = storage::grant(&pool, missing, ana.id, Mode::Read).await;
    assert!(
        matches!(refused, Err(StorageError::NoSuchDocument(d)) if d == missing),
        "{refused:?}"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn appends_load_in_any_order_and_compact_into_a_snapshot(pool: PgPool) {
    let id = report(&pool, &[]).await;
    let first = edit(&pool, id, "a").await;
    storage::append(&pool, id, &first).await.expect("append");
    let second = edit(&pool, id, "b").await;
    storage::append(&pool, id, &second).await.expect("append");
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(stored.incremental_rows, 2);
    assert_eq!(get_str(&stored.doc, "a").as_deref(), Some("v"));
    assert_eq!(get_str(&stored.doc, "b").as_deref(), Some("v"));

    // Stored twice (a retried append) and out of order: Automerge does not mind.
    storage::append(&pool, id, &first)
        .await
        .expect("append again");
    let done = storage::compact(&pool, id).await.expect("compact");
    assert_eq!(done.folded_rows, 3);
    assert!(done.snapshot_bytes > 0);
    assert_eq!(change_rows(&pool, id).await, 0);
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(stored.incremental_rows, 0);
    for key in ["status", "a", "b"] {
        assert!(
            stored.doc.get(automerge::ROOT, key).expect("get").is_some(),
            "{key}"
        );
    }
    assert_eq!(
        storage::compact(&pool, id)
            .await
            .expect("compact")
            .folded_rows,
        0
    );

    let missing = DocumentId::generate().expect("id");
    let refused = storage::append(&pool, missing, &first).await;
    assert!(
        matches!(refused, Err(StorageError::NoSuchDocument(_))),
        "{refused:?}"
    );
    assert!(matches!(
        storage::compact(&pool, missing).await,
        Err(StorageError::NoSuchDocument(_))
    ));
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn corrupt_content_is_an_error_not_an_empty_document(pool: PgPool) {
    let id = report(&pool, &[]).await;
    storage::append(&pool, id, b"not automerge")
        .await
        .expect("append");
    let loaded = storage::load(&pool, id).await;
    assert!(matches!(loaded, Err(StorageError::Corrupt { document_id, .. }) if document_id == id));
    let compacted = storage::compact(&pool, id).await;
    assert!(matches!(compacted, Err(StorageError::Corrupt { .. })));
    assert_eq!(
        change_rows(&pool, id).await,
        1,
        "a failed compaction deletes nothing"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_copy_holding_all_that_is_stored_becomes_the_snapshot(pool: PgPool) {
    let id = report(&pool, &[]).await;
    let a = edit(&pool, id, "a").await;
    storage::append(&pool, id, &a).await.expect("append");
    let mut held = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");

    // The copy holds exactly what is stored: it is saved, and it is told what it now holds.
    let done = storage::compact_held(&pool, id, &held.seen, &mut held.doc)
        .await
        .expect("compact");
    assert_eq!(done.folded_rows, 1);
    let seen = done.seen.expect("the snapshot was saved from the copy");
    assert!(seen.rows.is_empty() && seen.snapshot.is_some());
    let unseen = storage::read_unseen(&pool, id, &seen)
        .await
        .expect("read unseen");
    assert!(unseen.snapshot.is_none() && unseen.rows.is_empty());
    assert_eq!(change_rows(&pool, id).await, 0);

    // Another process stores a change the copy has not read: the copy is not saved over it.
    let b = edit(&pool, id, "b").await;
    storage::append(&pool, id, &b).await.expect("append");
    let done = storage::compact_held(&pool, id, &seen, &mut held.doc)
        .await
        .expect("compact");
    assert_eq!((done.folded_rows, done.seen), (1, None));
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    for key in ["status", "a", "b"] {
        assert!(get_str(&stored.doc, key).is_some(), "{key}");
    }
    assert_eq!(
        get_str(&held.doc, "b"),
        None,
        "the copy itself is untouched"
    );
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn appends_of_several_documents_are_stored_together_or_not_at_all(pool: PgPool) {
    let one = report(&pool, &[]).await;
    let two = report(&pool, &[]).await;
    let (a, b, c) = (
        edit(&pool, one, "a").await,
        edit(&pool, two, "b").await,
        edit(&pool, one, "c").await,
    );
    let ids = [one.to_string(), two.to_string(), one.to_string()];
    let seqs = storage::append_many(&pool, &ids, &[&a, &b, &c])
        .await
        .expect("append");
    assert_eq!(seqs.len(), 3);
    // Each seq is the row of the change given in its place.
    for (seq, (id, data)) in seqs.iter().zip(ids.iter().zip([&a, &b, &c])) {
        let row: (String, Vec<u8>) =
            sqlx::query_as("select document_id, data from sync_changes where seq = $1")
                .bind(seq)
                .fetch_one(&pool)
                .await
                .expect("the row");
        assert_eq!((&row.0, &row.1), (id, data));
    }

    // A batch naming a document that does not exist stores none of it.
    let missing = DocumentId::generate().expect("id").to_string();
    let refused = storage::append_many(&pool, &[two.to_string(), missing], &[&b, &b]).await;
    assert!(refused.is_err());
    assert_eq!(change_rows(&pool, two).await, 1);
}
