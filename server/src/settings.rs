//! One typed configuration, loaded once: defaults, then a TOML file, then the environment, then
//! command-line flags. Handlers never read the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atiende_core::auth::Hashing;
use atiende_core::login_limits::LoginLimits;
use atiende_core::push_endpoint::Reach;
use atiende_mobile_api::client::Cidr;
use serde::Deserialize;

/// A value that must never reach a log or a response.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the HTTP server listens (`ATIENDE_LISTEN`).
    pub listen: SocketAddr,
    /// An existing PostgreSQL database (`DATABASE_URL`). Without it, atiende runs its own cluster
    /// under `data_dir`.
    pub database_url: Option<Secret>,
    /// Where the embedded PostgreSQL cluster lives (`ATIENDE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Connections in the pool (`ATIENDE_DB_MAX_CONNECTIONS`).
    pub db_max_connections: u32,
    /// How long a login token lasts, in hours (`ATIENDE_SESSION_TTL_HOURS`).
    pub session_ttl_hours: u64,
    /// Log filter in `tracing` syntax (`ATIENDE_LOG`, or `RUST_LOG`).
    pub log: String,
    /// The VAPID private key that signs Web Push messages, base64url (`ATIENDE_VAPID_PRIVATE_KEY`;
    /// make one with `atiende vapid-keys`). Without it notifications wait in the outbox.
    pub vapid_private_key: Option<Secret>,
    /// How push services can reach the operator: `mailto:` or `https:` (`ATIENDE_VAPID_SUBJECT`).
    pub vapid_subject: String,
    /// How often the push worker looks for due deliveries, in milliseconds (`ATIENDE_PUSH_INTERVAL_MS`).
    pub push_interval_ms: u64,
    /// Whether push endpoints may be on this machine, over plain http too
    /// (`ATIENDE_PUSH_ALLOW_LOOPBACK`): for development and tests only. Otherwise only https to
    /// public addresses is accepted and reached.
    pub push_allow_loopback: bool,
    /// How often the deadline scheduler looks for due alerts, in milliseconds
    /// (`ATIENDE_SCHEDULER_INTERVAL_MS`).
    pub scheduler_interval_ms: u64,
    /// Days after a request for information the customer is reminded of it, if they have not
    /// answered; a month after the request the case is closed as withdrawn
    /// (`ATIENDE_INFORMATION_REMINDER_DAYS`, 1–27, default 15).
    pub information_reminder_days: u32,
    /// Days before a contract ends that the commercial process is alerted to offer its renewal
    /// (`ATIENDE_CONTRACT_RENEWAL_DAYS`, 1–365, default 30).
    pub contract_renewal_days: u32,
    /// The code of the commercial process, which keeps quotes and contracts and hears of renewals
    /// due (`ATIENDE_COMMERCIAL_PROCESS`, default `COMERCIAL`).
    pub commercial_process: String,
    /// The largest blob (photo, signature, attachment) accepted, in bytes (`ATIENDE_BLOB_MAX_BYTES`).
    pub blob_max_bytes: usize,
    /// Bytes waiting to be written to one sync peer before it is dropped as too slow
    /// (`ATIENDE_SYNC_MAX_QUEUED_BYTES`).
    pub sync_max_queued_bytes: usize,
    /// Largest `ephemeral` sync message payload, in bytes (`ATIENDE_SYNC_MAX_EPHEMERAL_BYTES`).
    pub sync_max_ephemeral_bytes: usize,
    /// Sync connections one user may have open (`ATIENDE_SYNC_MAX_CONNECTIONS_PER_USER`).
    pub sync_max_connections_per_user: usize,
    /// A sync document's size quota, in bytes (`ATIENDE_SYNC_MAX_DOCUMENT_BYTES`).
    pub sync_max_document_bytes: u64,
    /// A user's sustained sync write budget, in bytes per minute
    /// (`ATIENDE_SYNC_WRITE_BYTES_PER_MINUTE`).
    pub sync_write_bytes_per_minute: u64,
    /// A user's sync write burst, in bytes (`ATIENDE_SYNC_WRITE_BURST_BYTES`).
    pub sync_write_burst_bytes: u64,
    /// Failed logins let through per window for one e-mail from one client address
    /// (`ATIENDE_LOGIN_LIMIT_PER_EMAIL_AND_ADDRESS`).
    pub login_limit_per_email_and_address: u32,
    /// Failed logins let through per window from one client address, any e-mail
    /// (`ATIENDE_LOGIN_LIMIT_PER_ADDRESS`).
    pub login_limit_per_address: u32,
    /// Failed logins let through per window for one e-mail from all addresses
    /// (`ATIENDE_LOGIN_LIMIT_PER_EMAIL`).
    pub login_limit_per_email: u32,
    /// The login limits' window, in seconds (`ATIENDE_LOGIN_WINDOW_SECS`).
    pub login_window_secs: u64,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` names the client
    /// (`ATIENDE_TRUSTED_PROXIES`, comma-separated). None by default.
    pub trusted_proxies: Vec<Cidr>,
    /// Password hashes computed at once; 0 means one per core (`ATIENDE_HASH_CONCURRENCY`).
    pub hash_concurrency: usize,
    /// How long a login or registration waits for a hashing slot before a 503, in milliseconds
    /// (`ATIENDE_HASH_WAIT_MS`).
    pub hash_wait_ms: u64,
    /// How often each process compares its open sync documents with storage, to catch changes
    /// another process stored and was killed before announcing, in seconds
    /// (`ATIENDE_SYNC_CATCH_UP_SECS`).
    pub sync_catch_up_secs: u64,
    /// How long stored sync changes gather before they are announced to other processes, in
    /// milliseconds; 0 announces at once (`ATIENDE_SYNC_ANNOUNCE_WINDOW_MS`).
    pub sync_announce_window_ms: u64,
    /// Sync documents kept awake in memory while peers have them open; beyond this many, the
    /// idle ones are kept in their saved form until used (`ATIENDE_SYNC_AWAKE_DOCUMENTS`).
    pub sync_awake_documents: usize,
    /// How long a sync ticket opens sockets, in seconds (`ATIENDE_SYNC_TICKET_TTL_SECS`).
    pub sync_ticket_ttl_secs: u64,
    /// How often ended sessions, expired tickets and old login counters are deleted, in seconds
    /// (`ATIENDE_PURGE_INTERVAL_SECS`).
    pub purge_interval_secs: u64,
    /// The outgoing mail server (`ATIENDE_SMTP_HOST`). Without it the e-mail channel is off and
    /// e-mails wait in the outbox.
    pub smtp_host: Option<String>,
    /// Its port (`ATIENDE_SMTP_PORT`); by default 25, 587 or 465 after `smtp_tls`.
    pub smtp_port: Option<u16>,
    /// How the connection is protected (`ATIENDE_SMTP_TLS`): `none`, `starttls` or `tls`.
    pub smtp_tls: SmtpTls,
    /// The account to log in with, if the server wants one (`ATIENDE_SMTP_USERNAME`).
    pub smtp_username: Option<String>,
    /// Its password (`ATIENDE_SMTP_PASSWORD`).
    pub smtp_password: Option<Secret>,
    /// Who e-mails come from (`ATIENDE_MAIL_FROM`): `Servicio al cliente <pqrs@empresa.co>`.
    pub mail_from: String,
    /// The service mailbox (`ATIENDE_MAIL_SERVICE_MAILBOX`): customers' replies go there and every
    /// answer is copied to it.
    pub mail_service_mailbox: Option<String>,
    /// How often the e-mail worker looks for due deliveries, in milliseconds
    /// (`ATIENDE_MAIL_INTERVAL_MS`).
    pub mail_interval_ms: u64,
    /// The service mailbox's IMAP server (`ATIENDE_IMAP_HOST`). Without it nobody reads the
    /// mailbox: e-mails customers write there are not filed.
    pub imap_host: Option<String>,
    /// Its port (`ATIENDE_IMAP_PORT`); by default 993 with `tls`, 143 otherwise.
    pub imap_port: Option<u16>,
    /// How the connection is protected (`ATIENDE_IMAP_TLS`): `none`, `starttls` or `tls`.
    pub imap_tls: SmtpTls,
    /// The mailbox's account (`ATIENDE_IMAP_USERNAME`).
    pub imap_username: Option<String>,
    /// Its password (`ATIENDE_IMAP_PASSWORD`).
    pub imap_password: Option<Secret>,
    /// The folder read (`ATIENDE_IMAP_FOLDER`).
    pub imap_folder: String,
    /// How often the folder is read when the server has no IDLE, in seconds
    /// (`ATIENDE_IMAP_POLL_SECS`).
    pub imap_poll_secs: u64,
    /// A PEM file of certificate authorities the IMAP server's certificate may come from, besides
    /// the public ones (`ATIENDE_IMAP_CA_FILE`).
    pub imap_ca_file: Option<PathBuf>,
    /// The largest e-mail read whole, in bytes (`ATIENDE_IMAP_MAX_MESSAGE_BYTES`); a larger one
    /// is filed from its header, and stays in the mailbox.
    pub imap_max_message_bytes: usize,
    /// The public address of this site, which links in e-mails point to
    /// (`ATIENDE_PUBLIC_BASE_URL`).
    pub public_base_url: String,
    /// The Telegram bot's token from @BotFather (`ATIENDE_TELEGRAM_BOT_TOKEN`). Without it the
    /// Telegram channel is off.
    pub telegram_bot_token: Option<Secret>,
    /// The secret Telegram sends with every webhook request (`ATIENDE_TELEGRAM_WEBHOOK_SECRET`;
    /// 1 to 256 of `A-Z a-z 0-9 _ -`). Needed for the webhook.
    pub telegram_webhook_secret: Option<Secret>,
    /// The Bot API's base URL (`ATIENDE_TELEGRAM_API_URL`).
    pub telegram_api_url: String,
    /// How updates arrive (`ATIENDE_TELEGRAM_MODE`): `webhook` (Telegram posts to
    /// /api/v1/bots/telegram/webhook) or `polling` (one process asks with getUpdates; no public
    /// URL needed).
    pub telegram_mode: TelegramMode,
    /// How often the chat workers look for updates and messages to send when idle, in
    /// milliseconds (`ATIENDE_BOTS_INTERVAL_MS`).
    pub bots_interval_ms: u64,
    /// A WhatsApp Cloud API access token (`ATIENDE_WHATSAPP_ACCESS_TOKEN`). With the phone
    /// number id it turns the WhatsApp channel on.
    pub whatsapp_access_token: Option<Secret>,
    /// The business phone number's id in WhatsApp Manager (`ATIENDE_WHATSAPP_PHONE_NUMBER_ID`).
    pub whatsapp_phone_number_id: Option<String>,
    /// The Meta app's secret, which signs every webhook POST (`ATIENDE_WHATSAPP_APP_SECRET`).
    /// Without it the webhook refuses every event.
    pub whatsapp_app_secret: Option<Secret>,
    /// The token Meta sends when the webhook is registered (`ATIENDE_WHATSAPP_VERIFY_TOKEN`).
    pub whatsapp_verify_token: Option<Secret>,
    /// The Graph API's base URL (`ATIENDE_WHATSAPP_API_URL`).
    pub whatsapp_api_url: String,
    /// The Graph API version (`ATIENDE_WHATSAPP_API_VERSION`), such as `v21.0`.
    pub whatsapp_api_version: String,
    /// The message template per notification kind sent outside WhatsApp's 24-hour window, as
    /// `name:language` (`ATIENDE_WHATSAPP_TEMPLATES`: `answer=respuesta_pqrs:es_CO,...`). Its
    /// body takes the radicado as `{{1}}`. A kind without one is marked undeliverable there.
    pub whatsapp_templates: std::collections::BTreeMap<String, String>,
    /// The company's name on the public web pages (`ATIENDE_COMPANY_NAME`).
    pub company_name: String,
    /// The logo on the public web pages, an `https:` URL or a path on this server
    /// (`ATIENDE_COMPANY_LOGO_URL`). None by default.
    pub company_logo_url: Option<String>,
    /// The web pages' main colour, `#rgb` or `#rrggbb` (`ATIENDE_COMPANY_COLOR`).
    pub company_color: String,
    /// Where the company writes from, before the date of a printed acknowledgement
    /// (`ATIENDE_COMPANY_CITY`, such as `Bogotá D.C.`). None by default: the date alone.
    pub company_city: Option<String>,
    /// How long the e-mailed link with which a company-created app user sets the first password
    /// works, in hours (`ATIENDE_ACCOUNT_SETUP_TTL_HOURS`).
    pub account_setup_ttl_hours: u64,
    /// POSTs to the public web pages one client address may make per window
    /// (`ATIENDE_WEB_POSTS_PER_WINDOW`).
    pub web_posts_per_window: u32,
    /// That window, in seconds (`ATIENDE_WEB_WINDOW_SECS`).
    pub web_window_secs: u32,
    /// How long the one-time code that links a web filing to a customer's record lives, in
    /// minutes, 1 to 60 (`ATIENDE_LINK_CODE_MINUTES`).
    pub link_code_minutes: u32,
    /// Hours after a visit's completion its customer is invited to the post-service survey, 0 to
    /// 120: PRO-008 §5.4.1 asks within 5 days (`ATIENDE_SURVEY_DELAY_HOURS`, default 24).
    pub survey_delay_hours: u32,
    /// Days an invitation to a survey can be answered, 1 to 90 (`ATIENDE_SURVEY_WINDOW_DAYS`,
    /// default 15).
    pub survey_window_days: u32,
    /// A 1–5 survey score at or under this opens a follow-up, 1 to 4 (`ATIENDE_SURVEY_LOW_SCORE`,
    /// default 2).
    pub survey_low_score: i16,
    /// The process a follow-up goes to when the survey is not about a visit of a process
    /// (`ATIENDE_SURVEY_DEFAULT_PROCESS`, default `SIG`).
    pub survey_default_process: String,
    /// The months (1–12) the scheduler opens a semestral survey campaign in, once each
    /// (`ATIENDE_SURVEY_CAMPAIGN_MONTHS`, comma-separated, default `6,12`; empty switches it off).
    pub survey_campaign_months: Vec<u32>,
    /// How many active customers a campaign the scheduler opens asks, chosen at random; 0 asks
    /// every one (`ATIENDE_SURVEY_CAMPAIGN_SAMPLE`, 0 to 100,000, default 0).
    pub survey_campaign_sample: u32,
    /// Days a campaign the scheduler opens stays open, 1 to 90 (`ATIENDE_SURVEY_CAMPAIGN_DAYS`,
    /// default 30).
    pub survey_campaign_days: u32,
    /// Days after a campaign's invitation its one reminder goes to a customer who has not
    /// answered, 1 to 60 (`ATIENDE_SURVEY_REMINDER_DAYS`, default 7).
    pub survey_reminder_days: u32,
}

