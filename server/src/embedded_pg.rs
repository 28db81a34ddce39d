//! A private PostgreSQL cluster kept under the data directory, used when `DATABASE_URL` is not set.
//!
//! Layout of `<data_dir>/postgres` (the "cluster dir", mode 0700, owned by the user the server runs as):
//! - `data/`            the cluster itself (PGDATA), made by `initdb` on first use
//! - `postgresql.log`   the server log (`pg_ctl -l`)
//! - `.s.PGSQL.5432`    the Unix socket; the server listens on no TCP address
//! - `atiende.lock`     held while one process initialises or starts the cluster
//! - `atiende.owner`    pid of the atiende process that started the running server (and so stops it)

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

/// Name of both the application database and the cluster superuser we connect as.
const APP_DB: &str = "atiende";
const SUPERUSER: &str = "atiende";
/// Only names the socket file (`.s.PGSQL.5432`): there is no TCP listener, so it can't clash.
const PORT: u16 = 5432;
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;
/// Generous, because the first start after a crash replays the WAL before accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);
/// The log is appended to on every start; past this size the old one is moved aside at start.
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// How much of the server log an error message quotes.
const LOG_TAIL_BYTES: usize = 4096;
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const DEFAULT_LIB_ROOT: &str = "/usr/lib/postgresql";

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

