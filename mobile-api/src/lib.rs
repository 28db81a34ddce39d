//! The REST API that Atiende's customer, technician and staff apps speak, under `/api/v1`.
//! Handlers are thin: they extract, call `atiende_core`, and shape the answer.

use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use sqlx::PgPool;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub mod account;
pub mod blobs;
pub mod calendar;
pub mod case_lists;
pub mod client;
pub mod commercial;
pub mod customer;
mod doc;
pub mod error;
pub mod extract;
pub mod indicators;
pub mod intake;
pub mod push;
pub mod staff;
pub mod survey_campaigns;
pub mod surveys;
pub mod views;
pub mod work_orders;

pub use error::{ApiError, ApiResult, Problem};

/// JSON bodies larger than this are refused with 413 before they are parsed.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub db: PgPool,
    pub session_ttl: Duration,
    /// The VAPID public key apps subscribe with; None when push is not configured.
    pub vapid_public_key: Option<String>,
    /// The largest blob `PUT /api/v1/blobs/{sha256}` accepts, in bytes.
    pub blob_limit: usize,
    /// Which hosts push endpoints may name (`ATIENDE_PUSH_ALLOW_LOOPBACK` opens this machine).
    pub push_reach: atiende_core::push_endpoint::Reach,
    /// Bounds the password hashes computed at once.
    pub hashing: atiende_core::auth::Hashing,
    pub login_limits: atiende_core::login_limits::LoginLimits,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<client::Cidr>,
    /// How long a sync ticket opens sockets.
    pub sync_ticket_ttl: Duration,
    /// How long the link to set a company-created app user's first password works.
    pub account_setup_ttl: Duration,
    /// The code of the commercial process, whose staff keep quotes and contracts.
    pub commercial_process: String,
    /// When a survey score opens a follow-up.
    pub survey_low_score: atiende_core::surveys::LowScore,
    /// Where the links of campaign invitations point, among what the scheduler does.
    pub survey_campaigns: atiende_core::surveys::campaigns::CampaignSchedule,
}

impl ApiState {
    pub fn new(db: PgPool) -> Self {
        ApiState {
            db,
            session_ttl: account::DEFAULT_SESSION_TTL,
            vapid_public_key: None,
            blob_limit: blobs::DEFAULT_BLOB_LIMIT,
            push_reach: atiende_core::push_endpoint::Reach::Public,
            hashing: atiende_core::auth::Hashing::default(),
            login_limits: atiende_core::login_limits::LoginLimits::default(),
            trusted_proxies: Vec::new(),
            sync_ticket_ttl: atiende_core::sync_tickets::DEFAULT_TTL,
            account_setup_ttl: atiende_core::account_setup::DEFAULT_TTL,
            commercial_process: "COMERCIAL".into(),
            survey_low_score: atiende_core::surveys::LowScore::default(),
            survey_campaigns: atiende_core::surveys::campaigns::CampaignSchedule::default(),
        }
    }
}

pub(crate) fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 100",
        )),
    }
}

