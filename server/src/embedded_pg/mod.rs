//! A private PostgreSQL cluster kept under the data directory, used when `DATABASE_URL` is not set.
//!
//! Layout of `<data_dir>/postgres` (the "cluster dir", mode 0700, owned by the user the server runs as):
//! - `data/`            the cluster itself (PGDATA), made by `initdb` on first use
//! - `postgresql.log`   the server log (`pg_ctl -l`)
//! - `.s.PGSQL.5432`    the Unix socket; the server listens on no TCP address
//! - `atiende.lock`     held while one process initialises or starts the cluster
//! - `atiende.owner`    pid of the atiende process that started the running server (and so stops it)
//!
//! This file is the public side ([`EmbeddedPostgres`], [`EmbeddedPgError`]); `lifecycle` starts and
//! stops the server, `binaries` finds the installed PostgreSQL, `cluster_dir` prepares the
//! directory and the user it runs as, `process` and `text` are the helpers below them all, and
//! `test_suite` finds or starts the PostgreSQL that `scripts/test` runs the tests against.

mod binaries;
mod cluster_dir;
mod lifecycle;
mod process;
pub mod test_suite;
mod text;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use binaries::{DEFAULT_LIB_ROOT, choose_bin_dir, find_server_bin_dirs};
use cluster_dir::{RunAs, prepare_cluster_dir};
use process::pg_env_vars;
use text::{percent_encode, shell_quote};

/// Name of both the application database and the cluster superuser we connect as.
const APP_DB: &str = "atiende";
const SUPERUSER: &str = "atiende";
/// Only names the socket file (`.s.PGSQL.5432`): there is no TCP listener, so it can't clash.
const PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin: install PostgreSQL (e.g. `apt-get install postgresql`) or set \
         DATABASE_URL to use an existing server"
    )]
    NotInstalled,
    #[error(
        "the PostgreSQL cluster in {pgdata} was created by PostgreSQL {cluster}, but only version(s) \
         {installed} are installed: install PostgreSQL {cluster} (e.g. `apt-get install \
         postgresql-{cluster}`), upgrade the cluster with pg_upgrade, or set DATABASE_URL"
    )]
    VersionMismatch {
        pgdata: PathBuf,
        cluster: String,
        installed: String,
    },
    #[error(
        "the PostgreSQL socket path {path} is {len} bytes long, over the {SOCKET_PATH_MAX}-byte limit \
         for Unix sockets: use a data directory with a shorter absolute path, or set DATABASE_URL"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error(
        "atiende runs as root and PostgreSQL refuses to, but neither a `postgres` nor a `nobody` user \
         exists in /etc/passwd to run it as: create a `postgres` system user, run atiende as an \
         ordinary user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error(
        "PostgreSQL runs as user `{user}` (uid {uid}), which cannot enter directory {dir}: allow it \
         (e.g. `chmod o+x {dir}`), choose a data directory elsewhere (e.g. under /var/lib), or set \
         DATABASE_URL"
    )]
    NotTraversable {
        dir: PathBuf,
        user: String,
        uid: u32,
    },
    #[error(
        "the PostgreSQL cluster directory {dir} belongs to uid {owner}, but atiende runs as uid {uid}: \
         run atiende as that user (or as root), use another data directory, or set DATABASE_URL"
    )]
    WrongOwner { dir: PathBuf, owner: u32, uid: u32 },
    #[error("could not create the PostgreSQL cluster (initdb failed):\n{log}")]
    InitFailed { log: String },
    #[error("could not start PostgreSQL:\n{log}")]
    StartFailed { log: String },
    #[error("could not stop PostgreSQL:\n{log}")]
    StopFailed { log: String },
    #[error("could not create the `atiende` database: {0}")]
    CreateDatabase(#[source] sqlx::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let context = context.into();
    move |source| EmbeddedPgError::Io { context, source }
}

#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    durability: Durability,
    /// Whether this process started the server and so must stop it.
    owned: bool,
    /// Whether this process ran `pg_ctl start` (rather than finding the server up).
    started: bool,
    stopped: bool,
}

