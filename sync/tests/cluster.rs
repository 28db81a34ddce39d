//! Several atiende processes on one database: two sync servers on one PostgreSQL, each with its
//! listener, as two processes behind a load balancer run them. Peers connected to different
//! servers see each other's changes live (within a second is a benchmark figure, `bench-sync`;
//! here they only have to arrive before the deadline), follow access changes made anywhere, and
//! lose nothing to a compaction or a lost database connection.

mod common;

use std::time::{Duration, Instant};

use atiende_sync::storage;
use atiende_sync::{DocumentId, DocumentKind, Message, Mode, SyncSettings};
use automerge::transaction::Transactable;
use common::*;
use sqlx::PgPool;

const QUIET: Duration = Duration::from_millis(300);

/// Two servers on one database, each with its listener running.
struct Cluster {
    one: Server,
    two: Server,
    jobs: Vec<Job>,
}

impl Cluster {
    async fn start(pool: &PgPool, settings: SyncSettings) -> Cluster {
        let one = Server::start_with(pool.clone(), settings.clone()).await;
        let two = Server::start_with(pool.clone(), settings).await;
        let jobs = vec![spawn_listener(&one.state), spawn_listener(&two.state)];
        Cluster { one, two, jobs }
    }

    async fn stop(self) {
        for job in self.jobs {
            job.stop().await;
        }
        self.one.stop().await;
        self.two.stop().await;
    }
}

async fn report(pool: &PgPool, access: &[(uuid::Uuid, Mode)]) -> DocumentId {
    storage::create_document(pool, DocumentKind::FieldReport, access, |doc| {
        doc.put(automerge::ROOT, "status", "scheduled")?;
        Ok(())
    })
    .await
    .expect("create document")
}

async fn open(client: &mut Client, id: DocumentId) {
    client.request(id).await;
    client
        .wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    client.settle(QUIET).await;
}

