//! Incoming updates: stored before the webhook answers, then worked through by the conversation
//! engine. One chat's updates are handled in order, one at a time (its conversation row is locked
//! while one is handled); different chats in parallel, across processes. An update seen twice is
//! stored once. Handling one update (its conversation step, its replies into the outbox, and
//! marking it done) is one transaction; one that keeps failing is set aside after
//! [`MAX_ATTEMPTS`] so the chat's later updates go on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use atiende_core::contacts::ChatChannel;
use atiende_core::surveys::LowScore;
use atiende_core::worker::{self, Round};
use futures_util::StreamExt;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::engine::{Conversation, Engine, Incoming, Media, Reply, Step};

/// Attempts at handling one update before it is set aside.
pub const MAX_ATTEMPTS: i32 = 5;
/// Chats worked on at once by one process.
const CHATS_AT_ONCE: usize = 8;
/// Chats picked per round.
const CHATS_PER_ROUND: i64 = 64;
/// Updates of one chat handled before the chat is let go for others.
const UPDATES_PER_CHAT: usize = 20;

/// A platform's half of the inbox: what an update means to the conversation.
pub trait Platform: Send + Sync {
    type Media: Media;
    fn channel(&self) -> ChatChannel;
    /// The engine's input in a stored update; None when there is nothing for a conversation.
    fn parse(&self, update_key: &str, payload: &Value) -> Option<Incoming>;
    fn media(&self) -> &Self::Media;
    /// Tells the platform the update was seen (Telegram: stops a tapped button's spinner). Best
    /// effort: nothing depends on it.
    fn seen(&self, payload: &Value) -> impl Future<Output = ()> + Send;
}

/// One update as the webhook hands it over.
pub struct NewUpdate {
    pub update_key: String,
    pub chat_key: String,
    pub payload: Value,
}

/// Stores updates; one seen before is not stored again. Returns how many were new.
pub async fn store(
    pool: &PgPool,
    channel: ChatChannel,
    updates: &[NewUpdate],
) -> sqlx::Result<u64> {
    let rows: Vec<(ChatChannel, &NewUpdate)> = updates.iter().map(|u| (channel, u)).collect();
    insert(pool, &rows).await
}

/// Stores webhook updates in groups: a webhook request hands its updates over and waits until
/// they are stored, and the requests that arrive while one insert runs go together in the next.
/// Under a burst one statement and one commit store many updates, and a webhook still answers
/// only once its update is in PostgreSQL.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Handed>,
}

struct Handed {
    channel: ChatChannel,
    updates: Vec<NewUpdate>,
    stored: oneshot::Sender<Result<(), Arc<sqlx::Error>>>,
}

/// Updates stored by one statement at most.
const INTAKE_BATCH: usize = 512;
/// Inserts in flight at once.
const INTAKE_INSERTS: usize = 4;

impl Intake {
    /// Starts the task that stores what is handed over; it ends when every `Intake` is dropped.
    pub fn start(pool: PgPool) -> Intake {
        let (tx, mut rx) = mpsc::channel::<Handed>(4 * INTAKE_BATCH);
        tokio::spawn(async move {
            let inserts = Arc::new(Semaphore::new(INTAKE_INSERTS));
            loop {
                // Waiting for a free insert first lets requests gather meanwhile.
                let Ok(permit) = inserts.clone().acquire_owned().await else {
                    break;
                };
                let Some(first) = rx.recv().await else {
                    break;
                };
                let mut group = vec![first];
                let mut size = group[0].updates.len();
                while size < INTAKE_BATCH {
                    match rx.try_recv() {
                        Ok(h) => {
                            size += h.updates.len();
                            group.push(h);
                        }
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    store_group(&pool, group).await;
                    drop(permit);
                });
            }
            tracing::info!("chat intake stopped: no webhook is left to hand it updates");
        });
        Intake { tx }
    }