/// What the settings written at every start promise after a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// The server's data: every commit is on disk.
    Durable,
    /// The test suite's cluster: fast, and lost if the machine crashes.
    Throwaway,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `<data_dir>/postgres` on first use, starts it, creates the `atiende` database.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedPgError> {
        Self::start_with(data_dir, Durability::Durable).await
    }

    /// [`Self::start`] for the test suite's cluster: no fsync, more connections.
    async fn start_for_tests(data_dir: &Path) -> Result<Self, EmbeddedPgError> {
        Self::start_with(data_dir, Durability::Throwaway).await
    }

    async fn start_with(data_dir: &Path, durability: Durability) -> Result<Self, EmbeddedPgError> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(io_err(format!(
                "could not create data directory {}",
                data_dir.display()
            )))?;
        // The socket path and the paths handed to pg_ctl must be absolute.
        let data_dir = tokio::fs::canonicalize(data_dir)
            .await
            .map_err(io_err(format!(
                "could not resolve data directory {}",
                data_dir.display()
            )))?;
        let cluster_dir = data_dir.join("postgres");
        let socket_path = cluster_dir.join(format!(".s.PGSQL.{PORT}"));
        let len = socket_path.as_os_str().len();
        if len > SOCKET_PATH_MAX {
            return Err(EmbeddedPgError::SocketPathTooLong {
                path: socket_path,
                len,
            });
        }

        let run_as = prepare_cluster_dir(&data_dir, &cluster_dir).await?;
        let pgdata = cluster_dir.join("data");
        let cluster_version = match tokio::fs::read_to_string(pgdata.join("PG_VERSION")).await {
            Ok(v) => Some(v.trim().to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(io_err(format!(
                    "could not read {}/PG_VERSION",
                    pgdata.display()
                ))(e));
            }
        };
        let candidates = find_server_bin_dirs(
            std::env::var_os("PATH").as_deref(),
            Path::new(DEFAULT_LIB_ROOT),
        );
        let bin_dir = choose_bin_dir(&candidates, &pgdata, cluster_version.as_deref()).await?;

        let mut pg = EmbeddedPostgres {
            bin_dir,
            socket_dir: cluster_dir.clone(),
            cluster_dir,
            pgdata,
            port: PORT,
            run_as,
            durability,
            owned: false,
            started: false,
            stopped: false,
        };

        // Serialises initdb and start between atiende processes sharing the data directory.
        let lock = pg.lock().await?;
        // Checked again under the lock: another process may have just created it.
        if !pg.pgdata.join("PG_VERSION").exists() {
            pg.init().await?;
        }
        pg.write_settings()?;
        pg.start_or_reuse().await?;
        drop(lock);

        // From here on a failure must not leave a server we started running.
        if let Err(e) = pg.create_database().await {
            if pg.owned {
                let _ = pg.stop_server().await;
            }
            pg.stopped = true;
            return Err(e);
        }
        tracing::info!(socket = %pg.socket_dir.display(), owned = pg.owned, "PostgreSQL ready");
        Ok(pg)
    }

    /// Options to connect to the `atiende` database over the Unix socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options_for(APP_DB)
    }

    /// The same as a URL (for printing / child processes), e.g. postgres:///atiende?host=/abs/path&user=atiende
    pub fn url(&self) -> String {
        format!(
            "postgres:///{APP_DB}?host={}&port={}&user={SUPERUSER}",
            percent_encode(self.socket_dir.as_os_str()),
            self.port
        )
    }

    /// Stops the cluster (pg_ctl stop -m fast) if this process started it; otherwise does nothing.
    pub async fn stop(mut self) -> Result<(), EmbeddedPgError> {
        if !self.owned || self.stopped {
            return Ok(());
        }
        self.stopped = true;
        tracing::info!(pgdata = %self.pgdata.display(), "stopping PostgreSQL");
        self.stop_server().await
    }

    /// Leaves the server running when this value goes, and not for a later atiende to adopt and
    /// stop: the test suite's cluster outlives the command that started it, until stopped by hand.
    fn leave_running(mut self) {
        if self.owned {
            let _ = std::fs::remove_file(self.owner_file());
        }
        self.stopped = true;
    }

    /// The shell command that stops the server, to tell whoever leaves it running.
    fn stop_command(&self) -> String {
        let pg_ctl = format!(
            "{} stop -D {} -m fast",
            shell_quote(&self.bin_dir.join("pg_ctl").to_string_lossy()),
            shell_quote(&self.pgdata.to_string_lossy())
        );
        match &self.run_as {
            Some(user) => format!("runuser -u {} -- {pg_ctl}", shell_quote(&user.name)),
            None => pg_ctl,
        }
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.socket_dir)
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
            // The server has no TLS; over a socket it adds nothing anyway.
            .ssl_mode(PgSslMode::Disable)
    }

    fn log_path(&self) -> PathBuf {
        self.cluster_dir.join("postgresql.log")
    }

    fn owner_file(&self) -> PathBuf {
        self.cluster_dir.join("atiende.owner")
    }

    /// A command for one of the PostgreSQL binaries, run as the cluster's user.
    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin_dir.join(program));
        // The cluster dir is the one directory the cluster user is sure to be able to enter.
        cmd.current_dir(&self.cluster_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // PGPORT, PGDATA and friends would silently redirect pg_ctl and the server.
        for key in pg_env_vars() {
            cmd.env_remove(key);
        }
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

impl Drop for EmbeddedPostgres {
    /// Safety net for early returns and panics: a server we started must not outlive us.
    fn drop(&mut self) {
        if !self.owned || self.stopped {
            return;
        }
        self.stopped = true;
        if !self.server_running().unwrap_or(true) {
            let _ = std::fs::remove_file(self.owner_file());
            return;
        }
        let mut cmd = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        cmd.current_dir(&self.cluster_dir)
            .arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for key in pg_env_vars() {
            cmd.env_remove(key);
        }
        if let Some(user) = &self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, user.uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, user.gid);
        }
        match cmd.status() {
            Ok(status) if status.success() => {
                let _ = std::fs::remove_file(self.owner_file());
            }
            Ok(status) => {
                tracing::warn!("pg_ctl stop failed ({status}) in {}", self.pgdata.display())
            }
            Err(e) => tracing::warn!(
                "could not stop PostgreSQL in {}: {e}",
                self.pgdata.display()
            ),
        }
    }
}