/// After `rounds` of letting both peers settle, both and the database hold the same heads.
async fn converged(pool: &PgPool, id: DocumentId, a: &mut Client, b: &mut Client, rounds: usize) {
    for _ in 0..rounds {
        a.settle(QUIET).await;
        b.settle(QUIET).await;
    }
    let heads = a.doc(id).get_heads();
    assert_eq!(b.doc(id).get_heads(), heads);
    let mut stored = storage::load(pool, id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(stored.doc.get_heads(), heads);
}

/// Two technicians sharing one report, Ana through server one and Beto through server two,
/// both with it open.
async fn pair(pool: &PgPool, cluster: &Cluster) -> (DocumentId, Client, Client) {
    let (ana, ta) = technician(pool, "ana@example.com").await;
    let (beto, tb) = technician(pool, "beto@example.com").await;
    let id = report(pool, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;
    let mut a = Client::connect(&cluster.one.url(&ta)).await;
    let mut b = Client::connect(&cluster.two.url(&tb)).await;
    open(&mut a, id).await;
    open(&mut b, id).await;
    (id, a, b)
}

fn has(key: &str, value: &str) -> impl Fn(&automerge::AutoCommit) -> bool {
    let (key, value) = (key.to_owned(), value.to_owned());
    move |d| get_str(d, &key).as_deref() == Some(value.as_str())
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_change_through_one_server_reaches_a_peer_on_another(pool: PgPool) {
    let cluster = Cluster::start(&pool, SyncSettings::default()).await;
    let (id, mut a, mut b) = pair(&pool, &cluster).await;

    for round in 0..3 {
        let text = format!("termites, visit {round}");
        a.change(id, |d| put(d, "observations", &text)).await;
        b.wait_until_with(&mut a, id, has("observations", &text))
            .await;

        let text = format!("seal the cracks, visit {round}");
        b.change(id, |d| put(d, "recommendations", &text)).await;
        a.wait_until_with(&mut b, id, has("recommendations", &text))
            .await;
    }

    // Concurrent edits through both servers: everyone, and the database, ends up the same.
    a.change(id, |d| put(d, "status", "in_progress")).await;
    b.change(id, |d| put(d, "status", "completed")).await;
    converged(&pool, id, &mut a, &mut b, 5).await;
    cluster.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_revocation_in_a_plain_transaction_stops_the_document_on_every_server(pool: PgPool) {
    let cluster = Cluster::start(&pool, SyncSettings::default()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&pool, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;
    // Ana on both servers; Beto's phone and tablet, one on each.
    let mut a1 = Client::connect(&cluster.one.url(&ta)).await;
    let mut a2 = Client::connect(&cluster.two.url(&ta)).await;
    let mut b1 = Client::connect(&cluster.one.url(&tb)).await;
    let mut b2 = Client::connect(&cluster.two.url(&tb)).await;
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        open(c, id).await;
    }

    // The rest of the system revokes inside its own transaction, not through a sync server.
    let mut tx = pool.begin().await.expect("begin");
    let had = atiende_core::documents::revoke(&mut *tx, id, beto.id)
        .await
        .expect("revoke");
    assert!(had);
    tx.commit().await.expect("commit");
    for b in [&mut b1, &mut b2] {
        match b.next_other().await {
            Some(Message::DocUnavailable { document_id, .. }) => {
                assert_eq!(document_id, id.to_string());
            }
            other => panic!("{}: expected doc-unavailable, got {other:?}", b.peer_id()),
        }
    }

    // Ana's change still crosses servers; Beto gets nothing more on either.
    a1.change(id, |d| put(d, "observations", "termites")).await;
    a2.wait_until_with(&mut a1, id, has("observations", "termites"))
        .await;
    for b in [&mut b1, &mut b2] {
        b.settle(QUIET).await;
        assert_eq!(get_str(b.doc(id), "observations"), None, "{}", b.peer_id());
        assert!(b.inbox.is_empty(), "{}: {:?}", b.peer_id(), b.inbox);
    }

    // Asking again gets the answer any unknown document gets, on both servers.
    for b in [&mut b1, &mut b2] {
        b.request(id).await;
        match b.next_other().await {
            Some(Message::DocUnavailable { .. }) => {}
            other => panic!("{}: expected doc-unavailable, got {other:?}", b.peer_id()),
        }
    }

    // Ana is made a reader in a plain transaction: both servers tell her devices at once and
    // refuse what they send from then on.
    let mut tx = pool.begin().await.expect("begin");
    atiende_core::documents::grant(&mut *tx, id, ana.id, Mode::Read)
        .await
        .expect("grant");
    tx.commit().await.expect("commit");
    for a in [&mut a1, &mut a2] {
        let deadline = Instant::now() + PATIENCE;
        while !a.sync_state(id).peer_read_only {
            assert!(
                Instant::now() < deadline,
                "{}: never told read-only",
                a.peer_id()
            );
            a.step(Duration::from_millis(100)).await;
        }
        ignore_read_only_flag(a, id);
        a.change(id, |d| put(d, "observations", "late edit")).await;
        let message = a.next_error().await;
        assert!(message.contains("read-only"), "{}: {message}", a.peer_id());
    }
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        get_str(&stored.doc, "observations").as_deref(),
        Some("termites")
    );
    cluster.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn compaction_through_one_server_does_not_make_the_other_miss_changes(pool: PgPool) {
    let settings = SyncSettings {
        compact_after: 2,
        ..SyncSettings::default()
    };
    let cluster = Cluster::start(&pool, settings).await;
    let (id, mut a, mut b) = pair(&pool, &cluster).await;

    // A burst through server one, compacted as it goes, while server two reads it back.
    for i in 0..12 {
        a.change(id, |d| put(d, &format!("a{i}"), "v")).await;
    }
    b.wait_until_with(&mut a, id, |d| {
        (0..12).all(|i| get_str(d, &format!("a{i}")).is_some())
    })
    .await;
    // And the other way.
    for i in 0..12 {
        b.change(id, |d| put(d, &format!("b{i}"), "v")).await;
    }
    a.wait_until_with(&mut b, id, |d| {
        (0..12).all(|i| get_str(d, &format!("b{i}")).is_some())
    })
    .await;
    assert!(
        change_rows(&pool, id).await < 24,
        "the rows were never compacted"
    );

    // Server two loses its database connection for a while; meanwhile server one stores and
    // compacts changes (the rows are folded and deleted before server two reads them).
    let Cluster { one, two, mut jobs } = cluster;
    let listener_two = jobs.pop().expect("listener of server two");
    listener_two.stop().await;
    for i in 0..5 {
        a.change(id, |d| put(d, &format!("away{i}"), "v")).await;
        a.settle(Duration::from_millis(50)).await;
    }
    assert!(change_rows(&pool, id).await < 2, "rows were not compacted");
    // Back: everything reaches the peer on server two.
    jobs.push(spawn_listener(&two.state));
    b.wait_until_with(&mut a, id, |d| {
        (0..5).all(|i| get_str(d, &format!("away{i}")).is_some())
    })
    .await;

    converged(&pool, id, &mut a, &mut b, 3).await;
    Cluster { one, two, jobs }.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_dropped_listener_connection_is_reestablished(pool: PgPool) {
    let cluster = Cluster::start(&pool, SyncSettings::default()).await;
    let (id, mut a, mut b) = pair(&pool, &cluster).await;
    // Both ways, so both listeners are known to be up.
    a.change(id, |d| put(d, "before", "v")).await;
    b.wait_until_with(&mut a, id, has("before", "v")).await;
    b.change(id, |d| put(d, "before_reply", "v")).await;
    a.wait_until_with(&mut b, id, has("before_reply", "v"))
        .await;

    // PostgreSQL restarts, or a proxy cuts idle connections: both listeners lose theirs.
    let terminated = sqlx::query_scalar!(
        r#"select count(pg_terminate_backend(pid)) as "n!" from pg_stat_activity
           where datname = current_database() and pid <> pg_backend_pid() and query like 'LISTEN%'"#
    )
    .fetch_one(&pool)
    .await
    .expect("terminate the listeners' connections");
    assert_eq!(terminated, 2);

    for i in 0..3 {
        a.change(id, |d| put(d, &format!("after{i}"), "v")).await;
        b.wait_until_with(&mut a, id, has(&format!("after{i}"), "v"))
            .await;
        b.change(id, |d| put(d, &format!("reply{i}"), "v")).await;
        a.wait_until_with(&mut b, id, has(&format!("reply{i}"), "v"))
            .await;
    }
    cluster.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn logout_closes_a_socket_on_another_server(pool: PgPool) {
    let cluster = Cluster::start(&pool, SyncSettings::default()).await;
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let (token, ticket) = session_for(&pool, &ana).await;
    let mut on_one = Client::connect(&cluster.one.url(&ticket)).await;
    let mut on_two = Client::connect(&cluster.two.url(&ticket)).await;
    atiende_core::auth::logout(&pool, &token)
        .await
        .expect("logout");
    wait_for_session_close(&mut on_one).await;
    wait_for_session_close(&mut on_two).await;
    cluster.stop().await;
}
