//! Blobs over HTTP: upload raw bytes under their SHA-256, download them where the caller may.

use std::pin::Pin;

use atiende_core::blobs::{self, BlobId, BlobInfo, Rejected};
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, Path};

/// The default largest blob: a phone photo or a scanned PDF.
pub const DEFAULT_BLOB_LIMIT: usize = 10 * 1024 * 1024;

/// A blob's content never changes, so caches may keep it for good.
const CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

#[derive(Debug, Serialize, ToSchema)]
pub struct BlobView {
    pub sha256: String,
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

impl From<BlobInfo> for BlobView {
    fn from(b: BlobInfo) -> Self {
        BlobView {
            sha256: b.sha256,
            content_type: b.content_type,
            size: b.size,
            created_at: b.created_at,
        }
    }
}

fn parse_id(raw: &str) -> ApiResult<BlobId> {
    BlobId::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_blob_id",
            "a blob id is the SHA-256 of its bytes as 64 lower-case hex digits",
        )
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("a blob may have at most {limit} bytes"),
    )
}

/// Reads the body up to `limit` bytes, stopping at the first frame past it (a declared length
/// past it is refused before reading anything).
async fn read_limited(headers: &HeaderMap, mut body: Body, limit: usize) -> ApiResult<Vec<u8>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let mut bytes = Vec::with_capacity(capacity);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|_| ApiError::bad_request("unreadable_body", "the body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Uploads a blob: the body is the raw bytes, the Content-Type what they are (JPEG, PNG, WebP,
/// HEIC/HEIF or PDF, checked against the bytes), the path the SHA-256 of the bytes. Any
/// authenticated user; the same bytes again are stored once and answer 200.
#[utoipa::path(put, path = "/api/v1/blobs/{sha256}", tag = "blobs", security(("bearer" = [])),
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "SHA-256 of the body, 64 lower-case hex digits")),
    request_body(description = "the raw bytes", content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/heic"), ("image/heif"), ("application/pdf"))),
    responses((status = 201, body = BlobView), (status = 200, body = BlobView, description = "you had already uploaded these bytes"),
              (status = 400, body = crate::error::Problem, description = "`invalid_blob_id`"),
              (status = 413, body = crate::error::Problem, description = "`body_too_large`"),
              (status = 415, body = crate::error::Problem, description = "`unsupported_blob_type`"),
              (status = 422, body = crate::error::Problem, description = "`blob_hash_mismatch`")))]
#[tracing::instrument(skip_all)]
pub async fn put_blob(
    State(state): State<ApiState>,
    who: Authenticated,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<BlobView>)> {
    let id = parse_id(&raw)?;
    let bytes = read_limited(&headers, body, state.blob_limit).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let verified = blobs::verify(&id, declared, &bytes).map_err(|rejected| match rejected {
        Rejected::HashMismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "blob_hash_mismatch",
            "the SHA-256 of the body is not the id in the path",
        ),
        Rejected::UnsupportedType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_blob_type",
            "only JPEG, PNG, WebP, HEIC/HEIF images and PDF are accepted, with a Content-Type that says what the bytes are",
        ),
    })?;
    let (info, created) = blobs::store(&state.db, &who.user, verified).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(info.into())))
}

/// Downloads a blob: for whoever uploaded it, may see a case it is attached to, or may open a sync
/// document that refers to it. Anyone else gets the same 404 as for a blob that does not exist.
#[utoipa::path(get, path = "/api/v1/blobs/{sha256}", tag = "blobs", security(("bearer" = [])),
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "SHA-256 of the bytes, 64 lower-case hex digits")),
    responses((status = 200, description = "the bytes, with their Content-Type; ETag is the hash",
               content(("image/jpeg"), ("image/png"), ("image/webp"), ("image/heic"), ("image/heif"), ("application/pdf"))),
              (status = 304, description = "If-None-Match named this blob"),
              (status = 400, body = crate::error::Problem, description = "`invalid_blob_id`"),
              (status = 404, body = crate::error::Problem, description = "`blob_not_found`")))]
#[tracing::instrument(skip_all)]
pub async fn get_blob(
    State(state): State<ApiState>,
    who: Authenticated,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&raw)?;
    let blob = blobs::fetch(&state.db, &who.user, &id).await?;
    let etag = format!("\"{id}\"");
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    // The values are built from a canonical content type and hex digits, so they always parse.
    let content_type = HeaderValue::from_str(&blob.info.content_type)
        .map_err(|e| atiende_core::Error::Internal(e.to_string()))?;
    let etag =
        HeaderValue::from_str(&etag).map_err(|e| atiende_core::Error::Internal(e.to_string()))?;
    let common = [
        (header::ETAG, etag),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        StatusCode::OK,
        common,
        [(header::CONTENT_TYPE, content_type)],
        blob.data,
    )
        .into_response())
}
