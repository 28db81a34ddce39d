//! Customers who reach the company from a chat or the web form (and later the mailbox) without
//! an app user: how a chat finds its customer, and how someone new is registered without being
//! handed another customer's record.
//!
//! A phone number proves who someone is when the platform vouches for it (WhatsApp's sender, a
//! Telegram contact the sender shared of themself): it links the chat to the one customer with
//! that number. A typed document number proves nothing: when it already belongs to a customer,
//! the person becomes an unverified contact of their own (`customers.verified = false`), whose
//! cases staff may later merge into the customer's.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::auth::{self, parse_document_number, parse_name};
use crate::error::{Error, Result};
use crate::types::DocumentType;

/// A messaging platform a customer chats from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatChannel {
    Telegram,
    Whatsapp,
}

impl ChatChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatChannel::Telegram => "telegram",
            ChatChannel::Whatsapp => "whatsapp",
        }
    }

    /// The channel a case filed from this platform is stored with.
    pub fn case_channel(self) -> crate::types::Channel {
        match self {
            ChatChannel::Telegram => crate::types::Channel::Telegram,
            ChatChannel::Whatsapp => crate::types::Channel::Whatsapp,
        }
    }

    pub fn outbox(self) -> crate::outbox::Channel {
        match self {
            ChatChannel::Telegram => crate::outbox::Channel::Telegram,
            ChatChannel::Whatsapp => crate::outbox::Channel::Whatsapp,
        }
    }
}

/// A door someone registers through without an app user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    Chat(ChatChannel),
    /// The public web form.
    Web,
}

impl Door {
    /// The channel a consent given here is recorded with.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Chat(c) => c.as_str(),
            Door::Web => "web",
        }
    }
}

impl From<ChatChannel> for Door {
    fn from(c: ChatChannel) -> Self {
        Door::Chat(c)
    }
}

/// Who a phone number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneMatch {
    None,
    One(Uuid),
    /// Several verified customers have it: none is chosen; staff sort it out.
    Several,
}

/// The verified customer whose phone is `phone` (normalised to E.164 as the database does it,
/// see the `e164` function). A number someone typed on the web form is not theirs to claim by.
pub async fn find_by_phone(db: impl PgExecutor<'_>, phone: &str) -> Result<PhoneMatch> {
    let ids = sqlx::query_scalar!(
        "select id from customers where verified and phone_vouched and phone_e164 = e164($1) limit 2",
        phone
    )
    .fetch_all(db)
    .await?;
    Ok(match ids.as_slice() {
        [] => PhoneMatch::None,
        [one] => PhoneMatch::One(*one),
        _ => PhoneMatch::Several,
    })
}

/// Someone registering from a chat or the web form.
#[derive(Debug, Clone)]
pub struct NewContact {
    pub name: String,
    pub document_type: DocumentType,
    pub document_number: String,
    /// From a chat, a number the platform vouches for (the WhatsApp sender's), if any; from the
    /// web form, the number the person typed.
    pub phone: Option<String>,
    /// The e-mail address the person typed on the web form.
    pub email: Option<String>,
    /// The language they read where no app user or chat says it (the web form's page): `es` or
    /// `en`. E-mails about their cases are written in it.
    pub language: Option<String>,
}

/// A customer record made from a chat or the web form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub customer_id: Uuid,
    /// False when the document number belonged to a customer already: this is a separate,
    /// unverified contact.
    pub verified: bool,
}

/// Registers someone who consented at `door`: a new customer, or, when the document number is a
/// customer's already, an unverified contact. The consent is recorded with it.
///
/// Either way it is one insert of the same cost, so neither the answer nor its timing tells the
/// caller whether the number was known.
pub async fn register(
    conn: &mut PgConnection,
    new: &NewContact,
    door: impl Into<Door>,
) -> Result<Registered> {
    let door = door.into();
    let name = parse_name(&new.name)?;
    let number = parse_document_number(&new.document_number)?;
    let phone = new.phone.as_deref().map(auth::parse_phone).transpose()?;
    let email = new.email.as_deref().map(auth::parse_email).transpose()?;
    let language = match new.language.as_deref() {
        None => None,
        Some(l @ ("es" | "en")) => Some(l),
        Some(_) => {
            return Err(Error::invalid(
                "invalid_language",
                "the language must be es or en",
            ));
        }
    };
    let kind = new.document_type.customer_kind();
    // Verified when no customer has the number yet; a concurrent registration of the same new
    // number makes the insert conflict (the unique index covers verified customers only), and the
    // second try stores a contact of its own.
    let mut registered = None;
    for first in [true, false] {
        let row = sqlx::query!(
            r#"insert into customers (id, kind, document_type, document_number, name, phone, phone_vouched, email, language, verified)
               select $1, $2, $3, $4, $5, $6, $10, $7, $9,
                      $8 and not exists (select 1 from customers
                                         where verified and document_type = $3 and document_number = $4)
               on conflict (document_type, document_number) where verified do nothing
               returning id, verified"#,
            Uuid::new_v4(),
            kind as _,
            new.document_type as DocumentType,
            number,
            name,
            phone,
            email,
            first,
            language,
            // A chat's number comes from the platform; the web form's was typed.
            matches!(door, Door::Chat(_)),
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            registered = Some(Registered {
                customer_id: row.id,
                verified: row.verified,
            });
            break;
        }
    }
    let registered = registered
        .ok_or_else(|| Error::Internal("an unverified contact could not be stored".into()))?;
    auth::record_consent(&mut *conn, registered.customer_id, true, door.as_str()).await?;
    Ok(registered)
}

