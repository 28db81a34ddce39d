//! WhatsApp Cloud API: the webhook (Meta's verification handshake, and POSTs whose
//! `X-Hub-Signature-256` is checked before anything is read), what a message means to the
//! conversation, the two-step media download, delivery receipts, and the channel's sender in the
//! outbox, with the 24-hour customer-service window: outside it a notification goes as a
//! configured template and the message itself waits until the customer writes. Our own thin
//! client on `reqwest`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atiende_core::contacts::ChatChannel;
use atiende_core::outbox::{self, Channel, Claimed, Outcome, REPLY, Receipt, backoff};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::engine::{Choice, FileRef, Incoming, Input, Media, MediaError, Reply};
use crate::inbox::{Intake, NewUpdate, Platform};
use crate::render::{self, MESSAGE_LIMIT};
use crate::texts::bot;
use crate::{BotsError, problem};

/// The webhook's path in our router (GET for Meta's verification, POST for events).
pub const WEBHOOK_PATH: &str = "/api/v1/bots/whatsapp/webhook";
/// Meta batches events into one POST; a body larger than this is refused.
const WEBHOOK_MAX_BYTES: usize = 1024 * 1024;
/// How long after the customer's last message a business may write freely; a margin short of
/// Meta's 24 hours, since our clock starts when the message is handled, not when it was sent.
const WINDOW: TimeDelta = TimeDelta::minutes(24 * 60 - 15);
/// The longest body an interactive message (buttons, list) carries.
const INTERACTIVE_BODY_MAX: usize = 1024;
/// Reply buttons per message, and the longest button title.
const BUTTONS_MAX: usize = 3;
const BUTTON_TITLE_MAX: usize = 20;
/// Rows in a list message, and the longest row title and description.
const LIST_ROWS_MAX: usize = 10;
const ROW_TITLE_MAX: usize = 24;
const ROW_DESCRIPTION_MAX: usize = 72;

/// A message template approved in WhatsApp Manager, sent outside the 24-hour window. Its body
/// takes one parameter, `{{1}}`: the case's radicado.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    /// The template's language code as approved (`es`, `es_CO`, `en_US`...).
    pub language: String,
}

#[derive(Clone)]
pub struct WhatsappSettings {
    /// The Graph API's base URL (a mock in tests).
    pub api_url: String,
    /// The Graph API version, such as `v21.0`.
    pub api_version: String,
    /// The business phone number's id (not the number itself).
    pub phone_number_id: String,
    /// A system user's access token with `whatsapp_business_messaging`.
    pub access_token: String,
    /// The app secret that signs every webhook POST. Without it the webhook refuses them all.
    pub app_secret: Option<String>,
    /// The token Meta echoes when the webhook is registered. Without it registration fails.
    pub verify_token: Option<String>,
    /// The template per notification kind (`answer`, `information_request`...).
    pub templates: BTreeMap<String, Template>,
}

impl std::fmt::Debug for WhatsappSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("WhatsappSettings")
            .field("api_url", &self.api_url)
            .field("api_version", &self.api_version)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"<redacted>")
            .field("app_secret", &redacted(&self.app_secret))
            .field("verify_token", &redacted(&self.verify_token))
            .field("templates", &self.templates)
            .finish()
    }
}

pub struct Whatsapp {
    client: reqwest::Client,
    /// `{api_url}/{api_version}`, without a trailing slash.
    base: String,
    settings: WhatsappSettings,
}

/// An error the Graph API answered, or the reason it could not be reached.
#[derive(Debug)]
struct ApiError {
    status: Option<u16>,
    code: Option<i64>,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn network(e: reqwest::Error) -> ApiError {
        ApiError {
            status: None,
            code: None,
            // A media URL may carry a signature: left out.
            message: format!("WhatsApp could not be reached: {}", e.without_url()),
            retry_after: None,
        }
    }
}

