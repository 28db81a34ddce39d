//! What the system says about the server's processes (postmaster.pid, the socket's lock file,
//! /proc), and running PostgreSQL's programs with a clean environment and a time limit.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub(super) struct PidFile {
    pub(super) port: Option<u16>,
    pub(super) socket_dir: Option<PathBuf>,
}

/// postmaster.pid: line 4 port, 5 first socket directory (see PostgreSQL's pidfile.h).
pub(super) fn read_pid_file(pgdata: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(PidFile {
        port: lines.get(3).and_then(|l| l.trim().parse().ok()),
        socket_dir: lines.get(4).map(|l| PathBuf::from(l.trim())),
    })
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum LockHolder {
    /// No lock file, or its pid is dead: PostgreSQL handles that itself.
    Nobody,
    /// A live postgres process.
    Postgres,
    /// A zombie or some other program, which PostgreSQL would take for a running server.
    Impostor(u32),
}

/// Who holds a PostgreSQL lock file (postmaster.pid or the socket's .lock; both start with the pid).
pub(super) fn lock_holder(path: &Path) -> LockHolder {
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

pub(super) fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(_, state)| state != 'Z')
}

pub(super) fn pg_env_vars() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.as_bytes().starts_with(b"PG"))
        .collect()
}

pub(super) async fn run(
    cmd: &mut tokio::process::Command,
    timeout: Duration,
) -> io::Result<Output> {
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after {} s", timeout.as_secs()),
        )),
    }
}