/// A fresh directory under the system temp dir (world-traversable /tmp, so the `postgres`
/// user can reach it when the tests run as root).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
fn scratch_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir =
        std::env::temp_dir().join(format!("atiende-pg-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cluster_dir::effective_uid;
    use process::process_alive;
    use sqlx::postgres::PgConnection;
    use sqlx::{Connection as _, Row as _};
    use std::fs;
    use std::os::unix::fs::MetadataExt as _;
    use std::str::FromStr as _;
    use std::time::Duration;

    async fn query_one(options: &PgConnectOptions, sql: &str) -> i64 {
        let mut conn = PgConnection::connect_with(options).await.unwrap();
        let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
        let value: i64 = row.try_get(0).unwrap();
        conn.close().await.unwrap();
        value
    }

    #[tokio::test]
    async fn start_stop_restart_keeps_data() {
        let dir = scratch_dir("restart");
        let pg = EmbeddedPostgres::start(&dir).await.unwrap();
        assert!(pg.owned);
        assert_eq!(query_one(&pg.connect_options(), "select 1::int8").await, 1);
        {
            let mut conn = PgConnection::connect_with(&pg.connect_options())
                .await
                .unwrap();
            sqlx::query("create table kept (v int8)")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("insert into kept values (42)")
                .execute(&mut conn)
                .await
                .unwrap();
            let user: String = sqlx::query_scalar("select current_user::text")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(user, "atiende");
            conn.close().await.unwrap();
        }
        // The cluster belongs to an unprivileged user when we are root.
        let meta = fs::metadata(dir.join("postgres/data")).unwrap();
        if effective_uid().unwrap() == 0 {
            assert_ne!(meta.uid(), 0);
        }
        pg.stop().await.unwrap();
        assert!(!dir.join("postgres/data/postmaster.pid").exists());

        let pg = EmbeddedPostgres::start(&dir).await.unwrap();
        assert_eq!(
            query_one(&pg.connect_options(), "select v from kept").await,
            42
        );
        // The URL form connects too.
        let from_url = PgConnectOptions::from_str(&pg.url()).unwrap();
        assert_eq!(query_one(&from_url, "select v from kept").await, 42);
        pg.stop().await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn starts_after_postmaster_is_killed() {
        let dir = scratch_dir("crash");
        let pg = EmbeddedPostgres::start(&dir).await.unwrap();
        {
            let mut conn = PgConnection::connect_with(&pg.connect_options())
                .await
                .unwrap();
            sqlx::query("create table survived as select 7::int8 as v")
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        let pid_file = dir.join("postgres/data/postmaster.pid");
        let pid = fs::read_to_string(&pid_file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let status = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        // Wait until it is really gone (dead or a zombie nobody reaps).
        for _ in 0..100 {
            if !process_alive(pid.parse().unwrap()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            pid_file.exists(),
            "the killed server leaves its pid file behind"
        );
        // Stopping a server that is already gone succeeds.
        pg.stop().await.unwrap();

        let pg = EmbeddedPostgres::start(&dir).await.unwrap();
        assert_eq!(
            query_one(&pg.connect_options(), "select v from survived").await,
            7
        );
        pg.stop().await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn reuses_a_running_cluster_without_stopping_it() {
        let dir = scratch_dir("reuse");
        let first = EmbeddedPostgres::start(&dir).await.unwrap();
        let second = EmbeddedPostgres::start(&dir).await.unwrap();
        assert!(first.owned);
        assert!(!second.owned);
        assert_eq!(second.url(), first.url());
        second.stop().await.unwrap();
        // Still up for the first one.
        assert_eq!(
            query_one(&first.connect_options(), "select 2::int8").await,
            2
        );
        first.stop().await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn concurrent_first_starts_share_one_cluster() {
        let dir = scratch_dir("race");
        let (a, b) = tokio::join!(EmbeddedPostgres::start(&dir), EmbeddedPostgres::start(&dir));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.owned != b.owned, "exactly one of them started the server");
        let (owner, other) = if a.owned { (a, b) } else { (b, a) };
        other.stop().await.unwrap();
        assert_eq!(
            query_one(&owner.connect_options(), "select 3::int8").await,
            3
        );
        owner.stop().await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn adopts_a_server_whose_starter_is_gone() {
        let dir = scratch_dir("adopt");
        let first = EmbeddedPostgres::start(&dir).await.unwrap();
        // Pretend the atiende that started it was killed: no such process.
        fs::write(first.owner_file(), "999999999\n").unwrap();
        let second = EmbeddedPostgres::start(&dir).await.unwrap();
        assert!(second.owned);
        std::mem::forget(first); // its Drop would stop the server under the second
        second.stop().await.unwrap();
        assert!(!dir.join("postgres/data/postmaster.pid").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn socket_path_too_long_is_refused() {
        let base = scratch_dir("long");
        let dir = base.join("x".repeat(100));
        let err = EmbeddedPostgres::start(&dir).await.unwrap_err();
        assert!(
            matches!(err, EmbeddedPgError::SocketPathTooLong { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("107-byte"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }
    #[test]
    fn start_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let future = EmbeddedPostgres::start(Path::new("unused"));
        assert_send(&future);
    }
    #[test]
    fn url_names_the_socket_directory() {
        // sqlx reads the socket directory back out of the URL form we print.
        let options = PgConnectOptions::from_str(
            "postgres:///atiende?host=/srv/a%20b%26c&port=5432&user=atiende",
        )
        .unwrap();
        assert_eq!(
            options.get_socket().map(|p| p.as_path()),
            Some(Path::new("/srv/a b&c"))
        );
        assert_eq!(options.get_username(), "atiende");
        assert_eq!(options.get_database(), Some("atiende"));
    }
}