/// Links a platform chat to its customer and returns the chat's id. A chat belongs to one
/// customer: a chat linked already stays with its customer.
pub async fn link_chat(
    conn: &mut PgConnection,
    customer_id: Uuid,
    channel: ChatChannel,
    external_id: &str,
    language: &str,
) -> Result<Uuid> {
    let inserted = sqlx::query_scalar!(
        "insert into customer_chats (id, customer_id, channel, external_id, language)
         values ($1, $2, $3, $4, $5)
         on conflict (channel, external_id) do nothing
         returning id",
        Uuid::new_v4(),
        customer_id,
        channel.as_str(),
        external_id,
        language,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => sqlx::query_scalar!(
            "select id from customer_chats where channel = $1 and external_id = $2",
            channel.as_str(),
            external_id
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::from),
    }
}

/// A linked chat as the conversation sees it.
#[derive(Debug, Clone)]
pub struct Chat {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer_name: String,
    pub opted_out: bool,
    /// The customer asked here for news of their cases filed elsewhere too.
    pub follows_all_cases: bool,
}

pub async fn chat(db: impl PgExecutor<'_>, chat_id: Uuid) -> Result<Chat> {
    let row = sqlx::query!(
        "select ch.id, ch.customer_id, c.name, ch.opted_out_at is not null as \"opted_out!\",
                ch.follows_all_cases
         from customer_chats ch join customers c on c.id = ch.customer_id
         where ch.id = $1",
        chat_id
    )
    .fetch_one(db)
    .await?;
    Ok(Chat {
        id: row.id,
        customer_id: row.customer_id,
        customer_name: row.name,
        opted_out: row.opted_out,
        follows_all_cases: row.follows_all_cases,
    })
}

/// Whether the chat hears of the customer's cases filed elsewhere too (the app, the web form...).
pub async fn set_follows_all_cases(db: impl PgExecutor<'_>, chat_id: Uuid, on: bool) -> Result<()> {
    sqlx::query!(
        "update customer_chats set follows_all_cases = $2 where id = $1",
        chat_id,
        on
    )
    .execute(db)
    .await?;
    Ok(())
}

/// STOP and START: an opted-out chat hears only about the cases filed from it.
pub async fn set_opted_out(db: impl PgExecutor<'_>, chat_id: Uuid, out: bool) -> Result<()> {
    sqlx::query!(
        "update customer_chats set opted_out_at = case when $2 then coalesce(opted_out_at, now()) end
         where id = $1",
        chat_id,
        out
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The language notifications are written in on this chat.
pub async fn set_language(db: impl PgExecutor<'_>, chat_id: Uuid, language: &str) -> Result<()> {
    sqlx::query!(
        "update customer_chats set language = $2 where id = $1",
        chat_id,
        language
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Who wrote from an e-mail address to the service mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The one verified customer with that address on file, or whose app user signs in with it.
    Customer(Uuid),
    /// No single customer has it: an unverified contact known by the address (found again, or
    /// made now).
    Contact(Uuid),
}

impl Sender {
    pub fn customer_id(self) -> Uuid {
        match self {
            Sender::Customer(id) | Sender::Contact(id) => id,
        }
    }
}

/// The customer an address belongs to, if exactly one verified customer has it; several (a shared
/// office address) choose none.
pub async fn customer_by_email(conn: &mut PgConnection, address: &str) -> Result<Option<Uuid>> {
    let ids = sqlx::query_scalar!(
        r#"select distinct id as "id!" from (
               select c.id from customers c
               where lower(c.email) = lower($1) and c.verified and c.merged_into is null
               union
               select u.customer_id from users u
               where lower(u.email) = lower($1) and u.active and u.customer_id is not null
           ) known
           limit 2"#,
        address
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(match ids.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

/// The sender of an e-mail: the customer the address belongs to, else the unverified contact that
/// wrote from it before, else a new one named as the message's `From` names them. No consent is
/// recorded: writing to the mailbox is a request, not an acceptance of the data policy.
pub async fn email_sender(
    conn: &mut PgConnection,
    address: &str,
    display_name: Option<&str>,
) -> Result<Sender> {
    let address = auth::parse_email(address)?;
    if let Some(id) = customer_by_email(conn, &address).await? {
        return Ok(Sender::Customer(id));
    }
    email_contact(conn, &address, display_name).await
}

/// The unverified contact known by an address: the one that wrote from it before, else a new one
/// named as the message's `From` names them. For a message whose sender the receiving server could
/// not authenticate, whatever customer has the address.
pub async fn email_contact(
    conn: &mut PgConnection,
    address: &str,
    display_name: Option<&str>,
) -> Result<Sender> {
    let address = auth::parse_email(address)?;
    // One contact per address, even when two processes read two of its messages at once.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('email_contact:' || $1, 0))",
        address
    )
    .execute(&mut *conn)
    .await?;
    let known = sqlx::query_scalar!(
        "select id from customers
         where lower(email) = $1 and not verified and document_number is null
           and merged_into is null
         order by created_at desc limit 1",
        address
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = known {
        return Ok(Sender::Contact(id));
    }
    let name = display_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| address.clone());
    let id = Uuid::new_v4();
    sqlx::query!(
        "insert into customers (id, kind, name, email, verified) values ($1, 'person', $2, $3, false)",
        id,
        name,
        address,
    )
    .execute(&mut *conn)
    .await?;
    Ok(Sender::Contact(id))
}
