//! The REST API that Atiende's customer, technician and staff apps speak, under `/api/v1`.
//! Handlers are thin: they extract, call `atiende_core`, and shape the answer.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, on};
use sqlx::PgPool;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub mod account;
pub mod blobs;
pub mod calendar;
pub mod case_lists;
pub mod client;
pub mod customer;
pub mod error;
pub mod extract;
pub mod push;
pub mod staff;
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

/// Registers each route on the router and remembers it, so the OpenAPI test can compare what is
/// served with what is documented.
struct Routes {
    router: Router<ApiState>,
    served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        self.router = self.router.route(path, on(filter, handler));
        self.served.push((method, path));
        self
    }
}

fn routes() -> Routes {
    let r = Routes {
        router: Router::new(),
        served: Vec::new(),
    };
    r.add(Method::POST, "/api/v1/auth/register", account::register)
        .add(Method::POST, "/api/v1/auth/login", account::login)
        .add(Method::POST, "/api/v1/auth/logout", account::logout)
        .add(Method::GET, "/api/v1/me", account::me)
        .add(Method::POST, "/api/v1/sync/ticket", account::sync_ticket)
        .add(Method::POST, "/api/v1/cases", customer::file_case)
        .add(Method::GET, "/api/v1/cases", customer::list_cases)
        .add(Method::GET, "/api/v1/cases/{id}", customer::get_case)
        .add(
            Method::POST,
            "/api/v1/cases/{id}/messages",
            customer::post_message,
        )
        .add(
            Method::GET,
            "/api/v1/cases/{id}/messages",
            case_lists::customer_messages,
        )
        .add(
            Method::GET,
            "/api/v1/cases/{id}/events",
            case_lists::customer_events,
        )
        .add(Method::POST, "/api/v1/cases/{id}/rating", customer::rate)
        .add(Method::GET, "/api/v1/staff/cases", staff::queue)
        .add(Method::GET, "/api/v1/staff/cases/{id}", staff::get_case)
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/assign",
            staff::assign,
        )
        .add(Method::POST, "/api/v1/staff/cases/{id}/draft", staff::draft)
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/approve",
            staff::approve,
        )
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/return",
            staff::return_draft,
        )
        .add(Method::POST, "/api/v1/staff/cases/{id}/close", staff::close)
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/messages",
            staff::post_message,
        )
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/request-info",
            staff::request_info,
        )
        .add(
            Method::POST,
            "/api/v1/staff/cases/{id}/extend",
            staff::extend,
        )
        .add(
            Method::GET,
            "/api/v1/staff/cases/{id}/notifications",
            case_lists::case_notifications,
        )
        .add(
            Method::GET,
            "/api/v1/staff/cases/{id}/messages",
            case_lists::staff_messages,
        )
        .add(
            Method::GET,
            "/api/v1/staff/cases/{id}/events",
            case_lists::staff_events,
        )
        .add(Method::POST, "/api/v1/push/subscriptions", push::subscribe)
        .add(
            Method::DELETE,
            "/api/v1/push/subscriptions/{id}",
            push::unsubscribe,
        )
        .add(
            Method::GET,
            "/api/v1/push/vapid-public-key",
            push::vapid_public_key,
        )
        // The router-wide JSON limit is not a blob's: put_blob enforces ApiState::blob_limit (a
        // setting) as it reads.
        .add(
            Method::PUT,
            "/api/v1/blobs/{sha256}",
            blobs::put_blob.layer(DefaultBodyLimit::disable()),
        )
        .add(Method::GET, "/api/v1/blobs/{sha256}", blobs::get_blob)
        .add(Method::GET, "/api/v1/calendar/holidays", calendar::holidays)
        .add(
            Method::POST,
            "/api/v1/staff/work-orders",
            work_orders::create,
        )
        .add(
            Method::GET,
            "/api/v1/staff/work-orders/{id}",
            work_orders::get,
        )
        .add(
            Method::PUT,
            "/api/v1/staff/work-orders/{id}/technicians",
            work_orders::set_technicians,
        )
        .add(
            Method::GET,
            "/api/v1/technician/work-orders",
            work_orders::mine,
        )
        .add(Method::GET, "/api/v1/openapi.json", openapi_json)
}

/// Every (method, path) the router serves.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    routes().served
}

pub fn router(state: ApiState) -> Router {
    routes()
        .router
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
    info(title = "Atiende API", description = "PQRS filing, follow-up and handling for customers and staff (ISO 9001, Ley 1755 de 2015)."),
    paths(
        account::register, account::login, account::logout, account::me, account::sync_ticket,
        customer::file_case, customer::list_cases, customer::get_case, customer::post_message, customer::rate,
        staff::queue, staff::get_case, staff::assign, staff::draft, staff::approve, staff::return_draft, staff::close, staff::post_message, staff::request_info, staff::extend,
        case_lists::customer_messages, case_lists::customer_events, case_lists::staff_messages, case_lists::staff_events,
        case_lists::case_notifications, push::subscribe, push::unsubscribe, push::vapid_public_key,
        blobs::put_blob, blobs::get_blob,
        calendar::holidays, openapi_json,
        work_orders::create, work_orders::get, work_orders::set_technicians, work_orders::mine,
    ),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "sync"), (name = "customer"), (name = "staff"), (name = "calendar"), (name = "push"), (name = "work orders"), (name = "meta"))
)]
pub struct ApiDoc;

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
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
