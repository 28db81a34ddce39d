//! Running the cluster: initdb on first use, pg_ctl start and stop, reusing (or adopting) a server
//! that is already up, and the lock that lets only one process do any of that at a time.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::process::{LockHolder, lock_holder, process_alive, read_pid_file, run};
use super::text::{conf_quote, output_text, read_log_since, read_log_tail};
use super::{APP_DB, Durability, EmbeddedPgError, EmbeddedPostgres, SUPERUSER, io_err};

/// Generous, because the first start after a crash replays the WAL before accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const INITDB_TIMEOUT: Duration = Duration::from_secs(300);
/// The log is appended to on every start; past this size the old one is moved aside at start.
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

impl EmbeddedPostgres {
    pub(super) async fn lock(&self) -> Result<File, EmbeddedPgError> {
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
    pub(super) async fn init(&self) -> Result<(), EmbeddedPgError> {
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
    pub(super) fn write_settings(&self) -> Result<(), EmbeddedPgError> {
        let path = self.pgdata.join("atiende.conf");
        let text = format!(
            "# Written by atiende at every start; edits are lost.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             port = {}\n\
             {}",
            conf_quote(&self.socket_dir.to_string_lossy()),
            self.port,
            match self.durability {
                Durability::Durable => "fsync = on\n",
                // The test suite creates a database per test and never needs one after a crash.
                Durability::Throwaway => {
                    "fsync = off\n\
                     synchronous_commit = off\n\
                     full_page_writes = off\n\
                     max_connections = 200\n"
                }
            }
        );
        fs::write(&path, text).map_err(io_err(format!("could not write {}", path.display())))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(io_err(format!("could not chown {}", path.display())))?;
        }
        Ok(())
    }

    pub(super) async fn start_or_reuse(&mut self) -> Result<(), EmbeddedPgError> {
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
                self.started = true;
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

    pub(super) async fn create_database(&self) -> Result<(), EmbeddedPgError> {
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
    pub(super) fn server_running(&self) -> Result<bool, EmbeddedPgError> {
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

    pub(super) async fn stop_server(&self) -> Result<(), EmbeddedPgError> {
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

fn remove_dir_if_exists(dir: &Path) -> Result<(), EmbeddedPgError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("could not remove {}", dir.display()))(e)),
    }
}