impl Whatsapp {
    pub fn new(settings: WhatsappSettings) -> Result<Whatsapp, BotsError> {
        let url = reqwest::Url::parse(&settings.api_url)
            .map_err(|e| BotsError::WhatsappUrl(e.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| BotsError::WhatsappClient(e.to_string()))?;
        let base = format!(
            "{}/{}",
            url.as_str().trim_end_matches('/'),
            settings.api_version.trim_matches('/')
        );
        Ok(Whatsapp {
            client,
            base,
            settings,
        })
    }

    pub fn settings(&self) -> &WhatsappSettings {
        &self.settings
    }

    /// Reads a Graph API answer: its JSON on success, Meta's error otherwise.
    async fn answer(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Value, ApiError> {
        let response = sent.map_err(ApiError::network)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let error = body.get("error");
        let text = |k: &str| {
            error
                .and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let details = error
            .and_then(|e| e.pointer("/error_data/details"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut message = text("message").to_owned();
        if message.is_empty() {
            message = format!("HTTP {status}");
        }
        if !details.is_empty() && details != message {
            message = format!("{message} ({details})");
        }
        Err(ApiError {
            status: Some(status),
            code: error.and_then(|e| e.get("code")).and_then(Value::as_i64),
            message,
            retry_after,
        })
    }

    async fn post_message(&self, message: &Value) -> Result<Option<String>, ApiError> {
        let url = format!("{}/{}/messages", self.base, self.settings.phone_number_id);
        let sent = self
            .client
            .post(url)
            .bearer_auth(&self.settings.access_token)
            .json(message)
            .send()
            .await;
        let body = self.answer(sent).await?;
        Ok(body
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Outside the window: the kind's template, and the delivery waits for the customer.
    async fn outside_window(&self, d: &Claimed, to: &str) -> Outcome {
        let template = (d.kind != REPLY)
            .then(|| self.settings.templates.get(&d.kind))
            .flatten();
        let Some(template) = template else {
            return Outcome::Failed {
                status: None,
                error: format!(
                    "outside WhatsApp's 24-hour customer-service window, and no template is configured for {} messages",
                    d.kind
                ),
            };
        };
        let radicado = d.data.get("radicado").and_then(Value::as_str);
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {"name": template.name, "language": {"code": template.language}},
        });
        if let Some(radicado) = radicado {
            body["template"]["components"] =
                json!([{"type": "body", "parameters": [{"type": "text", "text": radicado}]}]);
        }
        match self.post_message(&body).await {
            Ok(id) => Outcome::Waiting {
                status: Some(200),
                note: format!(
                    "outside WhatsApp's 24-hour window: template {} sent; the message leaves when the customer writes",
                    template.name
                ),
                external_id: id,
            },
            Err(e) => failure(&e, d.attempts, None),
        }
    }
}

pub fn router(db: PgPool, intake: Intake, whatsapp: Arc<Whatsapp>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, get(verify).post(webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_MAX_BYTES))
        .with_state((db, intake, whatsapp))
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's verification handshake: the challenge echoed when the mode is `subscribe` and the
/// token is ours.
async fn verify(
    State((_, _, whatsapp)): State<(PgPool, Intake, Arc<Whatsapp>)>,
    query: Result<Query<Handshake>, QueryRejection>,
) -> Response {
    let Ok(Query(h)) = query else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_handshake",
            "expected hub.mode, hub.verify_token and hub.challenge",
        );
    };
    let expected = whatsapp
        .settings
        .verify_token
        .as_deref()
        .unwrap_or_default()
        .as_bytes();
    let given = h.verify_token.as_deref().unwrap_or_default().as_bytes();
    let token_ok = !expected.is_empty() && bool::from(given.ct_eq(expected));
    if h.mode.as_deref() != Some("subscribe") || !token_ok {
        return problem(
            StatusCode::FORBIDDEN,
            "verification_failed",
            "the verify token is not this webhook's",
        );
    }
    // Meta's challenge is a number; nothing else is echoed.
    match h.challenge {
        Some(c) if (1..=128).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            ([(header::CONTENT_TYPE, "text/plain")], c).into_response()
        }
        _ => problem(
            StatusCode::BAD_REQUEST,
            "malformed_handshake",
            "hub.challenge must be 1 to 128 letters or digits",
        ),
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared
/// in constant time.
fn signed(secret: &str, body: &[u8], signature: &[u8]) -> bool {
    let Some(hex_sig) = signature.strip_prefix(b"sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Stores the messages and receipts of a signed POST and answers 200; Meta retries anything
/// else. The signature is checked before the body is read.
async fn webhook(
    State((db, intake, whatsapp)): State<(PgPool, Intake, Arc<Whatsapp>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let ok = whatsapp
        .settings
        .app_secret
        .as_deref()
        .is_some_and(|secret| !secret.is_empty() && signed(secret, &body, signature));
    if !ok {
        return problem(
            StatusCode::UNAUTHORIZED,
            "webhook_unauthorized",
            "the request is not signed with this app's secret",
        );
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_update",
            "the body is not JSON",
        );
    };
    let Some((updates, receipts)) = read_event(&event, &whatsapp.settings.phone_number_id) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_update",
            "expected a WhatsApp Business Account event with entries",
        );
    };
    let stored = async {
        intake
            .store(ChatChannel::Whatsapp, updates)
            .await
            .map_err(|e| e.to_string())?;
        outbox::record_receipts(&db, Channel::Whatsapp, &receipts)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    match stored.await {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "storing a WhatsApp event");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the event could not be stored; WhatsApp will send it again",
            )
        }
    }
}

/// The messages (as inbox updates, keyed by their id, in the sender's number's chat) and the
/// receipts in an event. Events for another phone number of the same app, and changes other
/// than messages, are passed over. None when the body is not an event at all.
fn read_event(event: &Value, phone_number_id: &str) -> Option<(Vec<NewUpdate>, Vec<Receipt>)> {
    let entries = event.get("entry")?.as_array()?;
    let mut updates = Vec::new();
    let mut receipts = Vec::new();
    let changes = entries
        .iter()
        .filter_map(|e| e.get("changes").and_then(Value::as_array))
        .flatten()
        .filter(|c| c.get("field").and_then(Value::as_str) == Some("messages"))
        .filter_map(|c| c.get("value"));
    for value in changes {
        let ours = value
            .pointer("/metadata/phone_number_id")
            .and_then(Value::as_str)
            .is_none_or(|id| id == phone_number_id);
        if !ours {
            continue;
        }
        for m in value
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = m.get("id").and_then(Value::as_str).unwrap_or_default();
            let Some(chat) = m.get("from").and_then(Value::as_str).and_then(number) else {
                continue;
            };
            if !(1..=200).contains(&id.len()) {
                continue;
            }
            updates.push(NewUpdate {
                update_key: id.to_owned(),
                chat_key: chat,
                payload: m.clone(),
            });
        }
        for s in value
            .get("statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            let at = field("timestamp")
                .parse::<i64>()
                .ok()
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .unwrap_or_else(Utc::now);
            let error = s
                .pointer("/errors/0")
                .map(|e| {
                    let code = e.get("code").and_then(Value::as_i64).unwrap_or_default();
                    let title = e
                        .get("title")
                        .or_else(|| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error");
                    let details = e
                        .pointer("/error_data/details")
                        .and_then(Value::as_str)
                        .filter(|d| *d != title)
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default();
                    format!("WhatsApp error {code}: {title}{details}")
                })
                .or_else(|| {
                    (field("status") == "failed")
                        .then(|| "WhatsApp reported the message undelivered".to_owned())
                });
            receipts.push(Receipt {
                external_id: field("id").to_owned(),
                status: field("status").to_owned(),
                error,
                at,
            });
        }
    }
    Some((updates, receipts))
}

/// A WhatsApp id (digits, as Meta writes them) as the chat's key: E.164.
fn number(wa_id: &str) -> Option<String> {
    let ok = (6..=20).contains(&wa_id.len()) && wa_id.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("+{wa_id}"))
}

impl Platform for Whatsapp {
    type Media = Whatsapp;