/// The unprivileged account the cluster runs as when atiende itself runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    cluster_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    /// Whether this process started the server and so must stop it.
    owned: bool,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `<data_dir>/postgres` on first use, starts it, creates the `atiende` database.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedPgError> {
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
            owned: false,
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

    async fn lock(&self) -> Result<File, EmbeddedPgError> {
        let path = self.cluster_dir.join("atiende.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("could not open {}", path.display())))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(io_err(format!("could not chown {}", path.display())))?;
        }
        let deadline = Instant::now() + START_TIMEOUT + INITDB_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(EmbeddedPgError::StartFailed {
                        log: format!(
                            "another process has held {} for too long while starting PostgreSQL",
                            path.display()
                        ),
                    });
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(io_err(format!("could not lock {}", path.display()))(e));
                }
            }
        }
    }

    /// Runs initdb into a scratch directory and renames it into place, so `data/` exists only
    /// once complete and an interrupted first run is simply redone.
    async fn init(&self) -> Result<(), EmbeddedPgError> {
        tracing::info!(bin = %self.bin_dir.display(), "creating PostgreSQL cluster in {}", self.pgdata.display());
        let scratch = self.cluster_dir.join("data.initdb");
        let mut log = String::new();
        let mut done = false;
        // C.UTF-8 gives byte-order collation that never changes with glibc upgrades; not every
        // system has it, and --no-locale (plain C, still UTF8 encoded) is the next best thing.
        for locale_arg in ["--locale=C.UTF-8", "--no-locale"] {
            remove_dir_if_exists(&scratch)?;
            let mut cmd = self.command("initdb");
            cmd.arg("-D")
                .arg(&scratch)
                .args(["-U", SUPERUSER])
                // Trust is safe here: the server listens only on a socket inside a 0700 directory,
                // so only its owner (and root) can reach it at all.
                .args(["--auth=trust", "-E", "UTF8", locale_arg]);
            match run(&mut cmd, INITDB_TIMEOUT).await {
                Ok(out) if out.status.success() => {
                    done = true;
                    break;
                }
                Ok(out) => {
                    let _ = writeln!(
                        log,
                        "initdb {locale_arg} ({}):\n{}",
                        out.status,
                        output_text(&out)
                    );
                }
                Err(e) => {
                    let _ = writeln!(log, "initdb {locale_arg}: {e}");
                }
            }
        }
        if !done {
            let _ = remove_dir_if_exists(&scratch);
            return Err(EmbeddedPgError::InitFailed { log });
        }
        // The settings live in a file of our own, rewritten at every start (see write_settings).
        let conf = scratch.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_err(format!("could not open {}", conf.display())))?;
        io::Write::write_all(&mut file, b"\n# Managed by atiende: the settings it needs are in this file.\ninclude_if_exists = 'atiende.conf'\n")
            .map_err(io_err(format!("could not write {}", conf.display())))?;
        fs::rename(&scratch, &self.pgdata).map_err(io_err(format!(
            "could not rename {} to {}",
            scratch.display(),
            self.pgdata.display()
        )))?;
        Ok(())
    }

    /// Rewritten at every start so the socket path follows the data directory if it is moved.
    fn write_settings(&self) -> Result<(), EmbeddedPgError> {
        let path = self.pgdata.join("atiende.conf");
        let text = format!(
            "# Written by atiende at every start; edits are lost.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             port = {}\n\
             fsync = on\n",
            conf_quote(&self.socket_dir.to_string_lossy()),
            self.port
        );
        fs::write(&path, text).map_err(io_err(format!("could not write {}", path.display())))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(io_err(format!("could not chown {}", path.display())))?;
        }
        Ok(())
    }

    async fn start_or_reuse(&mut self) -> Result<(), EmbeddedPgError> {
        if self.server_running()? {
            return self.reuse().await;
        }
        self.rotate_log();
        let log_path = self.log_path();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let log_offset = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            tracing::info!(bin = %self.bin_dir.display(), "starting PostgreSQL in {}", self.pgdata.display());
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("-D")
                .arg(&self.pgdata)
                .arg("-l")
                .arg(&log_path)
                .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string()]);
            let outcome = run(&mut cmd, START_TIMEOUT + Duration::from_secs(10)).await;
            if let Ok(out) = &outcome
                && out.status.success()
            {
                self.owned = true;
                self.write_owner_file();
                return self.wait_ready().await;
            }
            // Someone may have started it by hand between our check and our pg_ctl.
            if self.server_running()? {
                return self.reuse().await;
            }
            let server_log = read_log_since(&log_path, log_offset);
            // After a crash the old server's children can hold its shared memory for a moment.
            if attempts < 5 && server_log.contains("pre-existing shared memory block") {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let pg_ctl = match outcome {
                Ok(out) => format!("pg_ctl start ({}):\n{}", out.status, output_text(&out)),
                Err(e) => format!("pg_ctl start: {e}"),
            };
            return Err(EmbeddedPgError::StartFailed {
                log: format!(
                    "{pg_ctl}\n--- end of {} ---\n{server_log}",
                    log_path.display()
                ),
            });
        }
    }

    /// Uses a server that is already running on this cluster. It is ours to stop only if the
    /// atiende that started it is gone (e.g. it was killed), so that it isn't left running forever.
    async fn reuse(&mut self) -> Result<(), EmbeddedPgError> {
        let owner = fs::read_to_string(self.owner_file())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        self.owned = match owner {
            Some(pid) => !process_alive(pid),
            None => false,
        };
        if self.owned {
            self.write_owner_file();
        }
        tracing::info!(
            pgdata = %self.pgdata.display(),
            adopted = self.owned,
            "PostgreSQL is already running; using it"
        );
        self.wait_ready().await
    }

    /// Waits until the server takes connections; also picks up the socket it really uses,
    /// which may differ from ours if another process started it with another path.
    async fn wait_ready(&mut self) -> Result<(), EmbeddedPgError> {
        if let Some(pid) = read_pid_file(&self.pgdata) {
            if let Some(dir) = pid.socket_dir.filter(|d| !d.as_os_str().is_empty()) {
                self.socket_dir = dir;
            }
            if let Some(port) = pid.port {
                self.port = port;
            }
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match PgConnection::connect_with(&self.options_for("postgres")).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(EmbeddedPgError::StartFailed {
                        log: format!(
                            "PostgreSQL did not accept connections on {} within {} s: {e}\n--- end of {} ---\n{}",
                            self.socket_dir.display(),
                            START_TIMEOUT.as_secs(),
                            self.log_path().display(),
                            read_log_tail(&self.log_path())
                        ),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn create_database(&self) -> Result<(), EmbeddedPgError> {
        let mut conn = PgConnection::connect_with(&self.options_for("postgres"))
            .await
            .map_err(EmbeddedPgError::CreateDatabase)?;
        let exists = sqlx::query_scalar::<_, i32>("select 1 from pg_database where datname = $1")
            .bind(APP_DB)
            .fetch_optional(&mut conn)
            .await
            .map_err(EmbeddedPgError::CreateDatabase)?;
        if exists.is_none() {
            tracing::info!("creating database {APP_DB}");
            // The name is fixed, so no bind parameter is needed (create database takes none).
            if let Err(e) = sqlx::Executor::execute(&mut conn, "create database atiende").await {
                // Lost a race with another atiende creating it: fine.
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned());
                if !matches!(code.as_deref(), Some("42P04" | "23505")) {
                    return Err(EmbeddedPgError::CreateDatabase(e));
                }
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Is a postmaster alive for this cluster? When not, also clears lock files that PostgreSQL
    /// itself would wrongly trust: those whose pid now belongs to another program (pids are reused
    /// after a reboot) or to a killed server that no one has reaped yet (a zombie).
    fn server_running(&self) -> Result<bool, EmbeddedPgError> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let socket_lock = self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port));
        if lock_holder(&pid_file) == LockHolder::Postgres {
            return Ok(true);
        }
        for path in [pid_file, socket_lock] {
            if let LockHolder::Impostor(pid) = lock_holder(&path) {
                tracing::info!(pid, "removing stale {}", path.display());
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(io_err(format!("could not remove {}", path.display()))(e));
                    }
                }
            }
        }
        Ok(false)
    }

    fn write_owner_file(&self) {
        // Only a hint for adopting an orphaned server later; failing to write it is harmless.
        let path = self.owner_file();
        let _ = fs::write(&path, format!("{}\n", std::process::id()));
        if let Some(user) = &self.run_as {
            let _ = std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid));
        }
    }

    fn rotate_log(&self) {
        let log = self.log_path();
        if fs::metadata(&log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let _ = fs::rename(&log, self.cluster_dir.join("postgresql.log.1"));
        }
    }

    async fn stop_server(&self) -> Result<(), EmbeddedPgError> {
        // A killed but unreaped server would keep pg_ctl waiting until its timeout.
        if !self.server_running()? {
            let _ = fs::remove_file(self.owner_file());
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.pgdata).args([
            "-m",
            "fast",
            "-w",
            "-t",
            &STOP_TIMEOUT.as_secs().to_string(),
        ]);
        let outcome = run(&mut cmd, STOP_TIMEOUT + Duration::from_secs(10)).await;
        let stopped = matches!(&outcome, Ok(out) if out.status.success());
        // Already gone (e.g. killed) reaches the goal as well.
        if stopped || !self.server_running()? {
            let _ = fs::remove_file(self.owner_file());
            return Ok(());
        }
        // The owner file stays, so that a later atiende adopts and stops the server.
        match outcome {
            Ok(out) => Err(EmbeddedPgError::StopFailed {
                log: format!("pg_ctl stop ({}):\n{}", out.status, output_text(&out)),
            }),
            Err(e) => Err(EmbeddedPgError::StopFailed {
                log: format!("pg_ctl stop: {e}"),
            }),
        }
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
            let _ = fs::remove_file(self.owner_file());
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
                let _ = fs::remove_file(self.owner_file());
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

/// Creates the cluster dir (0700) and makes sure the user PostgreSQL will run as owns it and can
/// reach it. Returns that user when it differs from ours, i.e. when we run as root.
async fn prepare_cluster_dir(
    data_dir: &Path,
    cluster_dir: &Path,
) -> Result<Option<RunAs>, EmbeddedPgError> {
    match fs::DirBuilder::new().mode(0o700).create(cluster_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io_err(format!(
                "could not create {}",
                cluster_dir.display()
            ))(e));
        }
    }
    let meta = fs::metadata(cluster_dir)
        .map_err(io_err(format!("could not stat {}", cluster_dir.display())))?;
    let euid = effective_uid()?;
    let run_as = if euid == 0 {
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let user = if meta.uid() != 0 {
            // An existing cluster keeps its owner rather than being chowned wholesale.
            lookup_uid(&passwd, meta.uid()).unwrap_or_else(|| RunAs {
                name: format!("uid {}", meta.uid()),
                uid: meta.uid(),
                gid: meta.gid(),
            })
        } else {
            lookup_user(&passwd, "postgres")
                .or_else(|| lookup_user(&passwd, "nobody"))
                .ok_or(EmbeddedPgError::NoUnprivilegedUser)?
        };
        check_traversable(data_dir, &user)?;
        if meta.uid() != user.uid {
            let dir = cluster_dir.to_owned();
            let (uid, gid) = (user.uid, user.gid);
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| io_err("chown task failed")(io::Error::other(e)))?
                .map_err(io_err(format!(
                    "could not chown {} to {}",
                    cluster_dir.display(),
                    user.name
                )))?;
        }
        Some(user)
    } else {
        if meta.uid() != euid {
            return Err(EmbeddedPgError::WrongOwner {
                dir: cluster_dir.to_owned(),
                owner: meta.uid(),
                uid: euid,
            });
        }
        None
    };
    // Only the owner may enter: this is what makes trust authentication on the socket safe.
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(cluster_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("could not chmod {}", cluster_dir.display())))?;
    }
    Ok(run_as)
}

