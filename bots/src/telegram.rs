//! Telegram: the webhook that stores updates (its secret checked in constant time first), the
//! long-polling alternative for running without a public URL, what an update means to the
//! conversation, file downloads, and the channel's sender in the outbox. The Bot API client and
//! its types are teloxide's.

use std::sync::Arc;
use std::time::Duration;

use atiende_core::contacts::ChatChannel;
use atiende_core::outbox::{self, Channel, Claimed, Outcome, backoff};
use atiende_core::worker::Ended;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use teloxide_core::net::Download;
use teloxide_core::payloads::{GetUpdatesSetters, SendMessageSetters, SetWebhookSetters};
use teloxide_core::prelude::Requester;
use teloxide_core::types::{
    AllowedUpdate, ButtonRequest, ChatId, InlineKeyboardButton, InlineKeyboardMarkup,
    KeyboardButton, KeyboardMarkup, MediaKind, MessageKind, ReplyMarkup, Update, UpdateKind,
};
use teloxide_core::{ApiError, Bot, RequestError};

use crate::engine::{FileRef, Incoming, Input, Media, MediaError, Reply};
use crate::inbox::{self, Intake, NewUpdate, Platform};
use crate::render::{self, MESSAGE_LIMIT};
use crate::{BotsError, problem};

/// The webhook's path in our router.
pub const WEBHOOK_PATH: &str = "/api/v1/bots/telegram/webhook";
/// A Telegram update is a few KB; a webhook body larger than this is refused.
const WEBHOOK_MAX_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct TelegramSettings {
    /// The bot's token from @BotFather.
    pub token: String,
    /// The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (set with `atiende
    /// telegram set-webhook`). Without it the webhook refuses every request.
    pub webhook_secret: Option<String>,
    /// The Bot API's base URL (a local Bot API server, or a mock in tests).
    pub api_url: String,
    /// Fetch updates with `getUpdates` instead of the webhook.
    pub polling: bool,
}

impl std::fmt::Debug for TelegramSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramSettings")
            .field("token", &"<redacted>")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("api_url", &self.api_url)
            .field("polling", &self.polling)
            .finish()
    }
}

pub struct Telegram {
    bot: Bot,
    settings: TelegramSettings,
}

impl Telegram {
    pub fn new(settings: TelegramSettings) -> Result<Telegram, BotsError> {
        let url = reqwest::Url::parse(&settings.api_url)
            .map_err(|e| BotsError::TelegramUrl(e.to_string()))?;
        // Long polls hold a request open for 25 s; sends should not wait that long.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(40))
            .build()
            .map_err(|e| BotsError::TelegramClient(e.to_string()))?;
        let bot = Bot::with_client(settings.token.clone(), client).set_api_url(url);
        Ok(Telegram { bot, settings })
    }

    pub fn settings(&self) -> &TelegramSettings {
        &self.settings
    }

    /// Registers the webhook at `url` with the secret: `atiende telegram set-webhook URL`.
    pub async fn set_webhook(&self, url: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
        let Some(secret) = &self.settings.webhook_secret else {
            return Err(
                "set the webhook secret (ATIENDE_TELEGRAM_WEBHOOK_SECRET) before registering the webhook"
                    .into(),
            );
        };
        self.bot
            .set_webhook(url)
            .secret_token(secret.clone())
            .allowed_updates(vec![
                AllowedUpdate::Message,
                AllowedUpdate::EditedMessage,
                AllowedUpdate::CallbackQuery,
            ])
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

/// What a failed request says, without the token (which is in every request URL).
fn describe(e: &RequestError) -> String {
    match e {
        RequestError::Network(_) => "the Telegram API could not be reached".into(),
        other => other.to_string(),
    }
}

pub fn router(intake: Intake, telegram: Arc<Telegram>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_MAX_BYTES))
        .with_state((intake, telegram))
}