    fn channel(&self) -> ChatChannel {
        ChatChannel::Whatsapp
    }

    fn parse(&self, update_key: &str, m: &Value) -> Option<Incoming> {
        let chat = m.get("from").and_then(Value::as_str).and_then(number)?;
        let str_at = |p: &str| m.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
        let file = |k: &str| {
            str_at(&format!("/{k}/id")).map(|id| {
                Input::File(FileRef {
                    id,
                    mime: str_at(&format!("/{k}/mime_type")),
                    size: None,
                })
            })
        };
        let input = match kind {
            "text" => str_at("/text/body").map(Input::Text),
            "interactive" => str_at("/interactive/button_reply/id")
                .or_else(|| str_at("/interactive/list_reply/id"))
                .map(Input::Choice),
            // A template's quick-reply button.
            "button" => str_at("/button/payload")
                .filter(|p| !p.is_empty())
                .map(Input::Choice)
                .or_else(|| str_at("/button/text").map(Input::Text)),
            "image" => file("image"),
            "document" => file("document"),
            // A change of number or similar: nothing the customer said.
            "system" => return None,
            "" => None,
            other => Some(Input::Unsupported(other.to_owned())),
        };
        Some(Incoming {
            channel: ChatChannel::Whatsapp,
            verified_phone: Some(chat.clone()),
            chat,
            update_key: update_key.to_owned(),
            // WhatsApp says nothing of the customer's language.
            language_hint: None,
            input: input.unwrap_or_else(|| Input::Unsupported(kind.to_owned())),
        })
    }

