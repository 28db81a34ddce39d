//! Reading the service mailbox over IMAP: log in (TLS from the first byte, STARTTLS, or plain on a
//! trusted network), select the folder, fetch what is new, store each message, mark it seen only
//! once it is stored, process what is stored, then wait: IDLE where the server offers it (re-issued
//! before servers drop it), a poll otherwise.
//!
//! What is new: every message not seen yet, and every message above the highest UID stored from
//! the folder, so that mail a person opened in their own mail program first is still filed. Both
//! are stored once by their key ([`super::intake::store`]).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_imap::{Client, Session};
use atiende_core::worker::{self, Ended};
use futures_util::TryStreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sqlx::PgPool;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::intake::{self, Fetched, Limits};
use crate::TlsMode;

/// The service mailbox and how to read it.
#[derive(Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: String,
    pub folder: String,
    /// How often the folder is looked at when the server has no IDLE.
    pub poll: Duration,
    /// How long one IDLE lasts before it is issued again (servers drop it after 30 minutes).
    pub idle_for: Duration,
    /// A PEM file of certificate authorities trusted besides Mozilla's (a company's own).
    pub ca_file: Option<PathBuf>,
    /// How long one exchange with the server may take.
    pub timeout: Duration,
    pub limits: Limits,
}

impl fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("folder", &self.folder)
            .field("poll", &self.poll)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Why reading the mailbox failed; the worker tries again after a pause.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connecting to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("the IMAP server {0} refused the login")]
    Login(String),
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error("the IMAP server took longer than {0:?} to answer")]
    Timeout(Duration),
    #[error("the IMAP server closed the connection")]
    Closed,
    #[error("the CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("{0:?} is not a host name TLS can check")]
    ServerName(String),
    #[error("storing or processing mail: {0}")]
    Store(#[from] atiende_core::Error),
}

/// A connection to the server, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

type Conn = Box<dyn Io>;

/// Messages fetched in one command.
const CHUNK: usize = 50;
/// Stored messages processed between two fetches.
const PROCESS_BATCH: usize = 500;

/// The worker that reads the service mailbox.
pub struct Inbox {
    db: PgPool,
    settings: ImapSettings,
    tls: TlsConnector,
}