/// `6,12`: months 1 to 12, each once; blank is none.
fn campaign_months(v: &str) -> Option<Vec<u32>> {
    if v.trim().is_empty() {
        return Some(Vec::new());
    }
    let mut months = Vec::new();
    for part in v.split(',') {
        let m: u32 = part.trim().parse().ok().filter(|m| (1..=12).contains(m))?;
        if months.contains(&m) {
            return None;
        }
        months.push(m);
    }
    Some(months)
}

/// A template setting, `name:language`, checked.
fn template(kind: &str, value: &str) -> Result<atiende_bots::whatsapp::Template, String> {
    let kinds = atiende_core::notifications::Kind::ALL.map(|k| k.as_str());
    if !kinds.contains(&kind) {
        return Err(format!(
            "{kind:?} is not a notification kind (expected one of {})",
            kinds.join(", ")
        ));
    }
    let word = |s: &str| {
        (1..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    match value.split_once(':') {
        Some((name, language)) if word(name) && word(language) => {
            Ok(atiende_bots::whatsapp::Template {
                name: name.to_owned(),
                language: language.to_owned(),
            })
        }
        _ => Err(format!(
            "the template for {kind} must be name:language, such as respuesta_pqrs:es_CO"
        )),
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    #[default]
    Webhook,
    Polling,
}

impl Default for Settings {
    fn default() -> Self {
        let sync = atiende_sync::SyncSettings::default();
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            data_dir: PathBuf::from("./data"),
            db_max_connections: 16,
            session_ttl_hours: 24 * 30,
            log: "info".into(),
            vapid_private_key: None,
            vapid_subject: "mailto:pqrs@localhost".into(),
            push_interval_ms: 1000,
            push_allow_loopback: false,
            scheduler_interval_ms: 5000,
            information_reminder_days: 15,
            contract_renewal_days: 30,
            commercial_process: "COMERCIAL".into(),
            blob_max_bytes: atiende_mobile_api::blobs::DEFAULT_BLOB_LIMIT,
            sync_max_queued_bytes: sync.max_queued_bytes,
            sync_max_ephemeral_bytes: sync.max_ephemeral_bytes,
            sync_max_connections_per_user: sync.max_connections_per_user,
            sync_max_document_bytes: sync.max_document_bytes,
            sync_write_bytes_per_minute: sync.write_bytes_per_minute,
            sync_write_burst_bytes: sync.write_burst_bytes,
            login_limit_per_email_and_address: 5,
            login_limit_per_address: 20,
            login_limit_per_email: 100,
            login_window_secs: 15 * 60,
            trusted_proxies: Vec::new(),
            hash_concurrency: 0,
            hash_wait_ms: 2000,
            sync_ticket_ttl_secs: 5 * 60,
            sync_catch_up_secs: sync.catch_up.as_secs(),
            sync_announce_window_ms: 0,
            sync_awake_documents: sync.awake_documents,
            purge_interval_secs: 3600,
            smtp_host: None,
            smtp_port: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: None,
            smtp_password: None,
            mail_from: "Servicio al cliente <pqrs@localhost>".into(),
            mail_service_mailbox: None,
            mail_interval_ms: 1000,
            imap_host: None,
            imap_port: None,
            imap_tls: SmtpTls::Tls,
            imap_username: None,
            imap_password: None,
            imap_folder: "INBOX".into(),
            imap_poll_secs: 60,
            imap_ca_file: None,
            imap_max_message_bytes: 40 * 1024 * 1024,
            public_base_url: "http://127.0.0.1:8080".into(),
            telegram_bot_token: None,
            telegram_webhook_secret: None,
            telegram_api_url: "https://api.telegram.org".into(),
            telegram_mode: TelegramMode::Webhook,
            bots_interval_ms: 500,
            whatsapp_access_token: None,
            whatsapp_phone_number_id: None,
            whatsapp_app_secret: None,
            whatsapp_verify_token: None,
            whatsapp_api_url: "https://graph.facebook.com".into(),
            whatsapp_api_version: "v21.0".into(),
            whatsapp_templates: std::collections::BTreeMap::new(),
            company_name: "Atiende".into(),
            company_logo_url: None,
            company_color: "#0b5cad".into(),
            company_city: None,
            account_setup_ttl_hours: 72,
            web_posts_per_window: 30,
            web_window_secs: 600,
            link_code_minutes: 15,
            survey_delay_hours: 24,
            survey_window_days: 15,
            survey_low_score: atiende_core::surveys::DEFAULT_LOW_SCORE,
            survey_default_process: "SIG".into(),
            survey_campaign_months: atiende_core::surveys::campaigns::DEFAULT_MONTHS.to_vec(),
            survey_campaign_sample: 0,
            survey_campaign_days: atiende_core::surveys::campaigns::DEFAULT_DAYS_OPEN,
            survey_reminder_days: atiende_core::surveys::campaigns::DEFAULT_REMINDER_DAYS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name} is not valid: {message}")]
    Env { name: &'static str, message: String },
}

impl Settings {
    /// Loads from `file` (or `ATIENDE_CONFIG`, or `./atiende.toml` if present) and the environment.
    pub fn load(file: Option<PathBuf>) -> Result<Settings, SettingsError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    pub fn load_from(
        file: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let explicit = file.or_else(|| env("ATIENDE_CONFIG").map(PathBuf::from));
        let path = explicit
            .clone()
            .or_else(|| Some(PathBuf::from("atiende.toml")).filter(|p| p.exists()));
        let mut settings = match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str(&text).map_err(|e| SettingsError::Parse {
                    path,
                    message: e.message().to_owned(),
                })?
            }
            None => Settings::default(),
        };
        if let Some(v) = env("ATIENDE_LISTEN") {
            settings.listen = v.parse().map_err(|_| SettingsError::Env {
                name: "ATIENDE_LISTEN",
                message: "expected host:port, e.g. 127.0.0.1:8080".into(),
            })?;
        }
        if let Some(v) = env("DATABASE_URL").filter(|v| !v.is_empty()) {
            settings.database_url = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_DATA_DIR").filter(|v| !v.is_empty()) {
            settings.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("ATIENDE_DB_MAX_CONNECTIONS") {
            settings.db_max_connections =
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(SettingsError::Env {
                        name: "ATIENDE_DB_MAX_CONNECTIONS",
                        message: "expected a positive whole number".into(),
                    })?;
        }
        if let Some(v) = env("ATIENDE_SESSION_TTL_HOURS") {
            settings.session_ttl_hours =
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(SettingsError::Env {
                        name: "ATIENDE_SESSION_TTL_HOURS",
                        message: "expected a positive whole number of hours".into(),
                    })?;
        }
        if let Some(v) = env("ATIENDE_VAPID_PRIVATE_KEY").filter(|v| !v.is_empty()) {
            settings.vapid_private_key = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_VAPID_SUBJECT").filter(|v| !v.is_empty()) {
            settings.vapid_subject = v;
        }
        if let Some(v) = env("ATIENDE_PUSH_INTERVAL_MS") {
            settings.push_interval_ms =
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(SettingsError::Env {
                        name: "ATIENDE_PUSH_INTERVAL_MS",
                        message: "expected a positive whole number of milliseconds".into(),
                    })?;
        }
        if let Some(v) = env("ATIENDE_PUSH_ALLOW_LOOPBACK") {
            settings.push_allow_loopback = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(SettingsError::Env {
                        name: "ATIENDE_PUSH_ALLOW_LOOPBACK",
                        message: "expected true or false".into(),
                    });
                }
            };
        }
        if let Some(v) = env("ATIENDE_SCHEDULER_INTERVAL_MS") {
            settings.scheduler_interval_ms =
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(SettingsError::Env {
                        name: "ATIENDE_SCHEDULER_INTERVAL_MS",
                        message: "expected a positive whole number of milliseconds".into(),
                    })?;
        }
        if let Some(v) = env("ATIENDE_INFORMATION_REMINDER_DAYS") {
            settings.information_reminder_days = v
                .parse()
                .ok()
                .filter(|n| (1..=27).contains(n))
                .ok_or(SettingsError::Env {
                    name: "ATIENDE_INFORMATION_REMINDER_DAYS",
                    message: "expected a whole number of days from 1 to 27 (the case is withdrawn a month after the request)".into(),
                })?;
        }
        if let Some(v) = env("ATIENDE_CONTRACT_RENEWAL_DAYS") {
            settings.contract_renewal_days = v
                .parse()
                .ok()
                .filter(|n| (1..=365).contains(n))
                .ok_or(SettingsError::Env {
                    name: "ATIENDE_CONTRACT_RENEWAL_DAYS",
                    message: "expected a whole number of days from 1 to 365".into(),
                })?;
        }
        if let Some(v) = env("ATIENDE_COMMERCIAL_PROCESS") {
            settings.commercial_process =
                atiende_core::processes::parse_code(&v).map_err(|_| SettingsError::Env {
                    name: "ATIENDE_COMMERCIAL_PROCESS",
                    message: "expected a process code: 2 to 32 letters, digits or _, starting with a letter".into(),
                })?;
        }
        if let Some(v) = env("ATIENDE_BLOB_MAX_BYTES") {
            settings.blob_max_bytes =
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(SettingsError::Env {
                        name: "ATIENDE_BLOB_MAX_BYTES",
                        message: "expected a positive whole number of bytes".into(),
                    })?;
        }
        positive_number(
            &env,
            "ATIENDE_SYNC_MAX_QUEUED_BYTES",
            &mut settings.sync_max_queued_bytes,
        )?;
        positive_number(
            &env,
            "ATIENDE_SYNC_MAX_EPHEMERAL_BYTES",
            &mut settings.sync_max_ephemeral_bytes,
        )?;
        positive_number(
            &env,
            "ATIENDE_SYNC_MAX_CONNECTIONS_PER_USER",
            &mut settings.sync_max_connections_per_user,
        )?;
        positive_number(
            &env,
            "ATIENDE_SYNC_MAX_DOCUMENT_BYTES",
            &mut settings.sync_max_document_bytes,
        )?;
        positive_number(
            &env,
            "ATIENDE_SYNC_WRITE_BYTES_PER_MINUTE",
            &mut settings.sync_write_bytes_per_minute,
        )?;
        positive_number(
            &env,
            "ATIENDE_SYNC_WRITE_BURST_BYTES",
            &mut settings.sync_write_burst_bytes,
        )?;
        positive_number(
            &env,
            "ATIENDE_LOGIN_LIMIT_PER_EMAIL_AND_ADDRESS",
            &mut settings.login_limit_per_email_and_address,
        )?;
        positive_number(
            &env,
            "ATIENDE_LOGIN_LIMIT_PER_ADDRESS",
            &mut settings.login_limit_per_address,
        )?;
        positive_number(
            &env,
            "ATIENDE_LOGIN_LIMIT_PER_EMAIL",
            &mut settings.login_limit_per_email,
        )?;
        for (name, field) in [
            ("ATIENDE_LOGIN_WINDOW_SECS", &mut settings.login_window_secs),
            ("ATIENDE_HASH_WAIT_MS", &mut settings.hash_wait_ms),
            (
                "ATIENDE_SYNC_TICKET_TTL_SECS",
                &mut settings.sync_ticket_ttl_secs,
            ),
            (
                "ATIENDE_PURGE_INTERVAL_SECS",
                &mut settings.purge_interval_secs,
            ),
            (
                "ATIENDE_SYNC_CATCH_UP_SECS",
                &mut settings.sync_catch_up_secs,
            ),
        ] {
            positive_number(&env, name, field)?;
        }
        if let Some(v) = env("ATIENDE_SYNC_ANNOUNCE_WINDOW_MS") {
            settings.sync_announce_window_ms = v.parse().map_err(|_| SettingsError::Env {
                name: "ATIENDE_SYNC_ANNOUNCE_WINDOW_MS",
                message: "expected a whole number of milliseconds".into(),
            })?;
        }
        if let Some(v) = env("ATIENDE_SYNC_AWAKE_DOCUMENTS") {
            settings.sync_awake_documents = v.parse().map_err(|_| SettingsError::Env {
                name: "ATIENDE_SYNC_AWAKE_DOCUMENTS",
                message: "expected a whole number of documents".into(),
            })?;
        }
        if let Some(v) = env("ATIENDE_TELEGRAM_BOT_TOKEN").filter(|v| !v.is_empty()) {
            settings.telegram_bot_token = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_TELEGRAM_WEBHOOK_SECRET").filter(|v| !v.is_empty()) {
            settings.telegram_webhook_secret = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_TELEGRAM_API_URL").filter(|v| !v.is_empty()) {
            settings.telegram_api_url = v;
        }
        if let Some(v) = env("ATIENDE_TELEGRAM_MODE") {
            settings.telegram_mode = match v.trim() {
                "webhook" => TelegramMode::Webhook,
                "polling" => TelegramMode::Polling,
                _ => {
                    return Err(SettingsError::Env {
                        name: "ATIENDE_TELEGRAM_MODE",
                        message: "expected webhook or polling".into(),
                    });
                }
            };
        }
        positive_number(
            &env,
            "ATIENDE_BOTS_INTERVAL_MS",
            &mut settings.bots_interval_ms,
        )?;
        if let Some(secret) = &settings.telegram_webhook_secret {
            let ok = (1..=256).contains(&secret.expose().len())
                && secret
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(SettingsError::Env {
                    name: "ATIENDE_TELEGRAM_WEBHOOK_SECRET",
                    message: "expected 1 to 256 of A-Z a-z 0-9 _ - (what Telegram accepts)".into(),
                });
            }
        }
        for (name, field) in [
            (
                "ATIENDE_WHATSAPP_ACCESS_TOKEN",
                &mut settings.whatsapp_access_token,
            ),
            (
                "ATIENDE_WHATSAPP_APP_SECRET",
                &mut settings.whatsapp_app_secret,
            ),
            (
                "ATIENDE_WHATSAPP_VERIFY_TOKEN",
                &mut settings.whatsapp_verify_token,
            ),
        ] {
            if let Some(v) = env(name).filter(|v| !v.is_empty()) {
                *field = Some(Secret::new(v));
            }
        }
        if let Some(v) = env("ATIENDE_WHATSAPP_PHONE_NUMBER_ID").filter(|v| !v.is_empty()) {
            settings.whatsapp_phone_number_id = Some(v);
        }
        if let Some(v) = env("ATIENDE_WHATSAPP_API_URL").filter(|v| !v.is_empty()) {
            settings.whatsapp_api_url = v;
        }
        if let Some(v) = env("ATIENDE_WHATSAPP_API_VERSION").filter(|v| !v.is_empty()) {
            settings.whatsapp_api_version = v;
        }
        if let Some(v) = env("ATIENDE_WHATSAPP_TEMPLATES") {
            settings.whatsapp_templates = v
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
                    None => Err(format!("{p:?} is not kind=name:language")),
                })
                .collect::<Result<_, _>>()
                .map_err(|message| SettingsError::Env {
                    name: "ATIENDE_WHATSAPP_TEMPLATES",
                    message,
                })?;
        }
        settings.check_whatsapp()?;
        settings.load_mail(&env)?;
        if let Some(v) = env("ATIENDE_HASH_CONCURRENCY") {
            // 0 means one per core.
            settings.hash_concurrency = v.parse().map_err(|_| SettingsError::Env {
                name: "ATIENDE_HASH_CONCURRENCY",
                message: "expected a whole number".into(),
            })?;
        }
        if let Some(v) = env("ATIENDE_TRUSTED_PROXIES") {
            settings.trusted_proxies = v
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|message| SettingsError::Env {
                    name: "ATIENDE_TRUSTED_PROXIES",
                    message,
                })?;
        }
        if let Some(v) = env("ATIENDE_COMPANY_NAME").filter(|v| !v.trim().is_empty()) {
            settings.company_name = v.trim().to_owned();
        }
        if let Some(v) = env("ATIENDE_COMPANY_LOGO_URL").filter(|v| !v.is_empty()) {
            settings.company_logo_url = Some(v);
        }
        if let Some(v) = env("ATIENDE_COMPANY_COLOR").filter(|v| !v.is_empty()) {
            settings.company_color = v;
        }
        if let Some(v) = env("ATIENDE_COMPANY_CITY").filter(|v| !v.trim().is_empty()) {
            settings.company_city = Some(v.trim().to_owned());
        }
        if let Some(v) = env("ATIENDE_ACCOUNT_SETUP_TTL_HOURS") {
            settings.account_setup_ttl_hours = v
                .parse()
                .ok()
                .filter(|n| (1..=24 * 30).contains(n))
                .ok_or(SettingsError::Env {
                    name: "ATIENDE_ACCOUNT_SETUP_TTL_HOURS",
                    message: "expected a whole number of hours from 1 to 720".into(),
                })?;
        }
        for (name, field) in [
            (
                "ATIENDE_WEB_POSTS_PER_WINDOW",
                &mut settings.web_posts_per_window,
            ),
            ("ATIENDE_WEB_WINDOW_SECS", &mut settings.web_window_secs),
            ("ATIENDE_LINK_CODE_MINUTES", &mut settings.link_code_minutes),
        ] {
            if let Some(v) = env(name) {
                *field = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| SettingsError::Env {
                        name,
                        message: "expected a positive whole number".into(),
                    })?;
            }
        }
        settings.check_web()?;
        settings.load_surveys(&env)?;
        if let Some(v) = env("ATIENDE_LOG").or_else(|| env("RUST_LOG")) {
            settings.log = v;
        }
        Ok(settings)
    }

    pub fn push_reach(&self) -> Reach {
        if self.push_allow_loopback {
            Reach::PublicAndLoopback
        } else {
            Reach::Public
        }
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_hours.saturating_mul(3600))
    }

    fn load_surveys(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), SettingsError> {
        let whole = |name: &'static str, range: std::ops::RangeInclusive<u32>| {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| range.contains(n))
                        .ok_or_else(|| SettingsError::Env {
                            name,
                            message: format!(
                                "expected a whole number from {} to {}",
                                range.start(),
                                range.end()
                            ),
                        })
                })
                .transpose()
        };
        if let Some(v) = whole("ATIENDE_SURVEY_DELAY_HOURS", 0..=120)? {
            self.survey_delay_hours = v;
        }
        if let Some(v) = whole("ATIENDE_SURVEY_WINDOW_DAYS", 1..=90)? {
            self.survey_window_days = v;
        }
        if let Some(v) = whole("ATIENDE_SURVEY_LOW_SCORE", 1..=4)? {
            self.survey_low_score =
                i16::try_from(v).unwrap_or(atiende_core::surveys::DEFAULT_LOW_SCORE);
        }
        if let Some(v) = env("ATIENDE_SURVEY_DEFAULT_PROCESS") {
            self.survey_default_process =
                atiende_core::processes::parse_code(&v).map_err(|_| SettingsError::Env {
                    name: "ATIENDE_SURVEY_DEFAULT_PROCESS",
                    message: "expected a process code: 2 to 32 letters, digits or _".into(),
                })?;
        }
        if let Some(v) = env("ATIENDE_SURVEY_CAMPAIGN_MONTHS") {
            self.survey_campaign_months = campaign_months(&v).ok_or(SettingsError::Env {
                name: "ATIENDE_SURVEY_CAMPAIGN_MONTHS",
                message: "expected months 1 to 12 separated by commas, each once (empty: none)"
                    .into(),
            })?;
        }
        if let Some(v) = whole(
            "ATIENDE_SURVEY_CAMPAIGN_SAMPLE",
            0..=atiende_core::surveys::campaigns::MAX_SAMPLE,
        )? {
            self.survey_campaign_sample = v;
        }
        if let Some(v) = whole("ATIENDE_SURVEY_CAMPAIGN_DAYS", 1..=90)? {
            self.survey_campaign_days = v;
        }
        if let Some(v) = whole("ATIENDE_SURVEY_REMINDER_DAYS", 1..=60)? {
            self.survey_reminder_days = v;
        }
        Ok(())
    }

    /// When the scheduler opens, reminds and closes survey campaigns.
    pub fn survey_campaigns(&self) -> atiende_core::surveys::campaigns::CampaignSchedule {
        use atiende_core::surveys::campaigns::{CampaignSchedule, MAX_SAMPLE};
        let mut months: Vec<u32> = self
            .survey_campaign_months
            .iter()
            .copied()
            .filter(|m| (1..=12).contains(m))
            .collect();
        months.dedup();
        CampaignSchedule {
            months,
            sample: (self.survey_campaign_sample > 0)
                .then_some(self.survey_campaign_sample.min(MAX_SAMPLE)),
            days_open: self.survey_campaign_days.clamp(1, 90),
            remind_after: Duration::from_secs(
                u64::from(self.survey_reminder_days.clamp(1, 60)) * 24 * 3600,
            ),
            public_base_url: self.public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// When post-service survey invitations go and how long they stay open.
    pub fn survey_schedule(&self) -> atiende_core::surveys::Schedule {
        atiende_core::surveys::Schedule {
            delay: Duration::from_secs(u64::from(self.survey_delay_hours.min(120)) * 3600),
            window: Duration::from_secs(
                u64::from(self.survey_window_days.clamp(1, 90)) * 24 * 3600,
            ),
            public_base_url: self.public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// When a survey score opens a follow-up.
    pub fn survey_low_score(&self) -> atiende_core::surveys::LowScore {
        atiende_core::surveys::LowScore {
            threshold: self.survey_low_score.clamp(1, 4),
            default_process: self.survey_default_process.clone(),
        }
    }

    pub fn account_setup_ttl(&self) -> Duration {
        Duration::from_secs(self.account_setup_ttl_hours.clamp(1, 24 * 30) * 3600)
    }

    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            per_email_and_address: self.login_limit_per_email_and_address,
            per_address: self.login_limit_per_address,
            per_email: self.login_limit_per_email,
            window: Duration::from_secs(self.login_window_secs),
        }
    }

    /// The password-hashing bound; build it once per process, as its permits are shared.
    pub fn hashing(&self) -> Hashing {
        let concurrent = match self.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        Hashing::new(concurrent, Duration::from_millis(self.hash_wait_ms))
    }

    /// The web pages' brand cannot break out of where it is written: the colour is a hex colour
    /// and the logo an `https:` URL or a path on this server.
    fn check_web(&self) -> Result<(), SettingsError> {
        let hex = self
            .company_color
            .strip_prefix('#')
            .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !hex {
            return Err(SettingsError::Env {
                name: "ATIENDE_COMPANY_COLOR",
                message: "expected a colour as #rgb or #rrggbb".into(),
            });
        }
        if let Some(logo) = &self.company_logo_url {
            let ok = (logo.starts_with("https://")
                || (logo.starts_with('/') && !logo.starts_with("//")))
                && !logo
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>');
            if !ok {
                return Err(SettingsError::Env {
                    name: "ATIENDE_COMPANY_LOGO_URL",
                    message: "expected an https: URL or a path starting with /".into(),
                });
            }
        }
        if self
            .company_city
            .as_ref()
            .is_some_and(|c| c.chars().count() > 100)
        {
            return Err(SettingsError::Env {
                name: "ATIENDE_COMPANY_CITY",
                message: "expected at most 100 characters".into(),
            });
        }
        if self.company_name.chars().count() > 100 {
            return Err(SettingsError::Env {
                name: "ATIENDE_COMPANY_NAME",
                message: "expected at most 100 characters".into(),
            });
        }
        if !(1..=60).contains(&self.link_code_minutes) {
            return Err(SettingsError::Env {
                name: "ATIENDE_LINK_CODE_MINUTES",
                message: "expected 1 to 60 minutes".into(),
            });
        }
        Ok(())
    }

    /// The WhatsApp settings hold together: the number id is one Meta gives, the API version
    /// reads `vNN.N`, and every template names a notification kind and a `name:language`.
    fn check_whatsapp(&self) -> Result<(), SettingsError> {
        let invalid = |name: &'static str, message: String| SettingsError::Env { name, message };
        if let Some(id) = &self.whatsapp_phone_number_id
            && (!(1..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                "ATIENDE_WHATSAPP_PHONE_NUMBER_ID",
                "expected the phone number's id, digits only".into(),
            ));
        }
        let version = self
            .whatsapp_api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
            });
        if !version {
            return Err(invalid(
                "ATIENDE_WHATSAPP_API_VERSION",
                "expected a Graph API version such as v21.0".into(),
            ));
        }
        for (kind, value) in &self.whatsapp_templates {
            template(kind, value).map_err(|m| invalid("ATIENDE_WHATSAPP_TEMPLATES", m))?;
        }
        Ok(())
    }

    /// The e-mail settings from the environment, each checked and named when wrong.
    fn load_mail(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), SettingsError> {
        let invalid = |name: &'static str, message: &str| SettingsError::Env {
            name,
            message: message.into(),
        };
        if let Some(v) = env("ATIENDE_SMTP_HOST").filter(|v| !v.trim().is_empty()) {
            self.smtp_host = Some(v.trim().to_owned());
        }
        if let Some(v) = env("ATIENDE_SMTP_PORT") {
            self.smtp_port = Some(
                v.trim()
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or(invalid("ATIENDE_SMTP_PORT", "expected a port, 1 to 65535"))?,
            );
        }
        for (name, target) in [
            ("ATIENDE_SMTP_TLS", &mut self.smtp_tls),
            ("ATIENDE_IMAP_TLS", &mut self.imap_tls),
        ] {
            if let Some(v) = env(name) {
                *target = match v.trim() {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::Starttls,
                    "tls" => SmtpTls::Tls,
                    _ => return Err(invalid(name, "expected none, starttls or tls")),
                };
            }
        }
        if let Some(v) = env("ATIENDE_IMAP_HOST").filter(|v| !v.trim().is_empty()) {
            self.imap_host = Some(v.trim().to_owned());
        }
        if let Some(v) = env("ATIENDE_IMAP_PORT") {
            self.imap_port = Some(
                v.trim()
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or(invalid("ATIENDE_IMAP_PORT", "expected a port, 1 to 65535"))?,
            );
        }
        if let Some(v) = env("ATIENDE_IMAP_USERNAME").filter(|v| !v.is_empty()) {
            self.imap_username = Some(v);
        }
        if let Some(v) = env("ATIENDE_IMAP_PASSWORD").filter(|v| !v.is_empty()) {
            self.imap_password = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_IMAP_FOLDER").filter(|v| !v.trim().is_empty()) {
            self.imap_folder = v.trim().to_owned();
        }
        if let Some(v) = env("ATIENDE_IMAP_CA_FILE").filter(|v| !v.trim().is_empty()) {
            self.imap_ca_file = Some(PathBuf::from(v.trim()));
        }
        positive_number(env, "ATIENDE_IMAP_POLL_SECS", &mut self.imap_poll_secs)?;
        positive_number(
            env,
            "ATIENDE_IMAP_MAX_MESSAGE_BYTES",
            &mut self.imap_max_message_bytes,
        )?;
        if self.imap_host.is_some() && self.imap_username.is_none() {
            return Err(invalid(
                "ATIENDE_IMAP_USERNAME",
                "the service mailbox's account is needed when ATIENDE_IMAP_HOST is set",
            ));
        }
        if let Some(v) = env("ATIENDE_SMTP_USERNAME").filter(|v| !v.is_empty()) {
            self.smtp_username = Some(v);
        }
        if let Some(v) = env("ATIENDE_SMTP_PASSWORD").filter(|v| !v.is_empty()) {
            self.smtp_password = Some(Secret::new(v));
        }
        if let Some(v) = env("ATIENDE_MAIL_FROM").filter(|v| !v.trim().is_empty()) {
            self.mail_from = v.trim().to_owned();
        }
        if let Some(v) = env("ATIENDE_MAIL_SERVICE_MAILBOX").filter(|v| !v.trim().is_empty()) {
            self.mail_service_mailbox = Some(v.trim().to_owned());
        }
        if let Some(v) = env("ATIENDE_PUBLIC_BASE_URL").filter(|v| !v.trim().is_empty()) {
            self.public_base_url = v.trim().to_owned();
        }
        positive_number(env, "ATIENDE_MAIL_INTERVAL_MS", &mut self.mail_interval_ms)?;
        if atiende_mail::parse_mailbox(&self.mail_from).is_none() {
            return Err(invalid(
                "ATIENDE_MAIL_FROM",
                "expected an address: user@domain or Name <user@domain>",
            ));
        }
        if let Some(m) = &self.mail_service_mailbox
            && atiende_mail::parse_mailbox(m).is_none()
        {
            return Err(invalid(
                "ATIENDE_MAIL_SERVICE_MAILBOX",
                "expected an address: user@domain or Name <user@domain>",
            ));
        }
        if atiende_mail::parse_base_url(&self.public_base_url).is_none() {
            return Err(invalid(
                "ATIENDE_PUBLIC_BASE_URL",
                "expected an http or https URL, such as https://pqrs.empresa.co",
            ));
        }
        Ok(())
    }

    /// The e-mail channel's settings; off (none) without an SMTP host.
    pub fn mail(&self) -> Option<atiende_mail::MailSettings> {
        let tls = match self.smtp_tls {
            SmtpTls::None => atiende_mail::TlsMode::None,
            SmtpTls::Starttls => atiende_mail::TlsMode::StartTls,
            SmtpTls::Tls => atiende_mail::TlsMode::Tls,
        };
        self.smtp_host
            .as_ref()
            .map(|host| atiende_mail::MailSettings {
                host: host.clone(),
                port: self.smtp_port.unwrap_or(tls.default_port()),
                tls,
                username: self.smtp_username.clone(),
                password: self.smtp_password.as_ref().map(|p| p.expose().to_owned()),
                from: self.mail_from.clone(),
                service_mailbox: self.mail_service_mailbox.clone(),
                public_base_url: self.public_base_url.clone(),
                timeout: Duration::from_secs(30),
            })
    }

    /// How the service mailbox is read; nobody reads it (none) without an IMAP host.
    pub fn imap(&self) -> Option<atiende_mail::inbound::ImapSettings> {
        let tls = match self.imap_tls {
            SmtpTls::None => atiende_mail::TlsMode::None,
            SmtpTls::Starttls => atiende_mail::TlsMode::StartTls,
            SmtpTls::Tls => atiende_mail::TlsMode::Tls,
        };
        let host = self.imap_host.as_ref()?;
        Some(atiende_mail::inbound::ImapSettings {
            host: host.clone(),
            port: self
                .imap_port
                .unwrap_or(if tls == atiende_mail::TlsMode::Tls {
                    993
                } else {
                    143
                }),
            tls,
            username: self.imap_username.clone().unwrap_or_default(),
            password: self
                .imap_password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
            folder: self.imap_folder.clone(),
            poll: Duration::from_secs(self.imap_poll_secs),
            idle_for: Duration::from_secs(25 * 60),
            ca_file: self.imap_ca_file.clone(),
            timeout: Duration::from_secs(120),
            limits: atiende_mail::inbound::Limits {
                attachment_bytes: self.blob_max_bytes,
                message_bytes: self.imap_max_message_bytes,
            },
        })
    }

    /// The chat channels' settings; a channel without its token is off.
    pub fn bots(&self) -> atiende_bots::BotSettings {
        atiende_bots::BotSettings {
            telegram: self.telegram_bot_token.as_ref().map(|token| {
                atiende_bots::telegram::TelegramSettings {
                    token: token.expose().to_owned(),
                    webhook_secret: self
                        .telegram_webhook_secret
                        .as_ref()
                        .map(|s| s.expose().to_owned()),
                    api_url: self.telegram_api_url.clone(),
                    polling: self.telegram_mode == TelegramMode::Polling,
                }
            }),
            whatsapp: self
                .whatsapp_access_token
                .as_ref()
                .zip(self.whatsapp_phone_number_id.as_ref())
                .map(|(token, number)| atiende_bots::whatsapp::WhatsappSettings {
                    api_url: self.whatsapp_api_url.clone(),
                    api_version: self.whatsapp_api_version.clone(),
                    phone_number_id: number.clone(),
                    access_token: token.expose().to_owned(),
                    app_secret: self
                        .whatsapp_app_secret
                        .as_ref()
                        .map(|s| s.expose().to_owned()),
                    verify_token: self
                        .whatsapp_verify_token
                        .as_ref()
                        .map(|s| s.expose().to_owned()),
                    // Checked when the settings were loaded.
                    templates: self
                        .whatsapp_templates
                        .iter()
                        .filter_map(|(k, v)| template(k, v).ok().map(|t| (k.clone(), t)))
                        .collect(),
                }),
            file_limit: self.blob_max_bytes,
            interval: Duration::from_millis(self.bots_interval_ms),
            survey_low_score: self.survey_low_score(),
        }
    }

    /// The sync server's settings: its defaults with the limits set here.
    pub fn sync(&self) -> atiende_sync::SyncSettings {
        atiende_sync::SyncSettings {
            max_queued_bytes: self.sync_max_queued_bytes,
            max_ephemeral_bytes: self.sync_max_ephemeral_bytes,
            max_connections_per_user: self.sync_max_connections_per_user,
            max_document_bytes: self.sync_max_document_bytes,
            write_bytes_per_minute: self.sync_write_bytes_per_minute,
            write_burst_bytes: self.sync_write_burst_bytes,
            catch_up: Duration::from_secs(self.sync_catch_up_secs),
            announce_window: Duration::from_millis(self.sync_announce_window_ms),
            awake_documents: self.sync_awake_documents,
            survey_low_score: self.survey_low_score(),
            ..atiende_sync::SyncSettings::default()
        }
    }
}