    fn media(&self) -> &Whatsapp {
        self
    }

    async fn seen(&self, _payload: &Value) {}
}

impl Media for Whatsapp {
    /// Two steps: the media's URL from its id, then its bytes, both with the access token.
    async fn fetch(
        &self,
        file: &FileRef,
        limit: usize,
    ) -> Result<(Vec<u8>, Option<String>), MediaError> {
        let failed = |e: ApiError| MediaError::Failed(e.message);
        if file.id.is_empty()
            || !file
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(MediaError::Failed(
                "the media id is not one WhatsApp gives".into(),
            ));
        }
        let sent = self
            .client
            .get(format!("{}/{}", self.base, file.id))
            .bearer_auth(&self.settings.access_token)
            .send()
            .await;
        let meta = self.answer(sent).await.map_err(failed)?;
        if meta
            .get("file_size")
            .and_then(Value::as_u64)
            .is_some_and(|s| s > limit as u64)
        {
            return Err(MediaError::TooLarge);
        }
        let url = meta
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| MediaError::Failed("WhatsApp gave no URL for the media".into()))?;
        let mime = meta
            .get("mime_type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.settings.access_token)
            .send()
            .await
            .map_err(|e| failed(ApiError::network(e)))?;
        if !response.status().is_success() {
            return Err(MediaError::Failed(format!(
                "the media download answered {}",
                response.status()
            )));
        }
        let mut stream = response.bytes_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(ApiError::network(e)))?;
            if bytes.len() + chunk.len() > limit {
                return Err(MediaError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, mime))
    }
}

/// The messages one reply makes, in order: its text in parts, the last carrying the choices as
/// reply buttons (up to three short ones) or a list (up to ten; more go in further lists).
fn messages(lang: &str, to: &str, reply: &Reply) -> Vec<Value> {
    let envelope = |body: Value| {
        let mut m =
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to});
        if let (Some(m), Some(b)) = (m.as_object_mut(), body.as_object()) {
            m.extend(b.clone());
        }
        m
    };
    let text =
        |t: &str| envelope(json!({"type": "text", "text": {"preview_url": false, "body": t}}));
    let mut parts = render::split(lang, &reply.text, MESSAGE_LIMIT);
    if reply.choices.is_empty() {
        return parts.iter().map(|p| text(p)).collect();
    }
    let body = match parts.last() {
        Some(last) if last.chars().count() <= INTERACTIVE_BODY_MAX => {
            parts.pop().unwrap_or_default()
        }
        _ => bot(lang, "choose"),
    };
    let mut out: Vec<Value> = parts.iter().map(|p| text(p)).collect();
    let buttons = reply.choices.len() <= BUTTONS_MAX
        && reply
            .choices
            .iter()
            .all(|c| c.label.chars().count() <= BUTTON_TITLE_MAX);
    if buttons {
        let buttons: Vec<Value> = reply
            .choices
            .iter()
            .map(|c| json!({"type": "reply", "reply": {"id": c.id, "title": c.label}}))
            .collect();
        out.push(envelope(json!({"type": "interactive", "interactive": {
            "type": "button", "body": {"text": body}, "action": {"buttons": buttons}}})));
        return out;
    }
    for (i, chunk) in reply.choices.chunks(LIST_ROWS_MAX).enumerate() {
        let body = if i == 0 {
            body.clone()
        } else {
            bot(lang, "choose")
        };
        let rows: Vec<Value> = chunk.iter().map(row).collect();
        out.push(envelope(json!({"type": "interactive", "interactive": {
            "type": "list", "body": {"text": body},
            "action": {"button": bot(lang, "list_button"), "sections": [{"rows": rows}]}}})));
    }
    out
}

