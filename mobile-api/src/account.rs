//! Registration, login, logout and "who am I".

use std::time::Duration;

use atiende_core::auth::{self, Password, Registration, User};
use atiende_core::{account_setup, customer_documents, sync_tickets};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::ApiState;
use crate::client::{ClientAddr, host};
use crate::error::{ApiResult, Problem};
use crate::extract::{Authenticated, Json};
use crate::views::{
    LoginRequest, Me, PasswordSetupRequest, RegisterRequest, SyncTicket, TokenResponse,
};

async fn me_view(state: &ApiState, user: User) -> ApiResult<Me> {
    let processes = if user.role.is_staff() {
        atiende_core::processes::of_user(&state.db, user.id).await?
    } else {
        Vec::new()
    };
    // A customer's documents are made on first use, so customers from before sync have them too.
    let docs = match user.customer_id {
        Some(customer_id) => Some(customer_documents::ensure(&state.db, customer_id).await?),
        None => None,
    };
    Ok(Me {
        outbox_url: docs.map(|d| d.outbox.url()),
        inbox_url: docs.map(|d| d.inbox.url()),
        id: user.id,
        email: user.email,
        name: user.name,
        role: user.role,
        language: user.language,
        customer_id: user.customer_id,
        processes,
    })
}

async fn token_response(
    state: &ApiState,
    user: User,
    session: auth::Session,
) -> ApiResult<TokenResponse> {
    Ok(TokenResponse {
        token: session.token,
        expires_at: session.expires_at,
        user: me_view(state, user).await?,
    })
}

/// Customer self-registration with data-processing consent; returns a session like login.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = TokenResponse),
        (status = 409, body = Problem, description = "`email_taken`, `customer_already_registered`"),
        (status = 422, body = Problem, description = "`consent_required`, `invalid_email`, `invalid_name`, `invalid_phone`, `invalid_document_number`, `weak_password`, `invalid_password`, `invalid_language`"),
        (status = 503, body = Problem, description = "`server_busy`: too many passwords are being hashed; try again after `Retry-After`")))]
#[tracing::instrument(skip_all)]
pub async fn register(
    state: axum::extract::State<ApiState>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let language = req.language.unwrap_or_else(|| "es".into());
    if language != "es" && language != "en" {
        return Err(
            atiende_core::Error::invalid("invalid_language", "language must be es or en").into(),
        );
    }
    let reg = Registration {
        email: req.email,
        password: Password::parse(req.password)?,
        name: req.name,
        phone: req.phone,
        document_type: req.document_type,
        document_number: req.document_number,
        accept_data_policy: req.accept_data_policy,
        language,
    };
    let user = auth::register_customer(&state.db, &state.hashing, reg, "app").await?;
    let session = auth::start_session(&state.db, user.id, state.session_ttl).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(token_response(&state, user, session).await?),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "`invalid_credentials`"),
        (status = 403, body = Problem, description = "`password_not_set`: a user the company created who has not set a password with the link e-mailed to them"),
        (status = 429, body = Problem, description = "`too_many_attempts`: too many failed logins; try again after `Retry-After`"),
        (status = 503, body = Problem, description = "`server_busy`: too many passwords are being hashed; try again after `Retry-After`")))]
#[tracing::instrument(skip_all)]
pub async fn login(
    state: axum::extract::State<ApiState>,
    client: ClientAddr,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let (user, session) = auth::login(
        &state.db,
        &state.hashing,
        &state.login_limits,
        &req.email,
        &req.password,
        client.ip,
        state.session_ttl,
    )
    .await?;
    Ok(axum::Json(token_response(&state, user, session).await?))
}

/// A customer whose app user the company created sets the first password with the token of the
/// link e-mailed to them (the last part of its path); the link then stops working, and the
/// customer logs in with their e-mail and this password. The web page the link opens does the same.
#[utoipa::path(post, path = "/api/v1/account/password-setup", tag = "auth", request_body = PasswordSetupRequest,
    responses((status = 204, description = "The password is set"),
        (status = 404, body = Problem, description = "`setup_link_not_found`"),
        (status = 409, body = Problem, description = "`setup_link_used`, `setup_link_replaced` (a newer link was sent), `setup_link_expired`"),
        (status = 422, body = Problem, description = "`weak_password`, `invalid_password`"),
        (status = 503, body = Problem, description = "`server_busy`: too many passwords are being hashed; try again after `Retry-After`")))]
#[tracing::instrument(skip_all)]
pub async fn password_setup(
    state: axum::extract::State<ApiState>,
    Json(req): Json<PasswordSetupRequest>,
) -> ApiResult<StatusCode> {
    let password = Password::parse(req.password)?;
    account_setup::set_password(&state.db, &state.hashing, &req.token, &password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "The session is over")))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    state: axum::extract::State<ApiState>,
    who: Authenticated,
) -> ApiResult<StatusCode> {
    auth::logout(&state.db, &who.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
#[tracing::instrument(skip_all)]
pub async fn me(
    state: axum::extract::State<ApiState>,
    who: Authenticated,
) -> ApiResult<axum::Json<Me>> {
    Ok(axum::Json(me_view(&state, who.user).await?))
}

/// A short-lived ticket that opens the sync WebSocket (`GET /api/v1/sync?ticket=…`) for this
/// session: reusable until it expires, dead with the session.
#[utoipa::path(post, path = "/api/v1/sync/ticket", tag = "sync", security(("bearer" = [])),
    responses((status = 201, body = SyncTicket)))]
#[tracing::instrument(skip_all)]
pub async fn sync_ticket(
    state: axum::extract::State<ApiState>,
    who: Authenticated,
    client: ClientAddr,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, axum::Json<SyncTicket>)> {
    let ticket = sync_tickets::issue(&state.db, &who.token, state.sync_ticket_ttl).await?;
    let path = format!("/api/v1/sync?ticket={}", ticket.ticket);
    let url = match host(&headers) {
        Some(host) => {
            let scheme = if client.https { "wss" } else { "ws" };
            format!("{scheme}://{host}{path}")
        }
        None => path,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(SyncTicket {
            ticket: ticket.ticket,
            expires_at: ticket.expires_at,
            url,
        }),
    ))
}

pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
