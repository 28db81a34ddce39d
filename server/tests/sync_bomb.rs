//! A sync frame of a couple of MiB whose compressed change chunk inflates to gigabytes, sent to the
//! real `atiende` binary by a writer and by a read-only peer: each is answered with an `error`,
//! and the process's peak resident memory (VmHWM in /proc, which no allocator can hide) does not
//! move, because the chunk is measured under the document size quota before Automerge sees it.

mod common;

use std::io::Write;

use atiende_sync::{DocumentKind, Mode, storage};
use automerge::ReadDoc;
use automerge::transaction::Transactable;
use common::{Atiende, device, technician_with_ticket};
use sqlx::PgPool;

/// What the bomb claims to inflate to.
const BOMB: usize = 2 << 30;
/// How much the server's peak memory may grow while refusing it: generous, and far below the
/// bomb (or the 64 MiB quota it would be inflated to without a sink).
const PEAK_GROWTH: u64 = 48 << 20;

/// A sync message whose one change is a compressed change chunk of `inflated` zero bytes.
fn bomb(inflated: usize) -> Vec<u8> {
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..inflated / block.len() {
        deflate.write_all(&block).expect("deflate");
    }
    let data = deflate.finish().expect("deflate");
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    leb(&mut chunk, data.len());
    chunk.extend_from_slice(&data);
    // Type, no heads, no need, no have, one change entry.
    let mut message = vec![0x42, 0, 0, 0, 1];
    leb(&mut message, chunk.len());
    message.extend_from_slice(&chunk);
    message
}

fn leb(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_deflate_bomb_is_refused_and_memory_does_not_move(pool: PgPool) {
    let (writer, writer_token) = technician_with_ticket(&pool, "ana@example.com").await;
    let (reader, reader_token) = technician_with_ticket(&pool, "luis@example.com").await;
    let id = storage::create_document(
        &pool,
        DocumentKind::FieldReport,
        &[(writer.id, Mode::Write), (reader.id, Mode::Read)],
        |doc| {
            doc.put(automerge::ROOT, "status", "in_progress")?;
            Ok(())
        },
    )
    .await
    .expect("document");
    let frame = bomb(BOMB);
    assert!(
        frame.len() < 4 << 20,
        "a small frame: {} bytes",
        frame.len()
    );

    let dir = std::env::temp_dir().join(format!("atiende-bomb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Atiende::start(&pool, &dir.join("atiende.log"));

    for token in [&writer_token, &reader_token] {
        let mut device = device(&server.sync_url(token), id).await;
        let before = server.peak_memory();
        let message = device.peer.sync_carrying(id, frame.clone());
        device.send(&message).await;
        let text = device.next_error().await;
        assert!(text.contains("size quota"), "{text}");
        let after = server.peak_memory();
        eprintln!(
            "frame {} bytes claiming {BOMB}: peak memory {before} -> {after} bytes (+{})",
            frame.len(),
            after.saturating_sub(before)
        );
        assert!(
            after.saturating_sub(before) < PEAK_GROWTH,
            "peak memory grew from {before} to {after} bytes"
        );
    }

    // The server is alive and the writer's changes are stored as before.
    let mut device = device(&server.sync_url(&writer_token), id).await;
    device
        .change(id, |d| {
            d.put(automerge::ROOT, "status", "completed").expect("put");
        })
        .await;
    device.wait_acknowledged(id).await;
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("document");
    let status = stored.doc.get(automerge::ROOT, "status").expect("get");
    assert_eq!(
        status.and_then(|(v, _)| v.into_string().ok()).as_deref(),
        Some("completed")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
