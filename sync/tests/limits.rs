//! The limits that keep one user from multiplying the sync server's memory, over a real
//! WebSocket and a real database: compressed payloads, document size quota, write budget,
//! ephemeral payloads, connections per user and bytes queued for a slow peer. Each is refused
//! with an `error` the client sees, and what was stored before stays intact.

mod common;

use std::io::Write;
use std::time::Duration;

use atiende_sync::storage;
use atiende_sync::{Message, Mode, SyncSettings};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc, ScalarValue};
use common::*;
use sqlx::PgPool;

const QUIET: Duration = Duration::from_millis(300);

/// Random bytes: nothing for Automerge's compression to shrink.
fn noise(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 16);
    while bytes.len() < len {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn put_noise(doc: &mut AutoCommit, key: &str, len: usize) {
    doc.put(automerge::ROOT, key, ScalarValue::Bytes(noise(len)))
        .expect("put");
}

/// A sync message whose one change is a compressed change chunk that inflates to `inflated`
/// zero bytes: a few KiB per MiB claimed.
fn bomb(inflated: usize) -> Vec<u8> {
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(block.len());
        deflate.write_all(&block[..n]).expect("deflate");
        left -= n;
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

async fn expect_error(client: &mut Client, contains: &str) {
    let message = client.next_error().await;
    assert!(message.contains(contains), "{message}");
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_compressed_bomb_is_refused_before_it_is_inflated(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (cliente, tc) = customer(&pool, "cliente@example.com", "1234567").await;
    let id = report(&server, &[(ana.id, Mode::Write), (cliente.id, Mode::Read)]).await;
    let frame = bomb(256 << 20);
    assert!(frame.len() < 1 << 20, "the frame is small: {}", frame.len());

    for token in [&ta, &tc] {
        let mut c = Client::connect(&server.url(token)).await;
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
        c.settle(QUIET).await;
        c.send(&c.peer.sync_carrying(id, frame.clone())).await;
        expect_error(&mut c, "size quota").await;
        // The connection stays and keeps working.
        c.change(id, |d| put(d, "observations", "after the bomb"))
            .await;
        c.settle(QUIET).await;
        assert!(c.closed.is_none(), "{:?}", c.closed);
    }
    assert_eq!(
        stored_once(&pool, id, "status", "scheduled")
            .await
            .as_deref(),
        Some("scheduled")
    );
    assert_eq!(
        stored_once(&pool, id, "observations", "after the bomb")
            .await
            .as_deref(),
        Some("after the bomb"),
        "the writer's next change is stored; the reader's is not"
    );
    let stats = server.state.stats();
    assert!(stats.limit_refusals >= 2, "{stats:?}");
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_document_over_its_size_quota_takes_no_more_changes(pool: PgPool) {
    let settings = SyncSettings {
        max_document_bytes: 16 * 1024,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;

    let mut c = Client::connect(&server.url(&ta)).await;
    c.request(id).await;
    c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    c.settle(QUIET).await;
    c.change(id, |d| put_noise(d, "photo", 8 * 1024)).await;
    c.settle(QUIET).await;
    assert_eq!(
        rows_once_stored(&pool, id, 1).await,
        1,
        "under the quota: stored"
    );

    c.change(id, |d| put_noise(d, "photo2", 12 * 1024)).await;
    expect_error(&mut c, "size quota").await;
    c.settle(QUIET).await;
    assert!(c.closed.is_none(), "{:?}", c.closed);
    assert_eq!(
        change_rows(&pool, id).await,
        1,
        "over the quota: not stored"
    );
    let stored = storage::load(&pool, id).await.expect("load").expect("doc");
    assert!(matches!(
        stored.doc.get(automerge::ROOT, "photo"),
        Ok(Some(_))
    ));
    assert!(matches!(
        stored.doc.get(automerge::ROOT, "photo2"),
        Ok(None)
    ));
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_user_past_the_write_budget_is_refused(pool: PgPool) {
    let settings = SyncSettings {
        write_burst_bytes: 8 * 1024,
        write_bytes_per_minute: 1,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;

    let mut c = Client::connect(&server.url(&ta)).await;
    c.request(id).await;
    c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    c.settle(QUIET).await;
    c.change(id, |d| put_noise(d, "photo", 10 * 1024)).await;
    c.settle(QUIET).await;
    assert_eq!(
        rows_once_stored(&pool, id, 1).await,
        1,
        "within the budget: stored"
    );

    c.change(id, |d| put(d, "observations", "more")).await;
    expect_error(&mut c, "write budget").await;
    c.settle(QUIET).await;
    assert!(c.closed.is_some(), "the connection is closed");
    assert_eq!(
        change_rows(&pool, id).await,
        1,
        "past the budget: not stored"
    );
    assert_eq!(stored_str(&pool, id, "observations").await, None);

    // The budget is the user's, whatever the connection; reading needs none.
    let mut again = Client::connect(&server.url(&ta)).await;
    again.request(id).await;
    again
        .wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    again.settle(QUIET).await;
    again.change(id, |d| put(d, "observations", "more")).await;
    expect_error(&mut again, "write budget").await;
    assert_eq!(change_rows(&pool, id).await, 1);
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_ephemeral_message_over_the_limit_is_refused_and_not_relayed(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (luis, tl) = technician(&pool, "luis@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (luis.id, Mode::Write)]).await;
    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tl)).await;
    for c in [&mut a, &mut b] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
        c.settle(QUIET).await;
    }
    let ephemeral = |c: &Client, count: u64, len: usize| Message::Ephemeral {
        sender_id: c.peer_id().to_owned(),
        target_id: c.server_id().to_owned(),
        count,
        session_id: "s".to_owned(),
        document_id: id.to_string(),
        data: vec![7; len],
    };
    let max = SyncSettings::default().max_ephemeral_bytes;
    a.send(&ephemeral(&a, 1, max + 1)).await;
    expect_error(&mut a, "ephemeral").await;
    a.send(&ephemeral(&a, 2, 10)).await;
    match b.next_other().await {
        Some(Message::Ephemeral { count, data, .. }) => {
            assert_eq!(
                (count, data.len()),
                (2, 10),
                "only the small one is relayed"
            );
        }
        other => panic!("expected the small ephemeral message, got {other:?}"),
    }
    assert!(a.closed.is_none());
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_user_over_the_connection_cap_is_refused_and_older_connections_stay(pool: PgPool) {
    let settings = SyncSettings {
        max_connections_per_user: 2,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;
    let mut first = Client::connect(&server.url(&ta)).await;
    let mut second = Client::connect(&server.url(&ta)).await;

    let mut third = Connection::connect(server.url(&ta)).await.expect("connect");
    third.send(&join(&new_peer_id())).await.expect("send");
    let text = expect_error_and_close(&mut third).await;
    assert!(text.contains("too many sync connections"), "{text}");

    // A peer reconnecting with its own id replaces its older connection: not refused.
    let mut second = {
        let peer_id = second.peer_id().to_owned();
        let replacement = Client::connect_as(&server.url(&ta), &peer_id).await;
        second.settle(QUIET).await;
        assert!(second.closed.is_some(), "the older connection is retired");
        replacement
    };

    for c in [&mut first, &mut second] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
    }
    first
        .change(id, |d| put(d, "observations", "still here"))
        .await;
    second
        .wait_until_with(&mut first, id, |d| {
            get_str(d, "observations").as_deref() == Some("still here")
        })
        .await;
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_peer_that_lets_bytes_pile_up_is_dropped(pool: PgPool) {
    let settings = SyncSettings {
        max_queued_bytes: 256 * 1024,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (luis, tl) = technician(&pool, "luis@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (luis.id, Mode::Write)]).await;
    let mut writer = Client::connect(&server.url(&ta)).await;
    let mut slow = Client::connect(&server.url(&tl)).await;
    for c in [&mut writer, &mut slow] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
        c.settle(QUIET).await;
    }
    // `slow` stops reading; the writer sends far more than sockets buffer, in few frames (well
    // under the queue's 1,024 frames).
    const CHANGES: usize = 80;
    for n in 0..CHANGES {
        writer
            .change(id, |d| put_noise(d, &format!("photo{n}"), 256 * 1024))
            .await;
        writer.settle(Duration::from_millis(20)).await;
    }
    // `slow` reads again, without answering: its answers would race the server's close of a
    // dropped peer (and applying 20 MiB of changes in a debug build can outlast the server's
    // wait for the closing handshake on a busy machine). What was queued, then why, then the close.
    let mut saw_error = false;
    loop {
        match slow.connection.receive(PATIENCE).await {
            Received::Message(Message::Error { message, .. }) => {
                saw_error |= message.contains("not reading fast enough");
            }
            Received::Message(_) => {}
            Received::Closed(_) | Received::Lost(_) => break,
            Received::Nothing => panic!("the slow peer was neither told nor closed"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_error, "the slow peer is told why");
    assert_eq!(
        rows_once_stored(&pool, id, CHANGES as i64).await,
        CHANGES as i64,
        "every change is stored"
    );
    server.stop().await;
}
