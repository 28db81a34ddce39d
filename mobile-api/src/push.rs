//! Web Push: the apps register the browser's PushSubscription here and get the server's VAPID key.

use atiende_core::notifications;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, Json, Path};

#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    pub auth: String,
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionRequest {
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
    responses((status = 201, body = SubscriptionView), (status = 200, body = SubscriptionView), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
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
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
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
    responses((status = 200, body = VapidKey), (status = 503, body = crate::error::Problem)))]
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
