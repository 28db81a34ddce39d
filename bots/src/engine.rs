//! The conversation engine, the same for every platform: it reads one customer input (text, a
//! tapped choice, a shared contact, a file) in the light of where the conversation stands, acts on
//! the customer's cases through `atiende_core`, and answers with replies the platform's adapter
//! turns into messages. Where a conversation stands lives in PostgreSQL (`bot_conversations`), so
//! a restart goes on where the customer was.

use std::future::Future;

use atiende_core::blobs::{self, BlobId};
use atiende_core::cases::{self, Actor, Filed, NewCase};
use atiende_core::contacts::{self, ChatChannel, NewContact, PhoneMatch};
use atiende_core::types::{CaseStatus, CaseType, DocumentType};
use atiende_core::{Error, auth, terms};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::texts::{bot, bot_with, tr};

/// The longest subject and description a chat files (the same limits as the app's).
const SUBJECT_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 10_000;
const MESSAGE_MAX: usize = 5_000;
const COMMENT_MAX: usize = 2_000;
/// Files a customer may send with one PQRS from a chat.
const MAX_ATTACHMENTS: usize = 5;

/// The types a customer files from a chat.
const FILING_TYPES: [CaseType; 5] = [
    CaseType::Peticion,
    CaseType::Queja,
    CaseType::Reclamo,
    CaseType::Sugerencia,
    CaseType::Denuncia,
];

/// One input from the customer, as an adapter understood the platform's update.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub channel: ChatChannel,
    /// The platform's id for the chat.
    pub chat: String,
    /// The platform's id for this update: filing from it is idempotent on it.
    pub update_key: String,
    /// The platform's idea of the customer's language (Telegram's `language_code`).
    pub language_hint: Option<String>,
    /// A phone number the platform vouches for (the WhatsApp sender's), in E.164.
    pub verified_phone: Option<String>,
    pub input: Input,
}

#[derive(Debug, Clone)]
pub enum Input {
    Text(String),
    /// A button or list entry the customer tapped: the id we gave it.
    Choice(String),
    /// A contact card; `own` when it is the sender's own number.
    Contact {
        phone: String,
        own: bool,
    },
    File(FileRef),
    /// Something the bot does not read (a sticker, a voice note, a location, an edit...).
    Unsupported(String),
}

/// A file on the platform, fetched only when the conversation wants it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub mime: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is larger than the limit")]
    TooLarge,
    #[error("downloading the file: {0}")]
    Failed(String),
}

/// How an adapter fetches a file the customer sent, at most `limit` bytes.
pub trait Media: Send + Sync {
    fn fetch(
        &self,
        file: &FileRef,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<u8>, Option<String>), MediaError>> + Send;
}

/// A message to the customer: text, and the choices offered with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
    /// Offer the platform's "share my phone number" button (Telegram).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ask_contact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub label: String,
}

impl Reply {
    pub fn text(text: String) -> Reply {
        Reply {
            text,
            choices: Vec::new(),
            ask_contact: false,
        }
    }

    fn with(mut self, choices: Vec<Choice>) -> Reply {
        self.choices = choices;
        self
    }
}

fn choice(id: impl Into<String>, label: String) -> Choice {
    Choice {
        id: id.into(),
        label,
    }
}

/// The 1–5 rating choices for an answered case.
pub fn rating_choices(case_id: Uuid) -> Vec<Choice> {
    (1..=5)
        .map(|n| choice(format!("rate:{case_id}:{n}"), "⭐".repeat(n)))
        .collect()
}

/// Where a conversation stands, with what the customer gave so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Nothing said yet.
    #[default]
    New,
    /// Asked to accept the data policy.
    Consent,
    /// Declined the data policy: nothing is kept but that.
    Declined,
    /// Consented; asked to share their phone number or register (Telegram).
    ShareContact,
    RegisterName {
        phone: Option<String>,
    },
    RegisterDocumentType {
        phone: Option<String>,
        name: String,
    },
    RegisterDocumentNumber {
        phone: Option<String>,
        name: String,
        document_type: DocumentType,
    },
    /// Identified, nothing under way.
    Menu,
    FileType,
    FileSubject {
        case_type: CaseType,
    },
    FileDescription {
        case_type: CaseType,
        subject: String,
    },
    FileAttachments {
        case_type: CaseType,
        subject: String,
        description: String,
        blobs: Vec<String>,
    },
    FileConfirm {
        case_type: CaseType,
        subject: String,
        description: String,
        blobs: Vec<String>,
    },
    StatusRadicado,
    /// A message arrived unasked while a case from this chat is open: add it there, or file anew?
    OfferAdd {
        case_id: Uuid,
        radicado: String,
        text: String,
    },
    /// Rated with one tap; a comment may follow.
    RatingComment {
        case_id: Uuid,
    },
    /// Answering a survey in the chat (see [`crate::survey`]): `question` is being asked, of
    /// `count`; `answers` (question code → answer) are stored together after the last.
    Survey {
        invitation_id: Uuid,
        question: atiende_core::surveys::SurveyQuestion,
        count: usize,
        answers: std::collections::BTreeMap<String, String>,
    },
}

