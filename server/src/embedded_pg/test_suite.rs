//! The PostgreSQL the test suite runs against (`atiende test-database`, which `scripts/test` and
//! `scripts/soak-tests` call). `#[sqlx::test]` creates a database per test, so the role must be
//! allowed to create databases. In order of preference:
//! 1. `DATABASE_URL`, used as is;
//! 2. a server on 127.0.0.1 (port 5432 unless told otherwise) that lets role `postgres` in without
//!    a password and create databases;
//! 3. a private cluster of the installed PostgreSQL under the data directory, listening only on a
//!    Unix socket, without fsync, and left running for the next run (delete it to start afresh).
//!
//! The private cluster is the same [`EmbeddedPostgres`] the server uses; `--private` goes straight
//! to it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::text::shell_quote;
use super::{EmbeddedPgError, EmbeddedPostgres};

/// How long a server on 127.0.0.1 has to accept the connection, then to let us in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to look for a PostgreSQL for the tests.
#[derive(Debug)]
pub struct Search {
    /// `DATABASE_URL` when it is set.
    pub database_url: Option<String>,
    /// Skip `DATABASE_URL` and the server on 127.0.0.1: always use the private cluster.
    pub private: bool,
    /// The port on 127.0.0.1 to try.
    pub port: u16,
    /// The private cluster lives in `<data_dir>/postgres`.
    pub data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TestDatabaseError {
    #[error(
        "no PostgreSQL server on 127.0.0.1:{port} lets role `postgres` create databases, and {source}"
    )]
    NoServer {
        port: u16,
        #[source]
        source: EmbeddedPgError,
    },
    #[error("{0}")]
    PrivateCluster(#[source] EmbeddedPgError),
}

/// Finds or starts the PostgreSQL for the tests and returns its URL. `say` hears, in a line
/// each, which one was chosen and why another one was passed over.
pub async fn find_or_start(
    search: &Search,
    mut say: impl FnMut(&str),
) -> Result<String, TestDatabaseError> {
    if search.private {
        say("--private: using the private cluster");
    } else {
        if let Some(url) = &search.database_url {
            say("using DATABASE_URL as it is set");
            return Ok(url.clone());
        }
        match local_server(search.port).await {
            Local::Absent => {}
            Local::Usable(url) => {
                say(&format!(
                    "using the PostgreSQL server on 127.0.0.1:{} (role postgres)",
                    search.port
                ));
                return Ok(url);
            }
            Local::Refuses(why) => say(&format!(
                "a server answers on 127.0.0.1:{} but role postgres can't log in without a \
                 password or create databases ({why}); not using it",
                search.port
            )),
        }
    }

    let pg = match EmbeddedPostgres::start_for_tests(&search.data_dir).await {
        Ok(pg) => pg,
        Err(source @ EmbeddedPgError::NotInstalled) if !search.private => {
            return Err(TestDatabaseError::NoServer {
                port: search.port,
                source,
            });
        }
        Err(e) => return Err(TestDatabaseError::PrivateCluster(e)),
    };
    let (url, stop) = (pg.url(), pg.stop_command());
    say(&if pg.started {
        format!(
            "started a test PostgreSQL in {} and left it running (stop it with: {stop})",
            pg.pgdata.display()
        )
    } else {
        format!(
            "using the test PostgreSQL already running in {} (stop it with: {stop})",
            pg.pgdata.display()
        )
    });
    pg.leave_running();
    Ok(url)
}

/// The line a shell `eval`s to get `DATABASE_URL`: `export DATABASE_URL='…'`.
pub fn export_line(url: &str) -> String {
    format!("export DATABASE_URL={}", shell_quote(url))
}

enum Local {
    /// Nothing accepts connections on the port.
    Absent,
    /// Something does, but is no use to the tests; why.
    Refuses(String),
    /// The URL to use.
    Usable(String),
}

async fn local_server(port: u16) -> Local {
    let connect = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    if !matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Ok(_))
    ) {
        return Local::Absent;
    }
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    match tokio::time::timeout(LOGIN_TIMEOUT, can_create_databases(&url)).await {
        Ok(Ok(true)) => Local::Usable(url),
        Ok(Ok(false)) => Local::Refuses("it may not create databases".to_owned()),
        Ok(Err(e)) => Local::Refuses(e.to_string()),
        Err(_) => Local::Refuses(format!("no answer within {} s", LOGIN_TIMEOUT.as_secs())),
    }
}

/// Connects the way the tests will (the URL, plus whatever PG* variables they also see).
async fn can_create_databases(url: &str) -> Result<bool, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let can = sqlx::query_scalar::<_, bool>(
        "select rolcreatedb or rolsuper from pg_roles where rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(can)
}