/// Stores the update and answers 200; Telegram retries anything else. The secret is checked
/// before the body is parsed or anything is stored (the body itself is bounded by
/// [`WEBHOOK_MAX_BYTES`]).
async fn webhook(
    State((intake, telegram)): State<(Intake, Arc<Telegram>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = telegram
        .settings
        .webhook_secret
        .as_deref()
        .unwrap_or_default()
        .as_bytes();
    let ok = !expected.is_empty() && bool::from(given.ct_eq(expected));
    if !ok {
        return problem(
            StatusCode::UNAUTHORIZED,
            "webhook_unauthorized",
            "the request does not carry this bot's webhook secret",
        );
    }
    let Ok(update) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_update",
            "the body is not a JSON object",
        );
    };
    let Some(new) = new_update(update) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_update",
            "the update has no update_id",
        );
    };
    match intake.store(ChatChannel::Telegram, vec![new]).await {
        Ok(_) => Json(json!({"ok": true})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "storing a Telegram update");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the update could not be stored; Telegram will send it again",
            )
        }
    }
}

/// The update's key and chat, as stored. Updates without a chat (kinds the bot does not
/// handle) share one bucket and are passed over.
fn new_update(update: Value) -> Option<NewUpdate> {
    let id = update.get("update_id")?.as_u64()?;
    let chat_key = update
        .as_object()?
        .iter()
        .filter(|(k, _)| *k != "update_id")
        .find_map(|(_, v)| {
            v.pointer("/chat/id")
                .or_else(|| v.pointer("/message/chat/id"))
                .or_else(|| v.pointer("/from/id"))
                .and_then(Value::as_i64)
        })
        .map_or_else(|| "-".to_owned(), |id| id.to_string());
    Some(NewUpdate {
        update_key: id.to_string(),
        chat_key,
        payload: update,
    })
}

impl Platform for Telegram {
    type Media = Telegram;

    fn channel(&self) -> ChatChannel {
        ChatChannel::Telegram
    }

    fn parse(&self, update_key: &str, payload: &Value) -> Option<Incoming> {
        // teloxide reads an update's kind from a JSON text (from a `Value` every kind reads as
        // unknown).
        let update: Update = match serde_json::from_str(&payload.to_string()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, update = update_key, "a Telegram update that does not read");
                return None;
            }
        };
        let sender = update.from();
        let language_hint = sender.and_then(|u| u.language_code.clone());
        let sender_id = sender.map(|u| u.id);
        let chat = update.chat()?.id.0.to_string();
        let input = match &update.kind {
            UpdateKind::Message(m) => match &m.kind {
                MessageKind::Common(common) => match &common.media_kind {
                    MediaKind::Text(t) => Input::Text(t.text.clone()),
                    MediaKind::Contact(c) => Input::Contact {
                        phone: international(&c.contact.phone_number),
                        // A forwarded card is someone else's number, whatever it says.
                        own: c.contact.user_id.is_some() && c.contact.user_id == sender_id,
                    },
                    MediaKind::Photo(p) => match p.photo.iter().max_by_key(|s| s.file.size) {
                        Some(largest) => Input::File(FileRef {
                            id: largest.file.id.0.clone(),
                            mime: Some("image/jpeg".into()),
                            size: Some(u64::from(largest.file.size)),
                        }),
                        None => Input::Unsupported("photo".into()),
                    },
                    MediaKind::Document(d) => Input::File(FileRef {
                        id: d.document.file.id.0.clone(),
                        mime: d.document.mime_type.as_ref().map(|m| m.to_string()),
                        size: Some(u64::from(d.document.file.size)),
                    }),
                    other => Input::Unsupported(media_name(other).into()),
                },
                _ => Input::Unsupported("service message".into()),
            },
            UpdateKind::CallbackQuery(q) => Input::Choice(q.data.clone().unwrap_or_default()),
            UpdateKind::EditedMessage(_) => Input::Unsupported("edit".into()),
            _ => return None,
        };
        Some(Incoming {
            channel: ChatChannel::Telegram,
            chat,
            update_key: update_key.to_owned(),
            language_hint,
            verified_phone: None,
            input,
        })
    }

    fn media(&self) -> &Telegram {
        self
    }

    async fn seen(&self, payload: &Value) {
        if let Some(id) = payload
            .pointer("/callback_query/id")
            .and_then(Value::as_str)
            && let Err(e) = self
                .bot
                .answer_callback_query(teloxide_core::types::CallbackQueryId(id.to_owned()))
                .await
        {
            tracing::debug!(error = describe(&e), "answering a callback query");
        }
    }
}