/// A list row: the label as title, or cut short with the whole label as description.
fn row(c: &Choice) -> Value {
    if c.label.chars().count() <= ROW_TITLE_MAX {
        return json!({"id": c.id, "title": c.label});
    }
    let title: String = c.label.chars().take(ROW_TITLE_MAX - 1).collect();
    let description: String = c.label.chars().take(ROW_DESCRIPTION_MAX).collect();
    json!({"id": c.id, "title": format!("{}…", title.trim_end()), "description": description})
}

impl outbox::Sender for Whatsapp {
    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    async fn send(&self, d: &Claimed) -> Outcome {
        let Some(to) = d.target.strip_prefix('+').filter(|n| number(n).is_some()) else {
            return Outcome::Failed {
                status: None,
                error: format!("{:?} is not a WhatsApp number", d.target),
            };
        };
        let open = d
            .last_inbound_at
            .is_some_and(|t| Utc::now().signed_duration_since(t) < WINDOW);
        if !open {
            return self.outside_window(d, to).await;
        }
        let reply = render::delivery(d);
        let all = messages(&d.language, to, &reply);
        let from = usize::try_from(d.progress).unwrap_or(0);
        let mut message_id = None;
        for (i, message) in all.iter().enumerate().skip(from) {
            match self.post_message(message).await {
                Ok(id) => message_id = id,
                // Meta's clock says the window closed before ours did.
                Err(e) if e.code == Some(131_047) && i == 0 => {
                    return self.outside_window(d, to).await;
                }
                Err(e) => return failure(&e, d.attempts, Some(i)),
            }
        }
        Outcome::Sent {
            status: 200,
            external_id: message_id,
        }
    }
}