/// A conversation as stored.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub channel: ChatChannel,
    pub chat_key: String,
    pub language: String,
    pub step: Step,
    /// The customer's chat, once the customer is known.
    pub chat_id: Option<Uuid>,
}

/// What the engine needs from the outside.
pub struct Engine<'a, M: Media> {
    pub pool: &'a PgPool,
    pub media: &'a M,
    /// The largest file accepted, in bytes (the blob limit).
    pub file_limit: usize,
    /// When a survey answered in the chat opens a follow-up.
    pub low_score: &'a atiende_core::surveys::LowScore,
}

enum Command {
    Start,
    Stop,
    Menu,
    Help,
}

fn command(text: &str) -> Option<Command> {
    let t = text.trim().trim_start_matches('/');
    // Telegram appends the bot's name in groups: /start@atiende_bot.
    let t = t.split('@').next().unwrap_or(t).to_lowercase();
    match t.as_str() {
        "start" | "inicio" => Some(Command::Start),
        "stop" | "baja" => Some(Command::Stop),
        "menu" | "menú" | "cancel" | "cancelar" => Some(Command::Menu),
        "help" | "ayuda" => Some(Command::Help),
        _ => None,
    }
}

impl<M: Media> Engine<'_, M> {
    /// Handles one input: acts, moves the conversation on, and returns the replies. `conn` is
    /// the transaction that stores the conversation; what is done on cases commits on its own
    /// (filing is idempotent on the update, so a replay files once).
    pub async fn handle(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        inc: &Incoming,
    ) -> Result<Vec<Reply>, Error> {
        if conv.step == Step::New {
            conv.language = crate::texts::from_hint(inc.language_hint.as_deref()).to_owned();
        }
        let customer = match conv.chat_id {
            Some(id) => Some(contacts::chat(&mut *conn, id).await?),
            None => None,
        };
        if let Input::Text(text) = &inc.input
            && let Some(cmd) = command(text)
        {
            return self.command(conn, conv, customer.as_ref(), cmd).await;
        }
        if let (Some(chat), Input::Choice(id)) = (&customer, &inc.input) {
            if let Some(rest) = id.strip_prefix("rate:") {
                return self.rate(conv, chat, rest).await;
            }
            if let Some(rest) = id.strip_prefix(crate::survey::PREFIX) {
                return self.survey_tap(conn, conv, chat, rest).await;
            }
            if id == "menu:language" {
                let lang = if conv.language == "es" { "en" } else { "es" };
                conv.language = lang.to_owned();
                contacts::set_language(&mut *conn, chat.id, lang).await?;
                conv.step = Step::Menu;
                return Ok(vec![
                    Reply::text(bot(lang, "language_set")),
                    self.menu(conv),
                ]);
            }
        }
        if let Input::Unsupported(_) = inc.input {
            let mut replies = vec![Reply::text(bot(&conv.language, "unsupported"))];
            replies.extend(self.prompt(conv));
            return Ok(replies);
        }
        let step = conv.step.clone();
        match (step, customer) {
            (Step::New, _) => {
                conv.step = Step::Consent;
                Ok(vec![
                    Reply::text(bot(&conv.language, "welcome")),
                    self.consent_prompt(conv),
                ])
            }
            (Step::Consent, _) => self.consent(conn, conv, inc).await,
            (Step::Declined, _) => Ok(vec![Reply::text(bot(&conv.language, "still_declined"))]),
            (Step::ShareContact, _) => self.share_contact(conn, conv, inc).await,
            (Step::RegisterName { phone }, _) => match &inc.input {
                Input::Text(name) => match auth::parse_name(name) {
                    Ok(name) => {
                        conv.step = Step::RegisterDocumentType { phone, name };
                        Ok(self.prompt(conv))
                    }
                    Err(_) => self.again(conv, "bad_name"),
                },
                _ => self.again(conv, "not_understood"),
            },
            (Step::RegisterDocumentType { phone, name }, _) => {
                let picked = match &inc.input {
                    Input::Choice(id) => id
                        .strip_prefix("doc:")
                        .and_then(|d| DocumentType::ALL.iter().copied().find(|t| t.as_str() == d)),
                    Input::Text(t) => DocumentType::ALL
                        .iter()
                        .copied()
                        .find(|d| d.as_str().eq_ignore_ascii_case(t.trim())),
                    _ => None,
                };
                match picked {
                    Some(document_type) => {
                        conv.step = Step::RegisterDocumentNumber {
                            phone,
                            name,
                            document_type,
                        };
                        Ok(self.prompt(conv))
                    }
                    None => self.again(conv, "not_understood"),
                }
            }
            (
                Step::RegisterDocumentNumber {
                    phone,
                    name,
                    document_type,
                },
                _,
            ) => {
                let Input::Text(number) = &inc.input else {
                    return self.again(conv, "not_understood");
                };
                if auth::parse_document_number(number).is_err() {
                    return self.again(conv, "bad_document_number");
                }
                let new = NewContact {
                    name: name.clone(),
                    document_type,
                    document_number: number.clone(),
                    phone,
                    email: None,
                    language: None,
                };
                let registered = contacts::register(&mut *conn, &new, conv.channel).await?;
                self.link(conn, conv, registered.customer_id).await?;
                conv.step = Step::Menu;
                Ok(vec![
                    Reply::text(bot_with(&conv.language, "registered", &[("name", &name)])),
                    self.menu(conv),
                ])
            }
            // Every step below needs a known customer; without one, start over.
            (_, None) => {
                conv.step = Step::Consent;
                Ok(vec![self.consent_prompt(conv)])
            }
            (Step::Menu, Some(chat)) => self.menu_input(conn, conv, &chat, inc).await,
            (Step::Survey { .. }, Some(chat)) => self.survey_input(conn, conv, &chat, inc).await,
            (Step::FileType, Some(_)) => {
                let picked = match &inc.input {
                    Input::Choice(id) => id
                        .strip_prefix("type:")
                        .and_then(|t| FILING_TYPES.iter().copied().find(|c| c.as_str() == t)),
                    _ => None,
                };
                match picked {
                    Some(case_type) => {
                        conv.step = Step::FileSubject { case_type };
                        Ok(self.prompt(conv))
                    }
                    None => self.again(conv, "not_understood"),
                }
            }
            (Step::FileSubject { case_type }, Some(_)) => {
                match self.text_input(conv, &inc.input, SUBJECT_MAX) {
                    Ok(subject) => {
                        conv.step = Step::FileDescription { case_type, subject };
                        Ok(self.prompt(conv))
                    }
                    Err(replies) => Ok(replies),
                }
            }
            (Step::FileDescription { case_type, subject }, Some(_)) => {
                match self.text_input(conv, &inc.input, DESCRIPTION_MAX) {
                    Ok(description) => {
                        conv.step = Step::FileAttachments {
                            case_type,
                            subject,
                            description,
                            blobs: Vec::new(),
                        };
                        Ok(self.prompt(conv))
                    }
                    Err(replies) => Ok(replies),
                }
            }
            (
                Step::FileAttachments {
                    case_type,
                    subject,
                    description,
                    mut blobs,
                },
                Some(chat),
            ) => match &inc.input {
                Input::File(file) => {
                    if blobs.len() >= MAX_ATTACHMENTS {
                        let max = MAX_ATTACHMENTS.to_string();
                        let mut replies = vec![Reply::text(bot_with(
                            &conv.language,
                            "too_many_attachments",
                            &[("max", &max)],
                        ))];
                        replies.extend(self.prompt(conv));
                        return Ok(replies);
                    }
                    let stored = match self.store_file(chat.customer_id, file).await? {
                        Ok(sha256) => sha256,
                        Err(key) => {
                            let mb = (self.file_limit / (1024 * 1024)).max(1).to_string();
                            let mut replies = vec![Reply::text(bot_with(
                                &conv.language,
                                key,
                                &[("max_mb", &mb)],
                            ))];
                            replies.extend(self.prompt(conv));
                            return Ok(replies);
                        }
                    };
                    if !blobs.contains(&stored) {
                        blobs.push(stored);
                    }
                    let (count, max) = (blobs.len().to_string(), MAX_ATTACHMENTS.to_string());
                    conv.step = Step::FileAttachments {
                        case_type,
                        subject,
                        description,
                        blobs,
                    };
                    Ok(vec![Reply::text(bot_with(
                        &conv.language,
                        "attachment_received",
                        &[("count", &count), ("max", &max)],
                    ))])
                }
                _ if is_done(&inc.input) => {
                    conv.step = Step::FileConfirm {
                        case_type,
                        subject,
                        description,
                        blobs,
                    };
                    Ok(self.prompt(conv))
                }
                _ => self.again(conv, "not_understood"),
            },
            (
                Step::FileConfirm {
                    case_type,
                    subject,
                    description,
                    blobs,
                },
                Some(chat),
            ) => match &inc.input {
                Input::Choice(id) if id == "send" => {
                    let new = NewCase {
                        id: filing_id(inc),
                        case_type,
                        subject,
                        description,
                        channel: conv.channel.case_channel(),
                        chat_id: Some(chat.id),
                        work_order_id: None,
                    };
                    let case = match cases::file(self.pool, chat.customer_id, None, new).await? {
                        Filed::Created(c) | Filed::Existing(c) => c,
                    };
                    if !blobs.is_empty() {
                        let mut tx = self.pool.begin().await?;
                        blobs::attach_customer_blobs(
                            &mut tx,
                            case.id,
                            None,
                            &blobs,
                            chat.customer_id,
                        )
                        .await?;
                        tx.commit().await?;
                    }
                    // The acknowledgement (radicado and legal due date) reaches this chat as the
                    // case's notification, like every channel's.
                    conv.step = Step::Menu;
                    Ok(Vec::new())
                }
                _ => self.again(conv, "not_understood"),
            },
            (Step::StatusRadicado, Some(chat)) => {
                let Input::Text(raw) = &inc.input else {
                    return self.again(conv, "not_understood");
                };
                let radicado = raw.trim().to_uppercase();
                conv.step = Step::Menu;
                let found = sqlx::query!(
                    r#"select radicado, type as "case_type: CaseType", subject,
                              status as "status: CaseStatus", legal_due_date
                       from cases where radicado = $1 and customer_id = $2"#,
                    radicado,
                    chat.customer_id
                )
                .fetch_optional(self.pool)
                .await?;
                let l = conv.language.clone();
                let text = match found {
                    Some(c) => bot_with(
                        &l,
                        "case_status",
                        &[
                            ("radicado", &c.radicado),
                            (
                                "case_type",
                                &atiende_core::texts::case_type(&l, c.case_type),
                            ),
                            ("subject", &c.subject),
                            ("status", &status(&l, c.status)),
                            (
                                "due_date",
                                &atiende_core::texts::long_date(&l, c.legal_due_date),
                            ),
                        ],
                    ),
                    // Someone else's radicado reads exactly like one that does not exist.
                    None => bot_with(&l, "radicado_not_found", &[("radicado", &radicado)]),
                };
                Ok(vec![Reply::text(text), self.menu(conv)])
            }
            (
                Step::OfferAdd {
                    case_id,
                    radicado,
                    text,
                },
                Some(chat),
            ) => match &inc.input {
                Input::Choice(id) if id == "add" => {
                    conv.step = Step::Menu;
                    cases::add_message(
                        &mut *conn,
                        &*terms::current(self.pool).await?,
                        Actor::Customer(chat.customer_id),
                        case_id,
                        &text,
                        &[],
                    )
                    .await?;
                    Ok(vec![Reply::text(bot_with(
                        &conv.language,
                        "message_added",
                        &[("radicado", &radicado)],
                    ))])
                }
                Input::Choice(id) if id == "new" => {
                    conv.step = Step::FileType;
                    Ok(self.prompt(conv))
                }
                _ => self.again(conv, "not_understood"),
            },
            (Step::RatingComment { case_id }, Some(chat)) => match &inc.input {
                Input::Choice(id) if id == "skip" => {
                    conv.step = Step::Menu;
                    Ok(vec![self.menu(conv)])
                }
                Input::Text(_) => match self.text_input(conv, &inc.input, COMMENT_MAX) {
                    Ok(comment) => {
                        conv.step = Step::Menu;
                        match cases::comment_rating(
                            self.pool,
                            Actor::Customer(chat.customer_id),
                            case_id,
                            &comment,
                        )
                        .await
                        {
                            Ok(()) | Err(Error::Conflict { .. }) => {}
                            Err(e) => return Err(e),
                        }
                        Ok(vec![Reply::text(bot(&conv.language, "comment_saved"))])
                    }
                    Err(replies) => Ok(replies),
                },
                _ => self.again(conv, "not_understood"),
            },
        }
    }

    async fn command(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        customer: Option<&contacts::Chat>,
        cmd: Command,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        match cmd {
            Command::Stop => {
                if let Some(chat) = customer {
                    contacts::set_opted_out(&mut *conn, chat.id, true).await?;
                }
                Ok(vec![Reply::text(bot(&l, "stopped"))])
            }
            Command::Start => {
                let mut replies = Vec::new();
                if let Some(chat) = customer
                    && chat.opted_out
                {
                    contacts::set_opted_out(&mut *conn, chat.id, false).await?;
                    replies.push(Reply::text(bot(&l, "started")));
                }
                // Someone not yet known starts at the data policy; a customer at the menu.
                if customer.is_none() {
                    if conv.step == Step::New {
                        replies.push(Reply::text(bot(&l, "welcome")));
                    }
                    conv.step = Step::Consent;
                    replies.push(self.consent_prompt(conv));
                } else {
                    conv.step = Step::Menu;
                    replies.push(self.menu(conv));
                }
                Ok(replies)
            }
            Command::Menu => {
                if conv.chat_id.is_none() {
                    return Ok(self.prompt(conv));
                }
                let mid_flow = !matches!(conv.step, Step::Menu);
                let in_survey = matches!(conv.step, Step::Survey { .. });
                conv.step = Step::Menu;
                let mut replies = Vec::new();
                if in_survey {
                    replies.push(Reply::text(bot(&l, "survey_left")));
                } else if mid_flow {
                    replies.push(Reply::text(bot(&l, "cancelled")));
                }
                replies.push(self.menu(conv));
                Ok(replies)
            }
            Command::Help => {
                let mut replies = vec![Reply::text(bot(&l, "help"))];
                replies.extend(self.prompt(conv));
                Ok(replies)
            }
        }
    }

    async fn consent(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        inc: &Incoming,
    ) -> Result<Vec<Reply>, Error> {
        match &inc.input {
            Input::Choice(id) if id == "consent:yes" => {}
            Input::Choice(id) if id == "consent:no" => {
                conv.step = Step::Declined;
                return Ok(vec![Reply::text(bot(&conv.language, "declined"))]);
            }
            _ => return self.again(conv, "not_understood"),
        }
        // WhatsApp vouches for the sender's number: it finds the customer at once.
        if let Some(phone) = &inc.verified_phone {
            return self.by_phone(conn, conv, phone).await;
        }
        conv.step = Step::ShareContact;
        Ok(self.prompt(conv))
    }

    async fn share_contact(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        inc: &Incoming,
    ) -> Result<Vec<Reply>, Error> {
        match &inc.input {
            Input::Contact { phone, own: true } => self.by_phone(conn, conv, phone).await,
            Input::Contact { own: false, .. } => self.again(conv, "own_contact_only"),
            Input::Choice(id) if id == "register" => {
                conv.step = Step::RegisterName { phone: None };
                Ok(self.prompt(conv))
            }
            // Telegram shows the choices beside the contact button as keyboard buttons, which
            // send their label.
            Input::Text(t) if t.trim() == bot(&conv.language, "register") => {
                conv.step = Step::RegisterName { phone: None };
                Ok(self.prompt(conv))
            }
            _ => self.again(conv, "not_understood"),
        }
    }

    /// A phone the platform vouches for links the chat to the one customer with it; otherwise
    /// the customer registers (with that phone).
    async fn by_phone(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        phone: &str,
    ) -> Result<Vec<Reply>, Error> {
        match contacts::find_by_phone(&mut *conn, phone).await? {
            PhoneMatch::One(customer_id) => {
                auth::record_consent(&mut *conn, customer_id, true, conv.channel.as_str()).await?;
                let chat_id = self.link(conn, conv, customer_id).await?;
                let chat = contacts::chat(&mut *conn, chat_id).await?;
                conv.step = Step::Menu;
                Ok(vec![
                    Reply::text(bot_with(
                        &conv.language,
                        "linked",
                        &[("name", &chat.customer_name)],
                    )),
                    self.menu(conv),
                ])
            }
            // No one, or several customers: register; staff sort out duplicates.
            PhoneMatch::None | PhoneMatch::Several => {
                conv.step = Step::RegisterName {
                    phone: auth::parse_phone(phone).ok(),
                };
                Ok(self.prompt(conv))
            }
        }
    }

    async fn link(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        customer_id: Uuid,
    ) -> Result<Uuid, Error> {
        let chat_id = contacts::link_chat(
            &mut *conn,
            customer_id,
            conv.channel,
            &conv.chat_key,
            &conv.language,
        )
        .await?;
        conv.chat_id = Some(chat_id);
        Ok(chat_id)
    }

    pub(crate) async fn menu_input(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        chat: &contacts::Chat,
        inc: &Incoming,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        match &inc.input {
            Input::Choice(id) if id == "menu:file" => {
                conv.step = Step::FileType;
                Ok(self.prompt(conv))
            }
            Input::Choice(id) if id == "menu:status" => {
                conv.step = Step::StatusRadicado;
                Ok(self.prompt(conv))
            }
            Input::Choice(id) if id == "menu:help" => {
                Ok(vec![Reply::text(bot(&l, "help")), self.menu(conv)])
            }
            Input::Choice(id) if id == "menu:follow" => {
                let on = !chat.follows_all_cases;
                contacts::set_follows_all_cases(self.pool, chat.id, on).await?;
                let key = if on { "follow_on" } else { "follow_off" };
                Ok(vec![Reply::text(bot(&l, key)), self.menu(conv)])
            }
            Input::Choice(id) if id == "menu:cases" => {
                let rows = sqlx::query!(
                    r#"select radicado, type as "case_type: CaseType", status as "status: CaseStatus",
                              legal_due_date
                       from cases where customer_id = $1 order by created_at desc limit 10"#,
                    chat.customer_id
                )
                .fetch_all(self.pool)
                .await?;
                let text = if rows.is_empty() {
                    bot(&l, "no_cases")
                } else {
                    let mut text = bot(&l, "my_cases");
                    for c in rows {
                        text.push('\n');
                        text.push_str(&bot_with(
                            &l,
                            "case_line",
                            &[
                                ("radicado", &c.radicado),
                                (
                                    "case_type",
                                    &atiende_core::texts::case_type(&l, c.case_type),
                                ),
                                ("status", &status(&l, c.status)),
                                (
                                    "due_date",
                                    &atiende_core::texts::long_date(&l, c.legal_due_date),
                                ),
                            ],
                        ));
                    }
                    text
                };
                Ok(vec![Reply::text(text), self.menu(conv)])
            }
            Input::Text(text) => self.unprompted(conn, conv, chat, text).await,
            _ => self.again(conv, "not_understood"),
        }
    }

    /// Text nobody asked for: the reply to a question staff asked, an addition to the open case
    /// from this chat, or else the menu.
    async fn unprompted(
        &self,
        conn: &mut PgConnection,
        conv: &mut Conversation,
        chat: &contacts::Chat,
        text: &str,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        if text.trim().chars().count() > MESSAGE_MAX {
            let max = MESSAGE_MAX.to_string();
            return Ok(vec![
                Reply::text(bot_with(&l, "too_long", &[("max", &max)])),
                self.menu(conv),
            ]);
        }
        let waiting = sqlx::query!(
            "select id, radicado from cases
             where customer_id = $1 and status = 'waiting_customer'
             order by chat_id is not distinct from $2 desc, updated_at desc limit 1",
            chat.customer_id,
            chat.id
        )
        .fetch_optional(self.pool)
        .await?;
        if let Some(case) = waiting {
            // In the update's transaction: a replayed update adds the reply once.
            cases::add_message(
                &mut *conn,
                &*terms::current(self.pool).await?,
                Actor::Customer(chat.customer_id),
                case.id,
                text,
                &[],
            )
            .await?;
            return Ok(vec![Reply::text(bot_with(
                &l,
                "reply_added",
                &[("radicado", &case.radicado)],
            ))]);
        }
        let open = sqlx::query!(
            "select id, radicado from cases
             where customer_id = $1 and chat_id = $2 and status not in ('answered', 'rated')
             order by created_at desc limit 1",
            chat.customer_id,
            chat.id
        )
        .fetch_optional(self.pool)
        .await?;
        if let Some(case) = open {
            conv.step = Step::OfferAdd {
                case_id: case.id,
                radicado: case.radicado,
                text: text.trim().to_owned(),
            };
            return Ok(self.prompt(conv));
        }
        Ok(vec![self.menu(conv)])
    }

    async fn rate(
        &self,
        conv: &mut Conversation,
        chat: &contacts::Chat,
        rest: &str,
    ) -> Result<Vec<Reply>, Error> {
        let l = conv.language.clone();
        let parsed = rest.split_once(':').and_then(|(case, score)| {
            Some((Uuid::parse_str(case).ok()?, score.parse::<i64>().ok()?))
        });
        let Some((case_id, score)) = parsed else {
            return self.again(conv, "not_understood");
        };
        match cases::rate(
            self.pool,
            Actor::Customer(chat.customer_id),
            case_id,
            score,
            None,
        )
        .await
        {
            Ok(case) => {
                conv.step = Step::RatingComment { case_id };
                Ok(vec![
                    Reply::text(bot_with(&l, "rated", &[("radicado", &case.radicado)]))
                        .with(vec![choice("skip", bot(&l, "skip"))]),
                ])
            }
            Err(Error::Conflict { .. }) => Ok(vec![Reply::text(bot(&l, "already_rated"))]),
            Err(Error::NotFound { .. } | Error::Invalid { .. }) => {
                self.again(conv, "not_understood")
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads and stores a file the customer sent; `Err` names the text that says why not.
    async fn store_file(
        &self,
        customer_id: Uuid,
        file: &FileRef,
    ) -> Result<Result<String, &'static str>, Error> {
        if file.size.is_some_and(|s| s > self.file_limit as u64) {
            return Ok(Err("file_too_large"));
        }
        let (bytes, mime) = match self.media.fetch(file, self.file_limit).await {
            Ok(fetched) => fetched,
            Err(MediaError::TooLarge) => return Ok(Err("file_too_large")),
            Err(MediaError::Failed(e)) => {
                tracing::warn!(error = e, "downloading a file a customer sent");
                return Ok(Err("file_failed"));
            }
        };
        let id = BlobId::of(&bytes);
        let declared = mime.or_else(|| file.mime.clone());
        let Ok(verified) = blobs::verify(&id, declared.as_deref(), &bytes) else {
            return Ok(Err("file_unsupported"));
        };
        let info = blobs::store_for_customer(self.pool, customer_id, verified).await?;
        Ok(Ok(info.sha256))
    }

    /// Text for a step that takes text, at most `max` characters; `Err` holds the replies that
    /// say what is wrong and ask again.
    pub(crate) fn text_input(
        &self,
        conv: &Conversation,
        input: &Input,
        max: usize,
    ) -> Result<String, Vec<Reply>> {
        let again = |key: &str, args: &[(&str, &str)]| {
            let mut replies = vec![Reply::text(bot_with(&conv.language, key, args))];
            replies.extend(self.prompt(conv));
            replies
        };
        match input {
            Input::Text(t) if t.trim().is_empty() => Err(again("not_understood", &[])),
            Input::Text(t) if t.trim().chars().count() > max => {
                Err(again("too_long", &[("max", &max.to_string())]))
            }
            Input::Text(t) => Ok(t.trim().to_owned()),
            _ => Err(again("not_understood", &[])),
        }
    }

    /// A short explanation and the current question again.
    pub(crate) fn again(&self, conv: &Conversation, key: &str) -> Result<Vec<Reply>, Error> {
        let mut replies = vec![Reply::text(bot(&conv.language, key))];
        replies.extend(self.prompt(conv));
        Ok(replies)
    }

    fn consent_prompt(&self, conv: &Conversation) -> Reply {
        let l = &conv.language;
        Reply::text(bot(l, "policy")).with(vec![
            choice("consent:yes", bot(l, "accept")),
            choice("consent:no", bot(l, "decline")),
        ])
    }

    fn menu(&self, conv: &Conversation) -> Reply {
        let l = &conv.language;
        Reply::text(bot(l, "menu")).with(vec![
            choice("menu:file", bot(l, "menu_file")),
            choice("menu:cases", bot(l, "menu_cases")),
            choice("menu:status", bot(l, "menu_status")),
            choice("menu:follow", bot(l, "menu_follow")),
            choice("menu:help", bot(l, "menu_help")),
            choice("menu:language", bot(l, "menu_language")),
        ])
    }

    /// The question the conversation's step asks.
    pub fn prompt(&self, conv: &Conversation) -> Vec<Reply> {
        let l = conv.language.as_str();
        let cancel = || choice("menu", bot(l, "cancel"));
        let reply = match &conv.step {
            Step::New | Step::Consent => self.consent_prompt(conv),
            Step::Declined => Reply::text(bot(l, "still_declined")),
            Step::ShareContact => Reply {
                text: bot(l, "share_contact"),
                choices: vec![choice("register", bot(l, "register"))],
                ask_contact: true,
            },
            Step::RegisterName { .. } => Reply::text(bot(l, "ask_name")),
            Step::RegisterDocumentType { .. } => Reply::text(bot(l, "ask_document_type")).with(
                DocumentType::ALL
                    .iter()
                    .map(|d| choice(format!("doc:{}", d.as_str()), d.as_str().to_owned()))
                    .collect(),
            ),
            Step::RegisterDocumentNumber { .. } => Reply::text(bot(l, "ask_document_number")),
            Step::Menu => self.menu(conv),
            Step::FileType => Reply::text(bot(l, "ask_type")).with(
                FILING_TYPES
                    .iter()
                    .map(|t| {
                        let mut name = atiende_core::texts::case_type(l, *t);
                        capitalise(&mut name);
                        choice(format!("type:{}", t.as_str()), name)
                    })
                    .chain([cancel()])
                    .collect(),
            ),
            Step::FileSubject { case_type } => Reply::text(bot_with(
                l,
                "ask_subject",
                &[("case_type", &atiende_core::texts::case_type(l, *case_type))],
            ))
            .with(vec![cancel()]),
            Step::FileDescription { .. } => {
                Reply::text(bot(l, "ask_description")).with(vec![cancel()])
            }
            Step::FileAttachments { .. } => Reply::text(bot_with(
                l,
                "ask_attachments",
                &[("max", &MAX_ATTACHMENTS.to_string())],
            ))
            .with(vec![choice("done", bot(l, "done")), cancel()]),
            Step::FileConfirm {
                case_type,
                subject,
                description,
                blobs,
            } => Reply::text(bot_with(
                l,
                "confirm",
                &[
                    ("case_type", &atiende_core::texts::case_type(l, *case_type)),
                    ("subject", subject),
                    ("description", description),
                    ("attachments", &blobs.len().to_string()),
                ],
            ))
            .with(vec![choice("send", bot(l, "send")), cancel()]),
            Step::StatusRadicado => Reply::text(bot(l, "ask_radicado")).with(vec![cancel()]),
            Step::OfferAdd { radicado, .. } => {
                Reply::text(bot_with(l, "offer_add", &[("radicado", radicado)])).with(vec![
                    choice("add", bot_with(l, "add_to_case", &[("radicado", radicado)])),
                    choice("new", bot(l, "new_case")),
                    cancel(),
                ])
            }
            Step::RatingComment { .. } => {
                Reply::text(bot(l, "rate_prompt")).with(vec![choice("skip", bot(l, "skip"))])
            }
            Step::Survey {
                invitation_id,
                question,
                count,
                ..
            } => crate::survey::question(l, *invitation_id, question, *count),
        };
        vec![reply]
    }
}

fn capitalise(s: &mut String) {
    if let Some(first) = s.chars().next() {
        let upper: String = first.to_uppercase().collect();
        s.replace_range(..first.len_utf8(), &upper);
    }
}

/// "Done" tapped, or typed.
fn is_done(input: &Input) -> bool {
    match input {
        Input::Choice(id) => id == "done",
        Input::Text(t) => matches!(
            t.trim().to_lowercase().as_str(),
            "listo" | "done" | "ya" | "fin"
        ),
        _ => false,
    }
}

/// A case status as the customer reads it.
pub fn status(lang: &str, s: CaseStatus) -> String {
    tr(lang, &format!("status.{}", s.as_str()), &[])
}

/// The id a case filed from this update gets: the same update files the same case, however often
/// it is processed.
fn filing_id(inc: &Incoming) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"atiende-bot-filing\0")
        .chain_update(inc.channel.as_str())
        .chain_update(b"\0")
        .chain_update(&inc.chat)
        .chain_update(b"\0")
        .chain_update(&inc.update_key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_both_languages_and_with_the_bot_name() {
        assert!(matches!(command("/start"), Some(Command::Start)));
        assert!(matches!(
            command("/start@atiende_bot"),
            Some(Command::Start)
        ));
        assert!(matches!(command(" BAJA "), Some(Command::Stop)));
        assert!(matches!(command("STOP"), Some(Command::Stop)));
        assert!(matches!(command("/cancel"), Some(Command::Menu)));
        assert!(command("stop the leak in my kitchen").is_none());
    }

    #[test]
    fn the_same_update_files_the_same_case() {
        let inc = |key: &str| Incoming {
            channel: ChatChannel::Telegram,
            chat: "42".into(),
            update_key: key.into(),
            language_hint: None,
            verified_phone: None,
            input: Input::Choice("send".into()),
        };
        assert_eq!(filing_id(&inc("7")), filing_id(&inc("7")));
        assert_ne!(filing_id(&inc("7")), filing_id(&inc("8")));
    }

    #[test]
    fn steps_round_trip_as_json() {
        let step = Step::FileAttachments {
            case_type: CaseType::Queja,
            subject: "Medidor".into(),
            description: "No funciona".into(),
            blobs: vec!["ab".into()],
        };
        let json = serde_json::to_value(&step).unwrap_or_default();
        assert_eq!(json["step"], "file_attachments");
        let back: Step = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, step);
    }
}
