//! Reading and changing sync documents as stored, the way a synced device's change lands: the
//! projections react to stored changes, whichever connection brought them.

use std::future::Future;
use std::time::Duration;

use atiende_sync::{DocumentId, storage};
use automerge::AutoCommit;
use serde_json::Value;
use sqlx::PgPool;

const PATIENCE: Duration = Duration::from_secs(10);

fn id(url: &str) -> DocumentId {
    DocumentId::parse(url).expect("an automerge URL")
}

/// The document's content as JSON.
pub async fn read(pool: &PgPool, url: &str) -> Value {
    let stored = storage::load(pool, id(url))
        .await
        .expect("load")
        .expect("the document exists");
    serde_json::to_value(automerge::AutoSerde::from(&stored.doc)).expect("json")
}

/// Applies `change` to the stored document and stores the new changes as one batch.
pub async fn edit(
    pool: &PgPool,
    url: &str,
    change: impl FnOnce(&mut AutoCommit) -> Result<(), automerge::AutomergeError>,
) {
    let id = id(url);
    let mut stored = storage::load(pool, id)
        .await
        .expect("load")
        .expect("the document exists");
    let before = stored.doc.get_heads();
    change(&mut stored.doc).expect("change the document");
    stored.doc.commit();
    let bytes = stored.doc.save_after(&before);
    storage::append(pool, id, &bytes)
        .await
        .expect("store the change");
}

/// Waits until `check` gives a value, or fails after the patience runs out.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the projection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
