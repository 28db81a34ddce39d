//! Atiende's chat channels. A customer who never installs the app files, follows, answers and
//! rates PQRS from Telegram and WhatsApp. Platform updates are stored in PostgreSQL before the
//! webhook answers ([`inbox`]), worked through in order per chat by the channel-neutral
//! conversation [`engine`], and every message to a chat leaves through the one outbox
//! (`atiende_core::outbox`), in order per chat.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

pub mod engine;
pub mod inbox;
pub mod render;
pub mod survey;
pub mod telegram;
pub mod texts;
pub mod whatsapp;

rust_i18n::i18n!("../locales", fallback = "es");

/// A webhook's refusal, as a problem document with a stable code.
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "code": code, "detail": detail});
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The chat channels' settings; a channel without its settings is off.
/// `Debug` shows no secret: the channels' settings redact theirs.
#[derive(Clone, Debug, Default)]
pub struct BotSettings {
    pub telegram: Option<telegram::TelegramSettings>,
    pub whatsapp: Option<whatsapp::WhatsappSettings>,
    /// The largest file a customer may send, in bytes (the blob limit).
    pub file_limit: usize,
    /// How often the workers look for work when idle.
    pub interval: Duration,
    /// When a survey answered in a chat opens a follow-up.
    pub survey_low_score: atiende_core::surveys::LowScore,
}

/// The chat channels of one server process.
#[derive(Clone)]
pub struct Bots {
    pub db: PgPool,
    pub settings: BotSettings,
    telegram: Option<Arc<telegram::Telegram>>,
    whatsapp: Option<Arc<whatsapp::Whatsapp>>,
    intake: inbox::Intake,
}

#[derive(Debug, thiserror::Error)]
pub enum BotsError {
    #[error("the Telegram API URL is not a valid URL: {0}")]
    TelegramUrl(String),
    #[error("building the Telegram client: {0}")]
    TelegramClient(String),
    #[error("the WhatsApp API URL is not a valid URL: {0}")]
    WhatsappUrl(String),
    #[error("building the WhatsApp client: {0}")]
    WhatsappClient(String),
}

impl Bots {
    /// Called within the Tokio runtime: it starts the task that stores webhook updates.
    pub fn new(db: PgPool, settings: BotSettings) -> Result<Bots, BotsError> {
        let telegram = settings
            .telegram
            .clone()
            .map(telegram::Telegram::new)
            .transpose()?
            .map(Arc::new);
        let whatsapp = settings
            .whatsapp
            .clone()
            .map(whatsapp::Whatsapp::new)
            .transpose()?
            .map(Arc::new);
        Ok(Bots {
            intake: inbox::Intake::start(db.clone()),
            db,
            settings,
            telegram,
            whatsapp,
        })
    }

    /// The webhooks of the channels that are configured.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        if let Some(t) = &self.telegram {
            router = router.merge(telegram::router(self.intake.clone(), t.clone()));
        }
        if let Some(w) = &self.whatsapp {
            router = router.merge(whatsapp::router(
                self.db.clone(),
                self.intake.clone(),
                w.clone(),
            ));
        }
        router
    }

    /// Runs the channels' workers until `stop` completes: each channel's inbox (its updates,
    /// through the conversations) and its deliveries; Telegram's long polling when asked for.
    pub async fn run(self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();
        if let Some(t) = self.telegram.clone() {
            if t.settings().polling {
                let (db, t, stop) = (self.db.clone(), t.clone(), stopped());
                tasks.push(tokio::spawn(async move {
                    telegram::poll(db, t.as_ref(), stop).await;
                }));
            }
            self.spawn_channel(t, &stopped, &mut tasks);
        }
        if let Some(w) = self.whatsapp.clone() {
            self.spawn_channel(w, &stopped, &mut tasks);
        }
        stop.await;
        let _ = tx.send(true);
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a chat worker ended abnormally");
            }
        }
    }

    /// A channel's two workers: its inbox and its deliveries.
    fn spawn_channel<P, F>(
        &self,
        platform: Arc<P>,
        stopped: &impl Fn() -> F,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) where
        P: inbox::Platform + atiende_core::outbox::Sender + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let interval = self.settings.interval;
        let (db, p, limit, low, stop) = (
            self.db.clone(),
            platform.clone(),
            self.settings.file_limit,
            self.settings.survey_low_score.clone(),
            stopped(),
        );
        tasks.push(tokio::spawn(async move {
            inbox::run(db, p.as_ref(), limit, &low, interval, stop).await;
        }));
        let (db, stop) = (self.db.clone(), stopped());
        tasks.push(tokio::spawn(async move {
            atiende_core::outbox::run(db, platform.as_ref(), interval, stop).await;
        }));
    }
}