/// What a refused or failed send means for the delivery; `sent` messages went already.
fn failure(e: &ApiError, attempts: i32, sent: Option<usize>) -> Outcome {
    let progress = sent.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let error = match e.code {
        Some(code) => format!("WhatsApp error {code}: {}", e.message),
        None => e.message.clone(),
    };
    let retry = |after: Duration| Outcome::Retry {
        status: e.status,
        error: error.clone(),
        after,
        progress,
    };
    match (e.status, e.code) {
        // Not on WhatsApp (or an app too old to receive it).
        (_, Some(131_026)) => Outcome::Gone {
            status: e.status.unwrap_or(400),
            error,
        },
        // Throughput and per-user rate limits, spam limits, Meta's own trouble, an access
        // token an operator must renew: worth trying again later, nothing is lost meanwhile.
        (
            _,
            Some(
                1 | 2 | 4 | 190 | 80_007 | 130_429 | 131_000 | 131_016 | 131_048 | 131_056
                | 133_004,
            ),
        )
        | (None | Some(401 | 429 | 500..=599), _) => {
            retry(e.retry_after.unwrap_or(backoff(attempts)))
        }
        _ => Outcome::Failed {
            status: e.status,
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_against_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sign("app-secret", body);
        assert!(signed("app-secret", body, good.as_bytes()));
        assert!(!signed("other-secret", body, good.as_bytes()));
        assert!(!signed("app-secret", b"{}", good.as_bytes()));
        assert!(!signed(
            "app-secret",
            body,
            good.trim_start_matches("sha256=").as_bytes()
        ));
        assert!(!signed("app-secret", body, b"sha256=zz"));
    }

    #[test]
    fn events_give_messages_and_receipts_for_our_number_only() {
        let event = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "576015550000", "phone_number_id": "PN1"},
                "messages": [{"from": "573001234567", "id": "wamid.A", "timestamp": "1764680000", "type": "text", "text": {"body": "hola"}}],
                "statuses": [{"id": "wamid.B", "status": "failed", "timestamp": "1764680001", "recipient_id": "573001234567",
                              "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}},
            {"field": "messages", "value": {"metadata": {"phone_number_id": "OTHER"},
                "messages": [{"from": "573009999999", "id": "wamid.C", "type": "text", "text": {"body": "x"}}]}}
        ]}]});
        let (updates, receipts) = read_event(&event, "PN1").expect("an event");
        assert_eq!(updates.len(), 1);
        assert_eq!(
            (updates[0].update_key.as_str(), updates[0].chat_key.as_str()),
            ("wamid.A", "+573001234567")
        );
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].status, "failed");
        assert_eq!(
            receipts[0].error.as_deref(),
            Some("WhatsApp error 131047: Re-engagement message")
        );
        assert!(read_event(&json!({"hello": 1}), "PN1").is_none());
    }

    #[test]
    fn five_choices_make_a_list_and_three_short_ones_buttons() {
        let rating = Reply {
            text: "¿Qué tal?".into(),
            choices: crate::engine::rating_choices(uuid::Uuid::nil()),
            ask_contact: false,
        };
        let m = messages("es", "573001234567", &rating);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["interactive"]["type"], "list");
        assert_eq!(
            m[0]["interactive"]["action"]["sections"][0]["rows"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
        let yes_no = Reply {
            text: "¿Acepta?".into(),
            choices: vec![
                Choice {
                    id: "consent:yes".into(),
                    label: "Acepto".into(),
                },
                Choice {
                    id: "consent:no".into(),
                    label: "No acepto".into(),
                },
            ],
            ask_contact: false,
        };
        let m = messages("es", "573001234567", &yes_no);
        assert_eq!(m[0]["interactive"]["type"], "button");
        assert_eq!(
            m[0]["interactive"]["action"]["buttons"][1]["reply"]["id"],
            "consent:no"
        );
        let long = Reply {
            text: "x".repeat(2000),
            ..yes_no
        };
        let m = messages("en", "573001234567", &long);
        assert_eq!(
            m.len(),
            2,
            "the long text alone, then the buttons under a short prompt"
        );
        assert_eq!(m[0]["type"], "text");
        assert_eq!(m[1]["interactive"]["body"]["text"], "Choose an option:");
    }

    #[test]
    fn long_labels_are_cut_in_rows() {
        let c = Choice {
            id: "menu:file".into(),
            label: "Radicar una petición, queja o reclamo".into(),
        };
        let r = row(&c);
        assert!(
            r["title"]
                .as_str()
                .is_some_and(|t| t.chars().count() <= ROW_TITLE_MAX)
        );
        assert_eq!(r["description"], "Radicar una petición, queja o reclamo");
    }

    #[test]
    fn errors_map_to_outcomes() {
        let e = |status: u16, code: i64| ApiError {
            status: Some(status),
            code: Some(code),
            message: "m".into(),
            retry_after: None,
        };
        assert!(matches!(
            failure(&e(400, 131_026), 1, Some(0)),
            Outcome::Gone { .. }
        ));
        assert!(matches!(
            failure(&e(400, 130_429), 1, Some(1)),
            Outcome::Retry {
                progress: Some(1),
                ..
            }
        ));
        assert!(matches!(
            failure(&e(500, 131_000), 1, None),
            Outcome::Retry { .. }
        ));
        assert!(
            matches!(failure(&e(400, 131_030), 1, None), Outcome::Failed { ref error, .. } if error == "WhatsApp error 131030: m")
        );
        let down = ApiError {
            status: None,
            code: None,
            message: "down".into(),
            retry_after: None,
        };
        assert!(matches!(failure(&down, 1, None), Outcome::Retry { .. }));
    }
}
