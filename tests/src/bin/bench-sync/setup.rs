//! The scratch database both servers' figures come from, and the technicians and documents each
//! scenario needs in it.

use std::time::Duration;

use atiende_core::auth::{self, NewUser, Password};
use atiende_core::types::Role;
use atiende_sync::DocumentId;
use atiende_sync::storage::{self, DocumentKind, Mode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::Result;
use crate::measure::DRIVER_APP;
use crate::scenarios::{Scenario, initial};

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

/// Technicians with a session each: (user id, sync ticket) by device index.
pub async fn create_users(pool: &PgPool, n: usize) -> Result<Vec<(Uuid, String)>> {
    let mut users = Vec::with_capacity(n);
    // Password hashing is deliberately slow and memory hungry: a few at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(4) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let pool = pool.clone();
            set.spawn(async move {
                let user = auth::create_user(
                    &pool,
                    &auth::Hashing::default(),
                    NewUser {
                        email: format!("bench-sync-{i:04}@bench.invalid"),
                        name: format!("Técnico {i}"),
                        role: Role::Technician,
                        password: Password::parse("benchmark password".to_owned())?,
                        customer_id: None,
                        language: "es".to_owned(),
                    },
                )
                .await?;
                let session =
                    auth::start_session(&pool, user.id, Duration::from_secs(86_400)).await?;
                // Devices open the socket with a sync ticket, as the apps do; one that lasts
                // the whole run.
                let ticket = atiende_core::sync_tickets::issue(
                    &pool,
                    &session.token,
                    Duration::from_secs(86_400),
                )
                .await?;
                Ok::<_, atiende_core::Error>((i, user.id, ticket.ticket))
            });
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            got.push(r??);
        }
        got.sort();
        users.extend(got.into_iter().map(|(_, id, token)| (id, token)));
    }
    Ok(users)
}

/// The scenario's documents in Atiende's database, with write access for their members; the
/// reference gets the same ids, announced by their first member.
pub async fn create_documents(
    pool: &PgPool,
    sc: &Scenario,
    users: &[Uuid],
) -> Result<Vec<DocumentId>> {
    let mut ids = Vec::with_capacity(sc.docs.len());
    for members in &sc.docs {
        let access: Vec<(Uuid, Mode)> = members.iter().map(|&d| (users[d], Mode::Write)).collect();
        ids.push(
            storage::create_document(pool, DocumentKind::FieldReport, &access, initial).await?,
        );
    }
    Ok(ids)
}
