//! Finding the installed PostgreSQL server programs (initdb, pg_ctl, postgres) and the version
//! that can open an existing cluster.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::EmbeddedPgError;

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
pub(super) const DEFAULT_LIB_ROOT: &str = "/usr/lib/postgresql";

/// Directories holding initdb, pg_ctl and postgres: those on `path` first (the user's own choice),
/// then `<lib_root>/<version>/bin`, highest version first.
pub(super) fn find_server_bin_dirs(path: Option<&OsStr>, lib_root: &Path) -> Vec<PathBuf> {
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
pub(super) async fn choose_bin_dir(
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::embedded_pg::scratch_dir;

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
    fn major_versions() {
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
    }
}