    /// Stores a request's updates (one seen before is not stored again), together with other
    /// requests' when they arrive at the same time.
    pub async fn store(
        &self,
        channel: ChatChannel,
        updates: Vec<NewUpdate>,
    ) -> Result<(), Arc<sqlx::Error>> {
        if updates.is_empty() {
            return Ok(());
        }
        let (stored, answer) = oneshot::channel();
        let gone = || Arc::new(sqlx::Error::PoolClosed);
        self.tx
            .send(Handed {
                channel,
                updates,
                stored,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Stores a group in one statement and tells each request. If the statement fails and the group
/// holds several requests, each is stored on its own, so one update PostgreSQL refuses fails only
/// its own request.
async fn store_group(pool: &PgPool, group: Vec<Handed>) {
    let rows: Vec<(ChatChannel, &NewUpdate)> = group
        .iter()
        .flat_map(|h| h.updates.iter().map(|u| (h.channel, u)))
        .collect();
    let together = insert(pool, &rows).await;
    drop(rows);
    match together {
        Ok(_) => {
            for h in group {
                let _ = h.stored.send(Ok(()));
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(h) = group.into_iter().next() {
                let _ = h.stored.send(Err(Arc::new(e)));
            }
        }
        Err(_) => {
            for h in group {
                let result = store(pool, h.channel, &h.updates).await;
                let _ = h.stored.send(result.map(drop).map_err(Arc::new));
            }
        }
    }
}

async fn insert(pool: &PgPool, rows: &[(ChatChannel, &NewUpdate)]) -> sqlx::Result<u64> {
    let mut channels = Vec::new();
    let mut keys = Vec::new();
    let mut chats = Vec::new();
    let mut payloads = Vec::new();
    for &(channel, u) in rows {
        channels.push(channel.as_str());
        keys.push(u.update_key.as_str());
        chats.push(u.chat_key.as_str());
        payloads.push(&u.payload);
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        "insert into bot_updates (channel, update_key, chat_key, payload)
         select ch, k, c, p from unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) as x (ch, k, c, p)
         on conflict (channel, update_key) do nothing",
        &channels as &[&str],
        &keys as &[&str],
        &chats as &[&str],
        &payloads as &[&Value],
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Works through due updates until `stop` completes.
pub async fn run<P: Platform>(
    pool: PgPool,
    platform: &P,
    file_limit: usize,
    low_score: &LowScore,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    let name = match platform.channel() {
        ChatChannel::Telegram => "telegram inbox",
        ChatChannel::Whatsapp => "whatsapp inbox",
    };
    worker::run(name, interval, stop, || async {
        round(&pool, platform, file_limit, low_score)
            .await
            .map(|n| Round::after(n, CHATS_PER_ROUND))
    })
    .await;
}

/// One round: the chats with due updates, each worked through in order. Returns how many chats
/// it looked at.
pub async fn round<P: Platform>(
    pool: &PgPool,
    platform: &P,
    file_limit: usize,
    low_score: &LowScore,
) -> Result<usize, atiende_core::Error> {
    let channel = platform.channel();
    let chats = sqlx::query_scalar!(
        r#"select chat_key as "chat_key!" from bot_updates
           where channel = $1 and processed_at is null and next_attempt_at <= now()
           group by chat_key order by min(id) limit $2"#,
        channel.as_str(),
        CHATS_PER_ROUND
    )
    .fetch_all(pool)
    .await?;
    let n = chats.len();
    let results: Vec<Result<usize, atiende_core::Error>> = futures_util::stream::iter(chats)
        .map(|chat| async move { work_chat(pool, platform, file_limit, low_score, &chat).await })
        .buffer_unordered(CHATS_AT_ONCE)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}

/// Handles a chat's due updates in order, unless another worker has the chat.
async fn work_chat<P: Platform>(
    pool: &PgPool,
    platform: &P,
    file_limit: usize,
    low_score: &LowScore,
    chat_key: &str,
) -> Result<usize, atiende_core::Error> {
    let channel = platform.channel();
    sqlx::query!(
        "insert into bot_conversations (channel, chat_key) values ($1, $2) on conflict do nothing",
        channel.as_str(),
        chat_key
    )
    .execute(pool)
    .await?;
    let mut handled = 0;
    while handled < UPDATES_PER_CHAT {
        let mut tx = pool.begin().await?;
        let Some(mut conv) = lock_conversation(&mut tx, channel, chat_key).await? else {
            return Ok(handled);
        };
        let next = sqlx::query!(
            "select id, update_key, payload, attempts, next_attempt_at <= now() as \"due!\"
             from bot_updates
             where channel = $1 and chat_key = $2 and processed_at is null
             order by id limit 1",
            channel.as_str(),
            chat_key
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(update) = next.filter(|u| u.due) else {
            return Ok(handled);
        };
        let payload = update.payload.unwrap_or(Value::Null);
        let engine = Engine {
            pool,
            media: platform.media(),
            file_limit,
            low_score,
        };
        let incoming = platform.parse(&update.update_key, &payload);
        let outcome = match &incoming {
            Some(inc) => engine.handle(&mut tx, &mut conv, inc).await,
            None => Ok(Vec::new()),
        };
        match outcome {
            Ok(replies) => {
                enqueue(&mut tx, &conv, &replies).await?;
                save_conversation(&mut tx, &conv, incoming.is_some()).await?;
                sqlx::query!(
                    "update bot_updates set processed_at = now(), payload = null, last_error = null where id = $1",
                    update.id
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                platform.seen(&payload).await;
            }
            Err(e) => {
                drop(tx);
                let attempts = update.attempts + 1;
                tracing::warn!(error = %e, attempts, "{} update could not be handled", channel.as_str());
                let give_up = attempts >= MAX_ATTEMPTS;
                let mut tx = pool.begin().await?;
                sqlx::query!(
                    "update bot_updates
                     set attempts = $2, last_error = $3,
                         next_attempt_at = now() + make_interval(secs => $4::double precision),
                         processed_at = case when $5 then now() end
                     where id = $1",
                    update.id,
                    attempts,
                    e.to_string(),
                    atiende_core::outbox::backoff(attempts).as_secs_f64(),
                    give_up,
                )
                .execute(&mut *tx)
                .await?;
                if give_up {
                    // The customer is told; the update stays, with its error, for an operator.
                    let sorry = Reply::text(crate::texts::bot(&conv.language, "error"));
                    enqueue(&mut tx, &conv, std::slice::from_ref(&sorry)).await?;
                }
                tx.commit().await?;
                return Ok(handled);
            }
        }
        handled += 1;
    }
    Ok(handled)
}

async fn lock_conversation(
    conn: &mut PgConnection,
    channel: ChatChannel,
    chat_key: &str,
) -> Result<Option<Conversation>, atiende_core::Error> {
    let row = sqlx::query!(
        "select language, state, chat_id from bot_conversations
         where channel = $1 and chat_key = $2
         for update skip locked",
        channel.as_str(),
        chat_key
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Conversation {
        channel,
        chat_key: chat_key.to_owned(),
        language: r.language,
        // A state written by an older version that no longer reads starts over at the menu.
        step: serde_json::from_value(r.state).unwrap_or(if r.chat_id.is_some() {
            Step::Menu
        } else {
            Step::New
        }),
        chat_id: r.chat_id,
    }))
}

async fn save_conversation(
    conn: &mut PgConnection,
    conv: &Conversation,
    inbound: bool,
) -> Result<(), atiende_core::Error> {
    let state = serde_json::to_value(&conv.step)
        .map_err(|e| atiende_core::Error::Internal(format!("storing a conversation: {e}")))?;
    sqlx::query!(
        "update bot_conversations
         set language = $3, state = $4, chat_id = $5, updated_at = now(),
             last_inbound_at = case when $6 then now() else last_inbound_at end
         where channel = $1 and chat_key = $2",
        conv.channel.as_str(),
        conv.chat_key,
        conv.language,
        state,
        conv.chat_id,
        inbound,
    )
    .execute(&mut *conn)
    .await?;
    if inbound {
        // The customer wrote: what waited for that (WhatsApp's 24-hour window) leaves now,
        // before the replies to this message.
        atiende_core::outbox::release_waiting(&mut *conn, conv.channel.outbox(), &conv.chat_key)
            .await?;
    }
    Ok(())
}

/// Puts the conversation's replies in the outbox, in order, for the chat.
async fn enqueue(
    conn: &mut PgConnection,
    conv: &Conversation,
    replies: &[Reply],
) -> Result<(), atiende_core::Error> {
    if replies.is_empty() {
        return Ok(());
    }
    let payloads = replies
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| atiende_core::Error::Internal(format!("storing a reply: {e}")))?;
    sqlx::query!(
        "insert into deliveries (channel, target, chat_id, payload, next_attempt_at)
         select $1, $2, $3, p, now() from unnest($4::jsonb[]) with ordinality as x (p, ord)
         order by x.ord",
        conv.channel.outbox().as_str(),
        conv.chat_key,
        conv.chat_id,
        &payloads,
    )
    .execute(conn)
    .await?;
    Ok(())
}