/// The owner of `/proc/self` is our effective uid (std offers no geteuid, and `unsafe` is out).
fn effective_uid() -> Result<u32, EmbeddedPgError> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(io_err("could not read /proc/self to find our user id"))
}

fn lookup_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd_entries(passwd).find(|u| u.name == name)
}

fn lookup_uid(passwd: &str, uid: u32) -> Option<RunAs> {
    passwd_entries(passwd).find(|u| u.uid == uid)
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = RunAs> + '_ {
    passwd.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        (!name.is_empty() && !name.starts_with('#')).then(|| RunAs {
            name: name.to_owned(),
            uid,
            gid,
        })
    })
}

/// Checks that `user` may search every directory from `/` down to `dir`. Root-spawned commands
/// drop supplementary groups (std does setgroups(0)), so owner, primary group and other bits decide.
fn check_traversable(dir: &Path, user: &RunAs) -> Result<(), EmbeddedPgError> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    for d in chain {
        let meta = fs::metadata(d).map_err(io_err(format!("could not stat {}", d.display())))?;
        let mode = meta.permissions().mode();
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(EmbeddedPgError::NotTraversable {
                dir: d.to_owned(),
                user: user.name.clone(),
                uid: user.uid,
            });
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::lchown(path, Some(uid), Some(gid));
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Directories holding initdb, pg_ctl and postgres: those on `path` first (the user's own choice),
/// then `<lib_root>/<version>/bin`, highest version first.
fn find_server_bin_dirs(path: Option<&OsStr>, lib_root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut push = |dir: PathBuf| {
        if !found.contains(&dir) {
            found.push(dir);
        }
    };
    for dir in path
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if dir.is_absolute() && has_server_binaries(&dir) {
            // /usr/local/bin/pg_ctl may be a symlink into the real bin dir, which also has psql etc.
            let real = fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_owned))
                .filter(|d| has_server_binaries(d));
            push(real.unwrap_or(dir));
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|n| n.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_server_binaries(bin))
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, bin) in versioned {
        push(bin);
    }
    found
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|name| {
        fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The first candidate, or for an existing cluster the first whose major version matches it
/// (a newer PostgreSQL can't open an older cluster's files).
async fn choose_bin_dir(
    candidates: &[PathBuf],
    pgdata: &Path,
    cluster_version: Option<&str>,
) -> Result<PathBuf, EmbeddedPgError> {
    let first = candidates.first().ok_or(EmbeddedPgError::NotInstalled)?;
    let Some(wanted) = cluster_version else {
        return Ok(first.clone());
    };
    let mut installed = Vec::new();
    for dir in candidates {
        let out = tokio::process::Command::new(dir.join("postgres"))
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let Some(major) = out
            .ok()
            .and_then(|o| major_version(&String::from_utf8_lossy(&o.stdout)))
        else {
            continue;
        };
        if major == wanted {
            return Ok(dir.clone());
        }
        installed.push(major);
    }
    Err(EmbeddedPgError::VersionMismatch {
        pgdata: pgdata.to_owned(),
        cluster: wanted.to_owned(),
        installed: if installed.is_empty() {
            "unknown".to_owned()
        } else {
            installed.join(", ")
        },
    })
}

/// "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)" -> "15"; "... 9.6.24" -> "9.6".
fn major_version(version_output: &str) -> Option<String> {
    let version = version_output.split_whitespace().nth(2)?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let first = parts.next()?;
    let major: u32 = first.parse().ok()?;
    if major >= 10 {
        Some(first.to_owned())
    } else {
        Some(format!("{first}.{}", parts.next()?))
    }
}

struct PidFile {
    port: Option<u16>,
    socket_dir: Option<PathBuf>,
}

/// postmaster.pid: line 4 port, 5 first socket directory (see PostgreSQL's pidfile.h).
fn read_pid_file(pgdata: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(PidFile {
        port: lines.get(3).and_then(|l| l.trim().parse().ok()),
        socket_dir: lines.get(4).map(|l| PathBuf::from(l.trim())),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum LockHolder {
    /// No lock file, or its pid is dead: PostgreSQL handles that itself.
    Nobody,
    /// A live postgres process.
    Postgres,
    /// A zombie or some other program, which PostgreSQL would take for a running server.
    Impostor(u32),
}

/// Who holds a PostgreSQL lock file (postmaster.pid or the socket's .lock; both start with the pid).
fn lock_holder(path: &Path) -> LockHolder {
    let Some(pid) = fs::read_to_string(path).ok().and_then(|text| {
        text.lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
    }) else {
        return LockHolder::Nobody;
    };
    match proc_stat(pid) {
        None => LockHolder::Nobody,
        Some((comm, state)) if state != 'Z' && (comm == "postgres" || comm == "postmaster") => {
            LockHolder::Postgres
        }
        Some(_) => LockHolder::Impostor(pid),
    }
}

/// The command name and state of a process, from /proc/<pid>/stat; None if there is no such process.
fn proc_stat(pid: u32) -> Option<(String, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((comm, state))
}

fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(_, state)| state != 'Z')
}

fn pg_env_vars() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.as_bytes().starts_with(b"PG"))
        .collect()
}

