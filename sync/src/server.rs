//! The sync endpoint: `GET /api/v1/sync?ticket=…` upgrades to a WebSocket that speaks the
//! automerge-repo network protocol, version "1", served by `connection.rs` on the shared state.

use atiende_core::{auth, sync_tickets};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::state::SyncState;

/// The sync endpoint, to be merged into the application router.
pub fn router(state: SyncState) -> Router {
    Router::new()
        .route("/api/v1/sync", get(upgrade))
        .with_state(state)
}

#[derive(Deserialize)]
struct SyncQuery {
    ticket: Option<String>,
}

/// Browsers' WebSocket API cannot send headers, so a short-lived ticket (`POST
/// /api/v1/sync/ticket`) comes in the query; the session's bearer token is never accepted there,
/// as URLs end up in logs. Other clients may send `Authorization: Bearer` instead. The credential
/// is checked before upgrading, and the connection belongs to its user and session until it
/// closes or the session ends.
#[tracing::instrument(skip_all)]
async fn upgrade(
    State(state): State<SyncState>,
    headers: HeaderMap,
    query: Result<Query<SyncQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer_token);
    let ticket = query
        .ok()
        .and_then(|Query(q)| q.ticket)
        .filter(|t| !t.is_empty());
    let authenticated = match (bearer, ticket) {
        (Some(token), _) => auth::authenticate_session(&state.inner.db, token).await,
        (None, Some(ticket)) => sync_tickets::redeem(&state.inner.db, &ticket).await,
        (None, None) => Err(atiende_core::Error::Unauthenticated),
    };
    let (user, session) = match authenticated {
        Ok(found) => found,
        Err(atiende_core::Error::Unauthenticated) => return unauthenticated(),
        Err(e) => {
            tracing::error!(error = %e, "authenticating a sync connection");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the server could not complete the request",
            );
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if state.is_shutting_down() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; connect again",
        );
    }
    // Above our own limit, so that a frame a little too big is read whole and answered with an
    // `error`; tungstenite refuses anything bigger before reading it.
    let ws_limit = state.inner.settings.max_frame.saturating_mul(2);
    // tungstenite allocates and zeroes its whole read buffer for every connection (128 KiB by
    // default), which is most of a connection's memory with thousands of idle devices. Sync
    // messages are small; a bigger frame grows the buffer while it is read.
    ws.max_message_size(ws_limit)
        .max_frame_size(ws_limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| crate::connection::serve(state, user, session, socket))
}

/// Initial read buffer per connection; see `upgrade`.
const READ_BUFFER: usize = 4 * 1024;

fn unauthenticated() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "a valid sync ticket (POST /api/v1/sync/ticket) is required in the `ticket` query parameter",
    )
}

/// The same RFC 9457 shape as the rest of the API.
fn problem(status: StatusCode, code: &'static str, detail: &'static str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:atiende:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
