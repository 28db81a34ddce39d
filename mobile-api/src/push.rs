//! Web Push: the apps register the browser's PushSubscription here and get the server's VAPID key.

use atiende_core::notifications;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Authenticated, Json, Path};
use crate::views::trimmed;

#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    #[schema(schema_with = p256dh)]
    pub p256dh: String,
    #[schema(schema_with = auth_secret)]
    pub auth: String,
}

fn p256dh() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed("B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]=*")))
        .description(Some(
            "The browser's P-256 public key: an uncompressed point (65 bytes, the first 4), base64url.",
        ))
        .build()
}

fn auth_secret() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed("[A-Za-z0-9_-]{21}[AQgw]=*")))
        .description(Some("The 16-byte authentication secret, base64url."))
        .build()
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionRequest {
    /// The push service's URL: https, no user name or password, and a host on the public
    /// internet (else `endpoint_not_public`); at most 2048 bytes.
    #[schema(max_length = 2048, pattern = "^https://[^\\s]+$")]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub endpoint: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VapidKey {
    /// The application server key for `pushManager.subscribe`, base64url (uncompressed P-256 point).
    pub public_key: String,
}

/// Registers this device for push notifications, until this session logs out. The same endpoint
/// again is a 200 and updates it; one registered by another account is a 409.
#[utoipa::path(post, path = "/api/v1/push/subscriptions", tag = "push", security(("bearer" = [])), request_body = SubscriptionRequest,
    responses((status = 201, body = SubscriptionView),
        (status = 200, body = SubscriptionView, description = "this device was already registered; updated"),
        (status = 409, body = Problem, description = "`push_endpoint_taken`: another account registered this endpoint"),
        (status = 422, body = Problem, description = "`invalid_endpoint`, `endpoint_not_https`, `endpoint_not_public`, `endpoint_has_credentials`, `invalid_p256dh`, `invalid_auth`")))]
#[tracing::instrument(skip_all)]
pub async fn subscribe(
    State(state): State<ApiState>,
    who: Authenticated,
    Json(req): Json<SubscriptionRequest>,
) -> ApiResult<(StatusCode, axum::Json<SubscriptionView>)> {
    let mut conn = state
        .db
        .acquire()
        .await
        .map_err(atiende_core::Error::from)?;
    let (sub, created) = notifications::subscribe(
        &mut conn,
        who.user.id,
        &who.token,
        &req.endpoint,
        state.push_reach,
        &req.keys.p256dh,
        &req.keys.auth,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(SubscriptionView {
            id: sub.id,
            endpoint: sub.endpoint,
        }),
    ))
}

/// Stops push notifications to this device.
#[utoipa::path(delete, path = "/api/v1/push/subscriptions/{id}", tag = "push", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204, description = "Push to this device stopped"),
        (status = 404, body = Problem, description = "`subscription_not_found`: no such subscription of yours")))]
#[tracing::instrument(skip_all)]
pub async fn unsubscribe(
    State(state): State<ApiState>,
    who: Authenticated,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    notifications::unsubscribe(&state.db, who.user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/push/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidKey),
        (status = 503, body = Problem, description = "`push_not_configured`: this server sends no push notifications")))]
pub async fn vapid_public_key(State(state): State<ApiState>) -> ApiResult<axum::Json<VapidKey>> {
    match &state.vapid_public_key {
        Some(key) => Ok(axum::Json(VapidKey {
            public_key: key.clone(),
        })),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "push_not_configured",
            "this server has no VAPID key; push notifications are off",
        )),
    }
}
