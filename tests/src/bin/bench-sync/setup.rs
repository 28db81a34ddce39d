//! The scratch database both servers' figures come from, and the technicians, work orders and
//! field report documents each scenario needs in it.

use std::sync::Arc;
use std::time::Duration;

use atiende_core::auth::{self, Hashing, NewUser, Password, Registration, User};
use atiende_core::types::{DocumentType, Role};
use atiende_core::work_orders::{self, NewWorkOrder};
use atiende_core::{processes, sync_tickets};
use atiende_sync::{DocumentId, storage};
use futures_util::{StreamExt, stream};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::Result;
use crate::measure::DRIVER_APP;
use crate::scenarios::{ADDRESS, SERVICE_TYPE, Scenario, scheduled_at};

const DB: &str = "atiende_bench_sync";

/// The database `atiende_bench_sync`, dropped first if a run left it, and migrated.
pub struct Scratch {
    /// Where the database is created and dropped.
    admin: PgConnection,
    /// The driver's own sessions on it.
    pub pool: PgPool,
    /// For the server under test.
    pub url: String,
}

impl Scratch {
    pub async fn create(server_url: &str) -> Result<Scratch> {
        let mut admin = PgConnection::connect(&database_url(server_url, "postgres")).await?;
        sqlx::query(&format!("drop database if exists {DB} with (force)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("create database {DB}"))
            .execute(&mut admin)
            .await?;
        let url = database_url(server_url, DB);
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .application_name(DRIVER_APP);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.disable_statement_logging())
            .await?;
        atiende_core::MIGRATOR.run(&pool).await?;
        Ok(Scratch { admin, pool, url })
    }

    pub async fn drop_database(mut self) -> Result<()> {
        self.pool.close().await;
        sqlx::query(&format!("drop database if exists {DB} with (force)"))
            .execute(&mut self.admin)
            .await?;
        Ok(())
    }
}

/// The server URL with a database name, before any parameters.
fn database_url(server_url: &str, db: &str) -> String {
    match server_url.split_once('?') {
        Some((base, params)) => format!("{}/{db}?{params}", base.trim_end_matches('/')),
        None => format!("{}/{db}", server_url.trim_end_matches('/')),
    }
}

/// The admin who schedules the benchmark's work orders, and the customer they are for.
pub struct Office {
    admin: User,
    customer_id: Uuid,
}

/// The process that runs the benchmark's visits.
const PROCESS: &str = "BENCH";

pub async fn create_office(pool: &PgPool) -> Result<Office> {
    let hashing = Hashing::default();
    let admin = auth::create_user(
        pool,
        &hashing,
        NewUser {
            email: "bench-sync-admin@bench.invalid".to_owned(),
            name: "Administración".to_owned(),
            role: Role::Admin,
            password: Password::parse(PASSWORD.to_owned())?,
            customer_id: None,
            language: "es".to_owned(),
        },
    )
    .await?;
    processes::create(pool, PROCESS, "Benchmark", None).await?;
    let customer = auth::register_customer(
        pool,
        &hashing,
        Registration {
            email: "bench-sync-customer@bench.invalid".to_owned(),
            password: Password::parse(PASSWORD.to_owned())?,
            name: "Hotel Las Palmas S.A.S.".to_owned(),
            phone: None,
            document_type: DocumentType::Nit,
            document_number: "900123456-7".to_owned(),
            accept_data_policy: true,
            language: "es".to_owned(),
        },
        "app",
    )
    .await?;
    let customer_id = customer
        .customer_id
        .ok_or("the customer has no customer record")?;
    Ok(Office { admin, customer_id })
}

const PASSWORD: &str = "benchmark password";

/// Technicians with a session each: (user id, sync ticket) by device index.
///
/// `auth::create_user` hashes each password with Argon2, tens of milliseconds of CPU apiece:
/// minutes for the scale scenario's 10,000. The technicians share one hash made the same way and
/// are written in batches; their sessions and tickets come from `auth` and `sync_tickets`, a
/// batch per transaction.
pub async fn create_users(pool: &PgPool, n: usize) -> Result<Vec<(Uuid, String)>> {
    let hash = Hashing::default()
        .hash(&Password::parse(PASSWORD.to_owned())?)
        .await?;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut users = Vec::with_capacity(n);
    for (c, chunk) in ids.chunks(USER_BATCH).enumerate() {
        let (pool, hash, chunk) = (pool.clone(), hash.clone(), chunk.to_vec());
        set.spawn(async move {
            let first = c * USER_BATCH;
            let emails: Vec<String> = (first..first + chunk.len())
                .map(|i| format!("bench-sync-{i:05}@bench.invalid"))
                .collect();
            let names: Vec<String> = (first..first + chunk.len())
                .map(|i| format!("Técnico {i}"))
                .collect();
            let mut tx = pool.begin().await?;
            sqlx::query(
                "insert into users (id, email, name, role, password_hash)
                 select id, email, name, 'technician', $4
                 from unnest($1::uuid[], $2::text[], $3::text[]) as t(id, email, name)",
            )
            .bind(&chunk)
            .bind(&emails)
            .bind(&names)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            let mut tickets = Vec::with_capacity(chunk.len());
            for &id in &chunk {
                let session =
                    auth::start_session(&mut *tx, id, Duration::from_secs(86_400)).await?;
                // Devices open the socket with a sync ticket, as the apps do; one that lasts
                // the whole run.
                let ticket =
                    sync_tickets::issue(&mut *tx, &session.token, Duration::from_secs(86_400))
                        .await?;
                tickets.push((id, ticket.ticket));
            }
            tx.commit().await?;
            Ok::<_, crate::BoxError>((c, tickets))
        });
        if set.len() >= 4 {
            collect_one(&mut set, &mut users, n).await?;
        }
    }
    while !set.is_empty() {
        collect_one(&mut set, &mut users, n).await?;
    }
    users.sort_by_key(|(c, _)| *c);
    Ok(users.into_iter().flat_map(|(_, t)| t).collect())
}

const USER_BATCH: usize = 500;

type Batch = (usize, Vec<(Uuid, String)>);

async fn collect_one(
    set: &mut tokio::task::JoinSet<Result<Batch>>,
    users: &mut Vec<Batch>,
    of: usize,
) -> Result<()> {
    if let Some(r) = set.join_next().await {
        users.push(r??);
        if of > USER_BATCH {
            let done: usize = users.iter().map(|(_, t)| t.len()).sum();
            eprintln!("  {done} of {of} technicians ready");
        }
    }
    Ok(())
}

/// A scenario's documents in Atiende's database, and their initial content as saved there.
pub struct Documents {
    pub ids: Vec<DocumentId>,
    /// What the reference is given: each document announced by its first member with exactly
    /// the change Atiende's copy starts with.
    pub saved: Vec<Arc<[u8]>>,
}

/// The scenario's documents: each is the field report of a work order whose technicians are its
/// members, made by `work_orders::create` as staff would, so Atiende projects every change into
/// the order's rows.
pub async fn create_documents(
    pool: &PgPool,
    office: &Office,
    sc: &Scenario,
    users: &[Uuid],
) -> Result<Documents> {
    let mut orders = stream::iter(sc.docs.iter().map(|members| {
        let new = NewWorkOrder {
            customer_id: office.customer_id,
            process: PROCESS.to_owned(),
            address: ADDRESS.to_owned(),
            scheduled_at: scheduled_at(),
            service_type: SERVICE_TYPE.to_owned(),
            technicians: members.iter().map(|&d| users[d]).collect(),
        };
        async move {
            let id = DocumentId::parse(
                &work_orders::create(pool, &office.admin, new)
                    .await?
                    .report_url,
            )?;
            let mut stored = storage::load(pool, id)
                .await?
                .ok_or("a work order's report document is missing")?;
            Ok::<_, crate::BoxError>((id, Arc::from(stored.doc.save())))
        }
    }))
    .buffered(8);
    let mut docs = Documents {
        ids: Vec::with_capacity(sc.docs.len()),
        saved: Vec::with_capacity(sc.docs.len()),
    };
    while let Some(made) = orders.next().await {
        let (id, saved) = made?;
        docs.ids.push(id);
        docs.saved.push(saved);
        if docs.ids.len().is_multiple_of(2_000) {
            eprintln!(
                "  {} of {} work orders created",
                docs.ids.len(),
                sc.docs.len()
            );
        }
    }
    Ok(docs)
}
