//! What keeps the public forms from abuse without locking customers out: a CSRF token in a cookie
//! that every form repeats (double submit: another site can make the browser send the cookie, not
//! read it), and a limit on POSTs per client address counted in PostgreSQL, so every server
//! process shares it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::WebState;
use crate::lang::Lang;
use crate::pages;

const CSRF_COOKIE: &str = "atiende_csrf";

/// The CSRF token a page's forms carry: the browser's cookie when it holds a well-formed one, else
/// a new one that [`Csrf::set_cookie`] hands to the browser.
pub struct Csrf {
    pub token: String,
    fresh: bool,
}

fn well_formed(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(CSRF_COOKIE)?.strip_prefix('='))
        .find(|t| well_formed(t))
}

impl Csrf {
    pub fn from_headers(headers: &HeaderMap) -> Csrf {
        match cookie(headers) {
            Some(token) => Csrf {
                token: token.to_owned(),
                fresh: false,
            },
            None => Csrf {
                token: uuid::Uuid::new_v4().simple().to_string(),
                fresh: true,
            },
        }
    }

    /// Adds the cookie to `response` when the browser did not have it yet.
    pub fn set_cookie(&self, mut response: Response) -> Response {
        if self.fresh
            && let Ok(value) = HeaderValue::from_str(&format!(
                "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400",
                self.token
            ))
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

/// Whether a POST's form field repeats the browser's CSRF cookie.
pub fn csrf_ok(headers: &HeaderMap, field: Option<&str>) -> bool {
    match (cookie(headers), field) {
        (Some(cookie), Some(field)) => {
            // Compared in constant time: the token is the secret here.
            cookie.len() == field.len()
                && cookie
                    .bytes()
                    .zip(field.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        _ => false,
    }
}

/// Counts every POST by client address; over the limit the request is answered 429 with the
/// time to come back, and reaches no handler.
pub async fn limit_posts(
    State(state): State<WebState>,
    lang: Lang,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(request).await;
    };
    let client = (state.client_ip)(peer, request.headers());
    match count_post(&state.db, &client.to_string(), state.window_secs).await {
        Ok((posts, window_end)) if posts > i64::from(state.posts_per_window) => {
            let wait = (window_end - Utc::now()).num_seconds().max(1);
            let mut response = pages::rate_limited(&state, lang, wait, window_end);
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        Ok(_) => next.run(request).await,
        Err(e) => {
            tracing::error!(error = %e, "counting a web POST");
            pages::internal_error(&state, lang)
        }
    }
}

/// One more POST from `address` in the current window: the window's count and when it ends.
async fn count_post(
    db: &PgPool,
    address: &str,
    window_secs: u32,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let window = i32::try_from(window_secs.max(1)).unwrap_or(i32::MAX);
    let row = sqlx::query!(
        r#"insert into web_post_counts as p (address, window_start, posts)
           values ($1, to_timestamp(floor(extract(epoch from now()) / $2::int4) * $2::int4), 1)
           on conflict (address, window_start) do update set posts = p.posts + 1
           returning p.posts as "posts!", p.window_start + make_interval(secs => $2::int4) as "window_end!""#,
        address,
        window,
    )
    .fetch_one(db)
    .await?;
    Ok((i64::from(row.posts), row.window_end))
}

pub(crate) async fn purge(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("delete from web_post_counts where window_start < now() - interval '1 day'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// The response for a POST whose CSRF token does not match: nothing was done.
pub fn refused(state: &WebState, lang: Lang) -> Response {
    pages::message(
        state,
        lang,
        axum::http::StatusCode::FORBIDDEN,
        "csrf",
        "page.csrf_title",
        lang.t("page.csrf_text"),
    )
    .into_response()
}