fn media_name(kind: &MediaKind) -> &'static str {
    match kind {
        MediaKind::Sticker(_) => "sticker",
        MediaKind::Voice(_) => "voice",
        MediaKind::Audio(_) => "audio",
        MediaKind::Video(_) | MediaKind::VideoNote(_) => "video",
        MediaKind::Location(_) | MediaKind::Venue(_) => "location",
        _ => "other",
    }
}

/// Telegram writes contact numbers in international form, with or without the +.
fn international(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    format!("+{digits}")
}

impl Media for Telegram {
    async fn fetch(
        &self,
        file: &FileRef,
        limit: usize,
    ) -> Result<(Vec<u8>, Option<String>), MediaError> {
        let meta = self
            .bot
            .get_file(teloxide_core::types::FileId(file.id.clone()))
            .await
            .map_err(|e| MediaError::Failed(describe(&e)))?;
        if meta.size as usize > limit {
            return Err(MediaError::TooLarge);
        }
        let mut stream = self.bot.download_file_stream(&meta.path);
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            // reqwest's error names the URL, which holds the token.
            let chunk = chunk.map_err(|e| MediaError::Failed(e.without_url().to_string()))?;
            if bytes.len() + chunk.len() > limit {
                return Err(MediaError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, None))
    }
}

fn markup(lang: &str, reply: &Reply) -> Option<ReplyMarkup> {
    if reply.ask_contact {
        // A keyboard with the contact button; the other choices as plain buttons, whose label
        // comes back as text.
        let mut rows = vec![vec![
            KeyboardButton::new(crate::texts::bot(lang, "share_contact_button"))
                .request(ButtonRequest::Contact),
        ]];
        rows.extend(
            reply
                .choices
                .iter()
                .map(|c| vec![KeyboardButton::new(c.label.clone())]),
        );
        return Some(ReplyMarkup::Keyboard(
            KeyboardMarkup::new(rows)
                .one_time_keyboard()
                .resize_keyboard(),
        ));
    }
    if reply.choices.is_empty() {
        return None;
    }
    // Short labels (the stars) share a row; others get one each.
    let short = reply.choices.iter().all(|c| c.label.chars().count() <= 6);
    let buttons = reply
        .choices
        .iter()
        .map(|c| InlineKeyboardButton::callback(c.label.clone(), c.id.clone()));
    let rows: Vec<Vec<InlineKeyboardButton>> = if short {
        vec![buttons.collect()]
    } else {
        buttons.map(|b| vec![b]).collect()
    };
    Some(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows)))
}

impl outbox::Sender for Telegram {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    async fn send(&self, d: &Claimed) -> Outcome {
        let Ok(chat) = d.target.parse::<i64>() else {
            return Outcome::Failed {
                status: None,
                error: format!("{:?} is not a Telegram chat id", d.target),
            };
        };
        let reply = render::delivery(d);
        let parts = render::split(&d.language, &reply.text, MESSAGE_LIMIT);
        let from = usize::try_from(d.progress).unwrap_or(0);
        let last = parts.len().saturating_sub(1);
        let mut message_id = None;
        for (i, part) in parts.iter().enumerate().skip(from) {
            let mut request = self.bot.send_message(ChatId(chat), part.clone());
            if i == last
                && let Some(m) = markup(&d.language, &reply)
            {
                request = request.reply_markup(m);
            }
            match request.await {
                Ok(sent) => message_id = Some(sent.id.0.to_string()),
                Err(e) => return failure(&e, d.attempts, i),
            }
        }
        Outcome::Sent {
            status: 200,
            external_id: message_id,
        }
    }
}

/// What a failed send means for the delivery; `sent` parts went already.
fn failure(e: &RequestError, attempts: i32, sent: usize) -> Outcome {
    let progress = Some(i32::try_from(sent).unwrap_or(i32::MAX));
    match e {
        RequestError::RetryAfter(wait) => Outcome::Retry {
            status: Some(429),
            error: format!("Telegram asked to wait {} s", wait.seconds()),
            after: wait.duration(),
            progress,
        },
        RequestError::Api(
            api @ (ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::ChatNotFound
            | ApiError::CantInitiateConversation),
        ) => Outcome::Gone {
            status: 403,
            error: api.to_string(),
        },
        RequestError::Api(api) => Outcome::Failed {
            status: Some(400),
            error: api.to_string(),
        },
        RequestError::MigrateToChatId(_) => Outcome::Failed {
            status: Some(400),
            error: "the group became a supergroup".into(),
        },
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            Outcome::Retry {
                status: None,
                error: describe(e),
                after: backoff(attempts),
                progress,
            }
        }
    }
}

