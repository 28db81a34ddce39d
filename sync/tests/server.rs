//! The sync server over a real WebSocket and a real database: handshake, authentication, access,
//! convergence, durability, read-only peers, hostile frames and the document lifecycle.

mod common;

use std::time::Duration;

use atiende_core::types::Role;
use atiende_sync::storage;
use atiende_sync::{DocumentId, DocumentKind, Message, Mode, PeerMetadata, SyncSettings, encode};
use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use common::*;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const QUIET: Duration = Duration::from_millis(300);

// ------------------------------------------------------------------------------- handshake

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn join_is_answered_with_peer(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (_, token) = technician(&pool, "ana@example.com").await;
    let mut socket = Connection::connect(server.url(&token))
        .await
        .expect("connect");
    socket
        .send(&Message::Join {
            sender_id: "phone-1".to_owned(),
            supported_protocol_versions: vec!["1".to_owned()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: Some(true),
            }),
        })
        .await
        .expect("send");
    let storage_id = storage::storage_id(&pool).await.expect("storage id");
    match socket.receive(PATIENCE).await {
        Received::Message(Message::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            peer_metadata,
        }) => {
            assert_eq!(sender_id, server.state.peer_id());
            assert_eq!(target_id, "phone-1");
            assert_eq!(selected_protocol_version, "1");
            assert_eq!(
                peer_metadata,
                Some(PeerMetadata {
                    storage_id: Some(storage_id.to_string()),
                    is_ephemeral: Some(false),
                })
            );
        }
        other => panic!("expected `peer`, got {other:?}"),
    }
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn unsupported_versions_and_messages_before_join_are_refused(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (_, token) = technician(&pool, "ana@example.com").await;

    let mut socket = Connection::connect(server.url(&token))
        .await
        .expect("connect");
    socket
        .send(&Message::Join {
            sender_id: "phone-1".to_owned(),
            supported_protocol_versions: vec!["2".to_owned()],
            peer_metadata: None,
        })
        .await
        .expect("send");
    let text = expect_error_and_close(&mut socket).await;
    assert!(text.contains("protocol version"), "{text}");

    let mut socket = Connection::connect(server.url(&token))
        .await
        .expect("connect");
    let id = DocumentId::generate().expect("id");
    socket
        .send(&Message::Request {
            sender_id: "phone-1".to_owned(),
            target_id: "server".to_owned(),
            document_id: id.to_string(),
            data: vec![0x42, 0, 0, 0, 0],
        })
        .await
        .expect("send");
    let text = expect_error_and_close(&mut socket).await;
    assert!(text.contains("join"), "{text}");

    // A peer may not speak for another.
    let (mut socket, server_id) = joined(&server, &token, "phone-1").await;
    socket
        .send(&Message::Leave {
            sender_id: "phone-2".to_owned(),
        })
        .await
        .expect("send");
    let text = expect_error_and_close(&mut socket).await;
    assert!(text.contains("senderId"), "{text}");
    assert!(!server_id.is_empty());
    server.stop().await;
}