/// A positive whole number from the environment into `target`, if the variable is set.
fn positive_number<T: std::str::FromStr + PartialOrd + Default>(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    target: &mut T,
) -> Result<(), SettingsError> {
    if let Some(v) = env(name) {
        *target = v
            .parse()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or(SettingsError::Env {
                name,
                message: "expected a positive whole number".into(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_secrets_do_not_print() {
        let env = |k: &str| match k {
            "ATIENDE_LISTEN" => Some("0.0.0.0:9000".to_owned()),
            "DATABASE_URL" => Some("postgres://app:hunter2@db/atiende".to_owned()),
            "ATIENDE_VAPID_PRIVATE_KEY" => Some("vapid-secret-value".to_owned()),
            "ATIENDE_PUSH_ALLOW_LOOPBACK" => Some("true".to_owned()),
            "ATIENDE_TELEGRAM_BOT_TOKEN" => Some("123456:telegram-token-value".to_owned()),
            "ATIENDE_TELEGRAM_WEBHOOK_SECRET" => Some("webhook-secret-value".to_owned()),
            "ATIENDE_WHATSAPP_ACCESS_TOKEN" => Some("whatsapp-token-value".to_owned()),
            "ATIENDE_WHATSAPP_PHONE_NUMBER_ID" => Some("106540352242922".to_owned()),
            "ATIENDE_WHATSAPP_APP_SECRET" => Some("app-secret-value".to_owned()),
            "ATIENDE_WHATSAPP_VERIFY_TOKEN" => Some("verify-token-value".to_owned()),
            "ATIENDE_WHATSAPP_TEMPLATES" => Some("answer=respuesta_pqrs:es_CO".to_owned()),
            _ => None,
        };
        assert_eq!(Settings::default().push_reach(), Reach::Public);
        let s = Settings::load_from(None, env).expect("valid settings");
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.push_reach(), Reach::PublicAndLoopback);
        assert!(
            s.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("vapid-secret-value"),
            "{printed}"
        );
        let bots = format!("{:?}", s.bots());
        assert!(bots.contains("api.telegram.org"), "{bots}");
        assert!(bots.contains("respuesta_pqrs"), "{bots}");
        for secret in [
            "telegram-token-value",
            "webhook-secret-value",
            "whatsapp-token-value",
            "app-secret-value",
            "verify-token-value",
        ] {
            assert!(
                !printed.contains(secret) && !bots.contains(secret),
                "{printed} {bots}"
            );
        }
    }

    #[test]
    fn whatsapp_templates_name_a_kind_and_a_language() {
        let with = |templates: &'static str| {
            move |k: &str| (k == "ATIENDE_WHATSAPP_TEMPLATES").then(|| templates.to_owned())
        };
        let s = Settings::load_from(
            None,
            with("answer=respuesta_pqrs:es_CO, information_request=solicitud:es"),
        )
        .expect("valid settings");
        assert_eq!(s.whatsapp_templates.len(), 2);
        for bad in [
            "answers=x:es",
            "answer=respuesta",
            "answer",
            "answer=a b:es",
        ] {
            let err = Settings::load_from(None, with(bad)).expect_err(bad);
            assert!(
                err.to_string().contains("ATIENDE_WHATSAPP_TEMPLATES"),
                "{err}"
            );
        }
        let version = |k: &str| (k == "ATIENDE_WHATSAPP_API_VERSION").then(|| "21".to_owned());
        assert!(Settings::load_from(None, version).is_err());
    }

    #[test]
    fn login_limits_and_proxies_come_from_the_environment() {
        let env = |k: &str| match k {
            "ATIENDE_LOGIN_LIMIT_PER_ADDRESS" => Some("1000".to_owned()),
            "ATIENDE_TRUSTED_PROXIES" => Some("10.0.0.0/8, ::1".to_owned()),
            _ => None,
        };
        let s = Settings::load_from(None, env).expect("valid settings");
        assert_eq!(s.login_limits().per_address, 1000);
        assert_eq!(s.trusted_proxies.len(), 2);
        let bad = |k: &str| (k == "ATIENDE_TRUSTED_PROXIES").then(|| "proxy.local".to_owned());
        let err = Settings::load_from(None, bad).expect_err("must fail");
        assert!(err.to_string().contains("ATIENDE_TRUSTED_PROXIES"), "{err}");
    }

    #[test]
    fn mail_settings_come_from_the_environment_and_the_password_does_not_print() {
        assert!(Settings::default().mail().is_none(), "off without a host");
        let env = |k: &str| match k {
            "ATIENDE_SMTP_HOST" => Some("smtp.empresa.co".to_owned()),
            "ATIENDE_SMTP_TLS" => Some("tls".to_owned()),
            "ATIENDE_SMTP_USERNAME" => Some("pqrs".to_owned()),
            "ATIENDE_SMTP_PASSWORD" => Some("smtp-password-value".to_owned()),
            "ATIENDE_MAIL_FROM" => Some("Servicio <pqrs@empresa.co>".to_owned()),
            "ATIENDE_MAIL_SERVICE_MAILBOX" => Some("buzon@empresa.co".to_owned()),
            "ATIENDE_PUBLIC_BASE_URL" => Some("https://pqrs.empresa.co/".to_owned()),
            _ => None,
        };
        let s = Settings::load_from(None, env).expect("valid settings");
        let mail = s.mail().expect("on with a host");
        assert_eq!((mail.port, mail.tls), (465, atiende_mail::TlsMode::Tls));
        for printed in [format!("{s:?}"), format!("{mail:?}")] {
            assert!(!printed.contains("smtp-password-value"), "{printed}");
        }
        for (name, bad) in [
            ("ATIENDE_SMTP_TLS", "ssl"),
            ("ATIENDE_SMTP_PORT", "0"),
            ("ATIENDE_MAIL_FROM", "pqrs"),
            ("ATIENDE_MAIL_SERVICE_MAILBOX", "buzón sin arroba"),
            ("ATIENDE_PUBLIC_BASE_URL", "pqrs.empresa.co"),
        ] {
            let env = |k: &str| (k == name).then(|| bad.to_owned());
            let err = Settings::load_from(None, env).expect_err(bad);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = |k: &str| (k == "ATIENDE_LISTEN").then(|| "nonsense".to_owned());
        let err = Settings::load_from(None, env).expect_err("must fail");
        assert!(err.to_string().contains("ATIENDE_LISTEN"));
    }

    #[test]
    fn renewals_come_from_the_environment_within_bounds() {
        let defaults = Settings::default();
        assert_eq!(
            (
                defaults.contract_renewal_days,
                defaults.commercial_process.as_str()
            ),
            (30, "COMERCIAL")
        );
        let env = |k: &str| match k {
            "ATIENDE_CONTRACT_RENEWAL_DAYS" => Some("45".to_owned()),
            "ATIENDE_COMMERCIAL_PROCESS" => Some(" ventas ".to_owned()),
            _ => None,
        };
        let s = Settings::load_from(None, env).expect("valid settings");
        assert_eq!(
            (s.contract_renewal_days, s.commercial_process.as_str()),
            (45, "VENTAS")
        );
        for (name, value) in [
            ("ATIENDE_CONTRACT_RENEWAL_DAYS", "0"),
            ("ATIENDE_CONTRACT_RENEWAL_DAYS", "366"),
            ("ATIENDE_COMMERCIAL_PROCESS", "1x"),
        ] {
            let env = |k: &str| (k == name).then(|| value.to_owned());
            let err = Settings::load_from(None, env).expect_err("out of bounds");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn sync_limits_have_the_documented_defaults_and_come_from_the_environment() {
        let sync = Settings::default().sync();
        assert_eq!(sync.max_queued_bytes, 8 << 20);
        assert_eq!(sync.max_ephemeral_bytes, 64 << 10);
        assert_eq!(sync.max_connections_per_user, 10);
        assert_eq!(sync.max_document_bytes, 64 << 20);
        assert_eq!(sync.awake_documents, 1_000);
        let env = |k: &str| match k {
            "ATIENDE_SYNC_MAX_CONNECTIONS_PER_USER" => Some("500".to_owned()),
            "ATIENDE_SYNC_WRITE_BURST_BYTES" => Some("1024".to_owned()),
            "ATIENDE_SYNC_AWAKE_DOCUMENTS" => Some("0".to_owned()),
            _ => None,
        };
        let sync = Settings::load_from(None, env)
            .expect("valid settings")
            .sync();
        assert_eq!(sync.max_connections_per_user, 500);
        assert_eq!(sync.write_burst_bytes, 1024);
        assert_eq!(sync.awake_documents, 0, "every idle document may sleep");
        for (name, value) in [
            ("ATIENDE_SYNC_MAX_DOCUMENT_BYTES", "0"),
            ("ATIENDE_SYNC_AWAKE_DOCUMENTS", "many"),
            ("ATIENDE_SYNC_AWAKE_DOCUMENTS", "-1"),
        ] {
            let env = move |k: &str| (k == name).then(|| value.to_owned());
            let err = Settings::load_from(None, env).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_web_pages_brand_is_checked() {
        let load = |name: &'static str, value: &'static str| {
            Settings::load_from(None, move |k: &str| (k == name).then(|| value.to_owned()))
        };
        assert_eq!(
            load("ATIENDE_LINK_CODE_MINUTES", "5")
                .expect("five minutes")
                .link_code_minutes,
            5
        );
        let s = load("ATIENDE_COMPANY_COLOR", "#1a7f37").expect("a hex colour");
        assert_eq!(
            (s.company_name.as_str(), s.company_color.as_str()),
            ("Atiende", "#1a7f37")
        );
        assert_eq!(
            load("ATIENDE_COMPANY_LOGO_URL", "https://empresa.co/logo.png")
                .expect("an https logo")
                .company_logo_url
                .as_deref(),
            Some("https://empresa.co/logo.png")
        );
        for (name, value) in [
            ("ATIENDE_COMPANY_COLOR", "red; } body { display: none"),
            ("ATIENDE_COMPANY_COLOR", "#12345"),
            ("ATIENDE_COMPANY_LOGO_URL", "javascript:alert(1)"),
            ("ATIENDE_COMPANY_LOGO_URL", "//elsewhere.example/logo.png"),
            ("ATIENDE_WEB_POSTS_PER_WINDOW", "0"),
            ("ATIENDE_WEB_WINDOW_SECS", "soon"),
            ("ATIENDE_LINK_CODE_MINUTES", "61"),
            ("ATIENDE_SURVEY_DELAY_HOURS", "121"),
            ("ATIENDE_SURVEY_WINDOW_DAYS", "0"),
            ("ATIENDE_SURVEY_LOW_SCORE", "5"),
            ("ATIENDE_SURVEY_DEFAULT_PROCESS", "no process"),
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "6,13"),
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "0"),
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "6,6"),
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "junio"),
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "6,,12"),
            ("ATIENDE_SURVEY_CAMPAIGN_SAMPLE", "100001"),
            ("ATIENDE_SURVEY_CAMPAIGN_SAMPLE", "-1"),
            ("ATIENDE_SURVEY_CAMPAIGN_DAYS", "0"),
            ("ATIENDE_SURVEY_CAMPAIGN_DAYS", "91"),
            ("ATIENDE_SURVEY_REMINDER_DAYS", "0"),
            ("ATIENDE_SURVEY_REMINDER_DAYS", "61"),
        ] {
            match load(name, value) {
                Err(SettingsError::Env { name: refused, .. }) => assert_eq!(refused, name),
                other => panic!("{name}={value:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn survey_campaign_settings_are_parsed() {
        let load = |pairs: &'static [(&'static str, &'static str)]| {
            Settings::load_from(None, move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            })
            .expect("valid settings")
            .survey_campaigns()
        };
        let default = load(&[]);
        assert_eq!(default.months, [6, 12], "June and December");
        assert_eq!(default.sample, None, "every active customer");
        assert_eq!(default.days_open, 30);
        assert_eq!(default.remind_after, Duration::from_secs(7 * 24 * 3600));
        let set = load(&[
            ("ATIENDE_SURVEY_CAMPAIGN_MONTHS", " 3, 9 "),
            ("ATIENDE_SURVEY_CAMPAIGN_SAMPLE", "250"),
            ("ATIENDE_SURVEY_CAMPAIGN_DAYS", "90"),
            ("ATIENDE_SURVEY_REMINDER_DAYS", "1"),
        ]);
        assert_eq!(set.months, [3, 9]);
        assert_eq!(set.sample, Some(250));
        assert_eq!(set.days_open, 90);
        assert_eq!(set.remind_after, Duration::from_secs(24 * 3600));
        let off = load(&[("ATIENDE_SURVEY_CAMPAIGN_MONTHS", "")]);
        assert!(off.months.is_empty(), "empty switches the campaigns off");
    }
}