/// Every route of the API with its document entry: `routes!` takes both from the handler's
/// `#[utoipa::path]`, so what is served and what is documented cannot drift apart.
fn api() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(account::register))
        .routes(routes!(account::login))
        .routes(routes!(account::logout))
        .routes(routes!(account::me))
        .routes(routes!(account::sync_ticket))
        .routes(routes!(account::password_setup))
        .routes(routes!(customer::file_case, customer::list_cases))
        .routes(routes!(customer::get_case))
        .routes(routes!(
            customer::post_message,
            case_lists::customer_messages
        ))
        .routes(routes!(case_lists::customer_events))
        .routes(routes!(customer::rate))
        .routes(routes!(staff::queue, intake::register_case))
        .routes(routes!(intake::reclassify))
        .routes(routes!(intake::create_customer, intake::search_customers))
        .routes(routes!(intake::merge_contact))
        .routes(routes!(intake::invite_app_user))
        .routes(routes!(staff::get_case))
        .routes(routes!(staff::assign))
        .routes(routes!(staff::draft))
        .routes(routes!(staff::approve))
        .routes(routes!(staff::return_draft))
        .routes(routes!(staff::close))
        .routes(routes!(staff::post_message, case_lists::staff_messages))
        .routes(routes!(staff::request_info))
        .routes(routes!(staff::extend))
        .routes(routes!(case_lists::case_notifications))
        .routes(routes!(case_lists::staff_events))
        .routes(routes!(push::subscribe))
        .routes(routes!(push::unsubscribe))
        .routes(routes!(push::vapid_public_key))
        // The router-wide JSON limit is not a blob's: put_blob enforces ApiState::blob_limit (a
        // setting) as it reads.
        .routes(routes!(blobs::put_blob).layer(DefaultBodyLimit::disable()))
        .routes(routes!(blobs::get_blob))
        .routes(routes!(calendar::holidays))
        .routes(routes!(work_orders::create))
        .routes(routes!(work_orders::get))
        .routes(routes!(work_orders::set_technicians))
        .routes(routes!(work_orders::mine))
        .routes(routes!(work_orders::set_case_work_order))
        .routes(routes!(commercial::create_quote, commercial::list_quotes))
        .routes(routes!(commercial::get_quote))
        .routes(routes!(commercial::decide_quote))
        .routes(routes!(commercial::contract_from_quote))
        .routes(routes!(
            commercial::create_contract,
            commercial::list_contracts
        ))
        .routes(routes!(commercial::get_contract))
        .routes(routes!(commercial::offer_renewal))
        .routes(routes!(commercial::decide_renewal))
        .routes(routes!(indicators::get))
        .routes(routes!(surveys::templates))
        .routes(routes!(surveys::invitations))
        .routes(routes!(surveys::invitation))
        .routes(routes!(surveys::respond))
        .routes(routes!(surveys::follow_ups))
        .routes(routes!(surveys::close_follow_up))
        .routes(routes!(survey_campaigns::list, survey_campaigns::create))
        .routes(routes!(survey_campaigns::get))
        .routes(routes!(survey_campaigns::close))
        .routes(routes!(
            survey_campaigns::versions,
            survey_campaigns::create_version
        ))
        .routes(routes!(survey_campaigns::edit_version))
        .routes(routes!(survey_campaigns::set_current))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of the routes, with what every route shares filled in (see [`doc`]).
pub fn openapi() -> &'static serde_json::Value {
    static DOCUMENT: LazyLock<serde_json::Value> =
        LazyLock::new(|| doc::finish(api().into_openapi()));
    &DOCUMENT
}

/// Every (method, path) the document describes, which is every route the router serves.
pub fn served_routes() -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    if let Some(paths) = openapi()["paths"].as_object() {
        for (path, item) in paths {
            for key in item.as_object().into_iter().flat_map(|m| m.keys()) {
                // A path item also has keys that are not methods (`parameters`, `summary`).
                const METHODS: &[&str] = &[
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ];
                if METHODS.contains(&key.as_str())
                    && let Ok(method) = key.to_uppercase().parse()
                {
                    routes.push((method, path.clone()));
                }
            }
        }
    }
    routes
}

pub fn router(state: ApiState) -> Router {
    let (router, _) = api().split_for_parts();
    router
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Atiende API", description = "PQRS filing, follow-up and handling for customers and staff (ISO 9001, Ley 1755 de 2015). \
Every error is `application/problem+json` with a stable `code`. The sync WebSocket (`GET /api/v1/sync?ticket=…`, see `POST /api/v1/sync/ticket`) speaks the automerge-repo protocol and is not described here."),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "sync"), (name = "customer"), (name = "staff"), (name = "calendar"), (name = "push"), (name = "blobs"), (name = "work orders"), (name = "commercial"), (name = "indicators"), (name = "surveys"), (name = "meta"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<&'static serde_json::Value> {
    axum::Json(openapi())
}