/// The upgrade is refused with a 401 problem document.
async fn expect_401(url: &str, what: &str) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401, "{what}");
            assert_eq!(
                response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json")
            );
            let body = response.body().as_deref().unwrap_or_default();
            let problem: serde_json::Value = serde_json::from_slice(body).expect("problem json");
            assert_eq!(problem["code"], "unauthenticated");
            assert_eq!(problem["status"], 401);
        }
        Err(e) => panic!("{what}: expected a 401, got {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_or_missing_ticket_gets_401_problem(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let (token, ticket) = session_for(&pool, &ana).await;
    expect_401(&server.url("ats_not-a-ticket"), "a made-up ticket").await;
    expect_401(
        &format!("ws://{}/api/v1/sync", server.addr),
        "no credential",
    )
    .await;
    // The 30-day bearer token does not belong in a URL.
    expect_401(
        &format!("ws://{}/api/v1/sync?token={token}", server.addr),
        "the session token in the URL",
    )
    .await;
    expect_401(&server.url(&token), "the session token as a ticket").await;

    // A ticket is reusable until it expires (the stock client reconnects with the same URL).
    for _ in 0..2 {
        let client = Client::connect(&server.url(&ticket)).await;
        drop(client);
    }
    sqlx::query("update sync_tickets set expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .expect("expire the ticket");
    expect_401(&server.url(&ticket), "an expired ticket").await;

    // A live ticket of a session that was logged out.
    let (token, ticket) = session_for(&pool, &ana).await;
    atiende_core::auth::logout(&pool, &token)
        .await
        .expect("logout");
    expect_401(&server.url(&ticket), "a ticket of a logged-out session").await;

    // Non-browser clients may send the bearer token in a header instead.
    let (token, _) = session_for(&pool, &ana).await;
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/api/v1/sync",
        server.addr
    ))
    .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let mut socket = Connection::connect(request)
        .await
        .expect("a bearer header opens the socket");
    socket.send(&join("phone-h")).await.expect("send");
    assert!(matches!(
        socket.receive(PATIENCE).await,
        Received::Message(Message::Peer { .. })
    ));
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn logout_and_deactivation_close_open_sockets(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let listener = spawn_listener(&server.state);
    let (ana, _) = technician(&pool, "ana@example.com").await;
    let (token, ticket) = session_for(&pool, &ana).await;
    let (_, other_ticket) = session_for(&pool, &ana).await;
    let mut phone = Client::connect(&server.url(&ticket)).await;
    let mut tablet = Client::connect(&server.url(&other_ticket)).await;

    atiende_core::auth::logout(&pool, &token)
        .await
        .expect("logout");
    wait_for_session_close(&mut phone).await;
    // Another session of the same user stays open.
    tablet.settle(QUIET).await;
    assert!(tablet.closed.is_none(), "{:?}", tablet.closed);

    atiende_core::auth::deactivate_user(&pool, "ana@example.com")
        .await
        .expect("deactivate");
    wait_for_session_close(&mut tablet).await;
    expect_401(&server.url(&other_ticket), "a ticket of a deactivated user").await;
    listener.stop().await;
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn an_expired_session_closes_its_socket(pool: PgPool) {
    let settings = SyncSettings {
        idle_unload: Duration::from_millis(200),
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let janitor = spawn_janitor(&server.state);
    let (ana, _) = technician(&pool, "ana@example.com").await;
    // Long enough that a busy machine still connects before the session ends.
    let token = atiende_core::auth::start_session(&pool, ana.id, Duration::from_secs(4))
        .await
        .expect("session")
        .token;
    let ticket = atiende_core::sync_tickets::issue(&pool, &token, Duration::from_secs(300))
        .await
        .expect("ticket");
    assert!(
        ticket.expires_at <= chrono::Utc::now() + chrono::Duration::seconds(4),
        "a ticket does not outlive its session"
    );
    let mut phone = Client::connect(&server.url(&ticket.ticket)).await;
    wait_for_session_close(&mut phone).await;
    janitor.stop().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------- access

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn missing_and_forbidden_documents_get_the_same_doc_unavailable(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (_, token) = technician(&pool, "ana@example.com").await;
    let (other, _) = technician(&pool, "beto@example.com").await;
    let forbidden = report(&server, &[(other.id, Mode::Write)]).await;
    let missing = DocumentId::generate().expect("id");

    let (mut socket, server_id) = joined(&server, &token, "phone-1").await;
    let mut phone = Peer::new("phone-1");
    phone.joined(server_id.clone());
    let hello = {
        let mut doc = automerge::AutoCommit::new();
        let mut state = automerge::sync::State::new();
        let message = doc.sync().generate_sync_message(&mut state);
        message.expect("message").encode()
    };
    for as_request in [true, false] {
        let mut frames = Vec::new();
        for id in [missing, forbidden] {
            let message = if as_request {
                phone.request_carrying(id, hello.clone())
            } else {
                phone.sync_carrying(id, hello.clone())
            };
            socket.send(&message).await.expect("send");
            frames.push((
                id,
                socket
                    .receive_frame(PATIENCE)
                    .await
                    .expect("a binary frame"),
            ));
        }
        // Each answer is exactly the canonical `doc-unavailable`: nothing tells them apart but
        // the id the peer asked about.
        for (id, frame) in frames {
            let expected = encode(&Message::DocUnavailable {
                sender_id: server_id.clone(),
                target_id: "phone-1".to_owned(),
                document_id: id.to_string(),
            });
            assert_eq!(frame, expected, "answer for {id}");
        }
    }
    // Neither was loaded into memory.
    assert_eq!(server.state.stats().loaded_documents, 0);
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn revoking_access_stops_the_document_live(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;

    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    for c in [&mut a, &mut b] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
        c.settle(QUIET).await;
    }

    assert!(server.state.revoke(id, beto.id).await.expect("revoke"));
    match b.next_other().await {
        Some(Message::DocUnavailable { document_id, .. }) => {
            assert_eq!(document_id, id.to_string());
        }
        other => panic!("expected doc-unavailable, got {other:?}"),
    }

    a.change(id, |d| put(d, "observations", "termites")).await;
    a.settle(QUIET).await;
    b.settle(QUIET).await;
    assert_eq!(get_str(b.doc(id), "observations"), None);

    // Asking again gets the same answer as any unknown document.
    b.request(id).await;
    match b.next_other().await {
        Some(Message::DocUnavailable { .. }) => {}
        other => panic!("expected doc-unavailable, got {other:?}"),
    }
    server.stop().await;
}

// ----------------------------------------------------------------------------------- syncing

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn two_technicians_converge_and_every_change_is_stored(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;

    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    a.request(id).await;
    a.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    b.request(id).await;
    b.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;

    a.change(id, |d| put(d, "observations", "termites in the kitchen"))
        .await;
    b.wait_until_with(&mut a, id, |d| {
        get_str(d, "observations").as_deref() == Some("termites in the kitchen")
    })
    .await;
    b.change(id, |d| put(d, "recommendations", "seal the cracks"))
        .await;
    a.wait_until_with(&mut b, id, |d| {
        get_str(d, "recommendations").as_deref() == Some("seal the cracks")
    })
    .await;

    // Concurrent edits of the same key: both sides end with the same document.
    a.change(id, |d| put(d, "status", "in_progress")).await;
    b.change(id, |d| put(d, "status", "completed")).await;
    for _ in 0..5 {
        a.settle(QUIET).await;
        b.settle(QUIET).await;
    }
    assert_eq!(a.doc(id).get_heads(), b.doc(id).get_heads());
    let status = get_str(a.doc(id), "status");
    assert_eq!(status, get_str(b.doc(id), "status"));

    assert_eq!(
        stored_once(&pool, id, "observations", "termites in the kitchen")
            .await
            .as_deref(),
        Some("termites in the kitchen")
    );
    assert_eq!(
        stored_once(&pool, id, "recommendations", "seal the cracks")
            .await
            .as_deref(),
        Some("seal the cracks")
    );
    assert_eq!(stored_str(&pool, id, "status").await, status);
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    let mut stored_doc = stored.doc;
    assert_eq!(stored_doc.get_heads(), a.doc(id).get_heads());
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn read_only_changes_are_neither_applied_nor_stored(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (cliente, tc) = customer(&pool, "cliente@example.com", "1234567").await;
    let id = report(&server, &[(ana.id, Mode::Write), (cliente.id, Mode::Read)]).await;

    let mut c = Client::connect(&server.url(&tc)).await;
    c.request(id).await;
    c.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    c.settle(QUIET).await;

    // Automerge 0.12 clients do not even send changes to a peer that says it is read-only for
    // them; older ones (and hostile ones) do.
    ignore_read_only_flag(&mut c, id);
    c.change(id, |d| put(d, "status", "hacked")).await;
    let message = c.next_error().await;
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(change_rows(&pool, id).await, 0);
    assert_eq!(
        stored_once(&pool, id, "status", "scheduled")
            .await
            .as_deref(),
        Some("scheduled")
    );
    assert_eq!(server.state.stats().read_only_rejections, 1);

    // The reader keeps receiving the document; writers never see its change.
    let mut a = Client::connect(&server.url(&ta)).await;
    a.request(id).await;
    a.wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
        .await;
    a.change(id, |d| put(d, "observations", "all clear")).await;
    c.wait_until_with(&mut a, id, |d| {
        get_str(d, "observations").as_deref() == Some("all clear")
    })
    .await;
    a.settle(QUIET).await;
    assert_eq!(get_str(a.doc(id), "status").as_deref(), Some("scheduled"));
    assert_eq!(rows_once_stored(&pool, id, 1).await, 1);

    // A writer demoted to reader is refused from then on.
    server
        .state
        .grant(id, ana.id, Mode::Read)
        .await
        .expect("grant");
    a.settle(QUIET).await;
    ignore_read_only_flag(&mut a, id);
    a.change(id, |d| put(d, "observations", "late edit")).await;
    let message = a.next_error().await;
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(
        stored_once(&pool, id, "observations", "all clear")
            .await
            .as_deref(),
        Some("all clear")
    );
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_change_that_cannot_be_stored_reaches_nobody(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;
    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    for c in [&mut a, &mut b] {
        c.request(id).await;
        c.wait_until(id, |d| get_str(d, "status").is_some()).await;
        c.settle(QUIET).await;
    }

    // The database refuses every new change row.
    sqlx::raw_sql(
        "create function refuse_changes() returns trigger language plpgsql as
           $$ begin raise exception 'disk full'; end $$;
         create trigger refuse_changes before insert on sync_changes
           for each row execute function refuse_changes();",
    )
    .execute(&pool)
    .await
    .expect("install trigger");
    a.change(id, |d| put(d, "lost", "yes")).await;
    let message = a.next_error().await;
    assert!(message.contains("store"), "{message}");
    a.settle(QUIET).await;
    assert!(a.closed.is_some(), "the writer's connection was not closed");
    // The other peer was disconnected before anything reflecting the change was sent to it.
    b.settle(QUIET).await;
    assert!(b.closed.is_some(), "the other peer was not disconnected");
    assert_eq!(get_str(b.doc(id), "lost"), None);
    assert_eq!(change_rows(&pool, id).await, 0);
    assert_eq!(server.state.stats().loaded_documents, 0);

    // Once the database accepts writes again, the document is what was stored.
    sqlx::raw_sql("drop trigger refuse_changes on sync_changes")
        .execute(&pool)
        .await
        .expect("drop trigger");
    let mut b = Client::connect(&server.url(&tb)).await;
    b.request(id).await;
    b.wait_until(id, |d| get_str(d, "status").is_some()).await;
    b.settle(QUIET).await;
    assert_eq!(get_str(b.doc(id), "lost"), None);
    b.change(id, |d| put(d, "kept", "yes")).await;
    b.settle(QUIET).await;
    assert_eq!(
        stored_once(&pool, id, "kept", "yes").await.as_deref(),
        Some("yes")
    );
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn changes_survive_a_restart(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;

    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    a.request(id).await;
    b.request(id).await;
    a.wait_until(id, |d| get_str(d, "status").is_some()).await;
    b.wait_until(id, |d| get_str(d, "status").is_some()).await;
    a.change(id, |d| put(d, "arrival", "08:10")).await;
    // Once another peer has it, it was committed first.
    b.wait_until_with(&mut a, id, |d| {
        get_str(d, "arrival").as_deref() == Some("08:10")
    })
    .await;
    server.stop().await;
    for c in [&mut a, &mut b] {
        c.settle(QUIET).await;
        assert!(c.closed.is_some(), "shutdown closes connections");
    }

    let server = Server::start(pool.clone()).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    b.request(id).await;
    b.wait_until(id, |d| get_str(d, "arrival").as_deref() == Some("08:10"))
        .await;
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn server_changes_reach_open_peers(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (cliente, tc) = customer(&pool, "cliente@example.com", "1234567").await;
    let inbox = server
        .state
        .create_document(
            DocumentKind::CustomerInbox,
            &[(cliente.id, Mode::Read)],
            |_| Ok(()),
        )
        .await
        .expect("create");
    let mut c = Client::connect(&server.url(&tc)).await;
    c.request(inbox).await;
    c.settle(QUIET).await;
    assert!(
        !c.doc(inbox).get_heads().is_empty(),
        "an empty document still has a head"
    );

    server
        .state
        .change_document(inbox, |doc| {
            doc.put(automerge::ROOT, "radicado", "PQRS-2026-000001")?;
            Ok(())
        })
        .await
        .expect("change");
    c.wait_until(inbox, |d| {
        get_str(d, "radicado").as_deref() == Some("PQRS-2026-000001")
    })
    .await;
    assert_eq!(
        stored_once(&pool, inbox, "radicado", "PQRS-2026-000001")
            .await
            .as_deref(),
        Some("PQRS-2026-000001")
    );
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn ephemeral_messages_reach_only_peers_on_the_document(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (beto, tb) = technician(&pool, "beto@example.com").await;
    let (carla, tc) = technician(&pool, "carla@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write), (beto.id, Mode::Write)]).await;
    let other = report(&server, &[(carla.id, Mode::Write)]).await;

    let mut a = Client::connect(&server.url(&ta)).await;
    let mut b = Client::connect(&server.url(&tb)).await;
    let mut c = Client::connect(&server.url(&tc)).await;
    a.request(id).await;
    b.request(id).await;
    c.request(other).await;
    for client in [&mut a, &mut b, &mut c] {
        client.settle(QUIET).await;
    }

    let ephemeral = |from: &Client, document: DocumentId| Message::Ephemeral {
        sender_id: from.peer_id().to_owned(),
        target_id: from.server_id().to_owned(),
        count: 1,
        session_id: "session-1".to_owned(),
        document_id: document.to_string(),
        data: vec![0xa1, 0x61, 0x78, 0x01],
    };
    let hello = ephemeral(&a, id);
    a.send(&hello).await;
    match b.next_other().await {
        Some(Message::Ephemeral {
            sender_id,
            target_id,
            document_id,
            data,
            ..
        }) => {
            assert_eq!(sender_id, a.peer_id());
            assert_eq!(target_id, b.peer_id());
            assert_eq!(document_id, id.to_string());
            assert_eq!(data, vec![0xa1, 0x61, 0x78, 0x01]);
        }
        other => panic!("expected the ephemeral message, got {other:?}"),
    }
    // Carla has no access to the report: her ephemeral message for it goes nowhere.
    let intrusion = ephemeral(&c, id);
    c.send(&intrusion).await;
    for client in [&mut a, &mut b, &mut c] {
        client.settle(QUIET).await;
        assert!(client.inbox.is_empty(), "unexpected {:?}", client.inbox);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------- connections

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn a_second_connection_with_the_same_peer_id_retires_the_first(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let (_, tb) = technician(&pool, "beto@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;

    let mut old = Client::connect_as(&server.url(&ta), "phone-1").await;
    let mut new = Client::connect_as(&server.url(&ta), "phone-1").await;
    old.settle(QUIET).await;
    match &old.closed {
        Some(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("the old socket was not closed: {other:?}"),
    }
    new.request(id).await;
    new.wait_until(id, |d| get_str(d, "status").is_some()).await;

    // Another user cannot take the peer id over.
    let mut socket = Connection::connect(server.url(&tb)).await.expect("connect");
    socket.send(&join("phone-1")).await.expect("send");
    expect_error_and_close(&mut socket).await;
    new.change(id, |d| put(d, "still", "here")).await;
    new.settle(QUIET).await;
    assert!(new.closed.is_none());
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn bad_frames_get_an_error_and_a_close_and_others_are_served(pool: PgPool) {
    let settings = SyncSettings {
        max_frame: 64 * 1024,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;
    let mut bystander = Client::connect(&server.url(&ta)).await;
    bystander.request(id).await;
    bystander.settle(QUIET).await;

    let join_frame = encode(&join("phone-x"));
    let unjoined: Vec<(&str, tungstenite::Message)> = vec![
        (
            "garbage",
            tungstenite::Message::binary(vec![0xff, 0x00, 0x13, 0x37]),
        ),
        (
            "truncated CBOR",
            tungstenite::Message::binary(join_frame[..join_frame.len() - 3].to_vec()),
        ),
        ("not a map", tungstenite::Message::binary(vec![0x01])),
        ("empty", tungstenite::Message::binary(Vec::new())),
        (
            "too large",
            tungstenite::Message::binary(vec![0xa0; 100 * 1024]),
        ),
        (
            "text frame",
            tungstenite::Message::text("{\"type\":\"join\"}"),
        ),
        (
            "deeply nested",
            tungstenite::Message::binary([vec![0x81; 1000], vec![0x00]].concat()),
        ),
    ];
    for (what, frame) in unjoined {
        let mut socket = Connection::connect(server.url(&ta)).await.expect("connect");
        socket.send_frame(frame).await.expect("send");
        let text = expect_error_and_close(&mut socket).await;
        assert!(!text.is_empty(), "{what}");
    }

    // After joining: a sync message that is not an Automerge sync message.
    let (mut socket, server_id) = joined(&server, &ta, "phone-y").await;
    socket
        .send(&Message::Sync {
            sender_id: "phone-y".to_owned(),
            target_id: server_id,
            document_id: id.to_string(),
            data: vec![1, 2, 3],
        })
        .await
        .expect("send");
    let text = expect_error_and_close(&mut socket).await;
    assert!(text.contains("sync message"), "{text}");

    // Far above the limit: refused before it is read; the socket is closed.
    let mut socket = Connection::connect(server.url(&ta)).await.expect("connect");
    let _ = socket
        .send_frame(tungstenite::Message::binary(vec![0xa0; 1024 * 1024]))
        .await;
    loop {
        match socket.receive(PATIENCE).await {
            Received::Message(Message::Error { .. }) => {}
            Received::Closed(_) | Received::Lost(_) => break,
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }

    // Unknown message types are ignored and counted.
    let (mut socket, server_id) = joined(&server, &ta, "phone-z").await;
    socket
        .send_frame(tungstenite::Message::binary(vec![
            0xa1, 0x64, b't', b'y', b'p', b'e', 0x63, b'f', b'o', b'o',
        ]))
        .await
        .expect("send");
    socket
        .send(&Message::Request {
            sender_id: "phone-z".to_owned(),
            target_id: server_id,
            document_id: DocumentId::generate().expect("id").to_string(),
            data: vec![0x42, 0, 0, 0, 0],
        })
        .await
        .expect("send");
    match socket.receive(PATIENCE).await {
        Received::Message(Message::DocUnavailable { .. }) => {}
        other => panic!("expected doc-unavailable after an unknown message, got {other:?}"),
    }
    assert_eq!(server.state.stats().unknown_messages, 1);

    // The bystander was never disturbed, and new peers are welcome.
    bystander.change(id, |d| put(d, "still", "fine")).await;
    bystander.settle(QUIET).await;
    assert!(bystander.closed.is_none());
    assert_eq!(
        stored_once(&pool, id, "still", "fine").await.as_deref(),
        Some("fine")
    );
    let mut fresh = Client::connect(&server.url(&ta)).await;
    fresh.request(id).await;
    fresh
        .wait_until(id, |d| get_str(d, "still").as_deref() == Some("fine"))
        .await;
    assert!(server.state.stats().refused_connections >= 9);
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn floods_are_cut_off(pool: PgPool) {
    let settings = SyncSettings {
        messages_per_second: 5,
        message_burst: 20,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (_, token) = technician(&pool, "ana@example.com").await;
    let (mut socket, _) = joined(&server, &token, "phone-1").await;
    let unknown = vec![0xa1, 0x64, b't', b'y', b'p', b'e', 0x63, b'f', b'o', b'o'];
    for _ in 0..100 {
        if socket
            .send_frame(tungstenite::Message::binary(unknown.clone()))
            .await
            .is_err()
        {
            break;
        }
    }
    let text = expect_error_and_close(&mut socket).await;
    assert!(text.contains("too many"), "{text}");
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn silent_peers_are_dropped_and_live_ones_kept(pool: PgPool) {
    let settings = SyncSettings {
        keepalive: Duration::from_millis(100),
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (_, token) = technician(&pool, "ana@example.com").await;
    let mut live = Client::connect(&server.url(&token)).await;
    // Never reads, so never answers a ping.
    let (mut silent, _) = joined(&server, &token, "phone-silent").await;
    live.settle(Duration::from_millis(800)).await;
    assert!(
        live.closed.is_none(),
        "a peer that answers pings was dropped"
    );
    assert_eq!(server.state.stats().connections, 1);
    loop {
        match silent.receive(PATIENCE).await {
            Received::Closed(_) | Received::Lost(_) => break,
            Received::Message(_) => {}
            Received::Nothing => panic!("the silent peer was never dropped"),
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}

// ------------------------------------------------------------------------------- lifecycle

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn idle_documents_are_unloaded_and_reload(pool: PgPool) {
    let settings = SyncSettings {
        idle_unload: Duration::from_millis(50),
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;

    let mut a = Client::connect(&server.url(&ta)).await;
    a.request(id).await;
    a.change(id, |d| put(d, "probe", "1")).await;
    a.settle(QUIET).await;
    assert_eq!(server.state.stats().loaded_documents, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.state.unload_idle(),
        0,
        "an open document is not idle"
    );

    a.connection.close().await.expect("close");
    a.settle(QUIET).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.state.stats().connections > 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state.unload_idle(), 1);
    assert_eq!(server.state.stats().loaded_documents, 0);

    let mut a = Client::connect(&server.url(&ta)).await;
    a.request(id).await;
    a.wait_until(id, |d| get_str(d, "probe").as_deref() == Some("1"))
        .await;

    // The janitor does the same on its own.
    a.connection.close().await.expect("close");
    a.settle(QUIET).await;
    let janitor_state = server.state.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let janitor = tokio::spawn(async move {
        janitor_state
            .run_janitor(async {
                let _ = stopped.await;
            })
            .await;
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.state.stats().loaded_documents > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "janitor never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    janitor.await.expect("janitor");
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn change_rows_are_compacted_into_a_snapshot(pool: PgPool) {
    let settings = SyncSettings {
        compact_after: 3,
        ..SyncSettings::default()
    };
    let server = Server::start_with(pool.clone(), settings).await;
    let (ana, ta) = technician(&pool, "ana@example.com").await;
    let id = report(&server, &[(ana.id, Mode::Write)]).await;
    let mut a = Client::connect(&server.url(&ta)).await;
    a.request(id).await;
    a.settle(QUIET).await;
    for i in 0..7 {
        a.change(id, |d| put(d, &format!("k{i}"), "v")).await;
        a.settle(Duration::from_millis(100)).await;
    }
    assert!(change_rows(&pool, id).await < 3, "rows were not compacted");
    let stored = storage::load(&pool, id)
        .await
        .expect("load")
        .expect("exists");
    for i in 0..7 {
        assert_eq!(get_str(&stored.doc, &format!("k{i}")).as_deref(), Some("v"));
    }
    let mut stored_doc = stored.doc;
    assert_eq!(stored_doc.get_heads(), a.doc(id).get_heads());
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn shutdown_closes_connections_and_refuses_new_ones(pool: PgPool) {
    let server = Server::start(pool.clone()).await;
    let (_, token) = staff(&pool, "admin@example.com", Role::Admin).await;
    let mut a = Client::connect(&server.url(&token)).await;
    server.state.shutdown(Duration::from_secs(5)).await;
    a.settle(QUIET).await;
    match &a.closed {
        Some(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert_eq!(server.state.stats().connections, 0);
    match tokio_tungstenite::connect_async(server.url(&token)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn many_peers_writing_at_once_through_a_held_connection_are_all_stored(pool: PgPool) {
    // A pool with room to spare, as in production: the change writer and the announcer keep a
    // connection of their own (test pools are too small for that).
    let roomy = sqlx::postgres::PgPoolOptions::new()
        .max_connections(12)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a larger pool");
    let server = Server::start_with(roomy, SyncSettings::default()).await;
    let mut peers = Vec::new();
    for i in 0..8 {
        let (user, ticket) = technician(&pool, &format!("tecnico{i}@example.com")).await;
        let id = report(&server, &[(user.id, Mode::Write)]).await;
        let mut client = Client::connect(&server.url(&ticket)).await;
        client.request(id).await;
        client
            .wait_until(id, |d| get_str(d, "status").as_deref() == Some("scheduled"))
            .await;
        peers.push((client, id));
    }
    // Every peer sends its changes without waiting, so appends of several documents meet in the
    // writer's queue.
    let sent = peers.iter_mut().map(|(client, id)| async move {
        for n in 0..10 {
            client
                .change(*id, |d| put(d, "observations", &format!("visita {n}")))
                .await;
        }
        client.wait_acknowledged(*id).await;
    });
    futures_util::future::join_all(sent).await;
    for (client, id) in &mut peers {
        assert_eq!(
            stored_str(&pool, *id, "observations").await.as_deref(),
            Some("visita 9")
        );
        // Every change is stored: the stored document has the client's heads. How many rows they
        // take depends on how the client's sync messages grouped them (a change made while the
        // previous message awaits its answer leaves with the next one), which is timing.
        let rows = change_rows(&pool, *id).await;
        assert!((1..=10).contains(&rows), "{rows} change rows");
        let mut stored = storage::load(&pool, *id)
            .await
            .expect("load")
            .expect("exists")
            .doc;
        assert_eq!(stored.get_heads(), client.doc(*id).get_heads());
    }
    server.stop().await;
}