impl Inbox {
    pub fn new(db: PgPool, settings: ImapSettings) -> Result<Inbox, ImapError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &settings.ca_file {
            let bad = |message: String| ImapError::CaFile {
                path: path.clone(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        let config = ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::CaFile {
            path: PathBuf::new(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Inbox {
            db,
            settings,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `user@host/folder`: where stored messages say they were read.
    pub fn mailbox(&self) -> String {
        format!(
            "{}@{}/{}",
            self.settings.username, self.settings.host, self.settings.folder
        )
    }

    /// Reads the mailbox until `stop` completes, reconnecting after failures.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tracing::info!(mailbox = %self.mailbox(), "reading the service mailbox");
        worker::session(
            "service mailbox",
            (Duration::from_secs(2), Duration::from_secs(120)),
            stop,
            || self.session(),
        )
        .await;
    }

    async fn timed<T, E: Into<ImapError>>(
        &self,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ImapError> {
        tokio::time::timeout(self.settings.timeout, f)
            .await
            .map_err(|_| ImapError::Timeout(self.settings.timeout))?
            .map_err(Into::into)
    }

    /// Connects and logs in.
    async fn connect(&self) -> Result<Session<Conn>, ImapError> {
        let s = &self.settings;
        let tcp = tokio::time::timeout(s.timeout, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| ImapError::Timeout(s.timeout))?
            .map_err(|source| ImapError::Connect {
                host: s.host.clone(),
                port: s.port,
                source,
            })?;
        let tcp: Conn = Box::new(tcp);
        let mut client = match s.tls {
            TlsMode::Tls => Client::new(self.tls_over(tcp).await?),
            TlsMode::None | TlsMode::StartTls => Client::new(tcp),
        };
        // The server's greeting (none follows STARTTLS).
        self.timed(async {
            client
                .read_response()
                .await
                .map_err(async_imap::error::Error::Io)
        })
        .await?
        .ok_or(ImapError::Closed)?;
        if s.tls == TlsMode::StartTls {
            self.timed(client.run_command_and_check_ok("STARTTLS", None))
                .await?;
            let plain = client.into_inner();
            client = Client::new(self.tls_over(plain).await?);
        }
        match self
            .timed(async { Ok::<_, ImapError>(client.login(&s.username, &s.password).await) })
            .await?
        {
            Ok(session) => Ok(session),
            Err((async_imap::error::Error::No(_), _)) => Err(ImapError::Login(s.host.clone())),
            Err((e, _)) => Err(e.into()),
        }
    }

    async fn tls_over(&self, plain: Conn) -> Result<Conn, ImapError> {
        let name = ServerName::try_from(self.settings.host.clone())
            .map_err(|_| ImapError::ServerName(self.settings.host.clone()))?;
        let stream = self
            .timed(async {
                self.tls
                    .connect(name, plain)
                    .await
                    .map_err(async_imap::error::Error::Io)
            })
            .await?;
        Ok(Box::new(stream))
    }

    /// One connection: read, process, wait, again, until the connection fails.
    async fn session(&self) -> Result<Ended, ImapError> {
        let mut session = self.connect().await?;
        let idle = self.timed(session.capabilities()).await?.has_str("IDLE");
        loop {
            self.round(&mut session).await?;
            if idle {
                let mut handle = session.idle();
                self.timed(handle.init()).await?;
                // Dropping `interrupt` would end the wait at once: it lives until the wait ends.
                let (wait, interrupt) = handle.wait_with_timeout(self.settings.idle_for);
                wait.await?;
                drop(interrupt);
                session = self.timed(handle.done()).await?;
            } else {
                tokio::time::sleep(self.settings.poll).await;
            }
            while session.unsolicited_responses.try_recv().is_ok() {}
        }
    }

    /// Stores every new message of the folder, marks each seen once stored, and processes what
    /// is stored. Returns how many messages were stored new.
    async fn round(&self, session: &mut Session<Conn>) -> Result<usize, ImapError> {
        let folder = self.timed(session.select(&self.settings.folder)).await?;
        let validity = folder.uid_validity.unwrap_or(0);
        let mailbox = self.mailbox();
        let cursor = intake::cursor(&self.db, &mailbox, validity).await?;
        let found = self
            .timed(session.uid_search(format!("OR UNSEEN UID {}:*", cursor.saturating_add(1))))
            .await?;
        let uids: Vec<u32> = found
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut stored = 0;
        for chunk in uids.chunks(CHUNK) {
            stored += self.fetch_chunk(session, &mailbox, validity, chunk).await?;
            intake::process_pending(&self.db, self.settings.limits, PROCESS_BATCH).await?;
        }
        intake::process_pending(&self.db, self.settings.limits, PROCESS_BATCH).await?;
        Ok(stored)
    }

    async fn fetch_chunk(
        &self,
        session: &mut Session<Conn>,
        mailbox: &str,
        validity: u32,
        uids: &[u32],
    ) -> Result<usize, ImapError> {
        let mut new = Vec::new();
        for &uid in uids {
            if intake::is_stored(&self.db, mailbox, validity, uid).await? {
                // Stored by another process, or before a crash: only the flag is missing.
                self.mark_seen(session, &uid.to_string()).await?;
            } else {
                new.push(uid);
            }
        }
        if new.is_empty() {
            return Ok(0);
        }
        let set = join(&new);
        let sizes: Vec<(u32, u32)> = self
            .timed(async {
                session
                    .uid_fetch(&set, "(UID RFC822.SIZE)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?
            .iter()
            .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
            .collect();
        let limit = self.settings.limits.message_bytes;
        let (whole, big): (Vec<_>, Vec<_>) = sizes
            .iter()
            .partition(|(_, size)| usize::try_from(*size).is_ok_and(|s| s <= limit));
        let mut stored = 0;
        for (uids, query, skipped) in [
            (
                whole.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
                "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])",
                false,
            ),
            (
                big.iter().map(|(u, _)| *u).collect(),
                "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])",
                true,
            ),
        ] {
            if uids.is_empty() {
                continue;
            }
            let fetched = self
                .timed(async {
                    session
                        .uid_fetch(join(&uids), query)
                        .await?
                        .try_collect::<Vec<_>>()
                        .await
                })
                .await?;
            let mut done = Vec::with_capacity(fetched.len());
            for f in &fetched {
                let Some(uid) = f.uid else { continue };
                let raw = if skipped { f.header() } else { f.body() };
                let Some(raw) = raw else { continue };
                let message = Fetched {
                    mailbox: mailbox.to_owned(),
                    uid_validity: validity,
                    uid,
                    raw: raw.to_vec(),
                    size: u64::from(f.size.unwrap_or(0)),
                    body_skipped: skipped,
                    arrived_at: f.internal_date().map(|d| d.to_utc()),
                };
                if intake::store(&self.db, &message).await? {
                    stored += 1;
                }
                done.push(uid);
            }
            if !done.is_empty() {
                self.mark_seen(session, &join(&done)).await?;
            }
        }
        Ok(stored)
    }

    async fn mark_seen(&self, session: &mut Session<Conn>, set: &str) -> Result<(), ImapError> {
        self.timed(async {
            session
                .uid_store(set, "+FLAGS.SILENT (\\Seen)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }
}

fn join(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
