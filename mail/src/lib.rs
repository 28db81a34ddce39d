//! The service mailbox as a door of its own: what a customer must hear leaves over SMTP, and what
//! customers write to the mailbox comes in over IMAP.
//!
//! Out: [`Mailer`] is the outbox's `email` channel ([`atiende_core::outbox`] claims, retries and
//! records). Each delivery becomes one message (plain text, and the same as HTML) to the
//! customer's address, in their language, with the radicado in the subject, the case's secret
//! link, and a `Message-ID` made from the delivery (stored on it as `external_message_id`) so that
//! replies can be matched to the case. The answer is copied (Bcc, in the same SMTP transaction) to
//! the service mailbox.

use std::fmt;
use std::time::Duration;

use atiende_core::account_setup;
use atiende_core::notifications::Kind;
use atiende_core::outbox::{Channel, Claimed, Outcome, Sender, backoff};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncTransport, Tokio1Executor};
use sqlx::PgPool;

pub mod inbound;
pub mod render;

rust_i18n::i18n!("../locales", fallback = "es");

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text: a relay on this machine or a test server only.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl TlsMode {
    /// The port a server of this mode usually listens on.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Tls),
            _ => Err("expected none, starttls or tls".into()),
        }
    }
}

/// The outgoing mail server and what our messages say about us.
#[derive(Clone)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Who the messages come from: `Servicio al cliente <pqrs@empresa.co>`.
    pub from: String,
    /// The service mailbox: replies go there, and every answer is copied to it (PRO-SIG-10).
    pub service_mailbox: Option<String>,
    /// The public site the case links point to, such as `https://pqrs.empresa.co`.
    pub public_base_url: String,
    /// How long one SMTP exchange may take.
    pub timeout: Duration,
}

impl fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("service_mailbox", &self.service_mailbox)
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "the sender address {0:?} is not an e-mail address (Name <user@domain> or user@domain)"
    )]
    BadFrom(String),
    #[error("the service mailbox {0:?} is not an e-mail address")]
    BadMailbox(String),
    #[error("the public base URL {0:?} is not an http or https URL")]
    BadBaseUrl(String),
    #[error("setting up the SMTP connection to {host}: {message}")]
    Transport { host: String, message: String },
}

/// An address setting, checked: `Name <user@domain>` or `user@domain`.
pub fn parse_mailbox(raw: &str) -> Option<Mailbox> {
    raw.trim().parse().ok()
}

/// The public base URL, checked, without a trailing slash.
pub fn parse_base_url(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .then(|| url.as_str().trim_end_matches('/').to_owned())
}

/// The `email` channel: sends one claimed delivery over SMTP.
pub struct Mailer {
    db: PgPool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    service_mailbox: Option<Mailbox>,
    base_url: String,
}

