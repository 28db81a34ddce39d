//! The `atiende` server: configuration, database start-up and migrations, router composition,
//! health and metrics endpoints, graceful shutdown, and the admin commands.
//! `main` is thin: tests start the same server in-process with [`run`] on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use atiende_core::worker::Round;
use atiende_mobile_api::{ApiError, ApiState};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod admin;
pub mod demo;
pub mod embedded_pg;
pub mod metrics;
pub mod push;
pub mod push_payload;
pub mod settings;

pub use metrics::Metrics;
pub use settings::Settings;

use embedded_pg::EmbeddedPostgres;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    EmbeddedPostgres(#[from] embedded_pg::EmbeddedPgError),
    #[error("DATABASE_URL is not a valid PostgreSQL URL")]
    BadDatabaseUrl,
    #[error("connecting to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("applying database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The database the server uses: the one named by `DATABASE_URL`, or a cluster of its own.
pub struct Database {
    pub pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the embedded cluster when no `DATABASE_URL` is set) and migrates.
    pub async fn open(settings: &Settings) -> Result<Database, StartError> {
        match &settings.database_url {
            Some(url) => {
                let mut options = url
                    .expose()
                    .parse::<PgConnectOptions>()
                    .map_err(|_| StartError::BadDatabaseUrl)?;
                // TLS to a database on this machine only costs CPU on every query; an explicit
                // `sslmode` in the URL still wins.
                let loopback = matches!(options.get_host(), "localhost" | "127.0.0.1" | "::1")
                    || options.get_host().starts_with('/');
                if loopback && !url.expose().contains("sslmode") {
                    options = options.ssl_mode(PgSslMode::Disable);
                }
                Ok(Database {
                    pool: connect_and_migrate(options, settings).await?,
                    embedded: None,
                })
            }
            None => {
                let pg = EmbeddedPostgres::start(&settings.data_dir).await?;
                match connect_and_migrate(pg.connect_options(), settings).await {
                    Ok(pool) => Ok(Database {
                        pool,
                        embedded: Some(pg),
                    }),
                    Err(e) => {
                        if let Err(stop) = pg.stop().await {
                            tracing::error!(error = %stop, "stopping the embedded PostgreSQL");
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Closes the pool, then stops the embedded cluster if this process started it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(pg) = self.embedded
            && let Err(e) = pg.stop().await
        {
            tracing::error!(error = %e, "stopping the embedded PostgreSQL");
        }
    }
}

async fn connect_and_migrate(
    options: PgConnectOptions,
    settings: &Settings,
) -> Result<PgPool, StartError> {
    // No ping before every acquire: a connection that broke fails its query, and storage retries
    // transient errors.
    let pool = PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(StartError::Connect)?;
    tracing::info!("applying database migrations");
    atiende_core::MIGRATOR.run(&pool).await?;
    Ok(pool)
}

#[derive(Clone)]
struct AppState {
    db: PgPool,
    metrics: Arc<Metrics>,
    sync: atiende_sync::SyncState,
}

/// The whole HTTP application: the apps' API, health, readiness and metrics.
pub fn app(
    db: PgPool,
    settings: &Settings,
    metrics: Arc<Metrics>,
    vapid_public_key: Option<String>,
    sync: atiende_sync::SyncState,
    bots: &atiende_bots::Bots,
) -> Router {
    // One bound on password hashing for the API and the pages.
    let hashing = settings.hashing();
    let api = ApiState {
        db: db.clone(),
        session_ttl: settings.session_ttl(),
        vapid_public_key,
        blob_limit: settings.blob_max_bytes,
        push_reach: settings.push_reach(),
        hashing: hashing.clone(),
        login_limits: settings.login_limits(),
        trusted_proxies: settings.trusted_proxies.clone(),
        sync_ticket_ttl: Duration::from_secs(settings.sync_ticket_ttl_secs),
        account_setup_ttl: settings.account_setup_ttl(),
        commercial_process: settings.commercial_process.clone(),
        survey_low_score: settings.survey_low_score(),
        survey_campaigns: settings.survey_campaigns(),
    };
    let db_web = db.clone();
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState {
            db,
            metrics: metrics.clone(),
            sync: sync.clone(),
        });
    let request_id = HeaderName::from_static("x-request-id");
    ops.merge(atiende_mobile_api::router(api))
        .merge(atiende_web::router(web_state(db_web, settings, hashing)))
        .merge(atiende_sync::router(sync))
        .merge(bots.router())
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), route, request_id = id)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The public web pages' state: the company's brand, the limits and who the client is.
fn web_state(
    db: PgPool,
    settings: &Settings,
    hashing: atiende_core::auth::Hashing,
) -> atiende_web::WebState {
    let trusted = settings.trusted_proxies.clone();
    atiende_web::WebState {
        db,
        brand: Arc::new(atiende_web::Brand {
            company_name: settings.company_name.clone(),
            logo_url: settings.company_logo_url.clone(),
            color: settings.company_color.clone(),
            city: settings.company_city.clone(),
        }),
        blob_limit: settings.blob_max_bytes,
        posts_per_window: settings.web_posts_per_window,
        window_secs: settings.web_window_secs,
        client_ip: Arc::new(move |peer, headers| {
            atiende_mobile_api::client::client_addr(peer, headers, &trusted).ip
        }),
        public_base_url: settings.public_base_url.trim_end_matches('/').to_owned(),
        link_code_ttl: std::time::Duration::from_secs(u64::from(settings.link_code_minutes) * 60),
        hashing,
        survey_low_score: settings.survey_low_score(),
        login_limits: settings.login_limits(),
        commercial_process: settings.commercial_process.clone(),
        contract_renewal_days: settings.contract_renewal_days,
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and every embedded migration is applied.
async fn readyz(State(state): State<AppState>) -> Response {
    let applied: Result<Vec<i64>, sqlx::Error> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(&state.db)
            .await;
    match applied {
        Ok(applied) => {
            let missing = atiende_core::MIGRATOR
                .iter()
                .filter(|m| !applied.contains(&m.version))
                .count();
            if missing == 0 {
                "ready".into_response()
            } else {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "migrations_pending",
                    format!("{missing} migrations are not applied"),
                )
                .into_response()
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database does not answer",
            )
            .into_response()
        }
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render(&state.db);
    let sync = state.sync.stats();
    for (name, help, value) in [
        (
            "atiende_sync_compressed_chunks_total",
            "Compressed chunks and deflated columns of incoming sync messages, measured under the document size quota.",
            sync.compressed_chunks,
        ),
        (
            "atiende_sync_limit_refusals_total",
            "Sync messages and connections refused by a limit (size quota, write budget, ephemeral size, connections per user).",
            sync.limit_refusals,
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Serves until `shutdown` completes, then stops taking connections, drains the requests in
/// flight, and stops the background workers.
pub async fn run(
    listener: TcpListener,
    db: PgPool,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sender = match &settings.vapid_private_key {
        Some(key) => Some(Arc::new(
            push::PushSender::new(key.expose(), &settings.vapid_subject, settings.push_reach())
                .map_err(std::io::Error::other)?,
        )),
        None => {
            tracing::warn!(
                "no VAPID key (ATIENDE_VAPID_PRIVATE_KEY): push notifications wait in the outbox"
            );
            None
        }
    };
    let mailer = match settings.mail() {
        Some(mail) => Some(Arc::new(
            atiende_mail::Mailer::new(db.clone(), &mail).map_err(std::io::Error::other)?,
        )),
        None => {
            tracing::warn!("no SMTP host (ATIENDE_SMTP_HOST): e-mails wait in the outbox");
            None
        }
    };
    let inbox = match settings.imap() {
        Some(imap) => Some(Arc::new(
            atiende_mail::inbound::Inbox::new(db.clone(), imap).map_err(std::io::Error::other)?,
        )),
        None => {
            tracing::info!("no IMAP host (ATIENDE_IMAP_HOST): nobody reads the service mailbox");
            None
        }
    };
    let sync = atiende_sync::SyncState::new(db.clone(), settings.sync())
        .await
        .map_err(std::io::Error::other)?;
    let vapid_public_key = sender.as_ref().map(|s| s.public_key().to_owned());
    let bots =
        atiende_bots::Bots::new(db.clone(), settings.bots()).map_err(std::io::Error::other)?;
    if let Some(t) = &settings.bots().telegram
        && !t.polling
        && t.webhook_secret.is_none()
    {
        tracing::warn!(
            "no Telegram webhook secret (ATIENDE_TELEGRAM_WEBHOOK_SECRET): the webhook refuses every request"
        );
    }
    if let Some(w) = &settings.bots().whatsapp {
        if w.app_secret.is_none() {
            tracing::warn!(
                "no WhatsApp app secret (ATIENDE_WHATSAPP_APP_SECRET): the webhook refuses every event"
            );
        }
        if w.verify_token.is_none() {
            tracing::warn!(
                "no WhatsApp verify token (ATIENDE_WHATSAPP_VERIFY_TOKEN): Meta cannot register the webhook"
            );
        }
    } else if settings.whatsapp_access_token.is_some()
        != settings.whatsapp_phone_number_id.is_some()
    {
        tracing::warn!(
            "WhatsApp needs both ATIENDE_WHATSAPP_ACCESS_TOKEN and ATIENDE_WHATSAPP_PHONE_NUMBER_ID: the channel is off"
        );
    }
    let app = app(
        db.clone(),
        settings,
        Metrics::new(),
        vapid_public_key,
        sync.clone(),
        &bots,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = spawn_until(&stop_rx, {
        let (db, every) = (
            db.clone(),
            Duration::from_millis(settings.scheduler_interval_ms),
        );
        let remind_after =
            Duration::from_secs(u64::from(settings.information_reminder_days) * 24 * 3600);
        let renewals = Renewals {
            process: settings.commercial_process.clone(),
            days: settings.contract_renewal_days,
        };
        let surveys = (settings.survey_schedule(), settings.survey_campaigns());
        move |stopped| run_scheduler(db, every, remind_after, renewals, surveys, stopped)
    });
    let janitor = spawn_until(&stop_rx, {
        let sync = sync.clone();
        move |stopped| async move { sync.run_janitor(stopped).await }
    });
    // Changes and access changes made through other processes on this database reach the peers
    // connected here.
    let sync_listener = spawn_until(&stop_rx, {
        let sync = sync.clone();
        move |stopped| async move { sync.run_listener(stopped).await }
    });
    // The terms filing and the clocks read are kept per process while this hears their changes.
    let terms = spawn_until(&stop_rx, {
        let db = db.clone();
        move |stopped| atiende_core::terms::listen(db, stopped)
    });
    let projector = spawn_until(&stop_rx, {
        let sync = sync.clone();
        move |stopped| async move { sync.run_projector(stopped).await }
    });
    let purge = spawn_until(&stop_rx, {
        let (db, every, window) = (
            db.clone(),
            Duration::from_secs(settings.purge_interval_secs),
            Duration::from_secs(settings.login_window_secs),
        );
        move |stopped| run_purge(db, every, window, stopped)
    });
    let chats = spawn_until(&stop_rx, move |stopped| bots.run(stopped));
    let mail_worker = mailer.map(|mailer| {
        let (db, interval) = (db.clone(), Duration::from_millis(settings.mail_interval_ms));
        spawn_until(&stop_rx, move |stopped| async move {
            atiende_core::outbox::run(db, mailer.as_ref(), interval, stopped).await;
        })
    });
    let mailbox_reader = inbox.map(|inbox| {
        spawn_until(
            &stop_rx,
            move |stopped| async move { inbox.run(stopped).await },
        )
    });
    let worker = sender.map(|sender| {
        let interval = Duration::from_millis(settings.push_interval_ms);
        spawn_until(&stop_rx, move |stopped| async move {
            atiende_core::outbox::run(db, sender.as_ref(), interval, stopped).await;
        })
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    // Upgraded sync sockets outlive the HTTP drain: close them too. Every change they sent was
    // committed before anyone was told, so there is nothing to flush.
    // Sync frames are small and latency matters: no Nagle delay on accepted sockets.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
    });
    // The peer's address is what login limits count by (see atiende_mobile_api::client).
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    sync.shutdown(Duration::from_secs(10)).await;
    let _ = stop_tx.send(true);
    if let Err(e) = janitor.await {
        tracing::error!(error = %e, "sync janitor ended abnormally");
    }
    if let Err(e) = sync_listener.await {
        tracing::error!(error = %e, "sync listener ended abnormally");
    }
    if let Err(e) = terms.await {
        tracing::error!(error = %e, "terms listener ended abnormally");
    }
    if let Err(e) = projector.await {
        tracing::error!(error = %e, "sync projector ended abnormally");
    }
    if let Err(e) = purge.await {
        tracing::error!(error = %e, "purge job ended abnormally");
    }
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "deadline scheduler ended abnormally");
    }
    if let Err(e) = chats.await {
        tracing::error!(error = %e, "chat workers ended abnormally");
    }
    if let Some(worker) = worker
        && let Err(e) = worker.await
    {
        tracing::error!(error = %e, "push worker ended abnormally");
    }
    if let Some(reader) = mailbox_reader
        && let Err(e) = reader.await
    {
        tracing::error!(error = %e, "service mailbox reader ended abnormally");
    }
    if let Some(worker) = mail_worker
        && let Err(e) = worker.await
    {
        tracing::error!(error = %e, "e-mail worker ended abnormally");
    }
    served
}

/// Spawns a background task given a future that completes when `stop` turns true.
fn spawn_until<F, Fut>(
    stop: &tokio::sync::watch::Receiver<bool>,
    task: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut stop = stop.clone();
    tokio::spawn(task(Box::pin(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })))
}

/// Fires due deadline alerts, alerts the commercial process of contracts about to end, reminds
/// customers who have not answered a request for information, withdraws the cases that waited a
/// month, invites the customers of completed visits to their survey, opens, reminds and closes
/// survey campaigns, and keeps the clock figures of the cases filed before the indicators read
/// them from the case, until `stopped` completes. Every atiende process runs one; the database
/// makes sure each alert fires, each contract is alerted, each case is withdrawn, each visit is
/// surveyed once and each month's campaign opens once.
async fn run_scheduler(
    db: PgPool,
    interval: Duration,
    remind_after: Duration,
    renewals: Renewals,
    (surveys, campaigns): (
        atiende_core::surveys::Schedule,
        atiende_core::surveys::campaigns::CampaignSchedule,
    ),
    stopped: impl Future<Output = ()>,
) {
    use atiende_core::scheduler::{BATCH, tick};
    atiende_core::worker::run("deadline scheduler", interval, stopped, || async {
        let fired = tick(&db, BATCH).await?;
        let today = atiende_core::calendar::local_date(chrono::Utc::now());
        let renewals_due = atiende_core::commercial::alert_renewals(
            &db,
            &renewals.process,
            renewals.days,
            today,
            BATCH,
        )
        .await?;
        if renewals_due > 0 {
            tracing::info!(contracts = renewals_due, "contract renewals alerted");
        }
        if fired > 0 {
            tracing::info!(alerts = fired, "deadline alerts fired");
        }
        let swept = atiende_core::cases::sweep_waiting(&db, remind_after, BATCH).await?;
        if swept.reminded + swept.withdrawn > 0 {
            tracing::info!(
                reminded = swept.reminded,
                withdrawn = swept.withdrawn,
                "cases waiting on their customers"
            );
        }
        let invited = atiende_core::surveys::invite_completed(&db, &surveys, BATCH).await?;
        if invited > 0 {
            tracing::info!(invited, "post-service surveys sent");
        }
        let campaigned =
            atiende_core::surveys::campaigns::round(&db, &campaigns, today, BATCH).await?;
        if campaigned != Default::default() {
            tracing::info!(
                opened = campaigned.opened,
                invited = campaigned.invited,
                reminded = campaigned.reminded,
                closed = campaigned.closed,
                "survey campaigns"
            );
        }
        let measured = atiende_core::deadlines::measure_queued(&db, BATCH).await?;
        if measured > 0 {
            tracing::info!(cases = measured, "clock figures of earlier cases kept");
        }
        let busiest = fired
            .max(swept.reminded)
            .max(swept.withdrawn)
            .max(renewals_due)
            .max(invited)
            .max(campaigned.busiest())
            .max(measured);
        Ok::<_, atiende_core::Error>(Round::after(busiest, BATCH))
    })
    .await;
}

/// Which process hears of contracts about to end, and how many days before.
struct Renewals {
    process: String,
    days: u32,
}

/// Deletes ended sessions, expired sync tickets and login counters whose window passed, every
/// `every`, until `stopped` completes. Every process may run it: deleting twice is harmless.
async fn run_purge(
    db: PgPool,
    every: Duration,
    login_window: Duration,
    stopped: impl Future<Output = ()>,
) {
    atiende_core::worker::run("purge", every, stopped, || async {
        let (sessions, counters) = purge_once(&db, login_window).await?;
        if sessions + counters > 0 {
            tracing::info!(
                sessions,
                counters,
                "purged ended sessions and login counters"
            );
        }
        Ok::<_, atiende_core::Error>(Round::Idle)
    })
    .await;
}

/// One round of [`run_purge`]: how many sessions and login counters went.
pub async fn purge_once(db: &PgPool, login_window: Duration) -> atiende_core::Result<(u64, u64)> {
    let sessions = atiende_core::auth::purge_sessions(db).await?;
    let counters =
        atiende_core::login_limits::purge(db, login_window).await? + atiende_web::purge(db).await?;
    Ok((sessions, counters))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "listening for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "listening for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining requests");
}
