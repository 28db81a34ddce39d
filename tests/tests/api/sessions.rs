//! Sync tickets and the end of a session over the whole server: a ticket from the REST API opens
//! the socket, and logging out closes it, on this server and on another one on the same database.

use std::time::Duration;

use atiende_sync::{Message, PROTOCOL_V1, decode, encode};
use atiende_tests::{TestApp, spawn_app};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PATIENCE: Duration = Duration::from_secs(10);

async fn ticket(app: &TestApp, token: &str) -> serde_json::Value {
    let r = app
        .post("/api/v1/sync/ticket", Some(token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Opens the socket at `url` and joins.
async fn joined(url: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the ticket opens the socket");
    let join = Message::Join {
        sender_id: format!("phone-{}", uuid::Uuid::new_v4()),
        supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
        peer_metadata: None,
    };
    socket
        .send(WsMessage::Binary(encode(&join).into()))
        .await
        .expect("send join");
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(WsMessage::Binary(bytes)))) => {
                assert!(matches!(decode(&bytes), Ok(Message::Peer { .. })));
                return socket;
            }
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
            other => panic!("no `peer` answer: {other:?}"),
        }
    }
}

/// The close code the server ends the socket with.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the socket was not closed"),
        }
    }
}

#[sqlx::test(migrator = "atiende_core::MIGRATOR")]
async fn logout_closes_sync_sockets_on_every_server(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let other = spawn_app(pool.clone()).await;
    let token = app.customer("ana@test.co", "52123456").await;

    let r = app.post("/api/v1/sync/ticket", None, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let issued = ticket(&app, &token).await;
    let url = issued["url"].as_str().expect("url").to_owned();
    let secret = issued["ticket"].as_str().expect("ticket");
    assert_eq!(
        url,
        format!("ws://{}/api/v1/sync?ticket={secret}", app.addr)
    );
    assert!(issued["expires_at"].is_string());
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from sync_tickets where ticket_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(secret)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(stored, 1, "tickets are stored only as their digest");

    let mut here = joined(&url).await;
    // The same ticket, reused, on the second server: as the stock client reconnects.
    let mut there = joined(&url.replace(&app.addr.to_string(), &other.addr.to_string())).await;

    let r = app
        .post("/api/v1/auth/logout", Some(&token), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut here).await, Some(4401));
    assert_eq!(close_code(&mut there).await, Some(4401));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!(
            "a ticket of an ended session opened a socket: {:?}",
            other.map(|_| ())
        ),
    }
    other.stop().await;
    app.stop().await;
}