/// Long polling: fetches updates with `getUpdates` and stores them like the webhook does, until
/// `stop` completes. Only one process polls (Telegram allows one poller per bot): the others
/// wait for the lock the poller holds, trying again every few seconds.
pub async fn poll(db: PgPool, telegram: &Telegram, stop: impl std::future::Future<Output = ()>) {
    atiende_core::worker::session(
        "telegram polling",
        (Duration::from_secs(5), Duration::from_secs(30)),
        stop,
        || poll_session(&db, telegram),
    )
    .await;
}

/// One polling session: takes the poller's lock and polls while it holds it. Ends at once when
/// another process holds the lock; fails when the database does.
async fn poll_session(db: &PgPool, telegram: &Telegram) -> Result<Ended, sqlx::Error> {
    // The poller's lock lives on its own connection, released when it ends.
    let mut conn = match db.acquire().await {
        Err(sqlx::Error::PoolClosed) => {
            return Ok(Ended::Finished("the database pool was closed"));
        }
        acquired => acquired?,
    };
    let locked: bool = sqlx::query_scalar(
        "select pg_try_advisory_lock(hashtextextended('atiende:telegram-poller', 0))",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(Ended::Again);
    }
    tracing::info!("polling Telegram for updates");
    let mut offset: i32 = 0;
    loop {
        let got = telegram
            .bot
            .get_updates()
            .offset(offset)
            .timeout(25)
            .allowed_updates(vec![
                AllowedUpdate::Message,
                AllowedUpdate::EditedMessage,
                AllowedUpdate::CallbackQuery,
            ])
            .await;
        // getUpdates gives typed updates; the inbox keeps the platform's own JSON.
        let updates = match got {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = describe(&e), "telegram getUpdates");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let new: Vec<NewUpdate> = updates
            .iter()
            .filter_map(|u| serde_json::to_value(u).ok().and_then(new_update))
            .collect();
        if let Some(max) = updates.iter().map(|u| u.id.0).max() {
            match inbox::store(db, ChatChannel::Telegram, &new).await {
                Ok(_) => offset = i32::try_from(max).unwrap_or(i32::MAX).saturating_add(1),
                Err(e) => {
                    // Not confirmed to Telegram: fetched again next time.
                    tracing::warn!(error = %e, "storing polled Telegram updates");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_keyed_by_id_and_chat() {
        let u = new_update(
            json!({"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": {"id": -42, "type": "private"}, "text": "hola"}}),
        );
        let u = u.map(|u| (u.update_key, u.chat_key));
        assert_eq!(u, Some(("7".to_owned(), "-42".to_owned())));
        let cb = new_update(
            json!({"update_id": 8, "callback_query": {"id": "c", "from": {"id": 99, "is_bot": false, "first_name": "A"}, "message": {"message_id": 1, "date": 0, "chat": {"id": 99, "type": "private"}}, "chat_instance": "x", "data": "menu:file"}}),
        );
        assert_eq!(cb.map(|u| u.chat_key), Some("99".to_owned()));
        assert!(new_update(json!({"message": {}})).is_none());
        let odd = new_update(json!({"update_id": 9, "poll": {"id": "p"}}));
        assert_eq!(odd.map(|u| u.chat_key), Some("-".to_owned()));
    }

    #[test]
    fn contact_numbers_are_international() {
        assert_eq!(international("573001234567"), "+573001234567");
        assert_eq!(international("+57 300 123 4567"), "+573001234567");
    }

    #[test]
    fn failures_map_to_outcomes() {
        let wait = failure(
            &RequestError::RetryAfter(teloxide_core::types::Seconds::from_seconds(7)),
            1,
            2,
        );
        assert!(
            matches!(wait, Outcome::Retry { after, progress: Some(2), .. } if after == Duration::from_secs(7))
        );
        let blocked = failure(&RequestError::Api(ApiError::BotBlocked), 1, 0);
        assert!(matches!(blocked, Outcome::Gone { ref error, .. } if error.contains("blocked")));
    }
}