async fn run(cmd: &mut tokio::process::Command, timeout: Duration) -> io::Result<Output> {
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after {} s", timeout.as_secs()),
        )),
    }
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    tail(text.trim_end(), LOG_TAIL_BYTES)
}

fn read_log_tail(path: &Path) -> String {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    read_log_since(path, len.saturating_sub(LOG_TAIL_BYTES as u64))
}

/// What the server logged from `offset` on, cut to the last few KiB.
fn read_log_since(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => tail(String::from_utf8_lossy(&bytes).trim_end(), LOG_TAIL_BYTES),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The last `max` bytes of `text`, starting at a line boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(nl) => format!("...\n{}", &cut[nl + 1..]),
        None => cut.to_owned(),
    }
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), EmbeddedPgError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("could not remove {}", dir.display()))(e)),
    }
}

/// A string literal for postgresql.conf, whose parser treats both `'` and `\` specially.
fn conf_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// Percent-encodes a path for a URL query value, keeping `/` readable.
fn percent_encode(s: &OsStr) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sqlx::Row as _;
    use std::str::FromStr as _;

    /// A fresh directory under the system temp dir (world-traversable /tmp, so the `postgres`
    /// user can reach it when the tests run as root).
    fn scratch_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("atiende-pg-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

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

    #[tokio::test]
    async fn untraversable_parent_is_reported() {
        if effective_uid().unwrap() != 0 {
            return; // only root hands the cluster to another user
        }
        let base = scratch_dir("closed");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let err = EmbeddedPostgres::start(&base.join("data"))
            .await
            .unwrap_err();
        match &err {
            EmbeddedPgError::NotTraversable { dir, .. } => assert_eq!(dir, &base),
            other => panic!("unexpected error: {other}"),
        }
        assert!(err.to_string().contains("chmod o+x"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn not_installed_without_binaries() {
        let empty = scratch_dir("nobin");
        let found = find_server_bin_dirs(Some(empty.as_os_str()), &empty.join("no-such-root"));
        assert!(found.is_empty());
        let err = choose_bin_dir(&found, &empty, None).await.unwrap_err();
        assert!(matches!(err, EmbeddedPgError::NotInstalled));
        let msg = err.to_string();
        assert!(
            msg.contains("apt-get install postgresql") && msg.contains("DATABASE_URL"),
            "{msg}"
        );
        assert!(find_server_bin_dirs(None, &empty).is_empty());
        fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn binary_search_order() {
        let root = scratch_dir("search");
        let make = |dir: &Path, names: &[&str]| {
            fs::create_dir_all(dir).unwrap();
            for name in names {
                let file = dir.join(name);
                fs::write(&file, "#!/bin/sh\n").unwrap();
                fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
            }
        };
        let lib = root.join("lib");
        make(&lib.join("9.6/bin"), &SERVER_BINARIES);
        make(&lib.join("15/bin"), &SERVER_BINARIES);
        make(&lib.join("17/bin"), &["initdb", "pg_ctl"]); // incomplete: skipped
        make(&lib.join("not-a-version/bin"), &SERVER_BINARIES);
        let on_path = root.join("path");
        make(&on_path, &SERVER_BINARIES);
        let path = std::env::join_paths([root.join("empty"), on_path.clone()]).unwrap();
        let found = find_server_bin_dirs(Some(&path), &lib);
        assert_eq!(
            found,
            vec![on_path, lib.join("15/bin"), lib.join("9.6/bin")]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn start_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let future = EmbeddedPostgres::start(Path::new("unused"));
        assert_send(&future);
    }

    #[test]
    fn helpers() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n\
                      postgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\nbroken line\n";
        assert_eq!(
            lookup_user(passwd, "postgres"),
            Some(RunAs {
                name: "postgres".into(),
                uid: 101,
                gid: 104
            })
        );
        assert_eq!(lookup_user(passwd, "nobody").map(|u| u.uid), Some(65534));
        assert_eq!(lookup_user(passwd, "missing"), None);
        assert_eq!(
            lookup_uid(passwd, 101).map(|u| u.name),
            Some("postgres".into())
        );

        assert_eq!(
            major_version("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n").as_deref(),
            Some("15")
        );
        assert_eq!(
            major_version("postgres (PostgreSQL) 9.6.24").as_deref(),
            Some("9.6")
        );
        assert_eq!(
            major_version("postgres (PostgreSQL) 17devel").as_deref(),
            Some("17")
        );

        assert_eq!(conf_quote(r"/a'b\c"), r"/a''b\\c");
        assert_eq!(percent_encode(OsStr::new("/srv/a b&c")), "/srv/a%20b%26c");
        assert_eq!(tail("one\ntwo\nthree", 7), "...\nthree");

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