impl Mailer {
    pub fn new(db: PgPool, settings: &MailSettings) -> Result<Mailer, MailError> {
        let from = parse_mailbox(&settings.from)
            .ok_or_else(|| MailError::BadFrom(settings.from.clone()))?;
        let service_mailbox = settings
            .service_mailbox
            .as_deref()
            .map(|m| parse_mailbox(m).ok_or_else(|| MailError::BadMailbox(m.to_owned())))
            .transpose()?;
        let base_url = parse_base_url(&settings.public_base_url)
            .ok_or_else(|| MailError::BadBaseUrl(settings.public_base_url.clone()))?;
        let transport_error = |e: lettre::transport::smtp::Error| MailError::Transport {
            host: settings.host.clone(),
            message: e.to_string(),
        };
        let tls = || TlsParameters::new(settings.host.clone()).map_err(transport_error);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(settings.timeout))
            .hello_name(ClientId::Domain(from.email.domain().to_owned()))
            .tls(match settings.tls {
                TlsMode::None => Tls::None,
                TlsMode::StartTls => Tls::Required(tls()?),
                TlsMode::Tls => Tls::Wrapper(tls()?),
            });
        if let Some(user) = &settings.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                settings.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Mailer {
            db,
            transport: builder.build(),
            from,
            service_mailbox,
            base_url,
        })
    }

    /// The `Message-ID` of a delivery's e-mail, without its angle brackets: the same on every
    /// attempt, so a message that reached the server before a lost answer is recognised as one.
    pub fn message_id(&self, delivery: &Claimed) -> String {
        let case = delivery
            .case_id
            .map_or_else(|| "notice".to_owned(), |c| c.simple().to_string());
        format!("pqrs.{}.{case}@{}", delivery.id, self.from.email.domain())
    }

    /// The data of an `account_setup` notice with its link (`link`) and when the link expires
    /// (`expires_at`), in memory only: the link's token is made now and only its digest is stored
    /// (see [`atiende_core::account_setup`]), so it is never in the database in clear. A link
    /// that was replaced, used or has expired is not sent.
    async fn setup_link(
        &self,
        conn: &mut sqlx::PgConnection,
        d: &Claimed,
        language: &str,
    ) -> Result<serde_json::Value, Outcome> {
        let failed = |error: &str| Outcome::Failed {
            status: None,
            error: error.to_owned(),
        };
        let setup = atiende_core::texts::data_text(&d.data, "setup_id")
            .parse::<uuid::Uuid>()
            .map_err(|_| failed("the notice names no link"))?;
        let issued = account_setup::issue(&mut *conn, setup)
            .await
            .map_err(|e| Outcome::Retry {
                status: None,
                error: format!("making the link: {e}"),
                after: backoff(d.attempts),
                progress: None,
            })?
            .ok_or_else(|| {
                failed(
                    "the link was replaced or used, or expired before it could be sent; staff can \
                     send a new one",
                )
            })?;
        let mut data = d.data.clone();
        if let Some(fields) = data.as_object_mut() {
            fields.insert(
                "link".into(),
                format!(
                    "{}{}?lang={language}",
                    self.base_url,
                    account_setup::page_path(&issued.token)
                )
                .into(),
            );
            fields.insert("expires_at".into(), issued.expires_at.to_rfc3339().into());
        }
        Ok(data)
    }

    /// The message for a delivery, or why there is none to send (a reason staff read).
    async fn compose(&self, d: &Claimed) -> Result<(Message, String), Outcome> {
        let retry = |e: atiende_core::Error| Outcome::Retry {
            status: None,
            error: format!("reading the case for the e-mail: {e}"),
            after: backoff(d.attempts),
            progress: None,
        };
        let failed = |error: String| Outcome::Failed {
            status: None,
            error,
        };
        let to: Address = d
            .target
            .parse()
            .map_err(|_| failed("the customer's e-mail address is not valid".into()))?;
        let mut conn = self.db.acquire().await.map_err(|e| retry(e.into()))?;
        let recipient = sqlx::query!(
            r#"select cu.name,
                      coalesce(cu.language,
                               (select u.language from users u
                                where u.customer_id = cu.id and u.active
                                order by u.created_at limit 1),
                               'es') as "language!"
               from deliveries d
               join notifications n on n.id = d.notification_id
               left join users nu on nu.id = n.user_id
               join customers cu on cu.id = coalesce(n.customer_id, nu.customer_id)
               where d.id = $1"#,
            d.id
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| retry(e.into()))?
        .ok_or_else(|| failed("the notification has no customer to write to".into()))?;
        let link = match d.case_id {
            Some(case) => {
                let token = atiende_core::case_links::token_for(&mut conn, case)
                    .await
                    .map_err(retry)?;
                Some(format!("{}/pqrs/caso/{token}", self.base_url))
            }
            None => None,
        };
        let data = if d.kind == Kind::AccountSetup.as_str() {
            std::borrow::Cow::Owned(self.setup_link(&mut conn, d, &recipient.language).await?)
        } else {
            std::borrow::Cow::Borrowed(&d.data)
        };
        drop(conn);
        let mail = render::render(
            &render::Addressee {
                name: &recipient.name,
                language: &recipient.language,
                link: link.as_deref(),
            },
            &d.kind,
            &data,
        );
        let message_id = self.message_id(d);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(recipient.name.clone()), to))
            .subject(mail.subject)
            .message_id(Some(format!("<{message_id}>")))
            // RFC 3834: a notice, not a person writing; auto-responders should not answer it.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Content-Language"),
                recipient.language.clone(),
            ));
        if let Some(mailbox) = &self.service_mailbox {
            builder = builder.reply_to(mailbox.clone());
            if d.kind == "answer" {
                builder = builder.bcc(mailbox.clone());
            }
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| failed(format!("the e-mail could not be written: {e}")))?;
        Ok((message, message_id))
    }
}

/// What an SMTP exchange's end means for the delivery: a 5xx refusal is final, anything else
/// (a 4xx, a refused or dropped connection, a timeout, a TLS failure) is tried again.
pub fn outcome(
    result: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
    attempts: i32,
    message_id: String,
) -> Outcome {
    match result {
        Ok(response) => Outcome::Sent {
            status: u16::from(response.code()),
            external_id: Some(message_id),
        },
        Err(e) if e.is_permanent() => Outcome::Failed {
            status: e.status().map(u16::from),
            error: e.to_string(),
        },
        Err(e) => Outcome::Retry {
            status: e.status().map(u16::from),
            error: e.to_string(),
            after: backoff(attempts),
            progress: None,
        },
    }
}

impl Sender for Mailer {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, delivery: &Claimed) -> Outcome {
        let (message, message_id) = match self.compose(delivery).await {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        outcome(
            self.transport.send(message).await,
            delivery.attempts,
            message_id,
        )
    }
}
